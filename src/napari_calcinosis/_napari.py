"""napari contributions. Thin adapters: arrays and spacing from the engine become layers."""

from __future__ import annotations

from pathlib import Path


def _sample(name: str):
    from ._sample_data import DATA_DIR, sample_truth
    from .io import read_image

    image = read_image(Path(DATA_DIR) / f"{name}.dcm")
    bone_mask, lesion_labels = sample_truth(name)
    scale = image.spacing_mm
    lo = image.window_level_hu - image.window_width_hu / 2
    hi = image.window_level_hu + image.window_width_hu / 2
    return [
        (image.pixels_hu, {"name": name, "scale": scale, "units": "mm", "contrast_limits": (lo, hi), "colormap": "gray",
                           "metadata": {"spacing_mm": scale, "source": image.source}}, "image"),
        (bone_mask.astype("uint8"), {"name": f"{name} true bone", "scale": scale, "units": "mm", "opacity": 0.3, "visible": False}, "labels"),
        (lesion_labels, {"name": f"{name} true lesions", "scale": scale, "units": "mm", "opacity": 0.5, "visible": False}, "labels"),
    ]


def sample_finger():
    """The bundled finger phantom, in HU, with its true bone and lesion layers."""
    return _sample("sample_finger")


def sample_finger_cut_off():
    """A phantom whose proximal phalanx is cut by the image border, with its truth."""
    return _sample("sample_finger_cut_off")
