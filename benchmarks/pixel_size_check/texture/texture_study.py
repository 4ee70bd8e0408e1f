"""Pixel-size plausibility study, part 2: measures that do not depend on anatomy size.

For each case of a source, simulate the export chain a clinician's PNG/JPEG goes through
(HU -> window W1500/L450 -> 8-bit -> optional resize with PIL -> optional JPEG) and compute, with
the *stated* (original) pixel size, candidate measures:

* edge blur: width of the skin/air and bone edges (step height / max slope along the normal),
  in pixels and in stated mm;
* noise texture: lag-1/lag-2 autocorrelation of the high-pass residual in soft tissue;
* resampling fingerprint: periodicity of the mean |first difference| along each axis
  (Popescu & Farid / Kirchner style), with the JPEG 8x8 block harmonics measured apart;
* soft-tissue thickness: the largest inscribed disc of the body in stated mm.

No U-Net: everything is on thresholds of the image itself.

    python texture_study.py SOURCE [-n 12] --out /tmp/tex_rows_SOURCE.csv

SOURCE: a..m (generator_X.py), ours_basic, varied, sample (loaders of ../thickness_study.py).
"""
from __future__ import annotations

import argparse
import io
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from thickness_study import cases  # noqa: E402  (reuse the previous study's loaders)

LEVEL, WIDTH = 450.0, 1500.0
BOTTOM = LEVEL - WIDTH / 2
METHODS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


# ----------------------------------------------------------------------------- export chain
def hu_to_unit(hu):
    return np.clip((np.asarray(hu, np.float64) - BOTTOM) / WIDTH, 0, 1)


def export8(hu) -> np.ndarray:
    return np.round(hu_to_unit(hu) * 255).astype(np.uint8)


def pil_resize(img8: np.ndarray, f: float, method: str) -> np.ndarray:
    h, w = img8.shape
    size = (max(8, int(round(w * f))), max(8, int(round(h * f))))
    return np.asarray(Image.fromarray(img8).resize(size, METHODS[method]))


def jpeg(img8: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img8).save(buf, format="JPEG", quality=int(q))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("L"))


# ----------------------------------------------------------------------------- measures
def body_mask(u: np.ndarray) -> np.ndarray:
    m = ndi.gaussian_filter(u, 1.0) > 0.05          # above about -225 HU
    m = ndi.binary_fill_holes(m)
    lab, n = ndi.label(m)
    if n == 0:
        return m
    sizes = ndi.sum(m, lab, index=np.arange(1, n + 1))
    return lab == (np.argmax(sizes) + 1)


def edge_widths(u, level_mask_inside, rng, max_pts=300, R=12.0, step=0.25, border=6):
    """Median edge width (px) = step height / max slope along the normal, at boundary points
    of ``level_mask_inside`` (the bright side)."""
    inside = level_mask_inside
    bnd = inside & ~ndi.binary_erosion(inside)
    bnd[:border, :] = bnd[-border:, :] = bnd[:, :border] = bnd[:, -border:] = False
    pts = np.argwhere(bnd)
    if len(pts) < 10:
        return np.nan, 0
    if len(pts) > max_pts:
        pts = pts[rng.choice(len(pts), max_pts, replace=False)]
    us = ndi.gaussian_filter(u, 2.0)
    gy = ndi.sobel(us, 0)
    gx = ndi.sobel(us, 1)
    ny, nx = gy[pts[:, 0], pts[:, 1]], gx[pts[:, 0], pts[:, 1]]
    nn = np.hypot(ny, nx)
    ok = nn > 1e-6
    pts, ny, nx, nn = pts[ok], ny[ok] / nn[ok], nx[ok] / nn[ok], nn[ok]
    if len(pts) < 10:
        return np.nan, 0
    t = np.arange(-R, R + step / 2, step)
    yy = pts[:, 0:1] + ny[:, None] * t[None, :]
    xx = pts[:, 1:2] + nx[:, None] * t[None, :]
    prof = ndi.map_coordinates(u, [yy.ravel(), xx.ravel()], order=1, mode="nearest").reshape(yy.shape)
    g = np.gradient(prof, step, axis=1)
    centre = np.abs(t) <= 4
    widths = []
    for k in range(len(pts)):
        gk = g[k]
        i0 = np.flatnonzero(centre)[np.argmax(gk[centre])]
        gmax = gk[i0]
        if gmax <= 0:
            continue
        lo = i0
        while lo > 0 and gk[lo - 1] > 0.1 * gmax:
            lo -= 1
        hi = i0
        while hi < len(t) - 1 and gk[hi + 1] > 0.1 * gmax:
            hi += 1
        height = prof[k, min(hi + 1, len(t) - 1)] - prof[k, max(lo - 1, 0)]
        if height < 0.05:                         # weak edge (< 75 HU): skip
            continue
        widths.append(height / gmax)
    if len(widths) < 10:
        return np.nan, len(widths)
    return float(np.median(widths)), len(widths)


