"""Per-deposit areas at native and coarser/anisotropic pixel spacings, for 14 finger-CT sources
(the study behind measure.NEAR_RESOLUTION_PX; see README.md here).

python benchmarks/near_resolution/collect.py SOURCE FIRST_SEED N_SEEDS OUT.csv
(SOURCE: a module of benchmarks/ood/, e.g. generator_a or ours_basic)
Appends rows to OUT.csv (one per seeded deposit per spacing config), and a case log to OUT.cases.csv.
"""
import sys, time, importlib.util
from pathlib import Path
import numpy as np, pandas as pd
from scipy import ndimage as ndi
from skimage.transform import resize
from skimage.measure import perimeter
from napari_calcinosis import CalcinosisImage, quantify, load_model
from napari_calcinosis.measure import feret_axes_mm

OOD = Path(__file__).resolve().parents[1] / 'ood'

def load(name):
    p = OOD / f'{name}.py'
    spec = importlib.util.spec_from_file_location(p.stem, p)
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    return m

def configs(s0, seed):
    """(name, row_mm, col_mm) target spacings for a case of native (square) spacing s0."""
    out = [("native", s0, s0)]
    for t in (0.35, 0.5, 0.6):
        if t > 1.15 * s0:
            out.append((f"iso{t}", t, t))
    short = max(s0, 0.25)
    long_ = 0.5 if short <= 0.3 else 0.6
    if long_ > 1.15 * short:
        out.append(("aniso", short, long_) if seed % 2 == 0 else ("aniso", long_, short))
    return out

def resample(hu, s0, sr, sc):
    shape = (max(8, int(round(hu.shape[0] * s0 / sr))), max(8, int(round(hu.shape[1] * s0 / sc))))
    if shape == hu.shape:
        return hu.astype(np.float32), (s0, s0)
    out = resize(hu.astype(np.float64), shape, order=1, anti_aliasing=True, preserve_range=True, mode='edge')
    return out.astype(np.float32), (s0 * hu.shape[0] / shape[0], s0 * hu.shape[1] / shape[1])

def main():
    name, first, n, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    gen = load(name)
    model = load_model(device='cpu')
    rows, caselog = [], []
    for seed in range(first, first + n):
        t0 = time.time()
        case = gen.make_case(seed)
        pair = np.broadcast_to(np.asarray(case['spacing_mm'], float), (2,))
        s0 = float(pair[0])
        hu = np.asarray(case['hu'], np.float32)
        seeds = [tuple(map(float, s)) for s in case['seeds']]
        nd = len(seeds)
        areas = np.asarray(case['areas_mm2'], float)[:nd]
        if nd == 0:
            caselog.append(dict(source=name, seed=seed, s0=s0, n_dep=0)); continue
        labels = np.asarray(case['deposits'])
        bone = np.asarray(case['bone'], bool)
        gap = ndi.distance_transform_edt(~bone) * s0
        gaps = [float(gap[labels == k].min()) if (labels == k).any() else np.nan for k in range(1, nd + 1)]
        for cname, sr_t, sc_t in configs(s0, seed):
            img, (sr, sc) = resample(hu, s0, sr_t, sc_t)
            # seed: pixel centre (r) at (r+0.5)*s0 mm from the edge
            sd = [(int(np.clip(np.floor((r + 0.5) * s0 / sr), 0, img.shape[0] - 1)),
                   int(np.clip(np.floor((c + 0.5) * s0 / sc), 0, img.shape[1] - 1))) for r, c in seeds]
            t1 = time.time()
            try:
                res = quantify(CalcinosisImage(img, (sr, sc), source=f'{name}-{seed}-{cname}'), sd, model=model, device='cpu')
            except Exception as exc:  # record and go on
                print('FAIL', name, seed, cname, repr(exc)[:200], flush=True)
                for k in range(nd):
                    rows.append(dict(source=name, seed=seed, config=cname, s0=s0, sr=sr, sc=sc, deposit=k + 1,
                                     true_area_mm2=areas[k], status='error', true_bone_gap_mm=gaps[k]))
                continue
            tq = time.time() - t1
            tab = res.table
            for k in range(nd):
                t = tab.iloc[k]
                row = dict(source=name, seed=seed, config=cname, s0=s0, sr=sr, sc=sc, deposit=k + 1,
                           true_area_mm2=areas[k], true_area_px=areas[k] / (sr * sc), status=t['status'],
                           true_bone_gap_mm=gaps[k], lesion_id=int(t['lesion_id']))
                if t['status'] == 'ok':
                    m = res.lesion_labels == int(t['lesion_id'])
                    lp, sp = feret_axes_mm(m, (1.0, 1.0))
                    inr = float(ndi.distance_transform_edt(np.pad(m, 1)).max())
                    row.update(area_mm2=float(t['area_mm2']), area_px=int(t['area_px']),
                               long_axis_mm=float(t['long_axis_mm']), short_axis_mm=float(t['short_axis_mm']),
                               long_axis_idx_px=lp, short_axis_idx_px=sp, inradius_px=inr,
                               perimeter_px=float(perimeter(m)), peak_hu=float(t['peak_hu']),
                               level_hu=float(t['level_hu']), background_hu=float(t['background_hu']),
                               shared_lesion=int((tab['lesion_id'] == t['lesion_id']).sum() > 1))
                rows.append(row)
            caselog.append(dict(source=name, seed=seed, config=cname, s0=s0, sr=sr, sc=sc, shape=img.shape,
                                n_dep=nd, n_ok=int((tab['status'] == 'ok').sum()), quantify_s=round(tq, 2)))
        print(f'{name} seed {seed} s0={s0:.3f} n={nd} {time.time()-t0:.1f}s', flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out, mode='a', header=not out.exists(), index=False)
    cl = out.with_suffix('.cases.csv')
    pd.DataFrame(caselog).to_csv(cl, mode='a', header=not cl.exists(), index=False)

if __name__ == '__main__':
    main()
