"""Segment every case once and cache it (image, truth, the U-Net's mask and probability).

    python benchmarks/bone_takeback/cache.py SOURCE [SOURCE ...]   (seeds 0-14 each)
    python benchmarks/bone_takeback/cache.py --seeds 15-29 SOURCE [SOURCE ...]   (round 2's held-out seeds)

Writes /tmp/bone_takeback_cache/SOURCE_SEED.npz. The loading is benchmarks/ood_eval.py's
(load_generator, make_case, square spacing, integer seeds); the mask and probability are
segment_phalanges' own, exactly what quantify() passes to grow_lesions.
"""
import sys, time
from pathlib import Path
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ood_eval import load_generator  # noqa: E402
from napari_calcinosis import CalcinosisImage, load_model  # noqa: E402
from napari_calcinosis.segment import segment_phalanges  # noqa: E402

CACHE = Path("/tmp/bone_takeback_cache")
OOD = Path(__file__).resolve().parents[1] / "ood"


def main():
    CACHE.mkdir(exist_ok=True)
    model = load_model(device="cpu")
    args = sys.argv[1:]
    seeds_range = range(15)
    if args[:1] == ["--seeds"]:
        lo, hi = map(int, args[1].split("-"))
        seeds_range, args = range(lo, hi + 1), args[2:]
    for name in args:
        gen = load_generator(OOD / f"{name}.py")
        for seed in seeds_range:
            out = CACHE / f"{name}_{seed}.npz"
            if out.exists():
                continue
            t0 = time.time()
            case = gen.make_case(seed)
            pair = np.broadcast_to(np.asarray(case["spacing_mm"], float), (2,))
            s = float(pair[0])
            hu = np.asarray(case["hu"], np.float32)
            seeds = np.array([tuple(map(int, p)) for p in case["seeds"]], np.int64).reshape(-1, 2)
            t1 = time.time()
            seg = segment_phalanges(CalcinosisImage(hu, (s, s), source=f"{name}-{seed}"), model, device="cpu")
            t2 = time.time()
            np.savez_compressed(
                out, hu=hu, spacing=s, bone=np.asarray(case["bone"], bool),
                deposits=np.asarray(case["deposits"]).astype(np.int32),
                areas=np.asarray(case["areas_mm2"], float)[: len(seeds)], seeds=seeds,
                bone_mask=np.asarray(seg.bone_mask, bool), probability=np.asarray(seg.probability, np.float32))
            print(f"{name} {seed} make {t1-t0:.1f}s seg {t2-t1:.1f}s n={len(seeds)}", flush=True)


if __name__ == "__main__":
    main()
