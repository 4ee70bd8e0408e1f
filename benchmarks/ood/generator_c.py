"""Generator C: synthetic sagittal finger DECT slices with calcinosis cutis (out-of-distribution test set).

Written independently of ``napari_calcinosis.phantom`` and of the other OOD generators (neither was read).
Usage: ``python benchmarks/ood_eval.py benchmarks/ood/generator_c.py -n 40``.

API
---
``make_case(seed: int) -> dict`` returns

* ``hu`` -- float32 (H, W) CT numbers in HU (after blur, noise and, in some cases, 8-bit export),
* ``spacing_mm`` -- isotropic pixel size in mm (0.10-0.45),
* ``bone`` -- bool (H, W), every pixel more than half covered by bone (all bones in view, including a
  neighbouring finger's),
* ``deposits`` -- int32 (H, W), 0 background, k = k-th deposit (pixel more than half covered by the deposit
  after the bone has been cut away),
* ``areas_mm2`` -- list of float, area of each deposit (exact polygon area, or the deposit minus bone
  measured on a sub-pixel grid of <= 0.02 mm when the deposit touches bone),
* ``seeds`` -- list of (row, col) int tuples, one per deposit (bright, interior pixel, never bone),
* ``notes`` -- one-line summary of what this case drew.

The result is deterministic for a seed (``np.random.default_rng([seed, _SALT])``); only numpy and scipy
are used; a case takes ~0.1 s (max ~0.5 s) on one CPU core, images are 200-700 px a side.

Design
------
Geometry is built in a "finger frame" in mm (x distal along the metacarpal, y dorsal) and mapped to
pixels by one rigid transform (any rotation, optional mirror) plus a field of view chosen afterwards.

* Bones are closed polygons (~0.1 mm vertex spacing) built bone by bone in a kinematic chain:
  metacarpal (long shaft, eccentric round head with a palmar condylar lip), proximal and middle
  phalanges (concave base cup concentric with the proximal head, flared base with dorsal/palmar lips,
  waisted shaft, neck, round condylar head) and the distal phalanx (base with tubercles, tapering
  shaft, spade-like tuft).  Each distal bone rotates about the centre of the proximal head, so the
  joint space (0.3-2 mm) is kept under flexion; overlapping poses are relaxed until bones are clear.
  Poses: straight, relaxed, fixed flexion contracture (PIP 30-90 deg), boutonniere, swan-neck.
  SSc changes: acro-osteolysis (shortened, thin, ragged tuft), osteopenia (thin, less dense cortex,
  low-density medulla), marginal/tuft erosions (notches cut into the outline), soft-tissue atrophy,
  pulp pits.  Occasionally part of a neighbouring finger (its bones are in the ``bone`` truth).
* Soft tissue is a signed-distance field: smooth union of uneven capsules per segment (palm, proximal,
  middle, distal with pulp), eccentric toward the palm.  Skin, patchy subcutaneous fat (mostly palmar
  and in the pulp) are bands of this field; tendons, the nail plate, a calcified digital artery,
  splint and ring are band/ellipse polygons.
* Polygons are rasterised by an exact-in-x, multi-sub-row scanline coverage routine (signed
  crossings, cumulative sums; 16 sub-rows for bone), so partial volume is rendered and the >50 % truth
  masks are accurate.  Cortex and medulla come from a distance-to-surface field, with cortical
  thickness varying along the bone and scaled to its size, and a trabecular texture.
* The field of view is the finger's bounding box plus margins, starting either proximal to the
  metacarpal head (~60 %) or within the proximal phalanx; ~20 % are cropped further around a point of
  the skeleton, and any side over 700 px is cropped the same way, so phalanges can be cut by the border.
* Deposits are placed in the main finger's soft tissue at chosen sites (touching the bone and cut at
  its surface, a fraction of a mm from bone, at joints, fingertip pulp, subcutaneous, deep soft tissue,
  and near-touching clusters) with shapes: round/ovoid nodules, lobulated (strong low-order radial
  harmonics), plaques/sheets following the bone surface or the skin, rim-calcified nodules and faint
  amorphous deposits.  Their intensity (250-2000 HU, rim/centre contrast, mottled texture) is
  integrated on a sub-pixel grid; the same grid gives the truth after subtracting bone.
* Scanner: optional metal streaks (ring/splint), beam-hardening dark bands between dense objects,
  axis-aligned (possibly anisotropic) Gaussian PSF, optional sharp-kernel overshoot, white or
  correlated noise, and in ~30 % of cases an 8-bit export through window 1500 / level 450.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.interpolate import PchipInterpolator
from scipy.spatial import cKDTree

__all__ = ["make_case"]

_SALT = 0x5C1E_C0DE  # this generator's own constant for the RNG stream

# digit: (PP, MP, DP bone lengths in mm, metacarpal head radius in mm, thickness factor)
_DIGITS = {
    "index": (39.8, 22.4, 15.8, 6.4, 1.00),
    "middle": (44.6, 26.3, 17.4, 6.8, 1.05),
    "ring": (41.4, 25.7, 17.3, 6.4, 0.97),
    "little": (32.7, 18.1, 15.5, 5.6, 0.86),
}

_STEP = 0.1  # polygon vertex spacing in mm
_WL, _WW = 450.0, 1500.0


# ----------------------------------------------------------------------------- small geometry helpers
def _rot(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s], [s, c]])


def _resample(P, step, closed=True, lab=None):
    P = np.asarray(P, float)
    lab = np.zeros(len(P)) if lab is None else np.asarray(lab, float)
    d = np.hypot(*np.diff(P, axis=0).T)
    keep = np.r_[True, d > 1e-9]
    P, lab = P[keep], lab[keep]
    if closed:
        Q, L = np.vstack([P, P[:1]]), np.r_[lab, lab[:1]]
    else:
        Q, L = P, lab
    s = np.r_[0.0, np.cumsum(np.hypot(*np.diff(Q, axis=0).T))]
    n = max(int(math.ceil(s[-1] / step)) + (0 if closed else 1), 8)
    t = np.linspace(0.0, s[-1], n, endpoint=not closed)
    out = np.stack([np.interp(t, s, Q[:, 0]), np.interp(t, s, Q[:, 1])], 1)
    return out, np.interp(t, s, L)


def _smooth_closed(P, sigma):
    if sigma <= 0:
        return P
    return ndimage.gaussian_filter1d(P, sigma, axis=0, mode="wrap")


def _smooth_open(P, sigma):
    if sigma <= 0 or len(P) < 3:
        return P
    return ndimage.gaussian_filter1d(P, sigma, axis=0, mode="nearest")


def _area(P):
    x, y = P[:, 0], P[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _normals(P, closed=True):
    """Unit normals pointing outward (closed polygon) or to the left of the path (open)."""
    if closed:
        T = np.roll(P, -1, 0) - np.roll(P, 1, 0)
    else:
        T = np.gradient(P, axis=0)
    T /= np.hypot(T[:, 0], T[:, 1])[:, None] + 1e-12
    left = np.stack([-T[:, 1], T[:, 0]], 1)
    if closed and _area(P) > 0:  # counter-clockwise: outward is the right-hand normal
        return -left
    return left


def _inside(pts, poly):
    """Even-odd point-in-polygon test for a few hundred points."""
    pts = np.asarray(pts, float)
    x, y = pts[:, 0:1], pts[:, 1:2]
    x0, y0 = poly[None, :, 0], poly[None, :, 1]
    x1, y1 = np.roll(x0, -1, 1), np.roll(y0, -1, 1)
    cond = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return np.count_nonzero(cond & (x < xi), axis=1) % 2 == 1


def _band(path, width):
    """Polygon of a band of (array or scalar) width centred on an open path."""
    n = _normals(path, closed=False)
    w = np.broadcast_to(np.asarray(width, float), (len(path),))[:, None] / 2
    return np.vstack([path + n * w, (path - n * w)[::-1]])


def _ellipse(c, a, b, ang, n=48):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    P = np.stack([a * np.cos(t), b * np.sin(t)], 1) @ _rot(ang).T
    return P + np.asarray(c)


def _pchip_side(us, vs, step):
    us, vs = np.asarray(us, float), np.asarray(vs, float)
    f = PchipInterpolator(us, vs)
    n = max(int((us[-1] - us[0]) / step) + 2, 3)
    uu = np.linspace(us[0], us[-1], n)
    return np.stack([uu, f(uu)], 1), f


def _arc(c, R, a0, a1, step):
    n = max(int(abs(a1 - a0) * R / step) + 2, 3)
    a = np.linspace(a0, a1, n)
    return np.stack([c[0] + R * np.cos(a), c[1] + R * np.sin(a)], 1)


# ----------------------------------------------------------------------------- rasteriser
def _cov_box(poly, H, W, sub=8):
    """Area coverage of a polygon on pixel grid (pixel (r, c) centred at (x=c, y=r)).

    Exact along x, ``sub`` sample rows per pixel along y; nonzero-winding (abs of signed coverage).
    Returns (cov, r0, c0) for the polygon's bounding box clipped to the grid, or None.
    """
    x, y = poly[:, 0], poly[:, 1]
    r0 = max(int(math.floor(y.min() + 0.5)), 0)
    r1 = min(int(math.floor(y.max() + 0.5)) + 1, H)
    c0 = max(int(math.floor(x.min() + 0.5)), 0)
    c1 = min(int(math.floor(x.max() + 0.5)) + 1, W)
    if r1 <= r0 or c1 <= c0:
        return None
    nr, nc = r1 - r0, c1 - c0
    s = (y - r0 + 0.5) * sub - 0.5
    sn, xn = np.roll(s, -1), np.roll(x, -1)
    lo, hi = np.minimum(s, sn), np.maximum(s, sn)
    kmin = np.maximum(np.ceil(lo), 0).astype(np.int64)
    kmax = np.minimum(np.ceil(hi) - 1, nr * sub - 1).astype(np.int64)
    cnt = kmax - kmin + 1
    e = np.nonzero(cnt > 0)[0]
    cov = np.zeros((nr, nc))
    if len(e) == 0:
        return cov, r0, c0
    cnt = cnt[e]
    idx = np.repeat(e, cnt)
    offs = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    k = kmin[idx] + offs
    ds = sn[idx] - s[idx]
    t = (k - s[idx]) / ds
    xc = x[idx] + t * (xn[idx] - x[idx]) - c0
    sg = np.where(ds > 0, 1.0, -1.0)
    row = k // sub
    ja = np.floor(xc + 0.5).astype(np.int64)
    left = ja < 0
    mid = (ja >= 0) & (ja < nc)
    D = np.bincount(row[left] * (nc + 1), weights=sg[left], minlength=nr * (nc + 1)).astype(np.float64)
    D += np.bincount(row[mid] * (nc + 1) + ja[mid] + 1, weights=sg[mid], minlength=nr * (nc + 1))
    C = np.bincount(row[mid] * nc + ja[mid], weights=sg[mid] * (ja[mid] + 0.5 - xc[mid]), minlength=nr * nc)
    cov = np.cumsum(D.reshape(nr, nc + 1), 1)[:, :nc] + C.reshape(nr, nc)
    return np.clip(np.abs(cov) / sub, 0.0, 1.0), r0, c0


def _cov_full(poly, H, W, sub=8, out=None):
    if out is None:
        out = np.zeros((H, W))
    res = _cov_box(poly, H, W, sub)
    if res is not None:
        cov, r0, c0 = res
        out[r0:r0 + cov.shape[0], c0:c0 + cov.shape[1]] += cov
    return out


def _cov_fine(poly_px, box, F):
    """Coverage of fine cells (F x F per pixel) in pixel box (r0, c0, nr, nc), one sample row per cell."""
    r0, c0, nr, nc = box
    q = np.empty_like(poly_px)
    q[:, 0] = (poly_px[:, 0] - c0 + 0.5) * F - 0.5
    q[:, 1] = (poly_px[:, 1] - r0 + 0.5) * F - 0.5
    return _cov_full(q, nr * F, nc * F, sub=1)


# ----------------------------------------------------------------------------- soft-tissue SDF
def _sd_capsule(px, py, a, b, ra, rb):
    """Exact signed distance to a 2-D uneven capsule (after I. Quilez)."""
    bx, by = b[0] - a[0], b[1] - a[1]
    h = bx * bx + by * by
    X, Y = px - a[0], py - a[1]
    qx = np.abs(X * by - Y * bx) / h
    qy = (X * bx + Y * by) / h
    bb = ra - rb
    cx = math.sqrt(h - bb * bb)
    k = cx * qy - bb * qx
    m = cx * qx + bb * qy
    n = qx * qx + qy * qy
    d1 = np.sqrt(h * n) - ra
    d2 = np.sqrt(h * np.maximum(n + 1.0 - 2.0 * qy, 0.0)) - rb
    return np.where(k < 0, d1, np.where(k > cx, d2, m - ra))


def _smin(a, b, k):
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


class _Soft:
    """Signed distance (mm, negative inside) of the soft tissue of one or more fingers."""

    def __init__(self):
        self.caps = []  # (a, b, ra, rb, origin, axis_angle, group, k)
        self.ellipses = []  # (c, ax, ay, ang, k) smooth-unioned bulges
        self.holes = []  # (c, r) subtracted discs (pits/ulcers)

    def eval(self, px, py, want_side=False):
        f_all = None
        side = None
        groups = {}
        for (a, b, ra, rb, org, ang, grp, k) in self.caps:
            d = _sd_capsule(px, py, a, b, ra, rb)
            if grp in groups:
                groups[grp] = _smin(groups[grp], d, k)
            else:
                groups[grp] = d
            if want_side:
                v = -(px - org[0]) * math.sin(ang) + (py - org[1]) * math.cos(ang)
                if side is None:
                    side, best = v, d
                else:
                    sel = d < best
                    side = np.where(sel, v, side)
                    best = np.minimum(best, d)
        for (c, ax, ay, ang, k) in self.ellipses:
            X = (px - c[0]) * math.cos(ang) + (py - c[1]) * math.sin(ang)
            Y = -(px - c[0]) * math.sin(ang) + (py - c[1]) * math.cos(ang)
            d = (np.sqrt((X / ax) ** 2 + (Y / ay) ** 2) - 1.0) * min(ax, ay)
            groups[0] = _smin(groups[0], d, k)
        for g in groups.values():
            f_all = g if f_all is None else np.minimum(f_all, g)
        for (c, r) in self.holes:
            f_all = np.maximum(f_all, r - np.hypot(px - c[0], py - c[1]))
        return (f_all, side) if want_side else f_all

    def pts(self, P):
        P = np.asarray(P, float)
        return self.eval(P[:, 0], P[:, 1])

    def project(self, P, level, iters=6):
        """Move points onto the level set f = level along the numerical gradient."""
        P = np.array(P, float)
        e = 0.02
        for _ in range(iters):
            f = self.pts(P)
            gx = (self.pts(P + [e, 0]) - self.pts(P - [e, 0])) / (2 * e)
            gy = (self.pts(P + [0, e]) - self.pts(P - [0, e])) / (2 * e)
            g = np.hypot(gx, gy) + 1e-9
            P -= ((f - level) / g)[:, None] * np.stack([gx / g, gy / g], 1)
        return P


# ----------------------------------------------------------------------------- bones
def _phalanx(kind, d, rng, acro=0.0):
    """Outline (local frame: origin = proximal joint centre, u distal, v dorsal) of PP/MP/DP."""
    Rc, phd, php = d["Rc"], d["phd"], d["php"]
    lip_d = (Rc * math.cos(phd), Rc * math.sin(phd))
    lip_p = (Rc * math.cos(php), -Rc * math.sin(php))
    Bd = max(d["Bd"], lip_d[1] + 0.35)
    Bp = max(d["Bp"], -lip_p[1] + 0.35)
    cup = _arc((0.0, 0.0), Rc, -php, phd, _STEP / 2)  # palmar lip -> dorsal lip
    if kind in ("PP", "MP"):
        L, Rh, hv = d["L"], d["Rh"], d["hv"]
        thd, thp = d["thd"], d["thp"]
        hd = (L + Rh * math.cos(thd), hv + Rh * math.sin(thd))
        hp = (L + Rh * math.cos(thp), hv - Rh * math.sin(thp))
        span = (L - 1.6 * Rh) - Rc
        ud = [lip_d[0], Rc + 0.08 * span, Rc + 0.3 * span, Rc + 0.55 * span, L - 1.5 * Rh, hd[0]]
        vd = [lip_d[1], Bd, d["Sd"] + 0.3 * (Bd - d["Sd"]), d["Sd"], d["Nd"], hd[1]]
        up = [lip_p[0], Rc + 0.06 * span, Rc + 0.3 * span, Rc + 0.55 * span, L - 1.6 * Rh, hp[0]]
        vp = [lip_p[1], -Bp, -(d["Sp"] + 0.3 * (Bp - d["Sp"])), -d["Sp"], -d["Np"], hp[1]]
        dors, fd = _pchip_side(ud, vd, _STEP / 2)
        palm, fp = _pchip_side(up, vp, _STEP / 2)
        tip = _arc((L, hv), Rh, thd, -thp, _STEP / 2)  # dorsal -> palmar through the tip
        parts = [(dors, 0), (tip, 1), (palm[::-1], 0), (cup, 1)]
        u_end = L + Rh
    else:  # distal phalanx with tuft (or resorbed tip)
        L = d["L"]
        Rt, tv = d["Rt"], d["tv"]
        T = (L - Rt, tv)
        a1, a2 = math.radians(75), math.radians(105)
        td = (T[0] + Rt * math.cos(a1), T[1] + Rt * math.sin(a1))
        tp = (T[0] + Rt * math.cos(-a2), T[1] + Rt * math.sin(-a2))
        span = td[0] - Rc
        ud = [lip_d[0], Rc + 0.1 * span, Rc + 0.5 * span, Rc + 0.82 * span, td[0]]
        vd = [lip_d[1], Bd, d["Sd"], d["Td"], td[1]]
        span_p = tp[0] - Rc
        up = [lip_p[0], Rc + 0.1 * span_p, Rc + 0.5 * span_p, Rc + 0.82 * span_p, tp[0]]
        vp = [lip_p[1], -Bp, -d["Sp"], -d["Tp"], tp[1]]
        dors, fd = _pchip_side(ud, vd, _STEP / 2)
        palm, fp = _pchip_side(up, vp, _STEP / 2)
        tip = _arc(T, Rt, a1, -a2, _STEP / 2)
        parts = [(dors, 0), (tip, 2), (palm[::-1], 0), (cup, 1)]
        u_end = L
    P = np.vstack([p for p, _ in parts])
    lab = np.concatenate([np.full(len(p), tag) for p, tag in parts])
    P, lab = _resample(P, _STEP, True, lab)
    P = _smooth_closed(P, 1.5)
    if kind == "DP" and acro > 0:  # ragged resorbed tip
        w = np.clip((P[:, 0] - (L - 3.0)) / 3.0, 0, 1)
        nrm = _normals(P)
        rough = ndimage.gaussian_filter1d(rng.standard_normal(len(P)), 3, mode="wrap")
        rough /= np.abs(rough).max() + 1e-9
        P = P + nrm * (w * rough * rng.uniform(0.1, 0.3))[:, None]
    return dict(local=P, lab=lab, fd=fd, fp=fp, u0=Rc * min(math.cos(phd), math.cos(php)), u1=u_end)


def _metacarpal(Rm, rng):
    thd, thp = math.radians(rng.uniform(105, 118)), math.radians(rng.uniform(140, 152))
    hd = (Rm * math.cos(thd), Rm * math.sin(thd))
    hp = (Rm * math.cos(thp), -Rm * math.sin(thp))
    Lm = 135.0
    ud = [-Lm, -3.4 * Rm, -1.6 * Rm, hd[0]]
    vd = [0.72 * Rm, 0.66 * Rm, rng.uniform(0.58, 0.66) * Rm, hd[1]]
    up = [-Lm, -3.4 * Rm, -1.7 * Rm, hp[0]]
    vp = [-0.62 * Rm, -0.56 * Rm, -rng.uniform(0.42, 0.5) * Rm, hp[1]]
    dors, fd = _pchip_side(ud, vd, _STEP)
    palm, fp = _pchip_side(up, vp, _STEP)
    head = _arc((0, 0), Rm, thd, -thp, _STEP / 2)
    parts = [(dors, 0), (head, 1), (palm[::-1], 0)]
    P = np.vstack([p for p, _ in parts])
    lab = np.concatenate([np.full(len(p), tag) for p, tag in parts])
    P, lab = _resample(P, _STEP, True, lab)
    P = _smooth_closed(P, 1.5)
    return dict(local=P, lab=lab, fd=fd, fp=fp, u0=-Lm, u1=Rm)


def _erode(P, lab, rng, centre_idx, depth, width):
    """Cut a smooth notch (erosion) into a closed outline around vertex centre_idx."""
    n = len(P)
    i = np.arange(n)
    dist = np.minimum(np.abs(i - centre_idx), n - np.abs(i - centre_idx)) * _STEP
    prof = np.exp(-0.5 * (dist / (width / 2.2)) ** 2)
    prof[prof < 0.02] = 0
    P2 = P - _normals(P) * (depth * prof)[:, None]
    return P2


class _Bone:
    def __init__(self, name, geo, origin, ang, dims):
        self.name = name
        self.origin = np.asarray(origin, float)
        self.ang = ang
        self.R = _rot(ang)
        self.geo = geo
        self.local = geo["local"]
        self.lab = geo["lab"]
        self.poly = self.local @ self.R.T + self.origin  # finger frame
        self.dims = dims

    def to_local(self, P):
        return (np.asarray(P) - self.origin) @ self.R

    def to_frame(self, P):
        return np.asarray(P) @ self.R.T + self.origin

    def surf(self, u, side, off=0.8):
        """Finger-frame points just outside the dorsal (side > 0) or palmar surface at positions u."""
        u = np.atleast_1d(np.asarray(u, float))
        f = self.geo["fd"] if side > 0 else self.geo["fp"]
        uc = np.clip(u, f.x[0], f.x[-1])
        v = f(uc) + (off if side > 0 else -off)
        return self.to_frame(np.stack([u, v], 1))


# ----------------------------------------------------------------------------- finger construction
def _build_finger(rng, digit, sz, thick, flex_deg, gaps, acro, soft_scale):
    pp_len, mp_len, dp_len, Rm0, tf = _DIGITS[digit]
    tf = tf * thick
    lens = np.array([pp_len, mp_len, dp_len]) * sz * rng.uniform(0.96, 1.04, 3)
    total = lens.sum() + 6.0  # joint spaces and pulp beyond the tuft, roughly
    lens *= np.clip(total, 62.0, 99.0) / total
    Rm = Rm0 * tf * rng.uniform(0.93, 1.07)
    j = lambda: rng.uniform(0.92, 1.08)  # noqa: E731
    base = {
        "PP": dict(phd=33, php=36, Bd=4.5, Bp=5.0, Sd=2.8, Sp=2.9, Nd=2.4, Np=2.6, Rh=3.6, hv=-0.5),
        "MP": dict(phd=45, php=48, Bd=3.6, Bp=4.0, Sd=2.2, Sp=2.3, Nd=1.95, Np=2.1, Rh=2.9, hv=-0.4),
        "DP": dict(phd=48, php=52, Bd=3.1, Bp=3.4, Sd=1.35, Sp=1.55, Td=1.5, Tp=1.9, Rt=1.3, tv=-0.2),
    }
    ds = rng.uniform(2.0, 3.6) * soft_scale  # dorsal soft tissue over bone
    ps = rng.uniform(4.2, 7.2) * soft_scale  # palmar soft tissue
    palm_pad = rng.uniform(8.0, 13.0) * soft_scale
    tip_ext = rng.uniform(2.5, 5.0) * (0.8 + 0.2 * soft_scale)

    bones = []
    mc = _Bone("MC", _metacarpal(Rm, rng), (0.0, 0.0), 0.0, dict(Rh=Rm))
    bones.append(mc)
    soft = []
    # palm / hand capsule (MC frame = finger frame)
    top0, bot0 = 0.93 * Rm + ds + 0.3, -(Rm + palm_pad)
    top1, bot1 = 0.72 * Rm + ds + 3.0, -(0.6 * Rm + palm_pad + 7.0)
    soft.append(("MC", np.array([-150.0, (top1 + bot1) / 2]), np.array([0.0, (top0 + bot0) / 2]),
                 (top1 - bot1) / 2, (top0 - bot0) / 2, (0.0, 0.0), 0.0))
    origin, ang, prevR = np.zeros(2), 0.0, Rm
    dp_orig_L = None
    for name, blen, gap, fl in zip(("PP", "MP", "DP"), lens, gaps, flex_deg):
        dd = {k: (v * tf * j() if k not in ("phd", "php", "hv", "tv") else v) for k, v in base[name].items()}
        dd["phd"] = math.radians(dd["phd"] + rng.uniform(-4, 4))
        dd["php"] = math.radians(dd["php"] + rng.uniform(-4, 4))
        dd["Rc"] = prevR + gap
        ang = ang - math.radians(fl)
        if name in ("PP", "MP"):
            dd["thd"], dd["thp"] = math.radians(rng.uniform(95, 108)), math.radians(rng.uniform(118, 132))
            dd["hv"] = dd["hv"] * tf
            dd["L"] = blen - dd["Rh"] + 0.85 * dd["Rc"]
            geo = _phalanx(name, dd, rng)
        else:
            dd["L"] = blen + 0.85 * dd["Rc"]
            dp_orig_L = dd["L"]
            if acro > 0:
                dd["L"] = dd["Rc"] + (dd["L"] - dd["Rc"]) * (1 - acro)
                dd["Rt"] = rng.uniform(0.35, 0.8)
                dd["Td"], dd["Tp"] = dd["Sd"] * rng.uniform(0.7, 0.95), dd["Sp"] * rng.uniform(0.7, 0.95)
                dd["tv"] = rng.uniform(-0.4, 0.2)
            geo = _phalanx(name, dd, rng, acro=acro)
        b = _Bone(name, geo, origin, ang, dd)
        bones.append(b)
        # soft tissue capsule in this bone's frame
        if name in ("PP", "MP"):
            ta, ba = dd["Bd"] + ds, -(dd["Bp"] + ps)
            tb, bb = dd["hv"] + dd["Rh"] + 0.9 * ds, dd["hv"] - dd["Rh"] - 0.9 * ps
            ua, ub = 0.0, dd["L"]
        else:
            ta, ba = dd["Bd"] + ds * 0.9, -(dd["Bp"] + ps * 0.9)
            tb = base["DP"]["Td"] * tf + rng.uniform(1.4, 2.2) * soft_scale
            bb = -(base["DP"]["Tp"] * tf + ps * rng.uniform(0.55, 0.8))
            rb = (tb - bb) / 2
            L_soft = dp_orig_L * (1 - 0.4 * acro)
            ua, ub = 0.0, max(L_soft + tip_ext - rb, 0.45 * L_soft)
            dp_ub = ub
        pa = b.to_frame(np.array([[ua, (ta + ba) / 2]]))[0]
        pb = b.to_frame(np.array([[ub, (tb + bb) / 2]]))[0]
        soft.append((name, pa, pb, (ta - ba) / 2, (tb - bb) / 2, tuple(origin), ang))
        if name in ("PP", "MP"):
            origin = b.to_frame(np.array([[dd["L"], dd["hv"]]]))[0]
            prevR = dd["Rh"]
    info = dict(ds=ds, ps=ps, palm_pad=palm_pad, tip_ext=tip_ext, Rm=Rm, lens=lens, dp_orig_L=dp_orig_L, dp_ub=dp_ub)
    return bones, soft, info


def _bones_clear(bones, min_gap=0.25, min_far=1.5):
    """True if no two bones overlap and joint spaces / other gaps exceed the minima."""
    trees = [cKDTree(b.poly) for b in bones]
    for i in range(len(bones)):
        for k in range(i + 1, len(bones)):
            need = min_gap if k == i + 1 else min_far
            d, _ = trees[k].query(bones[i].poly, k=1, distance_upper_bound=need + 0.5)
            if np.any(d < need):
                return False
            # containment (a whole bone end inside another) - test a subsample of vertices
            if _inside(bones[i].poly[::25], bones[k].poly).any() or _inside(bones[k].poly[::25], bones[i].poly).any():
                return False
    return True


# ----------------------------------------------------------------------------- deposits
class _Deposit:
    def __init__(self, poly, kind, site, hu_fn, info):
        self.poly = poly  # finger frame
        self.kind = kind
        self.site = site
        self.hu_fn = hu_fn
        self.info = info


def _texture_fn(rng, lam_lo=0.5, lam_hi=2.0, n=6):
    k = rng.uniform(2 * np.pi / lam_hi, 2 * np.pi / lam_lo, n)
    th = rng.uniform(0, 2 * np.pi, n)
    ph = rng.uniform(0, 2 * np.pi, n)
    kx, ky = k * np.cos(th), k * np.sin(th)

    def tex(X, Y):
        out = np.zeros_like(X)
        for i in range(n):
            out += np.cos(kx[i] * X + ky[i] * Y + ph[i])
        return out / math.sqrt(n / 2)

    return tex


def _star(rng, kind, area, centre, ang, aspect):
    """Star-shaped polygon with given area; returns (poly, rho_fn) where rho_fn gives normalised radius."""
    if kind == "lobulated":
        ks = np.arange(2, 8)
        amp = rng.uniform(0.3, 1.0, len(ks)) * 0.3 / ks ** 0.8 * rng.uniform(0.7, 1.3)
    elif kind == "faint":
        ks = np.arange(2, 9)
        amp = rng.uniform(0.03, 0.14, len(ks))
    else:  # nodule / rim
        ks = np.arange(2, 6)
        amp = rng.uniform(0.0, 0.07, len(ks))
    ph = rng.uniform(0, 2 * np.pi, len(ks))

    def rfun(t):
        return np.exp(np.sum(amp[:, None] * np.cos(ks[:, None] * t[None] + ph[:, None]), 0))

    t = np.linspace(0, 2 * np.pi, 160, endpoint=False)
    r = rfun(t)
    Ploc = np.stack([r * np.cos(t) * aspect, r * np.sin(t)], 1)
    a0 = abs(_area(Ploc))
    s = math.sqrt(area / a0)
    R = _rot(ang)
    poly = (Ploc * s) @ R.T + centre
    c = np.asarray(centre, float)

    def rho(X, Y):
        dx, dy = X - c[0], Y - c[1]
        lx = (dx * R[0, 0] + dy * R[1, 0]) / (s * aspect)
        ly = (dx * R[0, 1] + dy * R[1, 1]) / s
        tt = np.arctan2(ly, lx)
        return np.hypot(lx, ly) / rfun(tt.ravel()).reshape(tt.shape)

    rmax = float(np.max(np.hypot(*(poly - c).T)))
    return poly, rho, rmax, s * math.sqrt(aspect)


def _lens_polygon(path, width, inner_offset, n_out):
    """Plaque: band between path+inner_offset*n and path+(inner_offset+w(s))*n, tapered ends."""
    m = len(path)
    s = np.linspace(0, 1, m)
    w = width * np.sin(np.pi * s) ** 0.55 + 0.02
    inner = path + n_out * inner_offset
    outer = path + n_out * (inner_offset + w)[:, None]
    return np.vstack([inner, outer[::-1]])


# ----------------------------------------------------------------------------- main
def make_case(seed: int) -> dict:
    rng = np.random.default_rng([int(seed), _SALT])
    notes = []

    # ---------------- patient / finger parameters
    digit = str(rng.choice(list(_DIGITS), p=[0.35, 0.25, 0.25, 0.15]))
    sz = rng.uniform(0.88, 1.12)
    thick = rng.uniform(0.9, 1.1)
    pose = str(rng.choice(["straight", "relaxed", "contracture", "boutonniere", "swan"],
                          p=[0.28, 0.30, 0.27, 0.10, 0.05]))
    ranges = {
        "straight": ((-10, 10), (-5, 10), (-5, 10)),
        "relaxed": ((0, 40), (10, 40), (5, 30)),
        "contracture": ((-10, 30), (30, 90), (10, 60)),
        "boutonniere": ((-10, 15), (40, 90), (-25, -5)),
        "swan": ((0, 30), (-20, -5), (20, 50)),
    }[pose]
    flex = [rng.uniform(*r) for r in ranges]
    gaps = [rng.uniform(0.6, 2.0), rng.uniform(0.3, 1.6), rng.uniform(0.3, 1.4)]
    acro = rng.uniform(0.15, 0.65) if rng.random() < 0.3 else 0.0
    osteo = rng.random() < 0.35
    atrophy = rng.random() < 0.4
    soft_scale = rng.uniform(0.72, 0.9) if atrophy else rng.uniform(0.92, 1.12)
    notes.append(f"{digit} finger, {pose} flex(MCP,PIP,DIP)=({flex[0]:.0f},{flex[1]:.0f},{flex[2]:.0f})")

    for _ in range(12):
        bones, caps, finfo = _build_finger(rng, digit, sz, thick, flex, gaps, acro, soft_scale)
        if _bones_clear(bones):
            break
        flex = [f * 0.85 for f in flex]
    finger_len = float(np.sum(finfo["lens"]) + sum(gaps[1:]) + finfo["tip_ext"])
    finger_thick = float(caps[1][3] + caps[1][4])  # mean soft-tissue diameter over the proximal phalanx

    # erosions (cut into the outline before anything else uses the polygons)
    n_eros = 0
    if rng.random() < 0.22:
        for _ in range(rng.integers(1, 4)):
            b = bones[int(rng.choice([1, 2, 3, 3]))]
            nonart = np.nonzero(b.lab < 0.5)[0]
            art = b.lab > 0.5
            # vertices of non-articular outline within ~3 mm (30 vertices) of an articular margin
            edge = np.nonzero(art != np.roll(art, 1))[0]
            if len(edge) == 0:
                continue
            ci = int(edge[rng.integers(len(edge))] + rng.integers(-25, 26)) % len(b.poly)
            if b.lab[ci] > 0.5 and b.name != "DP":
                ci = int(nonart[np.argmin(np.abs(nonart - ci))])
            uu = float(np.clip(b.local[ci, 0], b.geo["fd"].x[0], min(b.geo["fd"].x[-1], b.geo["fp"].x[-1])))
            local_th = float(b.geo["fd"](uu) - b.geo["fp"](uu))
            depth = min(rng.uniform(0.4, 1.3), 0.28 * local_th)
            newloc = _erode(b.local, b.lab, rng, ci, depth, rng.uniform(1.0, 2.4))
            b.local = newloc
            b.poly = newloc @ b.R.T + b.origin
            n_eros += 1
    ssc = []
    if acro > 0:
        ssc.append(f"acro-osteolysis {acro:.2f}")
    if osteo:
        ssc.append("osteopenia")
    if n_eros:
        ssc.append(f"{n_eros} erosion(s)")
    if atrophy:
        ssc.append("soft-tissue atrophy")

    soft = _Soft()
    k_smooth = rng.uniform(2.0, 4.0)
    for (name, pa, pb, ra, rb, org, ang) in caps:
        soft.caps.append((pa, pb, ra, rb, org, ang, 0, k_smooth))
    dp = bones[3]
    if rng.random() < 0.6:  # pulp bulge
        Ld = dp.dims["L"]
        c = dp.to_frame(np.array([[0.62 * finfo["dp_orig_L"], -(dp.dims["Sp"] + finfo["ps"] * 0.45)]]))[0]
        soft.ellipses.append((c, 0.28 * finfo["dp_orig_L"], finfo["ps"] * rng.uniform(0.45, 0.6), dp.ang, 2.0))
        del Ld
    if rng.random() < 0.15:  # digital pit / healed ulcer at the pulp
        P0 = dp.surf(finfo["dp_orig_L"] * rng.uniform(0.7, 1.0), -1)
        P0 = soft.project(P0, 0.0)
        soft.holes.append((P0[0], rng.uniform(0.6, 1.4)))
        ssc.append("pulp pit")
    main_soft = soft  # deposits are placed in the main finger only
    main_caps = list(soft.caps)
    soft = _Soft()
    soft.caps, soft.ellipses, soft.holes = list(main_soft.caps), list(main_soft.ellipses), list(main_soft.holes)

    # ---------------- neighbouring finger (part of), placed beside the main finger
    neighbour_bones = []
    if rng.random() < 0.15:
        nd = str(rng.choice(list(_DIGITS)))
        nflex = [rng.uniform(0, 60), rng.uniform(0, 70), rng.uniform(0, 40)]
        nb, ncaps, _ninfo = _build_finger(rng, nd, sz, thick * rng.uniform(0.65, 0.95),
                                          nflex, [1.0, 0.8, 0.7], 0.0, soft_scale)
        keep = [[1, 2], [2, 3], [3], [1, 2, 3]][int(rng.choice(4, p=[0.3, 0.3, 0.2, 0.2]))]
        side = 1.0 if rng.random() < 0.3 else -1.0
        for attempt in range(10):
            anchor_b = bones[int(rng.choice([1, 2, 3]))]
            u = rng.uniform(0.2, 0.9) * anchor_b.dims["L"]
            psi = anchor_b.ang + math.radians(rng.uniform(-35, 35)) + (math.pi if rng.random() < 0.4 else 0.0)
            soft_th = finfo["ps"] if side < 0 else finfo["ds"]
            dist = soft_th + anchor_b.dims["Bp"] + 6.0 + attempt * 1.5 + rng.uniform(-1, 3)
            anchor = anchor_b.to_frame(np.array([[u, side * dist]]))[0]
            # centre the kept part on the anchor
            kept_pts = np.vstack([nb[i].poly for i in keep])
            ctr = kept_pts.mean(0)
            Rn = _rot(psi)
            tf = lambda P: (np.asarray(P) - ctr) @ Rn.T + anchor  # noqa: E731
            polys = [tf(nb[i].poly) for i in keep]
            allp = np.vstack(polys)
            if np.all(main_soft.pts(allp[::5]) > 1.0):
                # build moved bones and capsules
                for i, P in zip(keep, polys):
                    bb = nb[i]
                    nbone = _Bone("N" + bb.name, bb.geo, tf(bb.origin[None])[0], bb.ang + psi, bb.dims)
                    nbone.poly = P
                    neighbour_bones.append(nbone)
                for (name, pa, pb, ra, rb, org, ang) in ncaps:
                    if name in [nb[i].name for i in keep]:
                        soft.caps.append((tf(pa[None])[0], tf(pb[None])[0], ra, rb, tuple(tf(np.array([org]))[0]),
                                          ang + psi, 1, 2.5))
                break
    all_bones = bones + neighbour_bones

    # ---------------- orientation and field of view
    if rng.random() < 0.5:  # any angle
        alpha = rng.uniform(0, 2 * np.pi)
    else:  # near the usual display orientations
        alpha = rng.integers(4) * np.pi / 2 + np.radians(rng.uniform(-15, 15))
    mirror = rng.random() < 0.5
    A = _rot(alpha) @ np.diag([1.0, -1.0 if mirror else 1.0])
    spacing = float(rng.uniform(0.10, 0.45))
    show_mc = rng.random() < 0.6
    incl = []
    circ = np.stack([np.cos(np.linspace(0, 2 * np.pi, 24)), np.sin(np.linspace(0, 2 * np.pi, 24))], 1)
    for (pa, pb, ra, rb, org, ang, grp, k) in main_caps[1:]:
        incl.append(pa + ra * circ)
        incl.append(pb + rb * circ)
    pa, pb, ra, rb = main_caps[0][:4]
    if show_mc:
        u_cut = rng.uniform(4.0, 22.0)
        t = u_cut / 150.0
        c = pb + (pa - pb) * t
        r = rb + (ra - rb) * t
        incl.append(c + r * np.array([[0, 1], [0, -1]]))
        incl.append(bones[0].poly[bones[0].lab > 0.5])
    else:
        # start within the proximal phalanx: drop the PP base circle, add a cross-section
        incl = incl[1:]
        pp = bones[1]
        uc = rng.uniform(0.15, 0.6) * pp.dims["L"]
        incl.append(pp.to_frame(np.array([[uc, pp.dims["Bd"] + finfo["ds"]], [uc, -(pp.dims["Bp"] + finfo["ps"])]])))
    incl = np.vstack(incl) @ A.T
    lo, hi = incl.min(0), incl.max(0)
    lo = lo - rng.uniform(1.5, 8.0, 2)
    hi = hi + rng.uniform(1.5, 8.0, 2)
    # a point of the finger's bones that any cropped field of view is built around
    interest = np.vstack([b.poly[::15] for b in bones[1:]]) @ A.T
    interest = interest[np.all((interest > lo) & (interest < hi), axis=1)]
    ip = interest[rng.integers(len(interest))]

    def crop_axis(a, size):
        start = ip[a] - rng.uniform(0.25, 0.75) * size
        return float(np.clip(start, lo[a], hi[a] - size))

    crop_mode = rng.random() < 0.2
    if crop_mode:
        size = (hi - lo) * rng.uniform(0.5, 0.85, 2)
        lo = np.array([crop_axis(0, size[0]), crop_axis(1, size[1])])
        hi = lo + size
    Wpx = int(round((hi[0] - lo[0]) / spacing))
    Hpx = int(round((hi[1] - lo[1]) / spacing))
    if Wpx > 700:
        lo[0] = crop_axis(0, 700 * spacing)
        Wpx = 700
    if Hpx > 700:
        lo[1] = crop_axis(1, 700 * spacing)
        Hpx = 700
    if Wpx < 200:
        lo[0] -= rng.uniform(0, (200 - Wpx) * spacing)
        Wpx = 200
    if Hpx < 200:
        lo[1] -= rng.uniform(0, (200 - Hpx) * spacing)
        Hpx = 200
    H, W = Hpx, Wpx
    o = lo + spacing / 2  # image-mm position of pixel (0, 0) centre

    def to_px(P):  # finger frame mm -> (col, row) pixel coordinates
        return (np.asarray(P) @ A.T - o) / spacing

    # finger-frame coordinates of every pixel centre
    cc = np.arange(W, dtype=np.float64)
    rr = np.arange(H, dtype=np.float64)
    # p = A^T (o + sp*(c, r))
    At = A.T
    FX = (At[0, 0] * (o[0] + spacing * cc))[None, :] + (At[0, 1] * (o[1] + spacing * rr))[:, None]
    FY = (At[1, 0] * (o[0] + spacing * cc))[None, :] + (At[1, 1] * (o[1] + spacing * rr))[:, None]

    def fine_coords(box, F):
        r0, c0, nr, nc = box
        fc = c0 - 0.5 + (np.arange(nc * F) + 0.5) / F
        fr = r0 - 0.5 + (np.arange(nr * F) + 0.5) / F
        X = (At[0, 0] * (o[0] + spacing * fc))[None, :] + (At[0, 1] * (o[1] + spacing * fr))[:, None]
        Y = (At[1, 0] * (o[0] + spacing * fc))[None, :] + (At[1, 1] * (o[1] + spacing * fr))[:, None]
        return X, Y

    # ---------------- soft tissue field and layers
    f_soft, side = soft.eval(FX, FY, want_side=True)
    soft_hu = rng.uniform(20, 70)
    fat_hu = rng.uniform(-120, -60)
    skin_hu = min(soft_hu + rng.uniform(5, 35), 110)
    tendon_hu = soft_hu + rng.uniform(15, 50)
    skin_th = rng.uniform(0.8, 1.6) * (1.25 if atrophy else 1.0)
    fat_p = rng.uniform(0.8, 3.5) * soft_scale
    fat_d = rng.uniform(0.0, 0.7) * soft_scale
    sp = spacing
    tissue = soft_hu + rng.uniform(3, 10) * _noise(rng, H, W, 3.0 / sp)
    fat_th = fat_d + (fat_p - fat_d) * (0.5 - 0.5 * np.tanh(side / 2.0))
    septa = _noise(rng, H, W, 0.6 / sp)
    fat_w = np.clip((-(f_soft + skin_th) + 0.5 * sp) / sp, 0, 1) * np.clip((f_soft + skin_th + fat_th) / sp + 0.5, 0, 1)
    lobules = _noise(rng, H, W, 2.0 / sp)
    fat_w *= np.clip(0.5 + 0.6 * septa + 0.8 * lobules, 0, 1)
    tissue = tissue * (1 - fat_w) + (fat_hu + 8 * septa) * fat_w
    skin_w = np.clip((f_soft + skin_th) / sp + 0.5, 0, 1)
    tissue = tissue * (1 - skin_w) + skin_hu * skin_w
    cov_soft = np.clip(0.5 - f_soft / sp, 0, 1)

    # tendons (in soft tissue) --------------------------------------------------
    forbid = []  # polygons (finger frame) that deposits must keep clear of
    tpath_f, tpath_e = [], []
    th_f = rng.uniform(2.0, 3.4) * thick
    th_e = rng.uniform(0.7, 1.2)
    mcb = bones[0]
    for u in np.linspace(-60, -2.0 * finfo["Rm"], 12):
        tpath_f.append(mcb.to_frame(np.array([[u, float(mcb.geo["fp"](u)) - 0.4 - th_f / 2]]))[0])
        tpath_e.append(mcb.to_frame(np.array([[u, float(mcb.geo["fd"](u)) + 0.3 + th_e / 2]]))[0])
    prevb = mcb
    for b in bones[1:]:
        Rh_prev = prevb.dims["Rh"]
        hc = prevb.to_frame(np.array([[prevb.dims.get("L", 0.0), prevb.dims.get("hv", 0.0)]]))[0]
        if prevb.name == "MC":
            hc = prevb.origin
        # around the proximal head
        rel = (b.ang - prevb.ang)
        for a in np.linspace(math.pi / 2, math.pi / 2 + min(rel, 0.0), 4):
            tpath_e.append(hc + (Rh_prev + 0.3 + th_e / 2) * np.array([math.cos(prevb.ang + a),
                                                                      math.sin(prevb.ang + a)]))
        tpath_f.append(hc + (Rh_prev + 0.5 + th_f / 2) * np.array([math.cos(prevb.ang - math.pi / 2 + min(rel, 0) / 2),
                                                                  math.sin(prevb.ang - math.pi / 2 + min(rel, 0) / 2)]))
        u0 = b.dims["Rc"] + 1.0
        u1 = (b.dims["L"] - 1.6 * b.dims["Rh"]) if b.name != "DP" else b.dims["Rc"] + 1.5
        for u in np.linspace(u0, max(u1, u0 + 0.5), 6 if b.name != "DP" else 2):
            tpath_f.append(b.to_frame(np.array([[u, float(b.geo["fp"](u)) - 0.4 - th_f / 2]]))[0])
            tpath_e.append(b.to_frame(np.array([[u, float(b.geo["fd"](u)) + 0.3 + th_e / 2]]))[0])
        prevb = b
    tendon_cov = np.zeros((H, W))
    for path, th in ((tpath_f, th_f), (tpath_e, th_e)):
        P, _ = _resample(np.array(path), 0.3, closed=False)
        P = _smooth_open(P, 3)
        tpx = to_px(_band(P, th))
        _cov_full(tpx, H, W, 2, tendon_cov)
    tendon_cov = np.clip(tendon_cov, 0, 1) * (f_soft < -skin_th)
    tissue = tissue * (1 - tendon_cov) + tendon_hu * tendon_cov

    # calcified digital artery (bright, not bone, not deposit) -----------------
    artery = rng.random() < 0.10
    art_cov = np.zeros((H, W))
    if artery:
        main_bone_tree = cKDTree(np.vstack([b.poly for b in bones]))
        depth = rng.uniform(1.8, 3.2)
        pts = []
        for b in bones[1:3]:
            for u in np.linspace(b.dims["Rc"], b.dims["L"], 10):
                pts.append(b.surf(u, -1)[0])
        P = soft.project(np.array(pts), -depth)
        P, _ = _resample(P, 0.2, closed=False)
        P = _smooth_open(P, 4)
        s_all = np.r_[0, np.cumsum(np.hypot(*np.diff(P, axis=0).T))]
        pos = rng.uniform(0, 2)
        tram = rng.random() < 0.4
        art_hu = rng.uniform(400, 1300)
        while pos < s_all[-1] - 1:
            ln = rng.uniform(0.8, 4.0)
            sel = (s_all >= pos) & (s_all <= pos + ln)
            if sel.sum() >= 3:
                seg = P[sel]
                w = rng.uniform(0.35, 0.8)
                offs = [0.0] if not tram else [-0.6, 0.6]
                for of in offs:
                    segp = seg + _normals(seg, closed=False) * of
                    poly = _band(segp, w * np.sin(np.linspace(0.15, np.pi - 0.15, len(segp))) ** 0.5)
                    if np.min(main_bone_tree.query(poly)[0]) > 0.5:
                        forbid.append(poly)
                        _cov_full(to_px(poly), H, W, 4, art_cov)
            pos += ln + rng.uniform(0.5, 3.0)
        art_cov = np.clip(art_cov, 0, 1)
        tissue = tissue * (1 - art_cov) + (art_hu * (0.85 + 0.15 * _noise(rng, H, W, 0.5 / sp))) * art_cov

    hu = -1000.0 + 3.0 * rng.standard_normal((H, W))
    hu = hu * (1 - cov_soft) + tissue * cov_soft

    # nail plate -----------------------------------------------------------------
    nail_th = rng.uniform(0.5, 0.9)
    L0 = finfo["dp_orig_L"] * (1 - 0.4 * acro)
    ua = 0.3 * L0
    ub = finfo["dp_ub"] - 0.3
    us = np.linspace(ua, max(ub, ua + 2), 20)
    P = dp.surf(us, +1)
    root = 0.9 * (1 - np.clip((us - ua) / 3.0, 0, 1))
    P = main_soft.project(P, 0.0)
    nrm_out = np.stack([-np.sin(dp.ang), np.cos(dp.ang)])
    P = P - (root + nail_th / 2)[:, None] * nrm_out[None]
    tang = P[-1] - P[-3]
    tang /= np.linalg.norm(tang) + 1e-9
    free = rng.uniform(0.8, 2.5)
    P = np.vstack([P, P[-1] + tang * free * np.linspace(0.2, 1, 5)[:, None]])
    P, _ = _resample(P, 0.2, closed=False)
    P = _smooth_open(P, 2)
    nail_poly = _band(P, nail_th * np.clip(np.linspace(0.5, 3, len(P)), 0, 1) + 0.05)
    forbid.append(nail_poly)
    nail_cov = np.clip(_cov_full(to_px(nail_poly), H, W, 4), 0, 1)
    nail_hu = rng.uniform(150, 350)
    hu = hu * (1 - nail_cov) + nail_hu * nail_cov

    # external objects: splint / ring ----------------------------------------------
    metal_pts = []  # (pixel position, strength) for streaks
    extras = []
    if rng.random() < 0.12 and abs(flex[1]) + abs(flex[2]) < 35:
        metal = rng.random() < 0.7
        dorsal = rng.random() < 0.6
        foam = rng.uniform(1.0, 3.0)
        th = rng.uniform(0.8, 1.5) if metal else rng.uniform(2.0, 3.0)
        pts = []
        for b in bones[1 + int(rng.integers(0, 2)):]:
            for u in np.linspace(b.dims["Rc"], b.dims["L"] - (0 if b.name == "DP" else 1), 8):
                pts.append(b.surf(u, 1 if dorsal else -1)[0])
        P = main_soft.project(np.array(pts), foam + th / 2)
        P, _ = _resample(P, 0.3, closed=False)
        P = main_soft.project(_smooth_open(P, 8), foam + th / 2, iters=3)
        Pf = main_soft.project(P, foam / 2, iters=3)
        foam_poly = _band(Pf, foam)
        spl_poly = _band(P, th)
        fc = np.clip(_cov_full(to_px(foam_poly), H, W, 2), 0, 1) * (f_soft > 0)
        hu = hu * (1 - fc) + rng.uniform(-900, -650) * fc
        sc = np.clip(_cov_full(to_px(spl_poly), H, W, 4), 0, 1)
        hu = hu * (1 - sc) + (rng.uniform(2400, 3071) if metal else rng.uniform(150, 350)) * sc
        forbid += [foam_poly, spl_poly]
        extras.append(("aluminium" if metal else "plastic") + " splint")
        if metal:
            metal_pts.append((to_px(P[[0, -1]]), 0.5))
    if rng.random() < 0.08:
        pp = bones[1]
        u = rng.uniform(0.3, 0.6) * pp.dims["L"]
        wlen, rth = rng.uniform(2.0, 4.0), rng.uniform(1.0, 2.0)
        ring_hu = rng.uniform(2800, 3071)
        rpts = []
        for sgn in (1, -1):
            P0 = pp.surf(u, sgn)
            P0 = main_soft.project(P0, rth / 2 - 0.2)[0]
            poly = _ellipse(P0, wlen / 2, rth / 2, pp.ang)
            _c = np.clip(_cov_full(to_px(poly), H, W, 4), 0, 1)
            hu = hu * (1 - _c) + ring_hu * _c
            forbid.append(poly)
            rpts.append(P0)
        metal_pts.append((to_px(np.array(rpts)), 1.0))
        extras.append("ring")

    # ---------------- bones: coverage, cortex/medulla
    bone_cov = np.zeros((H, W))
    bone_sum = np.zeros((H, W))
    trab = _noise(rng, H, W, max(0.25 / sp, 0.6))
    cort_hu = rng.uniform(750, 1100) if osteo else rng.uniform(1000, 1800)
    med_end = rng.uniform(120, 260) if osteo else rng.uniform(250, 500)
    med_shaft = rng.uniform(110, 200) if osteo else rng.uniform(150, 330)
    t_shaft = rng.uniform(0.4, 0.8) if osteo else rng.uniform(0.9, 1.8)
    t_end = rng.uniform(0.2, 0.4) if osteo else rng.uniform(0.3, 0.55)
    trab_amp = rng.uniform(30, 90)
    bone_in_view = {}
    for b in all_bones:
        res = _cov_box(to_px(b.poly), H, W, 16)
        if res is None:
            bone_in_view[b.name] = 0.0
            continue
        cov, r0, c0 = res
        nr, nc = cov.shape
        bone_in_view[b.name] = float(cov.sum() * sp * sp / abs(_area(b.poly)))
        if cov.max() <= 0:
            continue
        sl = (slice(r0, r0 + nr), slice(c0, c0 + nc))
        inside = np.pad(cov > 0.5, 1, mode="edge")  # bone continuing past the image border has no surface there
        if r0 > 0:
            inside[0] = False
        if c0 > 0:
            inside[:, 0] = False
        if r0 + nr < H:
            inside[-1] = False
        if c0 + nc < W:
            inside[:, -1] = False
        dist = (ndimage.distance_transform_edt(inside)[1:-1, 1:-1] - 0.5) * sp
        # position along the bone (normalised), in the bone's own frame
        Xb, Yb = FX[sl] - b.origin[0], FY[sl] - b.origin[1]
        u = Xb * math.cos(b.ang) + Yb * math.sin(b.ang)
        g = b.geo
        tau = np.clip((u - g["u0"]) / max(g["u1"] - g["u0"], 1e-3), 0, 1)
        if b.name.endswith("MC"):
            shaftw = np.clip((-u - 1.2 * b.dims["Rh"]) / (1.5 * b.dims["Rh"]), 0, 1)
            tsb = min(1.3 * t_shaft * b.dims["Rh"] / 6.4, 0.4 * b.dims["Rh"])
        else:
            half = 0.5 * (b.dims["Sd"] + b.dims["Sp"])  # shaft half-thickness
            tsb = min(t_shaft * half / 2.85, 0.4 * half)
            if b.name.endswith("DP"):
                shaftw = np.clip(np.minimum((tau - 0.15) / 0.2, (0.75 - tau) / 0.2), 0, 1)
            else:
                shaftw = np.clip(np.minimum((tau - 0.15) / 0.2, (0.8 - tau) / 0.15), 0, 1)
        tcort = t_end + max(tsb - t_end, 0.0) * shaftw
        med = med_end + (med_shaft - med_end) * shaftw + trab_amp * trab[sl]
        wcort = np.clip((tcort - dist) / 0.15 + 0.5, 0, 1)
        bhu = med + (cort_hu * rng.uniform(0.93, 1.07) - med) * wcort
        bone_cov[sl] += cov
        bone_sum[sl] += cov * bhu
    bone_cov = np.clip(bone_cov, 0, 1)
    bone_mask = bone_cov > 0.5

    # ---------------- deposits
    bone_tree = cKDTree(np.vstack([b.poly for b in all_bones]))
    dep_list, dep_cov, dep_site, dep_kind = [], [], [], []
    n_target = int(rng.choice(np.arange(9), p=[0.04, 0.12, 0.16, 0.16, 0.14, 0.12, 0.1, 0.09, 0.07]))
    forbid_tree = cKDTree(np.vstack(forbid)) if forbid else None
    F = int(min(max(math.ceil(sp / 0.02), 4), 24))
    F = 4 * int(math.ceil(F / 4))  # fine sub-grid for truth (<= 0.02 mm)
    Fh = 4  # sub-grid for deposit intensity
    in_view_bones = [b for b in bones[1:] + bones[:1] if bone_in_view.get(b.name, 0) > 0.2]

    def render_candidate(poly, hu_fn):
        ppx = to_px(poly)
        if ppx[:, 0].min() < 1.5 or ppx[:, 1].min() < 1.5 or ppx[:, 0].max() > W - 2.5 or ppx[:, 1].max() > H - 2.5:
            return None
        r0 = int(math.floor(ppx[:, 1].min() + 0.5))
        r1 = int(math.floor(ppx[:, 1].max() + 0.5)) + 1
        c0 = int(math.floor(ppx[:, 0].min() + 0.5))
        c1 = int(math.floor(ppx[:, 0].max() + 0.5)) + 1
        box = (r0, c0, r1 - r0, c1 - c0)
        fd = _cov_fine(ppx, box, F)
        fb = np.zeros_like(fd)
        bb_lo, bb_hi = poly.min(0) - 1, poly.max(0) + 1
        for b in all_bones:
            if np.any(b.poly.min(0) > bb_hi) or np.any(b.poly.max(0) < bb_lo):
                continue
            fb += _cov_fine(to_px(b.poly), box, F)
        touched = bool(np.minimum(fd, fb).sum() > 0)
        area_poly = abs(_area(poly))
        dfine = np.clip(fd - fb, 0, 1) if touched else fd
        area = float(dfine.sum() * (sp / F) ** 2) if touched else area_poly
        nr, nc = box[2], box[3]
        cov = dfine.reshape(nr, F, nc, F).mean((1, 3))
        return dict(box=box, cov=cov, dfine=dfine, area=area, area_poly=area_poly, touched=touched)

    def integrate(cand, hu_fn):
        # intensity on a <= 4 x 4 sub-grid per pixel, weighted by the fine deposit-minus-bone coverage
        r0, c0, nr, nc = cand["box"]
        X, Y = fine_coords(cand["box"], Fh)
        hf = hu_fn(X, Y)
        k = F // Fh
        w = cand["dfine"].reshape(nr * Fh, k, nc * Fh, k).mean((1, 3))
        cand["integ"] = (w * hf).reshape(nr, Fh, nc, Fh).mean((1, 3))
        del cand["dfine"]

    def geometry_ok(poly, clear):
        if np.any(main_soft.pts(poly[::2]) > -0.12):
            return False
        if forbid_tree is not None and np.min(forbid_tree.query(poly[::2])[0]) < 0.5:
            return False
        for other in dep_list:
            if np.any(_inside(poly[::3], other.poly)) or np.any(_inside(other.poly[::3], poly)):
                return False
            dmin = np.min(cKDTree(other.poly).query(poly)[0])
            if dmin < clear:
                return False
        return True

    def acceptable(poly, cand, require_touch=None, gap_rng=None):
        dbone = float(np.min(bone_tree.query(poly)[0]))
        frac_in = 1 - cand["area"] / cand["area_poly"]
        if require_touch is True and not (cand["touched"] and 0.03 < frac_in < 0.5):
            return False
        if require_touch is False and (cand["touched"] or frac_in > 1e-6):
            return False
        if gap_rng is not None and not (gap_rng[0] <= dbone <= gap_rng[1]):
            return False
        if require_touch is None and cand["touched"] and frac_in > 0.5:
            return False
        m = cand["cov"] > 0.5
        r0, c0, nr, nc = cand["box"]
        m &= ~bone_mask[r0:r0 + nr, c0:c0 + nc]
        if m.sum() < 2 or cand["area"] < 0.2:
            return False
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        if n != 1:
            return False
        return True

    def make_hu_fn(kind, dens, rho=None, rim_frac=None, centre_hu=None):
        tex = _texture_fn(rng, 0.5, 2.0)
        tamp = {"faint": 0.18, "lobulated": 0.12}.get(kind, 0.08)

        def fn(X, Y):
            t = tex(X, Y)
            if rho is not None and kind == "rim":
                r = rho(X, Y)
                w = np.clip((r - (1 - rim_frac)) / 0.08 + 0.5, 0, 1)
                return (centre_hu + (dens - centre_hu) * w) * (1 + 0.06 * t)
            if rho is not None:
                r = np.clip(rho(X, Y), 0, 1)
                core = 1.0 + 0.12 * (1 - r * r) - 0.06
                return dens * core * (1 + tamp * t)
            return dens * (1 + tamp * t)

        return fn

    def draw_density(kind):
        if kind == "faint":
            return rng.uniform(250, 480)
        u = rng.random()
        if u < 0.15:
            return rng.uniform(250, 500)
        if u < 0.7:
            return rng.uniform(500, 1300)
        return rng.uniform(1300, 2000)

    def make_shape(kind, area, centre, ang, aspect):
        poly, rho, rmax, _ = _star(rng, "nodule" if kind == "rim" else kind, area, centre, ang, aspect)
        dens = draw_density(kind)
        if kind == "rim":
            rmean = math.sqrt(area / math.pi)
            rim_frac = min(max(rng.uniform(0.35, 0.9) / rmean, 0.2), 0.6)
            dens = rng.uniform(800, 2000)
            fn = make_hu_fn("rim", dens, rho, rim_frac, rng.uniform(250, 500))
        else:
            fn = make_hu_fn(kind, dens, rho)
        return poly, fn, rmax, dens

    def nearest_bone_point(b, lab_ok):
        idx = np.nonzero(lab_ok)[0]
        i = int(idx[rng.integers(len(idx))])
        return i

    sites = ["bone_touch", "bone_near", "joint", "pulp", "subcut", "soft"]
    site_p = np.array([0.20, 0.07, 0.08, 0.24, 0.26, 0.15])
    kinds = ["nodule", "lobulated", "plaque", "rim", "faint"]
    kind_p = np.array([0.34, 0.2, 0.18, 0.1, 0.18])
    dp_ok = bone_in_view.get("DP", 0) > 0.3
    max_area = 60.0
    pending_cluster = None
    n_tries_total = 0
    while len(dep_list) < n_target and n_tries_total < 160:
        if pending_cluster is not None:
            site, parent = "cluster", pending_cluster
            pending_cluster = None
        else:
            site, parent = str(rng.choice(sites, p=site_p)), None
        if site == "pulp" and not dp_ok:
            site = "subcut"
        kind = str(rng.choice(kinds, p=kind_p))
        if site == "cluster":
            kind = "nodule" if parent.kind in ("plaque",) else parent.kind
            if kind == "rim":
                kind = "nodule"
        if rng.random() < 0.25:
            area0 = float(np.exp(rng.uniform(np.log(8.0), np.log(max_area))))
        else:
            area0 = float(np.exp(rng.uniform(np.log(0.2), np.log(max_area))))
        if site in ("subcut", "soft"):
            area0 = min(area0, rng.uniform(4, 25))
        if site == "cluster":
            area0 = float(parent.info["area"] * rng.uniform(0.3, 1.0))
        area0 = max(area0, 3.5 * sp * sp)
        placed = False
        pulp_touch = rng.random() < 0.35
        for attempt in range(12):
            n_tries_total += 1
            area = max(area0 * 0.75 ** (attempt // 3), 3.0 * sp * sp, 0.2)
            req, gap_rng = None, None
            centre = None
            aspect = math.exp(rng.uniform(0, 0.9)) if kind != "lobulated" else math.exp(rng.uniform(0, 0.5))
            if area > 12:
                aspect *= rng.uniform(1.0, 1.6)
            if kind == "plaque":
                aspect = math.exp(rng.uniform(0.7, 1.4))
            ang = rng.uniform(0, np.pi)
            poly = fn = None
            if site in ("bone_touch", "bone_near") or (site == "joint"):
                if not in_view_bones:
                    break
                wts = np.array([{"DP": 3.0, "MP": 2.0, "PP": 2.0, "MC": 1.0}[b.name] for b in in_view_bones])
                b = in_view_bones[int(rng.choice(len(in_view_bones), p=wts / wts.sum()))]
                nrm = _normals(b.poly)
                if site == "joint":
                    art = b.lab > 0.5
                    edge = np.nonzero(art != np.roll(art, 1))[0]
                    i = int(edge[rng.integers(len(edge))] + rng.integers(-15, 16)) % len(b.poly)
                    if b.lab[i] > 0.5:
                        i = int(np.nonzero(~art)[0][np.argmin(np.abs(np.nonzero(~art)[0] - i))])
                    touch = rng.random() < 0.6
                else:
                    ok = b.lab < 0.5
                    if b.name == "MC":
                        loc = b.local
                        ok &= loc[:, 0] > -4 * b.dims["Rh"]
                    i = nearest_bone_point(b, ok)
                    touch = site == "bone_touch"
                s_pt, n_pt = b.poly[i], nrm[i]
                if kind == "plaque":
                    ln = math.sqrt(area) * rng.uniform(1.8, 3.5)
                    nv = max(int(ln / _STEP), 6)
                    idx = (i + np.arange(nv) - nv // 2) % len(b.poly)
                    if np.any(b.lab[idx] > 0.5) and site != "joint":
                        continue
                    path = _smooth_open(b.poly[idx], 3)
                    nn = _smooth_open(nrm[idx], 3)
                    nn /= np.hypot(nn[:, 0], nn[:, 1])[:, None]
                    w = area / (ln * 0.78)
                    if w > 3.0:
                        continue
                    inner = -0.3 if touch else rng.uniform(0.12, 0.6)
                    poly = _lens_polygon(path, w + (0.3 if touch else 0), inner, nn)
                    poly, _ = _resample(poly, min(0.05, sp / 3))
                    dens = draw_density("plaque")
                    fn = make_hu_fn("plaque", dens)
                    rmax = w
                else:
                    # align the long axis with the bone surface tangent for elongated shapes
                    tang = math.atan2(n_pt[1], n_pt[0]) + math.pi / 2
                    poly, fn, rmax, dens = make_shape(kind, area, np.zeros(2), tang + rng.uniform(-0.4, 0.4), aspect)
                    extent = float(np.max(poly @ -n_pt))  # how far the shape reaches toward the bone
                    if touch:
                        off = extent * rng.uniform(0.45, 0.9)
                        off = min(off, extent - 0.05)
                    else:
                        off = extent + rng.uniform(0.12, 0.6)
                    centre = s_pt + n_pt * off
                    poly = poly + centre
                    fn = _shift_fn(fn, centre)
                req = True if touch else False
                if not touch:
                    gap_rng = (0.08, 0.8)
            else:
                if site == "pulp":
                    L0d = finfo["dp_orig_L"]
                    u = rng.uniform(0.45, 1.05) * L0d
                    v = -rng.uniform(dp.dims["Sp"] + 0.3, dp.dims["Sp"] + finfo["ps"] * 0.8)
                    if area > 8:
                        u = rng.uniform(0.55, 0.95) * L0d
                        v = -(dp.dims["Sp"] + finfo["ps"] * rng.uniform(0.35, 0.55))
                    elif rng.random() < 0.3:
                        u, v = L0d * rng.uniform(0.95, 1.1), rng.uniform(-2.0, 0.5)
                    centre = dp.to_frame(np.array([[u, v]]))[0]
                    if pulp_touch:
                        req = None
                    else:
                        req, gap_rng = False, (0.8, 1e9)
                elif site in ("subcut", "cluster_sub"):
                    b = bones[int(rng.choice([1, 2, 3, 0], p=[0.35, 0.3, 0.25, 0.1]))]
                    L = b.dims.get("L", 10.0) if b.name != "MC" else -10.0
                    u = rng.uniform(0.1, 0.95) * L if b.name != "MC" else rng.uniform(-15, 0)
                    P0 = b.surf(u, 1 if rng.random() < 0.4 else -1)
                    depth = rng.uniform(0.4, 1.8) + math.sqrt(area / math.pi) / max(aspect, 1.0) ** 0.5
                    centre = main_soft.project(P0, -depth)[0]
                    # elongate along the skin
                    e = 0.05
                    gx = (main_soft.pts(centre[None] + [e, 0]) - main_soft.pts(centre[None] - [e, 0]))[0]
                    gy = (main_soft.pts(centre[None] + [0, e]) - main_soft.pts(centre[None] - [0, e]))[0]
                    ang = math.atan2(gy, gx) + math.pi / 2
                    req = False
                    if kind == "plaque":
                        ln = math.sqrt(area) * rng.uniform(2.0, 4.0)
                        tdir = np.array([math.cos(ang), math.sin(ang)])
                        pts = centre + np.linspace(-ln / 2, ln / 2, 20)[:, None] * tdir
                        w = area / (ln * 0.78)
                        pts = main_soft.project(pts, -(rng.uniform(0.5, 1.5) + w / 2), iters=4)
                        pts, _ = _resample(pts, 0.1, closed=False)
                        poly = _band(pts, w * np.sin(np.linspace(0, np.pi, len(pts))) ** 0.55 + 0.02)
                        poly, _ = _resample(poly, min(0.05, sp / 3))
                        dens = draw_density("plaque")
                        fn = make_hu_fn("plaque", dens)
                        rmax = w
                elif site == "soft":
                    # random point in the soft tissue, away from bone
                    for _ in range(20):
                        rc = np.array([rng.uniform(0, W), rng.uniform(0, H)])
                        r_i, c_i = int(rc[1]), int(rc[0])
                        if f_soft[r_i, c_i] < -2.0 and not bone_mask[r_i, c_i]:
                            centre = np.array([FX[r_i, c_i], FY[r_i, c_i]])
                            break
                    if centre is None:
                        continue
                    req, gap_rng = False, (1.0, 1e9)
                elif site == "cluster":
                    par = parent.poly
                    pc = par.mean(0)
                    dvec = rng.standard_normal(2)
                    dvec /= np.linalg.norm(dvec)
                    poly0, fn0, rmax0, dens0 = make_shape(kind, area, np.zeros(2), ang, aspect)
                    reach_par = float(np.max((par - pc) @ dvec))
                    reach_new = float(np.max(poly0 @ -dvec))
                    gap = rng.uniform(0.1, 0.7)
                    centre = pc + dvec * (reach_par + reach_new + gap)
                    poly, fn, rmax, dens = poly0 + centre, _shift_fn(fn0, centre), rmax0, dens0
                    req = None
                if poly is None:
                    poly, fn, rmax, dens = make_shape(kind, area, centre, ang, aspect)
            if not geometry_ok(poly, 0.08 if site == "cluster" else 0.3):
                continue
            cand = render_candidate(poly, fn)
            if cand is None or not acceptable(poly, cand, req, gap_rng):
                continue
            integrate(cand, fn)
            info = dict(area=cand["area"], dens=dens)
            d = _Deposit(poly, kind, site, fn, info)
            dep_list.append(d)
            dep_cov.append(cand)
            dep_site.append(site)
            dep_kind.append(kind)
            placed = True
            if site != "cluster" and rng.random() < 0.18 and kind != "plaque":
                pending_cluster = d
            break
        if not placed and site == "cluster":
            continue

    # ---------------- composite bones and deposits over the soft tissue
    dsum = np.zeros((H, W))
    dint = np.zeros((H, W))
    labels = np.zeros((H, W), np.int32)
    seeds, areas = [], []
    for k, cand in enumerate(dep_cov, start=1):
        r0, c0, nr, nc = cand["box"]
        sl = (slice(r0, r0 + nr), slice(c0, c0 + nc))
        dsum[sl] += cand["cov"]
        dint[sl] += cand["integ"]
        m = (cand["cov"] > 0.5) & ~bone_mask[sl] & (labels[sl] == 0)
        labels[sl][m] = k
        areas.append(float(cand["area"]))
    tot = bone_cov + dsum
    scale = np.where(tot > 1, 1 / np.maximum(tot, 1e-9), 1.0)
    hu = hu * (1 - np.clip(tot, 0, 1)) + (bone_sum + dint) * scale
    # seeds: bright, interior pixel of each deposit (noise-free intensity)
    for k, cand in enumerate(dep_cov, start=1):
        r0, c0, nr, nc = cand["box"]
        sl = (slice(r0, r0 + nr), slice(c0, c0 + nc))
        m = labels[sl] == k
        edt = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        mean_hu = np.where(m, cand["integ"] / np.maximum(cand["cov"], 1e-6), -1e9)
        cand_m = m & (edt >= min(1.5, edt.max()))
        score = np.where(cand_m, mean_hu / max(np.max(mean_hu[m]), 1.0) + 0.15 * edt / max(edt.max(), 1), -1e9)
        rr_, cc_ = np.unravel_index(int(np.argmax(score)), m.shape)
        seeds.append((int(r0 + rr_), int(c0 + cc_)))

    # ---------------- scanner effects
    streaks = []
    if metal_pts:
        for pts_px, strength in metal_pts:
            if len(pts_px) >= 2:
                hu += _streak_line(H, W, pts_px[0], pts_px[1], -rng.uniform(150, 400) * strength, 1.0 / sp, 2.0)
            for p in pts_px:
                for _ in range(int(rng.integers(4, 9))):
                    a = rng.uniform(0, np.pi)
                    q = p + 10 * np.array([math.cos(a), math.sin(a)])
                    hu += _streak_line(H, W, p, q, rng.choice([-1, 1]) * rng.uniform(60, 250) * strength,
                                       rng.uniform(0.5, 1.2) / sp, 50.0, radial=True)
        streaks.append("metal streaks")
    if rng.random() < 0.3:
        # beam-hardening dark bands between dense objects
        dense = [b for b in bones if bone_in_view.get(b.name, 0) > 0.3]
        cents = []
        for b in dense:
            q = to_px(b.poly)
            q = q[(q[:, 0] >= 0) & (q[:, 0] < W) & (q[:, 1] >= 0) & (q[:, 1] < H)]
            if len(q):
                cents.append(q.mean(0))
        for d, cand in zip(dep_list, dep_cov):
            if d.info["dens"] > 900 and d.info["area"] > 4:
                cents.append(to_px(d.poly).mean(0))
        nb_ = 0
        for i in range(len(cents)):
            for k in range(i + 1, len(cents)):
                if np.linalg.norm(cents[i] - cents[k]) * sp < 45 and rng.random() < 0.5:
                    hu += _streak_line(H, W, cents[i], cents[k], -rng.uniform(20, 110),
                                       rng.uniform(0.5, 1.8) / sp, 0.8)
                    nb_ += 1
        if nb_:
            streaks.append(f"{nb_} beam-hardening band(s)")
    psf = rng.uniform(0.15, 0.5)
    aniso = rng.uniform(0.7, 1.4) if rng.random() < 0.5 else 1.0
    sig = (psf * aniso / sp, psf / sp)
    hu = ndimage.gaussian_filter(hu, sig, mode="nearest")
    sharp = rng.random() < 0.35
    if sharp:
        ka = rng.uniform(0.3, 1.0)
        hu = hu + ka * (hu - ndimage.gaussian_filter(hu, rng.uniform(0.4, 0.9) / sp, mode="nearest"))
    noise_sd = float(np.exp(rng.uniform(np.log(5), np.log(70))))
    corr = rng.random() < 0.6
    nz = rng.standard_normal((H, W))
    if corr:
        cs = rng.uniform(0.6, 1.6)
        nz = ndimage.gaussian_filter(nz, cs, mode="wrap") - 0.6 * ndimage.gaussian_filter(nz, 3 * cs, mode="wrap")
        nz /= nz.std() + 1e-9
    hu = hu + noise_sd * nz
    hu = np.clip(hu, -1024, 3071)
    eight_bit = rng.random() < 0.3
    if eight_bit:
        lo_w = _WL - _WW / 2
        v = np.clip(np.round((hu - lo_w) / _WW * 255.0), 0, 255)
        hu = v / 255.0 * _WW + lo_w

    # ---------------- notes
    touching = []
    for k, cand in enumerate(dep_cov, start=1):
        r0, c0, nr, nc = cand["box"]
        sl = (slice(max(r0 - 1, 0), r0 + nr + 1), slice(max(c0 - 1, 0), c0 + nc + 1))
        m = labels[sl] == k
        touching.append(bool((ndimage.binary_dilation(m, np.ones((3, 3))) & bone_mask[sl]).any()))
    mc_view = bone_in_view.get("MC", 0) > 0 and _point_in_image(to_px(np.zeros((1, 2)))[0], H, W)
    cut = [n for n in ("PP", "MP", "DP") if 0.02 < bone_in_view.get(n, 0) < 0.97]
    notes.append(f"sp={sp:.3f}mm {H}x{W} rot={math.degrees(alpha) % 360:.0f}{' mirrored' if mirror else ''}"
                 f" finger {finger_len:.0f}x{finger_thick:.0f}mm")
    notes.append("MC head in view" if mc_view else "no MC head")
    if cut:
        notes.append("cut by border: " + ",".join(cut))
    if crop_mode:
        notes.append("cropped FOV")
    if ssc:
        notes.append("; ".join(ssc))
    if any(bone_in_view.get(b.name, 0) > 0 for b in neighbour_bones):
        notes.append("neighbour finger in view")
    elif neighbour_bones:
        notes.append("neighbour finger out of view")
    if artery:
        notes.append("calcified digital artery")
    notes += extras
    dep_txt = ",".join(f"{kd}@{st}{'*' if t else ''}" for kd, st, t in zip(dep_kind, dep_site, touching))
    notes.append(f"{len(dep_list)} deposits (of {n_target} drawn) [{dep_txt}]")
    notes.append(f"PSF {psf:.2f}mm{' aniso' if aniso != 1.0 else ''}{' sharp' if sharp else ''}"
                 f" noise {noise_sd:.0f}HU{' corr' if corr else ''}{' 8-bit' if eight_bit else ''}")
    notes += streaks

    return {
        "hu": hu.astype(np.float32),
        "spacing_mm": float(sp),
        "bone": bone_mask,
        "deposits": labels,
        "areas_mm2": areas,
        "seeds": seeds,
        "notes": "; ".join(notes),
    }


# ----------------------------------------------------------------------------- misc helpers
def _shift_fn(fn, centre):
    """Shape functions built at the origin are evaluated at (X - cx, Y - cy)."""
    cx, cy = float(centre[0]), float(centre[1])

    def g(X, Y):
        return fn(X - cx, Y - cy)

    return g


def _point_in_image(p, H, W):
    return 0 <= p[0] < W and 0 <= p[1] < H


def _noise(rng, H, W, corr_px):
    """Smooth Gaussian random field with unit standard deviation and correlation length ~corr_px."""
    f = max(1, int(corr_px / 2.5))
    h, w = H // f + 3, W // f + 3
    n = rng.standard_normal((h, w))
    n = ndimage.gaussian_filter(n, max(corr_px / f, 0.5), mode="wrap")
    if f > 1:
        n = ndimage.zoom(n, f, order=1)
    n = n[:H, :W]
    return n / (n.std() + 1e-9)


def _streak_line(H, W, p, q, amp, width_px, long_factor, radial=False):
    """Additive streak along the line through p and q (pixel coords, (col, row))."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    d = q - p
    L = float(np.hypot(*d))
    if L < 1e-6:
        return 0.0
    d /= L
    rr, cc = np.mgrid[0:H, 0:W]
    X, Y = cc - p[0], rr - p[1]
    par = X * d[0] + Y * d[1]
    perp = -X * d[1] + Y * d[0]
    if radial:
        return amp * np.exp(-0.5 * (perp / width_px) ** 2) * (width_px * 3 / (np.abs(par) + width_px * 3))
    mid = L / 2
    return amp * np.exp(-0.5 * (perp / width_px) ** 2) * np.exp(-0.5 * ((par - mid) / (long_factor * L + 1)) ** 2)
