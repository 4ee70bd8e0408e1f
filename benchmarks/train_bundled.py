"""Train the bone U-Net on our phantoms and on three independently written finger-CT generators.

    python benchmarks/train_bundled.py --out /tmp/mixed/phalanx_unet.safetensors

The training images: 400 varied phantoms (``make_phantom(varied=True)``, the bundled model's
seeds 1,000,000..1,000,399) and 100 cases each of ``benchmarks/ood/generator_{a,b,c}.py`` with
seeds 10000..10099, far from the seeds those generators are tested on (0..39, 100..139). The
validation images that pick the best epoch: the bundled model's 16 validation phantoms (seeds
2,000,000..2,000,015) and 4 cases of each generator (seeds 20000..20003). The schedule is the
bundled model's (45 epochs of 80 steps of 8 crops of 192 px, learning rate 0.002, seed 0).

Generators D, E and F are not used: they stay held out to judge the result
(``benchmarks/ood_eval.py ... --model OUT``).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from napari_calcinosis.train import (TRAIN_SEED_OFFSET, VAL_SEED_OFFSET, TrainingSample, phantom_samples,
                                     train_segmenter)

from ood_eval import load_generator  # benchmarks/ is the script's folder, so first on sys.path

OOD = Path(__file__).resolve().parent / "ood"
GENERATORS = ("a", "b", "c")
N_PHANTOMS, N_PER_GENERATOR = 400, 100
TRAIN_SEEDS, VAL_SEEDS, N_VAL_PER_GENERATOR = 10_000, 20_000, 4


@functools.lru_cache(maxsize=None)
def _generator(letter: str):
    return load_generator(OOD / f"generator_{letter}.py")  # once per process, not per image


def _case_sample(letter: str, seed: int) -> TrainingSample:
    case = _generator(letter).make_case(seed)
    spacing = float(case["spacing_mm"])
    return TrainingSample(case["hu"].astype("float32"), case["bone"].astype(bool), (spacing, spacing),
                          f"generator-{letter}-{seed}")


def generator_samples(first_seed: int, n: int, workers: int = 2) -> list[TrainingSample]:
    jobs = [(g, first_seed + i) for g in GENERATORS for i in range(n)]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_case_sample, *zip(*jobs), chunksize=8))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=int, default=45)
    args = ap.parse_args()
    t0 = time.monotonic()
    train = phantom_samples(N_PHANTOMS, TRAIN_SEED_OFFSET) + generator_samples(TRAIN_SEEDS, N_PER_GENERATOR)
    val = phantom_samples(16, VAL_SEED_OFFSET) + generator_samples(VAL_SEEDS, N_VAL_PER_GENERATOR)
    print(f"{len(train)} training and {len(val)} validation images made in {time.monotonic() - t0:.0f} s", flush=True)

    def report(p):
        if p.phase == "validate" or (p.phase == "train" and p.step % 200 == 0):
            print(f"{p.phase} epoch {p.epoch}/{p.epochs} step {p.step}/{p.total_steps} loss {p.loss:.4f} "
                  f"val {p.val_dice:.4f} best {p.best_val_dice:.4f} eta {p.eta_s:.0f} s", flush=True)

    result = train_segmenter(
        args.out, samples=train, val_samples=val, epochs=args.epochs, steps_per_epoch=80, batch_size=8,
        learning_rate=2e-3, crop_px=192, device=args.device, seed=0, progress=report,
        command="python " + " ".join(["benchmarks/train_bundled.py", *sys.argv[1:]]),
    )
    print(f"best validation Dice {result.best_val_dice:.4f} at epoch {result.best_epoch}; "
          f"{result.elapsed_s:.0f} s; {result.model_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
