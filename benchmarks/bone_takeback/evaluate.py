"""Run the baseline and the take-back rule on cached cases; one row per seed per variant.

    python benchmarks/bone_takeback/evaluate.py OUT.csv SOURCES VARIANTS [FIRST-LAST seeds, default 0-14]
    SOURCES: comma list (ours_basic,generator_a,...); VARIANTS: ;-separated JSON dicts of take_back options
"""
import sys, json, time
from pathlib import Path
import numpy as np, pandas as pd
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_case, true_gaps, SHORT
from rule import take_back
from napari_calcinosis import dice
from napari_calcinosis.grow import grow_lesions


def areas_of(res, n, px):
    counts = np.bincount(res.lesion_labels.ravel())
    ids = res.seeds["lesion_id"].to_numpy()
    return np.array([counts[k] * px if 0 < k < len(counts) else 0.0 for k in ids])


def main(take_back=take_back):
    """``take_back``: the rule judged (round 2's evaluate2.py gives its own)."""
    out, sources, variants = Path(sys.argv[1]), sys.argv[2].split(","), [json.loads(v) for v in sys.argv[3].split(";")]
    lo, hi = map(int, sys.argv[4].split("-")) if len(sys.argv) > 4 else (0, 14)
    rows, cases = [], []
    for name in sources:
        for seed in range(lo, hi + 1):
            c = load_case(name, seed)
            n = len(c["seeds"])
            if n == 0:
                continue
            s = float(c["spacing"]); sp = (s, s); px = s * s
            seeds = [tuple(map(int, p)) for p in c["seeds"]]
            t0 = time.perf_counter()
            base = grow_lesions(c["hu"], c["bone_mask"], sp, seeds, bone_probability=c["probability"])
            t_base = time.perf_counter() - t0
            gaps = true_gaps(c)
            dep = c["deposits"]
            a0 = areas_of(base, n, px)
            from scipy import ndimage as ndi
            ring = ndi.binary_dilation(base.lesion_labels > 0, structure=np.ones((5, 5), bool))
            borders = [bool((ring & base.bone_mask & ndi.binary_dilation(base.lesion_labels == L, structure=np.ones((5, 5), bool))).any())
                       if L > 0 else False for L in base.seeds["lesion_id"].to_numpy()]
            d0 = dice(base.bone_mask, c["bone"])
            for vi, opts in enumerate(variants):
                t0 = time.perf_counter()
                res, taken, _ = take_back(c["hu"], c["bone_mask"], c["probability"], sp, seeds, base=base, **opts)
                t_rule = time.perf_counter() - t0
                a1 = areas_of(res, n, px)
                cases.append(dict(source=SHORT[name], seed=seed, variant=vi, n=n, t_base=t_base, t_rule=t_rule,
                                  dice_before=d0, dice_after=dice(res.bone_mask, c["bone"]), modified=bool(taken.any()),
                                  taken_px=int(taken.sum()), taken_true_bone=int((taken & c["bone"]).sum()),
                                  taken_deposit=int((taken & (dep > 0)).sum())))
                for k in range(n):
                    rows.append(dict(source=SHORT[name], seed=seed, deposit=k + 1, variant=vi, true=c["areas"][k],
                                     gap=gaps[k], status0=base.seeds["status"].iat[k], area0=a0[k],
                                     status1=res.seeds["status"].iat[k], area1=a1[k],
                                     taken_own=int((taken & (dep == k + 1)).sum()), borders_mask0=borders[k]))
            print(name, seed, f"{t_base:.2f}s", flush=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    pd.DataFrame(cases).to_csv(out.with_suffix(".cases.csv"), index=False)


if __name__ == "__main__":
    main()