def noise_texture(u, body):
    """Autocorrelation of the high-pass residual in soft tissue (window units)."""
    sm = ndi.gaussian_filter(u, 2.0)
    st = body & (sm > 0.15) & (sm < 0.32)          # about -75 .. 180 HU
    st = ndi.binary_erosion(st, iterations=3)
    out = dict(st_px=int(st.sum()), rho1=np.nan, rho2=np.nan, noise_sd=np.nan)
    if st.sum() < 200:
        return out
    r = u - ndi.gaussian_filter(u, 3.0)
    v = r[st].var()
    out["noise_sd"] = float(np.sqrt(v) * WIDTH)  # HU
    if v <= 0:
        return out
    rh = []
    for lag in (1, 2):
        a = (r[:, lag:] * r[:, :-lag])[st[:, lag:] & st[:, :-lag]].mean()
        b = (r[lag:, :] * r[:-lag, :])[st[lag:, :] & st[:-lag, :]].mean()
        rh.append((a + b) / 2 / v)
    out["rho1"], out["rho2"] = float(rh[0]), float(rh[1])
    return out


def _axis_spectrum(u, axis):
    """Power spectrum of the column (axis=1) or row (axis=0) profile of mean |first difference|,
    high-passed; returns (freqs, P normalised by its median over 0.1..0.5 cyc/px)."""
    if axis == 0:
        u = u.T
    d = np.abs(np.diff(u, axis=1))
    valid = (u[:, 1:] > 0.01) & (u[:, 1:] < 0.99) & (u[:, :-1] > 0.01) & (u[:, :-1] < 0.99)
    cnt = valid.sum(0)
    c = np.where(cnt > 0, (d * valid).sum(0) / np.maximum(cnt, 1), 0.0)
    good = cnt >= max(5, 0.1 * u.shape[0])
    if good.sum() < 32:
        return None, None
    c = np.where(good, c, np.median(c[good]))
    c = c - ndi.gaussian_filter1d(c, 2.0, mode="reflect")
    c = c * np.hanning(len(c))
    P = np.abs(np.fft.rfft(c)) ** 2
    f = np.fft.rfftfreq(len(c))
    band = (f >= 0.1) & (f <= 0.5)
    med = np.median(P[band])
    if med <= 0:
        return None, None
    return f, P / med


def periodicity(u):
    out = {}
    for ax, name in ((1, "x"), (0, "y")):
        f, P = _axis_spectrum(u, ax)
        if f is None:
            out.update({f"p_half_{name}": np.nan, f"p_jpeg_{name}": np.nan, f"p_peak_{name}": np.nan,
                        f"p_peakf_{name}": np.nan})
            continue
        df = f[1] - f[0]

        def at(f0, tol=1):
            i = int(round(f0 / df))
            return float(P[max(i - tol, 0):i + tol + 1].max())
        out[f"p_half_{name}"] = at(0.5, 1)
        out[f"p_jpeg_{name}"] = float(np.mean([at(k / 8) for k in (1, 2, 3)]))
        # the largest peak between 0.15 and 0.5 cyc/px, away from the JPEG harmonics k/8
        mask = (f >= 0.15) & (f <= 0.5)
        for k in (1, 2, 3, 4):
            mask &= np.abs(f - k / 8) > 1.5 * df
        if mask.any():
            i = np.flatnonzero(mask)[np.argmax(P[mask])]
            out[f"p_peak_{name}"] = float(P[i])
            out[f"p_peakf_{name}"] = float(f[i])
        else:
            out[f"p_peak_{name}"] = out[f"p_peakf_{name}"] = np.nan
    return out


