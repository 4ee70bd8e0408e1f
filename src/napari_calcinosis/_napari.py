"""napari contributions. Thin adapters: arrays and spacing from the engine become layers."""

from __future__ import annotations

from pathlib import Path


def _sample(name: str):
    from ._reader_writer import _layer_data
    from ._sample_data import DATA_DIR, sample_truth
    from ._widgets import KIND
    from .io import read_image

    image = read_image(Path(DATA_DIR) / f"{name}.dcm")
    bone_mask, lesion_labels = sample_truth(name)
    scale = image.spacing_mm
    pixels, kwargs, _ = _layer_data(image)  # as the reader opens it: HU, mm, window, what the file says
    kwargs["name"] = name
    return [
        (pixels, kwargs, "image"),
        # the truth's bone is no lesion: the CSV writer refuses it, as it does the bone a widget made
        (bone_mask.astype("uint8"), {"name": f"{name} true bone", "scale": scale, "units": "mm", "opacity": 0.3,
                                     "visible": False, "metadata": {KIND: "true bone"}}, "labels"),
        (lesion_labels, {"name": f"{name} true lesions", "scale": scale, "units": "mm", "opacity": 0.5, "visible": False}, "labels"),
    ]


def sample_finger():
    """The bundled finger phantom, in HU, with its true bone and lesion layers."""
    return _sample("sample_finger")


def sample_finger_cut_off():
    """A phantom whose proximal phalanx is cut by the image border, with its truth."""
    return _sample("sample_finger_cut_off")
