"""The bundled sample images: synthetic phantoms written as DICOM with their truth.

Regenerate them with ``python -m napari_calcinosis._sample_data`` (deterministic).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).parent / "data"

# name -> make_phantom arguments; seeds far from the training (1e6+) and validation (2e6+) blocks
SAMPLES = {
    "sample_finger": dict(seed=2032, n_lesions=4, cut_off=False, spacing_mm=0.25),
    "sample_finger_cut_off": dict(seed=2023, n_lesions=3, cut_off=True, spacing_mm=0.22),
}


def write_samples(out_dir: Path = DATA_DIR) -> list[Path]:
    from .io import write_dicom
    from .phantom import make_phantom

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, kwargs in SAMPLES.items():
        p = make_phantom(**kwargs)
        written.append(write_dicom(out_dir / f"{name}.dcm", p.image_hu, p.spacing_mm, patient_id=name.upper(),
                                   description=f"synthetic finger phantom, seed {kwargs['seed']}"))
        np.savez_compressed(out_dir / f"{name}_truth.npz", bone_mask=p.bone_mask, lesion_labels=p.lesion_labels.astype(np.uint8))
        pd.DataFrame({"row": p.seeds[:, 0], "col": p.seeds[:, 1]}).to_csv(out_dir / f"{name}_seeds.csv", index=False)
        pd.DataFrame({
            "lesion_id": np.arange(1, p.n_lesions + 1), "area_mm2": p.lesion_areas_mm2, "site": p.lesion_sites,
            "peak_hu": p.lesion_peak_hu, "seed_row": p.seeds[:, 0], "seed_col": p.seeds[:, 1],
        }).to_csv(out_dir / f"{name}_truth.csv", index=False)
    return written


def sample_truth(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The true (bone_mask, lesion_labels) of a bundled sample."""
    with np.load(DATA_DIR / f"{name}_truth.npz") as z:
        return z["bone_mask"].astype(bool), z["lesion_labels"].astype(np.int32)


if __name__ == "__main__":
    for path in write_samples():
        print(path)