def phase_contrast(u, body):
    """Resampling fingerprint in soft tissue, where the image is flat and mostly noise.

    v[p] = mean |first difference| between pixels j and j+1 with p = j mod 8 (both in soft tissue).
    c2: (even phases - odd phases) / mean, leaving out p = 7 (the JPEG 8x8 block boundary);
        a 2x upsample makes pairs of pixels that share one source pixel, so the within-pair
        difference is about half the across-pair one.
    c3: spread of the mean |difference| over j mod 3 / mean (period 3: 1.5x or 3x); 3 and 8 are
        coprime so JPEG's 8-periodic pattern averages out.
    """
    sm = ndi.gaussian_filter(u, 2.0)
    st = body & (sm > 0.12) & (sm < 0.36)
    st = ndi.binary_erosion(st, iterations=2)
    out = {}
    for ax, name in ((1, "x"), (0, "y")):
        uu, ss = (u, st) if ax == 1 else (u.T, st.T)
        d = np.abs(np.diff(uu, axis=1))
        ok = ss[:, 1:] & ss[:, :-1]
        j = np.broadcast_to(np.arange(d.shape[1]), d.shape)
        if ok.sum() < 400:
            out[f"c2_{name}"] = out[f"c3_{name}"] = out[f"v7_{name}"] = np.nan
            continue
        v8 = np.array([d[ok & (j % 8 == p)].mean() if (ok & (j % 8 == p)).any() else np.nan
                       for p in range(8)])
        m = np.nanmean(v8[:7])
        out[f"c2_{name}"] = float((np.nanmean(v8[[0, 2, 4, 6]]) - np.nanmean(v8[[1, 3, 5]])) / m)
        out[f"v7_{name}"] = float(v8[7] / m)             # JPEG block-boundary excess
        v3 = np.array([d[ok & (j % 3 == p)].mean() for p in range(3)])
        out[f"c3_{name}"] = float((v3.max() - v3.min()) / v3.mean())
    return out


def thickness(body, s):
    pad = 8
    kp = np.pad(body, pad, mode="edge")
    edt = ndi.distance_transform_edt(kp)[pad:-pad, pad:-pad]
    return float(2 * edt.max() * s)


def measures(u: np.ndarray, s: float, seed: int = 0) -> dict:
    """All candidate measures of one image in window units u (0..1), stated pixel size s (mm)."""
    rng = np.random.default_rng(seed)
    body = body_mask(u)
    out = dict(h=u.shape[0], w=u.shape[1], body_frac=float(body.mean()))
    sk, nsk = edge_widths(u, body, rng)
    sm = ndi.gaussian_filter(u, 1.0)
    bone = ndi.binary_fill_holes(sm > 0.5) & body          # > 450 HU
    bone = ndi.binary_opening(bone)
    bw, nbw = edge_widths(u, bone, rng)
    out.update(edge_skin_px=sk, n_skin=nsk, edge_skin_mm=sk * s, edge_bone_px=bw, n_bone=nbw,
               edge_bone_mm=bw * s)
    out.update(noise_texture(u, body))
    out.update(periodicity(u))
    out.update(phase_contrast(u, body))
    out["thick_mm"] = thickness(body, s)
    return out


# ----------------------------------------------------------------------------- driver
def variants(hu, s, rng, factors):
    """Yield (factor, kind, method, quality, u) for one case."""
    yield 1.0, "dicom", "", 0, hu_to_unit(hu)
    e8 = export8(hu)
    yield 1.0, "png", "", 0, e8 / 255.0
    for q in (75, 85, 95):
        yield 1.0, "jpeg", "", q, jpeg(e8, q) / 255.0
    # kernel stress: a softer and a sharper kernel than the generator's, still correct size
    soft = ndi.gaussian_filter(np.asarray(hu, np.float64), 0.35 / s)
    yield 1.0, "soft_png", "", 0, export8(soft) / 255.0
    sharp = hu + 0.8 * (hu - ndi.gaussian_filter(np.asarray(hu, np.float64), 1.0))
    yield 1.0, "sharp_png", "", 0, export8(sharp) / 255.0
    q = int(rng.integers(75, 96))
    yield 1.0, "soft_jpeg", "", q, jpeg(export8(soft), q) / 255.0
    for f in factors:
        if f == 1:
            continue
        meths = list(METHODS) if f in (2.0, 0.5) else [str(rng.choice(list(METHODS)))]
        for m in meths:
            r8 = pil_resize(e8, f, m)
            yield f, "png", m, 0, r8 / 255.0
            q = int(rng.integers(75, 96))
            yield f, "jpeg", m, q, jpeg(r8, q) / 255.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("-n", type=int, default=12)
    ap.add_argument("--factors", default="1,2,0.5,1.5,0.6667")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    factors = [float(x) for x in args.factors.split(",")]
    rows = []
    t0 = time.time()
    for cid, hu, s, _bone in cases(args.source, args.n):
        rng = np.random.default_rng(zlib.crc32(f"{args.source}/{cid}".encode()))
        for f, kind, m, q, u in variants(hu, s, rng, factors):
            row = dict(source=args.source, case=cid, factor=f, kind=kind, method=m, quality=q,
                       spacing_stated=s, spacing_true=s / f)
            row.update(measures(u, s))
            rows.append(row)
        print(f"{args.source} {cid} {time.time() - t0:.0f}s", flush=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print("wrote", args.out, len(rows), f"{time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
