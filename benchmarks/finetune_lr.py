"""Fine-tuning the bundled model on a lab's own images: which learning rate?

For each generator named (benchmarks/ood/generator_<g>.py, images the bundled model never saw),
the bundled model is fine-tuned on 12 of its cases (seeds 1000-1011) with 3 more for validation
(1012-1014), at the Train widget's schedule (20 epochs, batch 8, 192 px crops), once per learning
rate; each model is tested on 30 other cases (seeds 0-29): mean and worst bone Dice.

    PYTHONPATH=src python benchmarks/finetune_lr.py g l e --lr 0.002 0.0005 0.0002 --json out.json

About a minute per run on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ood_eval import load_generator  # noqa: E402

from napari_calcinosis import dice, load_model  # noqa: E402
from napari_calcinosis.segment import bundled_model_path, segment_phalanges  # noqa: E402
from napari_calcinosis.train import train_segmenter  # noqa: E402

OOD = Path(__file__).resolve().parent / "ood"


def _sample(gen, seed: int):
    case = gen.make_case(seed)
    spacing = float(np.broadcast_to(np.asarray(case["spacing_mm"], float), (2,))[0])
    return np.asarray(case["hu"], np.float32), np.asarray(case["bone"], bool), (spacing, spacing)


def _test_dice(model, test) -> tuple[float, float]:
    scores = [dice(segment_phalanges(image, model, spacing_mm=spacing, device="cpu").bone_mask, bone)
              for image, bone, spacing in test]
    return round(float(np.mean(scores)), 4), round(float(np.min(scores)), 4)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("generators", nargs="+", help="generator letters, e.g. g l e")
    ap.add_argument("--lr", nargs="+", type=float, default=[0.002, 0.0005, 0.0002])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    report = {"train_seeds": [1000, 1011], "val_seeds": [1012, 1014], "test_seeds": [0, 29],
              "epochs": args.epochs, "batch_size": 8, "crop_px": 192, "runs": []}
    bundled = load_model(None, device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        for letter in args.generators:
            gen = load_generator(OOD / f"generator_{letter}.py")
            train = [_sample(gen, s) for s in range(1000, 1012)]
            val = [_sample(gen, s) for s in range(1012, 1015)]
            test = [_sample(gen, s) for s in range(0, 30)]
            row = {"generator": letter, "bundled_test_dice": _test_dice(bundled, test)}
            for lr in args.lr:
                out = Path(folder) / f"{letter}_{lr:g}.safetensors"
                t0 = time.perf_counter()
                result = train_segmenter(out, samples=train, val_samples=val, epochs=args.epochs, learning_rate=lr,
                                         device="cpu", init_model=bundled_model_path(), seed=0)
                row[f"lr {lr:g}"] = {"test_dice": _test_dice(load_model(out, device="cpu"), test),
                                     "best_epoch": result.best_epoch, "best_val_dice": round(result.best_val_dice, 4),
                                     "seconds": round(time.perf_counter() - t0, 1)}
            print(json.dumps(row), flush=True)
            report["runs"].append(row)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
