"""Generator G -- statistical-appearance synthetic sagittal DECT finger slices
with calcinosis cutis (independent out-of-distribution test set).

Methods
-------
Each case is a 2-D sagittal reformatted dual-energy CT slice of one lesser
finger of a patient with systemic sclerosis (SSc).  Anatomy is built in a
finger-centred world frame (mm) and only afterwards mapped into an image of
random size, pixel spacing, position and orientation, so the same anatomy
model can be "scanned" in many ways.

*Anatomy (contour / statistical-shape model).*  A kinematic chain of
metacarpal -> proximal (P1) -> middle (P2) -> distal (P3) phalanx is sampled
from digit-specific length tables (index/middle/ring/little, +-12 % person
scale).  Every bone outline is a closed contour assembled from smooth random
dorsal and palmar half-thickness profiles (jittered control points, shaft
waist, base flare, longitudinal dorsal bow), a circular condylar head and a
concave base socket whose radius equals the proximal head radius plus the
joint space, so flexion (SSc-type PIP contractures up to 75 deg, MCP/DIP
-10..45 deg) rotates each phalanx about the head centre.  Contours carry
low-amplitude periosteal roughness; optional marginal erosions, narrowed joint
spaces (0.2-0.5 mm), acro-osteolysis (shortened, tapered, irregular tuft,
occasional residual ossicle), palmar MCP sesamoid and a grazing-cut bone of an
adjacent finger add variety.  Bone intensity comes from a per-bone texture map
in the bone's own frame: cortical shell whose thickness varies along the
shaft and between dorsal/palmar cortices (thin subchondral plates, osteopenic
tail with thin, less dense cortex), and a fatty marrow cavity crossed by a
trabecular network (zero-crossings of anisotropic band-pass noise, elongated
along the shaft) whose volume fraction rises towards the metaphyses.  The skin envelope is the morphological closing of per-segment
soft-tissue sleeves (dorsal 2-6 mm, palmar pads 3-16 mm, rounded or tapered
SSc fingertip pulp), with dermis, septated subcutaneous fat (atrophic in
sclerodactyly), flexor/extensor tendons and a nail plate with free edge.

*Calcinosis.*  Deposits are sampled as 1-7 clinical "events" per case
(event mix: nodule 36 %, speck 15 %, speck cluster 12 %, dermal sheet 11 %,
tendon-sheath line 6 %, tumoral mass 8 %, abutting 8 %, tuft wrap 4 %):
nodular lobulated
Fourier blobs (1-25 mm^2), single punctate specks (0.2-1.2 mm^2), clusters of
3-8 separate specks, dermal sheets and tendon-sheath linear deposits following
the soft-tissue contour, large tumoral masses (20-70 mm^2) that bulge the
skin, deposits abutting the cortex and crescents wrapping the distal tuft
(clipped by the bone, so they touch it without overlapping).  Locations are
drawn from a clinical prior (fingertip pulp > dorsum of PIP/DIP > palmar
shaft > palm) and accepted only if they lie inside the subcutis, keep a
resolution-dependent gap from bone and from other deposits (unless
abutting).  Density: mostly dense (900-1800 HU reference), some moderate or
faint, a tail matched to cortical density; internal texture, lobe-to-lobe
variation and dense rims; small specks are kept dense enough to survive the
partial-volume/PSF loss.

*Acquisition.*  Pixel spacing 0.1-0.7 mm, image 200-1100 px per side
(square or cropped, finger off-centre, tip pointing in any direction, mostly
near-vertical as in sagittal reformats).  The object is rendered on an
oversampled grid with exact anti-aliased polygon coverage, blurred by an
anisotropic PSF (wider along the scanner z axis = image rows), block-averaged
to the pixel grid, then given beam-hardening halos, row-aligned streaks
through dense rows, optional motion ghosting/blur, spatially correlated noise
(soft or sharp kernel NPS, dose-dependent level, photon-starvation rows) and
soft / sharp / ringing reconstruction kernels.  Energy: DECT mixed images or
virtual monoenergetic images (55-120 keV) rescale calcium and fat HU.  About
40 % are display exports at window 1500 / level 450 (8-bit, some with a
blockwise-DCT "JPEG" quantiser) mapped back to HU, which saturates bone and
dense deposits alike.  Some images have -1024/-2048/0 padding strips or a
reconstruction circle, burnt-in annotation text, scale bars and arrows.

*Truth.*  Bone = pixels whose exact bone-area coverage >= 0.5 (all bones
in view, marrow included).  Deposit k = pixels with coverage >= 0.5 of the
deposit polygon minus bone, computed on a >= 8x supersampled grid; its
``areas_mm2`` is the supersampled continuous area (not the pixel count).
Seeds are the brightest interior pixel of each deposit in the final image.

*Mix.*  Roughly 75-80 % ordinary clinical-looking cases; tails (each
~5-15 %, overlapping): osteopenic bone, phalanges cut by the field of view,
deposit density equal to bone, deposits touching bone, low dose, motion,
adjacent finger in view, erosions, residual ossicles after acro-osteolysis.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy import fft as sfft
from scipy.special import ndtri

__all__ = ["make_case"]

_MAX_PX = 1100
_MIN_PX = 200


# =============================================================================
# geometry helpers
# =============================================================================

def _rot(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s], [s, c]])


def _area(P):
    x, y = P[:, 0], P[:, 1]
    return 0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _ccw(P):
    return P if _area(P) > 0 else P[::-1].copy()


def _resample_closed(P, step):
    Q = np.vstack([P, P[:1]])
    seg = np.hypot(*np.diff(Q, axis=0).T)
    s = np.r_[0.0, np.cumsum(seg)]
    n = max(16, int(np.ceil(s[-1] / step)))
    t = np.linspace(0.0, s[-1], n, endpoint=False)
    return np.c_[np.interp(t, s, Q[:, 0]), np.interp(t, s, Q[:, 1])]


def _smooth_closed(P, sig):
    if sig <= 0:
        return P
    return ndi.gaussian_filter1d(P, sig, axis=0, mode="wrap")


def _normals(P):
    """Outward unit normals of a CCW polygon (y up)."""
    T = np.roll(P, -1, 0) - np.roll(P, 1, 0)
    n = np.c_[T[:, 1], -T[:, 0]]
    return n / (np.hypot(n[:, 0], n[:, 1])[:, None] + 1e-12)


def _snoise1d(rng, n, corr, wrap=True):
    w = rng.standard_normal(n)
    g = ndi.gaussian_filter1d(w, max(corr, 0.5), mode="wrap" if wrap else "reflect")
    return g / (g.std() + 1e-9)


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _sausage(C, half):
    """Closed polygon around open centre line C (N,2) with half-widths half (N,)."""
    T = np.gradient(C, axis=0)
    T /= np.hypot(T[:, 0], T[:, 1])[:, None] + 1e-12
    N = np.c_[-T[:, 1], T[:, 0]]
    left = C + N * half[:, None]
    right = C - N * half[:, None]
    k = 9
    a = np.linspace(0, np.pi, k + 2)[1:-1]
    t1, n1, h1 = T[-1], N[-1], half[-1]
    cap1 = C[-1] + h1 * (np.outer(np.cos(a), n1) + np.outer(np.sin(a), t1))
    t0, n0, h0 = T[0], N[0], half[0]
    cap0 = C[0] + h0 * (np.outer(-np.cos(a), n0) - np.outer(np.sin(a), t0))
    P = np.vstack([left, cap1, right[::-1], cap0])
    return _ccw(P)


# =============================================================================
# anti-aliased polygon rasteriser (scan-line, exact horizontal coverage)
# =============================================================================

def _raster(P, H, W, ss=4):
    """Coverage of closed polygon P (x = column, y = row, in cell units; cell
    (i, j) spans [j, j+1] x [i, i+1]) on an H x W grid.  Horizontal coverage is
    exact per sub-row, ss sub-rows per row.  Returns (cov, r0, c0) for the
    bounding window or None."""
    x0 = P[:, 0]
    y0 = P[:, 1]
    x1 = np.roll(x0, -1)
    y1 = np.roll(y0, -1)
    r0 = max(0, int(np.floor(y0.min())))
    r1 = min(H, int(np.ceil(y0.max())) + 1)
    c0 = max(0, int(np.floor(x0.min())))
    c1 = min(W, int(np.ceil(x0.max())) + 1)
    if r1 <= r0 or c1 <= c0:
        return None
    nh, nw = r1 - r0, c1 - c0
    ylo = np.minimum(y0, y1)
    yhi = np.maximum(y0, y1)
    a = np.clip(np.ceil((ylo - r0) * ss - 0.5).astype(np.int64), 0, nh * ss)
    b = np.clip(np.ceil((yhi - r0) * ss - 0.5).astype(np.int64), 0, nh * ss)
    cnt = b - a
    keep = cnt > 0
    if not keep.any():
        return None
    e = np.nonzero(keep)[0]
    cnt = cnt[keep]
    a = a[keep]
    tot = int(cnt.sum())
    starts = np.repeat(np.cumsum(cnt) - cnt, cnt)
    m = np.repeat(a, cnt) + (np.arange(tot) - starts)
    ee = np.repeat(e, cnt)
    yc = r0 + (m + 0.5) / ss
    xc = x0[ee] + (yc - y0[ee]) * (x1[ee] - x0[ee]) / (y1[ee] - y0[ee])
    o = np.lexsort((xc, m))
    m = m[o]
    xc = xc[o]
    if m.size % 2:  # numerically degenerate polygon; should not happen
        m = m[:-1]
        xc = xc[:-1]
    xs = np.clip(xc[0::2] - c0, 0, nw)
    xe = np.clip(xc[1::2] - c0, 0, nw)
    row = m[0::2] // ss
    fa = np.floor(xs).astype(np.int64)
    fra = xs - fa
    fb = np.floor(xe).astype(np.int64)
    frb = xe - fb
    base = row * (nw + 2)
    w = 1.0 / ss
    idx = np.concatenate([base + fa, base + fa + 1, base + fb, base + fb + 1])
    val = np.concatenate([(1 - fra) * w, fra * w, -(1 - frb) * w, -frb * w])
    D = np.bincount(idx, weights=val, minlength=nh * (nw + 2)).reshape(nh, nw + 2)
    cov = np.cumsum(D, axis=1)[:, :nw]
    return np.clip(cov, 0.0, 1.0).astype(np.float32), r0, c0


def _raster_full(P, H, W, ss=4):
    out = np.zeros((H, W), np.float32)
    r = _raster(P, H, W, ss)
    if r is not None:
        c, r0, c0 = r
        out[r0:r0 + c.shape[0], c0:c0 + c.shape[1]] = c
    return out


# =============================================================================
# tiny bitmap font for burnt-in annotations
# =============================================================================

_FONT = {
    "0": ["01110", "10001", "10011", "10101", "11001", "10001", "01110"],
    "1": ["00100", "01100", "00100", "00100", "00100", "00100", "01110"],
    "2": ["01110", "10001", "00001", "00010", "00100", "01000", "11111"],
    "3": ["11110", "00001", "00001", "01110", "00001", "00001", "11110"],
    "4": ["00010", "00110", "01010", "10010", "11111", "00010", "00010"],
    "5": ["11111", "10000", "11110", "00001", "00001", "10001", "01110"],
    "6": ["00110", "01000", "10000", "11110", "10001", "10001", "01110"],
    "7": ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
    "8": ["01110", "10001", "10001", "01110", "10001", "10001", "01110"],
    "9": ["01110", "10001", "10001", "01111", "00001", "00010", "01100"],
    "A": ["01110", "10001", "10001", "11111", "10001", "10001", "10001"],
    "B": ["11110", "10001", "10001", "11110", "10001", "10001", "11110"],
    "C": ["01110", "10001", "10000", "10000", "10000", "10001", "01110"],
    "D": ["11110", "10001", "10001", "10001", "10001", "10001", "11110"],
    "E": ["11111", "10000", "10000", "11110", "10000", "10000", "11111"],
    "F": ["11111", "10000", "10000", "11110", "10000", "10000", "10000"],
    "G": ["01110", "10001", "10000", "10111", "10001", "10001", "01111"],
    "H": ["10001", "10001", "10001", "11111", "10001", "10001", "10001"],
    "I": ["01110", "00100", "00100", "00100", "00100", "00100", "01110"],
    "K": ["10001", "10010", "10100", "11000", "10100", "10010", "10001"],
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "M": ["10001", "11011", "10101", "10101", "10001", "10001", "10001"],
    "N": ["10001", "11001", "10101", "10011", "10001", "10001", "10001"],
    "O": ["01110", "10001", "10001", "10001", "10001", "10001", "01110"],
    "P": ["11110", "10001", "10001", "11110", "10000", "10000", "10000"],
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
    "S": ["01111", "10000", "10000", "01110", "00001", "00001", "11110"],
    "T": ["11111", "00100", "00100", "00100", "00100", "00100", "00100"],
    "U": ["10001", "10001", "10001", "10001", "10001", "10001", "01110"],
    "V": ["10001", "10001", "10001", "10001", "10001", "01010", "00100"],
    "W": ["10001", "10001", "10001", "10101", "10101", "10101", "01010"],
    "X": ["10001", "10001", "01010", "00100", "01010", "10001", "10001"],
    "Y": ["10001", "10001", "01010", "00100", "00100", "00100", "00100"],
    ":": ["00000", "01100", "01100", "00000", "01100", "01100", "00000"],
    ".": ["00000", "00000", "00000", "00000", "00000", "01100", "01100"],
    "-": ["00000", "00000", "00000", "11111", "00000", "00000", "00000"],
    "/": ["00001", "00010", "00010", "00100", "01000", "01000", "10000"],
    " ": ["00000"] * 7,
}


def _text_bitmap(s, scale):
    cols = []
    for ch in s.upper():
        g = _FONT.get(ch, _FONT[" "])
        cols.append(np.array([[c == "1" for c in row] for row in g], bool))
        cols.append(np.zeros((7, 1), bool))
    bm = np.hstack(cols[:-1]) if cols else np.zeros((7, 1), bool)
    return np.kron(bm, np.ones((scale, scale), bool))


# =============================================================================
# case-level parameter sampling
# =============================================================================

_DIGITS = {
    # name: (P1, P2, P3, metacarpal length [mm], thickness scale)
    "index": (40.0, 23.5, 17.0, 65.0, 1.00),
    "middle": (44.5, 28.0, 18.5, 63.0, 1.05),
    "ring": (41.5, 26.5, 18.0, 57.0, 1.00),
    "little": (33.0, 18.5, 15.5, 52.0, 0.88),
}


def _sample_params(rng):
    P = {}
    P["digit"] = str(rng.choice(list(_DIGITS), p=[0.3, 0.25, 0.25, 0.2]))
    P["person"] = rng.uniform(0.88, 1.10)
    # tails
    P["osteopenic"] = rng.random() < 0.14
    P["cutoff"] = rng.random() < 0.13
    P["dense_dep"] = rng.random() < 0.10
    P["force_abut"] = rng.random() < 0.10
    P["lowdose"] = rng.random() < 0.10
    P["motion"] = rng.random() < 0.06
    P["second_finger"] = rng.random() < 0.12
    P["acro"] = rng.random() < 0.30
    P["erosion"] = rng.random() < 0.12
    P["narrow"] = rng.random() < 0.25
    P["sesamoid"] = rng.random() < 0.12
    P["sclero"] = rng.uniform(0.0, 1.0)  # degree of sclerodactyly (fat atrophy)
    # flexion (deg); SSc flexion contractures at PIP are common
    u = rng.random()
    pip = rng.uniform(0, 15) if u < 0.45 else (rng.uniform(15, 45) if u < 0.8 else rng.uniform(45, 75))
    P["flex"] = (rng.uniform(-10, 40), pip, rng.uniform(-10, 40))
    # energy / image type
    if rng.random() < 0.55:
        P["mode"] = "mixed"
        P["kev"] = None
        P["c_cal"] = rng.uniform(0.95, 1.2)
        P["c_fat"] = rng.uniform(0.9, 1.1)
        P["noise_f"] = 1.0
    else:
        kev = float(rng.choice([55, 60, 65, 70, 70, 75, 80, 90, 100]))
        P["mode"] = "vmi"
        P["kev"] = kev
        P["c_cal"] = (70.0 / kev) ** 1.45 * rng.uniform(0.95, 1.05)
        P["c_fat"] = (70.0 / kev) ** 0.35
        P["noise_f"] = 1.0 + 0.9 * max(0.0, (70 - kev) / 15.0) ** 1.5 + 0.1 * max(0.0, (kev - 90) / 30)
    # spacing
    if P["cutoff"]:
        sp = rng.uniform(0.1, 0.3)
    else:
        u = rng.random()
        sp = rng.uniform(0.1, 0.2) if u < 0.15 else (rng.uniform(0.2, 0.5) if u < 0.85 else rng.uniform(0.5, 0.7))
    P["sp"] = float(sp)
    # reconstruction kernel / PSF
    k = rng.random()
    P["kernel"] = "soft" if k < 0.55 else ("sharp" if k < 0.85 else "ringing")
    sxy = rng.uniform(0.18, 0.40) if P["kernel"] == "soft" else rng.uniform(0.12, 0.28)
    P["psf"] = (float(sxy * rng.uniform(1.1, 1.9)), float(sxy))  # (rows = z, cols)
    P["noise"] = (rng.uniform(45, 95) if P["lowdose"] else rng.uniform(8, 32)) * P["noise_f"]
    # export
    e = rng.random()
    P["export"] = "hu" if e < 0.6 else ("8bit" if e < 0.75 else "jpeg")
    P["jpeg_q"] = int(rng.integers(45, 96))
    P["pad"] = rng.random() < 0.16
    P["text"] = rng.random() < (0.45 if P["export"] != "hu" else 0.15)
    P["streaks"] = rng.random() < 0.35
    return P


# =============================================================================
# bones
# =============================================================================

def _phalanx_outline(rng, L, wb, ws, wh, Rs, ds, bow, tip=False, tip_ax=1.0,
                     lip_p=0.4, lip_d=0.25, rough=0.04, acro=0.0, base_flat=False,
                     x_far=None, erosions=0, res=0.08):
    """Closed CCW outline (local frame: x along axis from base, y dorsal) and
    the head centre x.  Rs/ds: socket radius/depth (None -> flat base)."""
    a_tip = wh * tip_ax if tip else wh
    xh = L - a_tip
    n = 160
    x = np.linspace(0.0, xh, n)
    t = x / xh
    tc = np.array([0.0, 0.08, 0.22, 0.5, 0.75, 0.9, 1.0])
    jit = 1 + rng.normal(0, 0.05, 7)
    jit[-1] = 1.0
    if tip:
        top_cp = np.array([wb * 0.88, wb * 0.78, ws * 1.15, ws * 1.0, ws * 0.98, wh * 1.0, wh]) * jit
        bot_cp = np.array([wb * 1.05, wb * 0.92, ws * 1.10, ws * 0.95, ws * 1.05, wh * 1.1, wh]) * jit
    else:
        top_cp = np.array([wb * 0.90, wb * 0.80, ws * 1.10, ws * 0.96, ws * 1.0, (ws + wh) * 0.5, wh]) * jit
        bot_cp = np.array([wb * 1.06, wb * 0.96, ws * 1.08, ws * 0.90, ws * 0.98, (ws + wh) * 0.52, wh]) * jit
    if base_flat:  # metacarpal shaft: no flare at the far end
        top_cp[:3] = ws * jit[:3]
        bot_cp[:3] = ws * jit[:3]
    top = ndi.gaussian_filter1d(np.interp(t, tc, top_cp), 6, mode="nearest")
    bot = ndi.gaussian_filter1d(np.interp(t, tc, bot_cp), 6, mode="nearest")
    blend = _smoothstep(0.85, 1.0, t)
    top = top + (wh - top[-1]) * blend
    bot = bot + (wh - bot[-1]) * blend
    c = bow * np.sin(np.pi * t)
    top_y = top + c
    bot_y = -bot + c
    # head arc (dorsal +90 -> tip 0 -> palmar -90)
    phi = np.linspace(np.pi / 2, -np.pi / 2, 60)[1:-1]
    rr = np.ones_like(phi)
    if not tip:  # palmar condyle slightly prominent
        rr = 1 + 0.05 * (phi < 0) * np.sin(phi) ** 2
    head = np.c_[xh + a_tip * rr * np.cos(phi), wh * rr * np.sin(phi)]
    dorsal = np.c_[x, top_y]
    palmar = np.c_[x, bot_y][::-1]
    if x_far is not None:  # long bone continuing out of view
        base = np.array([[x_far, bot_y[0]], [x_far, top_y[0]]])
        dorsal = np.vstack([np.c_[np.linspace(x_far, 0, 40)[:-1], np.full(39, top_y[0])], dorsal])
        palmar = np.vstack([palmar, np.c_[np.linspace(0, x_far, 40)[1:], np.full(39, bot_y[0])]])
        P = np.vstack([dorsal, head, palmar])
    else:
        t0, b0 = top_y[0], -bot_y[0]
        if Rs is None:
            base = np.array([[-0.2, -b0 * 0.6], [-0.3, 0.0], [-0.2, t0 * 0.6]])
        else:
            yr_max = 0.85 * min(t0, b0)
            ds = min(ds, Rs - np.sqrt(max(Rs ** 2 - yr_max ** 2, 0)))
            yr = np.sqrt(max(2 * Rs * ds - ds * ds, 0.01))
            ys = np.linspace(-yr, yr, 25)
            xs = (ds - Rs) + np.sqrt(np.maximum(Rs ** 2 - ys ** 2, 0))
            base = np.vstack([[[-lip_p, -0.8 * b0]], np.c_[xs, ys], [[-lip_d, 0.85 * t0]]])
        P = np.vstack([dorsal, head, palmar, base])
    P = _ccw(P)
    P = _resample_closed(P, res)
    P = _smooth_closed(P, 0.12 / res)
    # periosteal roughness (+ irregular resorbed tuft)
    nrm = _normals(P)
    disp = rough * _snoise1d(rng, len(P), 0.8 / res)
    if acro > 0:
        w = _smoothstep(L - 2.5, L - 0.3, P[:, 0])
        disp += -acro * w * np.abs(_snoise1d(rng, len(P), 0.35 / res))
    P = P + nrm * disp[:, None]
    # marginal erosions at articular surfaces
    for _ in range(erosions):
        cand = np.nonzero((P[:, 0] > xh - 0.2) | (P[:, 0] < 1.2))[0] if x_far is None else \
            np.nonzero(P[:, 0] > xh - 0.2)[0]
        if cand.size == 0:
            break
        i0 = int(rng.choice(cand))
        s = np.arange(len(P)) - i0
        s = (s + len(P) // 2) % len(P) - len(P) // 2
        wdt = rng.uniform(0.5, 1.1) / res
        dep = rng.uniform(0.3, 0.9) * min(1.0, wdt * res)
        nrm = _normals(P)
        P = P - nrm * (dep * np.exp(-0.5 * (s / (0.5 * wdt)) ** 2))[:, None]
    P = _smooth_closed(P, 0.04 / res)
    prof = dict(x=x, top=top_y, bot=bot_y, xh=xh)
    return _ccw(P), xh, prof


class _Bone:
    def __init__(self, name, outline, O, ang, L, prm, prof=None, xlo=None):
        self.name = name
        self.local = outline
        self.O = np.asarray(O, float)
        self.ang = ang
        self.u = np.array([np.cos(ang), np.sin(ang)])
        self.n = np.array([-np.sin(ang), np.cos(ang)])
        self.L = L
        self.prm = prm
        self.prof = prof
        self.xlo = xlo
        self.world = self.to_world(outline)

    def to_world(self, Q):
        return self.O + Q[:, :1] * self.u + Q[:, 1:2] * self.n

    def to_local(self, X, Y):
        dx = X - self.O[0]
        dy = Y - self.O[1]
        return dx * self.u[0] + dy * self.u[1], dx * self.n[0] + dy * self.n[1]


def _bone_params(rng, P, kind):
    cal = P["c_cal"]
    osteo = P["osteopenic"]
    cort = rng.uniform(1350, 1850) if not osteo else rng.uniform(950, 1300)
    tmid = {"M": 1.3, "P1": 1.15, "P2": 0.95, "P3": 0.55, "ses": 0.35, "frag": 0.3, "graze": 0.8}[kind]
    tmid *= rng.uniform(0.8, 1.2) * (rng.uniform(0.45, 0.7) if osteo else 1.0)
    prm = dict(
        cortex=min(cort * cal, 3000.0),
        t_mid=max(tmid, 0.22),
        t_end=rng.uniform(0.22, 0.45) * (0.75 if osteo else 1.0),
        fd=rng.uniform(0.75, 1.0), fp=rng.uniform(1.0, 1.3),
        marrow=rng.uniform(-70, 10) * P["c_fat"],
        trab_hu=rng.uniform(800, 1150) * cal * (0.8 if osteo else 1.0),
        bv_end=rng.uniform(0.22, 0.38) * (0.55 if osteo else 1.0),
        bv_mid=rng.uniform(0.03, 0.10) * (0.5 if osteo else 1.0),
        trab_sx=rng.uniform(0.22, 0.38), trab_sy=rng.uniform(0.12, 0.2),
    )
    if kind == "graze":  # tangential partial-volume cut through a neighbour's bone
        prm["t_mid"] = rng.uniform(0.3, 0.6)
        prm["t_end"] = prm["t_mid"]
        prm["cortex"] *= rng.uniform(0.3, 0.55)
        prm["marrow"] = rng.uniform(60, 200)
        prm["bv_mid"] = prm["bv_end"] = rng.uniform(0.15, 0.3)
    return prm


def _bone_map(rng, bone, res):
    """Per-bone HU texture map in the bone's local frame."""
    Q = bone.local
    prm = bone.prm
    xmin, ymin = Q.min(0) - 0.4
    xmax, ymax = Q.max(0) + 0.4
    if bone.xlo is not None:
        xmin = max(xmin, bone.xlo)
    nx = int(np.ceil((xmax - xmin) / res))
    ny = int(np.ceil((ymax - ymin) / res))
    g = (Q - [xmin, ymin]) / res
    mask = _raster_full(g, ny, nx, 2) >= 0.5
    depth = ndi.distance_transform_edt(mask).astype(np.float32) * res - 0.5 * res
    X = (xmin + (np.arange(nx) + 0.5) * res).astype(np.float32)
    Y = (ymin + (np.arange(ny) + 0.5) * res).astype(np.float32)
    t = np.clip(X / bone.L, 0, 1)
    plateau = _smoothstep(0.06, 0.30, t) * (1 - _smoothstep(0.70, 0.93, t))
    tc = prm["t_end"] + (prm["t_mid"] - prm["t_end"]) * plateau
    side = 0.5 + 0.5 * np.tanh(Y / 1.0)
    sidef = prm["fp"] + (prm["fd"] - prm["fp"]) * side
    thick = tc[None, :] * sidef[:, None]
    cw = np.clip((thick - depth) / 0.08 + 0.5, 0, 1)
    # trabecular network: anisotropic band-pass noise, BV/TV rises towards ends
    wn = rng.standard_normal((ny, nx)).astype(np.float32)
    sx = prm["trab_sx"] / res
    sy = prm["trab_sy"] / res
    b = ndi.gaussian_filter(wn, (sy, sx)) - ndi.gaussian_filter(wn, (2.5 * sy, 2.5 * sx))
    b /= b.std() + 1e-6
    bv = prm["bv_mid"] + (prm["bv_end"] - prm["bv_mid"]) * (1 - plateau)
    # zero-crossings of band-pass noise form an interconnected rod/plate network
    wz = np.clip(bv / 0.4, 0.02, 1.5).astype(np.float32)
    trab = np.clip(1.0 - np.abs(b) / wz[None, :], 0, 1)
    med = prm["marrow"] + trab * prm["trab_hu"]
    cn = ndi.gaussian_filter(rng.standard_normal((ny, nx)).astype(np.float32), 1.5 / res * 0.3)
    cn /= cn.std() + 1e-6
    cort = prm["cortex"] * (1 + 0.035 * cn)
    hu = cw * cort + (1 - cw) * med
    if (~mask).any() and mask.any():
        _, ind = ndi.distance_transform_edt(~mask, return_indices=True)
        hu = hu[ind[0], ind[1]]
    bone.map = hu.astype(np.float32)
    bone.map_geom = (xmin, ymin, res)


# =============================================================================
# finger construction (world frame, mm; finger points +x, dorsal +y)
# =============================================================================

def _build_finger(rng, P):
    L1, L2, L3, LM, th = _DIGITS[P["digit"]]
    k = P["person"]
    kl = k * rng.uniform(0.95, 1.05, 4)
    L1, L2, L3, LM = L1 * kl[0], L2 * kl[1], L3 * kl[2], LM * kl[3]
    kt = k * th
    acro = P["acro"]
    acro_f = rng.uniform(0.45, 0.85) if acro else 1.0
    L3 = L3 * acro_f
    spec = {
        "M": dict(L=LM, wb=4.3, ws=4.0, wh=5.3),
        "P1": dict(L=L1, wb=4.7, ws=3.0, wh=3.3),
        "P2": dict(L=L2, wb=3.9, ws=2.35, wh=2.65),
        "P3": dict(L=L3, wb=3.3, ws=1.45, wh=1.55 if not acro else rng.uniform(0.55, 1.1)),
    }
    for s in spec.values():
        for key in ("wb", "ws", "wh"):
            s[key] *= kt * rng.uniform(0.93, 1.07)
    gaps = []
    for j in range(3):
        if P["narrow"] and rng.random() < 0.7:
            gaps.append(rng.uniform(0.2, 0.5))
        else:
            gaps.append(rng.uniform(0.7, 1.5))
    flex = np.deg2rad(np.array(P["flex"]))
    bones = []
    segs = []
    # metacarpal
    s = spec["M"]
    Q, xh, prof = _phalanx_outline(rng, s["L"], s["wb"], s["ws"], s["wh"], None, None,
                                   rng.uniform(0, 0.4), x_far=-60.0, base_flat=True,
                                   rough=rng.uniform(0.02, 0.05))
    ang = 0.0
    O = np.array([-LM, 0.0])
    bM = _Bone("M", Q, O, ang, s["L"], _bone_params(rng, P, "M"), prof, xlo=None)
    bones.append(bM)
    Rh_prev = s["wh"]
    H_prev = bM.O + xh * bM.u
    names = ["P1", "P2", "P3"]
    for j, nm in enumerate(names):
        s = spec[nm]
        ang = ang - flex[j]
        Rs = Rh_prev + gaps[j]
        ds = rng.uniform(0.6, 1.1)
        ero = int(rng.integers(1, 3)) if (P["erosion"] and rng.random() < 0.6) else 0
        Q, xh, prof = _phalanx_outline(
            rng, s["L"], s["wb"], s["ws"], s["wh"], Rs, ds, rng.uniform(0, 0.35) * kt,
            tip=(nm == "P3"), tip_ax=rng.uniform(0.9, 1.4) if not acro else rng.uniform(1.2, 2.2),
            rough=rng.uniform(0.02, 0.05), acro=(rng.uniform(0.1, 0.35) if (acro and nm == "P3") else 0.0),
            erosions=ero)
        # base socket centre sits at (ds_eff - Rs, 0): recover from the outline
        ds_eff = min(ds, Rs - np.sqrt(max(Rs ** 2 - (0.85 * min(prof["top"][0], -prof["bot"][0])) ** 2, 0)))
        u = np.array([np.cos(ang), np.sin(ang)])
        O = H_prev + (Rs - ds_eff) * u
        b = _Bone(nm, Q, O, ang, s["L"], _bone_params(rng, P, nm), prof)
        b.erosions = ero
        bones.append(b)
        Rh_prev = s["wh"]
        H_prev = b.O + xh * b.u
    # ---------------- soft-tissue sleeves per segment --------------------
    scl = P["sclero"]
    soft_k = rng.uniform(0.85, 1.1) * (1 - 0.2 * scl)
    Dd = {"M": rng.uniform(4, 6), "P1": rng.uniform(2.5, 4.0), "P2": rng.uniform(2.2, 3.4),
          "P3": rng.uniform(2.2, 3.2)}
    Dp = {"M": rng.uniform(10, 16), "P1": rng.uniform(6, 9), "P2": rng.uniform(5, 7.5),
          "P3": rng.uniform(4.0, 7.5) * (1 - 0.35 * scl)}
    pulp_ext = rng.uniform(3.5, 7.0) * (1 - 0.25 * scl)
    if acro:
        pulp_ext += (1 - acro_f) * L3 / acro_f * rng.uniform(0.4, 0.9)
    taper = rng.uniform(0.5, 0.65) + 0.3 * scl
    for b in bones:
        nm = b.name
        prof = b.prof
        xa = -3.0 if nm != "M" else -120.0
        xb = b.L + 3.0 if nm != "P3" else b.L + pulp_ext
        n = 220
        if nm == "P3":
            xs = np.r_[np.linspace(xa, b.L - 2, 120), b.L - 2 + (xb - b.L + 2) * np.sin(np.linspace(0, np.pi / 2, 100))[1:]]
        else:
            xs = np.linspace(xa, xb, n)
        tb = np.interp(xs, prof["x"], prof["top"])
        bb = np.interp(xs, prof["x"], prof["bot"])
        tt = np.clip(xs / b.L, 0, 1)
        dd = Dd[nm] * soft_k * (1 + 0.08 * _snoise1d(rng, len(xs), 25, wrap=False))
        pad = 0.8 + 0.3 * np.sin(np.pi * tt) if nm != "M" else np.ones_like(tt)
        dp = Dp[nm] * soft_k * pad * (1 + 0.08 * _snoise1d(rng, len(xs), 25, wrap=False))
        top = tb + dd
        bot = bb - dp
        # rounded sleeve ends (joint creases appear where sleeves meet)
        ecap = rng.uniform(3.0, 4.5)
        sc = np.zeros_like(xs)
        if nm != "M":
            sc = np.maximum(sc, np.clip((xa + ecap - xs) / ecap, 0, 1))
        if nm != "P3":
            sc = np.maximum(sc, np.clip((xs - (xb - ecap)) / ecap, 0, 1))
        fcap = np.sqrt(np.clip(1 - sc ** 2, 0.0, 1)) * 0.45 + 0.55
        mid = 0.5 * (top + bot)
        half = 0.5 * (top - bot) * fcap
        top, bot = mid + half, mid - half
        if nm == "P3":
            x0c = b.L - rng.uniform(2.0, 4.0)
            sc = np.clip((xs - x0c) / (xb - x0c), 0, 1)
            f = np.sqrt(np.clip(1 - sc ** 2, 0, 1)) ** (taper * 1.3)
            mid = 0.5 * (top + bot)
            mid_tip = mid - 0.15 * (top - bot) * sc ** 2
            half = 0.5 * (top - bot) * f
            top, bot = mid_tip + half, mid_tip - half
            b.env_xcap = x0c
        Ql = np.vstack([np.c_[xs, top], np.c_[xs[::-1], bot[::-1]]])
        seg = dict(bone=b, local=Ql, world=_ccw(b.to_world(Ql)), xs=xs, top=top, bot=bot,
                   Dd=Dd[nm] * soft_k, Dp=Dp[nm] * soft_k)
        segs.append(seg)
    # ---------------- tendons & nail (local polygons) --------------------
    tendons = []
    for b, seg in zip(bones, segs):
        if b.name == "M":
            continue
        xs = seg["xs"]
        bb = np.interp(xs, b.prof["x"], b.prof["bot"])
        tb = np.interp(xs, b.prof["x"], b.prof["top"])
        if b.name == "P3":
            sel = xs < 0.35 * b.L
        else:
            sel = np.ones_like(xs, bool)
        xs_ = xs[sel]
        if len(xs_) < 4:
            continue
        gt = rng.uniform(0.3, 0.8)
        tht = rng.uniform(1.8, 3.2) * (0.6 if b.name == "P3" else 1.0)
        y0 = bb[sel] - gt
        Qf = np.vstack([np.c_[xs_, y0], np.c_[xs_[::-1], (y0 - tht)[::-1]]])
        tendons.append(_ccw(b.to_world(Qf)))
        sel2 = xs < (0.2 * b.L if b.name == "P3" else b.L + 1.5)
        xe = xs[sel2]
        if len(xe) > 4:  # extensor
            ge = rng.uniform(0.2, 0.5)
            the = rng.uniform(0.6, 1.2)
            y1 = tb[sel2] + ge
            Qe = np.vstack([np.c_[xe, y1], np.c_[xe[::-1], (y1 + the)[::-1]]])
            tendons.append(_ccw(b.to_world(Qe)))
    # nail on P3
    b3, s3 = bones[-1], segs[-1]
    tn = rng.uniform(0.45, 0.85)
    xn0 = max(0.25 * b3.L, 2.0)
    xcap = b3.env_xcap
    xn1 = xcap + rng.uniform(0.6, 2.2)
    xs = np.linspace(xn0, xn1, 80)
    topv = np.interp(np.minimum(xs, xcap), s3["xs"], s3["top"])
    slope = (np.interp(xcap, s3["xs"], s3["top"]) - np.interp(xcap - 1.0, s3["xs"], s3["top"])) / 1.0
    topv = topv + np.where(xs > xcap, (xs - xcap) * min(slope, 0.0) * 0.6, 0.0)
    fold = 0.9 * (1 - _smoothstep(xn0, xn0 + 2.5, xs))
    ytop = topv - 0.05 - fold
    Qn = np.vstack([np.c_[xs, ytop], np.c_[xs[::-1], (ytop - tn)[::-1]]])
    nail = _ccw(b3.to_world(Qn))
    # ---------------- extra bones ---------------------------------------
    extra = []
    if P["sesamoid"]:
        a = rng.uniform(1.3, 2.2)
        c = rng.uniform(0.9, 1.4)
        phi = np.linspace(0, 2 * np.pi, 80, endpoint=False)
        Ql = np.c_[a * np.cos(phi) + a, c * np.sin(phi)]
        Ql += _normals(_ccw(Ql)) * (0.04 * _snoise1d(rng, 80, 4))[:, None]
        xh = bM.prof["xh"]
        pos = bM.O + (xh - rng.uniform(0.5, 2.5)) * bM.u - (bM.L * 0 + spec["M"]["wh"] + rng.uniform(1.2, 2.2) + c) * bM.n
        sb = _Bone("ses", _ccw(Ql), pos - a * bM.u, bM.ang + rng.uniform(-0.3, 0.3), 2 * a,
                   _bone_params(rng, P, "ses"))
        extra.append(sb)
    if acro and rng.random() < 0.25:
        a = rng.uniform(0.9, 1.5)
        c = rng.uniform(0.6, 1.0)
        phi = np.linspace(0, 2 * np.pi, 70, endpoint=False)
        r = 1 + 0.12 * _snoise1d(rng, 70, 3)
        Ql = _ccw(np.c_[a * r * np.cos(phi) + a, c * r * np.sin(phi)])
        tipw = b3.O + (b3.L + rng.uniform(0.6, 1.5)) * b3.u + rng.uniform(-0.5, 0.3) * b3.n
        fb = _Bone("frag", Ql, tipw, b3.ang + rng.uniform(-0.5, 0.5), 2 * a, _bone_params(rng, P, "frag"))
        extra.append(fb)
    F = dict(bones=bones + extra, phal=bones, segs=segs, tendons=tendons, nail=nail,
             spec=spec, gaps=gaps, pulp_ext=pulp_ext, acro_f=acro_f)
    # chain coordinate helper: tip point
    F["tip"] = segs[-1]["world"][np.argmax(segs[-1]["local"][:, 0])]
    F["base"] = bones[1].O.copy()
    return F


def _add_second_finger(rng, P, F, env_main_world_pts):
    """Adjacent finger crossing the slice: soft-tissue sleeve + grazing bone."""
    bones = F["phal"]
    ref = bones[int(rng.integers(1, 3))]
    dang = rng.uniform(-0.45, 0.45)
    ang = ref.ang + dang
    u = np.array([np.cos(ang), np.sin(ang)])
    n = np.array([-np.sin(ang), np.cos(ang)])
    side = 1.0 if rng.random() < 0.5 else -1.0
    c0 = ref.O + 0.5 * ref.L * ref.u
    T2 = rng.uniform(5.5, 8.5)
    Ls = rng.uniform(55, 90)
    rel = env_main_world_pts - c0
    along = rel @ u
    perp = side * (rel @ n)
    sel = np.abs(along) < Ls / 2 + 3
    off = (perp[sel].max() if sel.any() else 10.0) + rng.uniform(0.8, 6.0) + T2
    centre = c0 + side * off * n + rng.uniform(-10, 10) * u
    xs = np.linspace(-Ls / 2, Ls / 2, 160)
    tt = xs / (Ls / 2)
    half = T2 * np.sqrt(np.clip(1 - np.abs(tt) ** 6, 0, 1)) * (1 + 0.06 * _snoise1d(rng, 160, 12, wrap=False))
    Ql = np.vstack([np.c_[xs, half], np.c_[xs[::-1], -half[::-1]]])
    env = _ccw(centre + Ql[:, :1] * u + Ql[:, 1:] * n)
    # grazing bone section
    Lb = Ls * rng.uniform(0.35, 0.6)
    hb = rng.uniform(0.8, 2.0)
    xb = np.linspace(0, Lb, 90)
    tb = xb / Lb
    hh = hb * np.sqrt(np.clip(1 - (2 * tb - 1) ** 8, 0.0, 1)) * (1 + 0.1 * _snoise1d(rng, 90, 6, wrap=False))
    hh = np.maximum(hh, 0.05)
    Qb = _ccw(np.vstack([np.c_[xb, hh], np.c_[xb[::-1], -hh[::-1]]]))
    Qb = _smooth_closed(_resample_closed(Qb, 0.1), 1.0)
    O = centre + (-Lb / 2 + rng.uniform(-5, 5)) * u + rng.uniform(-1.5, 1.5) * n
    gb = _Bone("graze", _ccw(Qb), O, ang, Lb, _bone_params(rng, P, "graze"))
    return env, gb


# =============================================================================
# world maps: envelope SDF, bone distance, soft-tissue HU
# =============================================================================

class _WorldMap:
    def __init__(self, pts, rw=0.125, margin=5.0):
        lo = pts.min(0) - margin
        hi = pts.max(0) + margin
        self.X0, self.Y0 = lo
        self.rw = rw
        self.nx = int(np.ceil((hi[0] - lo[0]) / rw))
        self.ny = int(np.ceil((hi[1] - lo[1]) / rw))

    def g(self, Pw):
        return np.c_[(Pw[:, 0] - self.X0) / self.rw, (Pw[:, 1] - self.Y0) / self.rw]

    def raster(self, Pw, ss=2):
        return _raster_full(self.g(Pw), self.ny, self.nx, ss)

    def raster_local(self, Pw, pad=0, ss=2):
        g = self.g(Pw)
        r = _raster(g, self.ny, self.nx, ss)
        return r

    def centres(self):
        X = self.X0 + (np.arange(self.nx) + 0.5) * self.rw
        Y = self.Y0 + (np.arange(self.ny) + 0.5) * self.rw
        return X, Y


def _sdf_from_mask(mask, rw):
    din = ndi.distance_transform_edt(mask)
    dout = ndi.distance_transform_edt(~mask)
    sdf = np.where(mask, -(din - 0.5), dout - 0.5).astype(np.float32) * rw
    return ndi.gaussian_filter(sdf, 0.8)


def _world_setup(rng, P, F):
    segs = F["segs"]
    pts = [s["world"][s["local"][:, 0] > s["bone"].L - 100] if s["bone"].name == "M" else s["world"] for s in segs]
    pts = np.vstack(pts + [F["nail"]])
    sf_env = None
    if P["second_finger"]:
        sf_env, gb = _add_second_finger(rng, P, F, pts)
        F["bones"].append(gb)
        F["sf_env"] = sf_env
        pts = np.vstack([pts, sf_env])
    Wm = _WorldMap(pts)
    env = np.zeros((Wm.ny, Wm.nx), bool)
    for s in segs:
        env |= Wm.raster(s["world"]) >= 0.5
    rc = rng.uniform(1.5, 3.0) / Wm.rw
    dil = ndi.distance_transform_edt(~env) <= rc
    env = ndi.distance_transform_edt(dil) > rc
    env |= Wm.raster(F["nail"]) >= 0.5
    Wm.env_main = env.copy()
    Wm.sf = np.zeros_like(env)
    if sf_env is not None:
        Wm.sf = Wm.raster(sf_env) >= 0.5
        Wm.sf &= ~ndi.binary_dilation(env, iterations=2)
        env = env | Wm.sf
    Wm.env = env
    Wm.sdf = _sdf_from_mask(env, Wm.rw)
    # bones
    bmask = np.zeros_like(env)
    bid = np.zeros(env.shape, np.int16)
    for i, b in enumerate(F["bones"]):
        m = Wm.raster(b.world) >= 0.5
        bmask |= m
        bid[m] = i + 1
    Wm.bmask = bmask
    d, ind = ndi.distance_transform_edt(~bmask, return_indices=True)
    Wm.bdist = (d * Wm.rw).astype(np.float32)
    Wm.bnear = bid[ind[0], ind[1]]
    Wm.occ = np.zeros_like(env)  # deposit exclusion zone
    Wm.dep = np.zeros_like(env)
    return Wm


def _soft_map(rng, P, F, Wm):
    """Compose soft-tissue HU map (skin, septated fat, tendons, nail)."""
    cf = P["c_fat"]
    depth = -Wm.sdf
    ny, nx = depth.shape
    skin_t = rng.uniform(1.0, 1.6) + 0.9 * P["sclero"]
    hu_skin = rng.uniform(55, 85)
    hu_fib = rng.uniform(30, 55)
    hu_fat = -rng.uniform(85, 110) * cf
    hu_tend = rng.uniform(75, 105)
    hu_nail = rng.uniform(110, 200)
    # fat lobules: band-pass noise thresholded to a regional fat fraction
    wn = rng.standard_normal((ny, nx)).astype(np.float32)
    s = rng.uniform(0.25, 0.5) / Wm.rw
    g = ndi.gaussian_filter(wn, s) - 0.6 * ndi.gaussian_filter(wn, 3 * s)
    g /= g.std() + 1e-6
    # region: nearest bone + side
    X, Y = Wm.centres()
    XX, YY = np.meshgrid(X.astype(np.float32), Y.astype(np.float32))
    frac = np.full((ny, nx), 0.45, np.float32)
    for i, b in enumerate(F["bones"]):
        sel = Wm.bnear == i + 1
        if not sel.any():
            continue
        xl, yl = b.to_local(XX[sel], YY[sel])
        if b.name == "P3":
            f = np.where(yl < 0, 0.7, 0.4)
        elif b.name in ("P1", "P2"):
            f = np.where(yl < 0, 0.58, 0.3)
        else:
            f = np.where(yl < 0, 0.6, 0.4)
        frac[sel] = f
    frac = ndi.gaussian_filter(frac, 2.0 / Wm.rw) * (1 - 0.55 * P["sclero"])
    thr = ndtri(1 - np.clip(frac, 0.02, 0.95))
    ff = np.clip((g - thr) / 0.5 + 0.5, 0, 1)
    sub = ff * hu_fat + (1 - ff) * hu_fib
    wsk = np.clip((skin_t - depth) / 0.25 + 0.5, 0, 1)
    soft = wsk * hu_skin + (1 - wsk) * sub
    peri = np.clip((0.6 - Wm.bdist) / 0.2 + 0.5, 0, 1) * (1 - wsk)
    soft = peri * hu_fib + (1 - peri) * soft
    tend = np.zeros_like(soft)
    for T in F["tendons"]:
        tend = np.maximum(tend, Wm.raster(T))
    tend *= (1 - wsk)
    soft = tend * hu_tend + (1 - tend) * soft
    nail = Wm.raster(F["nail"])
    soft = nail * hu_nail + (1 - nail) * soft
    lf = ndi.gaussian_filter(rng.standard_normal((ny, nx)).astype(np.float32), 3.0 / Wm.rw)
    soft += 6 * lf / (lf.std() + 1e-6)
    Wm.soft = soft.astype(np.float32)
    return dict(skin_t=skin_t, fat=hu_fat)


# =============================================================================
# calcinosis deposits
# =============================================================================

def _blob(rng, c, area, elong=1.0, irr=0.15, kmax=7, ang=None, n=None):
    if n is None:
        n = int(np.clip(12 * np.sqrt(area) + 24, 24, 160))
    phi = np.linspace(0, 2 * np.pi, n, endpoint=False)
    k = np.arange(2, kmax + 1)
    a = rng.normal(0, irr, len(k)) / k ** 1.1
    ps = rng.uniform(0, 2 * np.pi, len(k))
    r = np.exp((a[:, None] * np.cos(k[:, None] * phi[None] + ps[:, None])).sum(0))
    Q = np.c_[r * np.cos(phi) * np.sqrt(elong), r * np.sin(phi) / np.sqrt(elong)]
    if ang is None:
        ang = rng.uniform(0, np.pi)
    Q = Q @ _rot(ang).T
    Q *= np.sqrt(area / abs(_area(Q)))
    return _ccw(Q + c)


def _check_dep(Wm, polys, mode, P, gap_b, min_depth=0.3, bone_idx=None, F=None):
    """Validate deposit polygons against the world map.  Returns (ok, cells)."""
    cov = None
    for Q in polys:
        r = Wm.raster_local(Q)
        if r is None:
            return False, None
        c, r0, c0 = r
        if cov is None:
            cov = [c, r0, c0]
        else:
            # merge into common window
            R0 = min(cov[1], r0)
            C0 = min(cov[2], c0)
            R1 = max(cov[1] + cov[0].shape[0], r0 + c.shape[0])
            C1 = max(cov[2] + cov[0].shape[1], c0 + c.shape[1])
            A = np.zeros((R1 - R0, C1 - C0), np.float32)
            A[cov[1] - R0:cov[1] - R0 + cov[0].shape[0], cov[2] - C0:cov[2] - C0 + cov[0].shape[1]] = cov[0]
            sl = (slice(r0 - R0, r0 - R0 + c.shape[0]), slice(c0 - C0, c0 - C0 + c.shape[1]))
            A[sl] = np.maximum(A[sl], c)
            cov = [A, R0, C0]
    c, r0, c0 = cov
    sl = (slice(r0, r0 + c.shape[0]), slice(c0, c0 + c.shape[1]))
    m = c > 0.05
    if not m.any():
        return False, None
    # touching the world-map border -> reject
    if r0 == 0 or c0 == 0 or r0 + c.shape[0] >= Wm.ny or c0 + c.shape[1] >= Wm.nx:
        return False, None
    depth = -Wm.sdf[sl][m]
    if mode == "bulge":
        if np.median(depth) < 0.5 or depth.min() < -4.0:
            return False, None
    elif depth.min() < min_depth:
        return False, None
    if Wm.sf[sl][m].any() or Wm.occ[sl][m].any():
        return False, None
    bd = Wm.bdist[sl][m]
    if mode == "abut":
        inb = Wm.bmask[sl][m]
        near = Wm.bnear[sl][m]
        if bone_idx is not None and np.any((near != bone_idx + 1) & (bd < gap_b)):
            return False, None
        keep = (c * (~Wm.bmask[sl])).sum() / max(c.sum(), 1e-6)
        if keep < 0.5 or keep > 0.995 and bd.min() > 0.15:
            return False, None
        _ = inb
    else:
        if bd.min() < gap_b:
            return False, None
    return True, (m, sl, c)


def _commit_dep(Wm, cells, gap_d):
    m, sl, c = cells
    full = np.zeros_like(Wm.dep)
    full[sl] = m
    Wm.dep |= full
    # dilate locally by gap_d
    g = int(np.ceil(gap_d / Wm.rw)) + 2
    r0 = max(sl[0].start - g, 0)
    r1 = min(sl[0].stop + g, Wm.ny)
    c0 = max(sl[1].start - g, 0)
    c1 = min(sl[1].stop + g, Wm.nx)
    sub = full[r0:r1, c0:c1]
    d = ndi.distance_transform_edt(~sub) * Wm.rw
    Wm.occ[r0:r1, c0:c1] |= d <= gap_d


def _dep_intensity(rng, P, area, bone_cortex_ref, kind):
    u = rng.random()
    if P["dense_dep"] and rng.random() < 0.9:
        base = bone_cortex_ref * rng.uniform(0.9, 1.12)
        tex, rim = rng.uniform(0.0, 0.05), 0.0
    else:
        if u < 0.6:
            base = rng.uniform(900, 1800)
        elif u < 0.9 or area < 3.0:
            base = rng.uniform(450, 900)
        else:
            base = rng.uniform(250, 450)
        tex = rng.uniform(0.0, 0.25)
        rim = rng.uniform(0.15, 0.45) if (area > 6 and rng.random() < 0.3) else 0.0
    # keep small deposits visible after partial-volume / PSF loss
    s = np.hypot(*P["psf"]) / np.sqrt(2) + 0.35 * P["sp"]
    r = np.sqrt(area / np.pi)
    frac = 1 - np.exp(-r * r / (2 * s * s))
    base = max(base, min(380.0 / max(frac, 1e-3), 2400.0))
    return dict(base=base, tex=tex, rim=rim, lobe_var=rng.uniform(0.0, 0.15) if kind in ("mass", "blob") else 0.0)


def _place_deposits(rng, P, F, Wm):
    sp = P["sp"]
    gap_b = max(0.45, 2.5 * sp)
    gap_d = max(0.6, 3.2 * sp)
    min_area = max(0.2, 3.0 * sp * sp)
    min_th = max(0.4, 1.7 * sp)
    bones = F["bones"]
    names = [b.name for b in bones]
    # candidate centres with clinical location prior
    X, Y = Wm.centres()
    cand = (Wm.sdf < -0.5) & (~Wm.sf) & (Wm.bdist > gap_b)
    cand &= Wm.env_main
    idx = np.flatnonzero(cand)
    rr, cc = np.unravel_index(idx, cand.shape)
    px, py = X[cc], Y[rr]
    near = Wm.bnear.ravel()[idx] - 1
    depth = -Wm.sdf.ravel()[idx]
    w = np.full(idx.size, 0.3)
    for i, b in enumerate(bones):
        sel = near == i
        if not sel.any():
            continue
        xl, yl = b.to_local(px[sel], py[sel])
        t = xl / b.L
        if b.name == "P3":
            wi = 4.0 * np.where(t > 0.5, 1.5, 1.0) * np.where(yl < 0, 1.3, 1.0) * (2.0 if P["acro"] else 1.0)
        elif b.name == "P2":
            wi = np.where((yl > 0) & ((t < 0.2) | (t > 0.8)), 2.2, np.where(yl < 0, 1.2, 0.7))
        elif b.name == "P1":
            wi = np.where((yl > 0) & (t > 0.8), 2.2, np.where(yl < 0, 1.0, 0.55))
        elif b.name == "M":
            wi = np.where(t > 0.85, 0.35, np.where(t > 0.6, 0.08, 0.0))
        else:
            wi = np.full(sel.sum(), 0.5)
        w[sel] = wi
    w *= np.exp(-((depth - 1.8) / 3.0) ** 2) + 0.05
    w /= w.sum()
    centres = np.c_[px, py]
    cortex_ref = np.median([b.prm["cortex"] for b in bones if b.name in ("P1", "P2", "P3")]) / P["c_cal"]

    def pick():
        return centres[rng.choice(idx.size, p=w)] + rng.uniform(-0.5, 0.5, 2) * Wm.rw

    deps = []

    def add(polys, kind, area_nom, bone_idx=None, bulge=False):
        ip = _dep_intensity(rng, P, area_nom, cortex_ref, kind)
        deps.append(dict(polys=polys, kind=kind, bone_idx=bone_idx, bulge=bulge, **ip))

    # number and kinds of events
    u = rng.random()
    n_ev = 1 if u < 0.35 else (2 if u < 0.6 else (3 if u < 0.75 else int(rng.integers(4, 8))))
    kinds = ["blob", "speck", "cluster", "sheet", "tendon", "mass", "abut", "wrap"]
    pk = np.array([0.36, 0.15, 0.12, 0.11, 0.06, 0.08, 0.08, 0.04])
    ev = list(rng.choice(kinds, size=n_ev, p=pk / pk.sum()))
    if P["force_abut"] and not any(k in ("abut", "wrap") for k in ev):
        ev[0] = "abut" if rng.random() < 0.7 else "wrap"
    phal = [i for i, nm in enumerate(names) if nm in ("P1", "P2", "P3")]
    i3 = names.index("P3")
    for kind in ev:
        for attempt in range(40):
            if kind == "blob":
                area = float(np.exp(rng.uniform(np.log(1.0), np.log(25.0))))
                c = pick()
                nl = int(rng.integers(1, 4))
                polys = [_blob(rng, c, area / (1 + 0.35 * (nl - 1)), rng.uniform(1.0, 2.2), rng.uniform(0.08, 0.3))]
                r0 = np.sqrt(area / np.pi)
                for _ in range(nl - 1):
                    d = rng.uniform(0.4, 0.9) * r0
                    a = rng.uniform(0, 2 * np.pi)
                    polys.append(_blob(rng, c + d * np.array([np.cos(a), np.sin(a)]),
                                       area * rng.uniform(0.15, 0.4), rng.uniform(1.0, 1.8), 0.15))
                ok, cells = _check_dep(Wm, polys, "normal", P, gap_b)
                if ok:
                    _commit_dep(Wm, cells, gap_d)
                    add(polys, kind, area)
                    break
            elif kind == "speck":
                area = max(rng.uniform(0.2, 1.2), min_area)
                polys = [_blob(rng, pick(), area, rng.uniform(1.0, 1.6), 0.06, n=32)]
                ok, cells = _check_dep(Wm, polys, "normal", P, gap_b)
                if ok:
                    _commit_dep(Wm, cells, gap_d)
                    add(polys, kind, area)
                    break
            elif kind == "cluster":
                c = pick()
                Rc = rng.uniform(1.5, 4.0)
                nsp = int(rng.integers(3, 9))
                got = 0
                for _ in range(nsp * 6):
                    if got >= nsp:
                        break
                    a = rng.uniform(0, 2 * np.pi)
                    d = Rc * np.sqrt(rng.random())
                    area = max(rng.uniform(0.2, 0.9), min_area)
                    polys = [_blob(rng, c + d * np.array([np.cos(a), np.sin(a)]), area, rng.uniform(1.0, 1.5), 0.06, n=28)]
                    ok, cells = _check_dep(Wm, polys, "normal", P, gap_b)
                    if ok:
                        _commit_dep(Wm, cells, gap_d)
                        add(polys, "cluster", area)
                        got += 1
                if got >= 1:
                    break
            elif kind in ("sheet", "tendon"):
                bi = int(rng.choice(phal, p=[0.3, 0.35, 0.35])) if kind == "sheet" else int(rng.choice(phal[:2]))
                b = bones[bi]
                seg = F["segs"][names.index(b.name)] if b.name in ("M", "P1", "P2", "P3") else None
                ln = rng.uniform(3.0, 14.0)
                x0 = rng.uniform(0.05 * b.L, max(0.9 * b.L - ln, 0.06 * b.L))
                xs = np.linspace(x0, x0 + ln, max(12, int(ln / 0.15)))
                th = max(rng.uniform(0.4, 1.5), min_th)
                if kind == "sheet":
                    dorsal = rng.random() < 0.55
                    dlt = rng.uniform(0.5, 2.2) + th / 2
                    if dorsal:
                        yc = np.interp(xs, seg["xs"], seg["top"]) - dlt
                    else:
                        yc = np.interp(xs, seg["xs"], seg["bot"]) + dlt
                else:
                    yc = np.interp(xs, b.prof["x"], b.prof["bot"]) - rng.uniform(0.9, 2.4)
                yc = yc + 0.25 * _snoise1d(rng, len(xs), 8, wrap=False) * rng.uniform(0, 1)
                half = 0.5 * th * (0.65 + 0.35 * np.sin(np.pi * np.linspace(0.1, 0.9, len(xs)))) \
                    * (1 + 0.15 * _snoise1d(rng, len(xs), 5, wrap=False))
                half = np.maximum(half, 0.5 * min_th)
                C = b.to_world(np.c_[xs, yc])
                polys = [_sausage(C, half)]
                ok, cells = _check_dep(Wm, polys, "normal", P, gap_b, min_depth=0.25)
                if ok:
                    _commit_dep(Wm, cells, gap_d)
                    add(polys, kind, float(abs(_area(polys[0]))))
                    break
            elif kind == "mass":
                area = rng.uniform(20, 70)
                c = pick()
                r0 = np.sqrt(area / np.pi)
                nl = int(rng.integers(3, 7))
                polys = [_blob(rng, c, area * 0.45, rng.uniform(1.0, 1.8), 0.2)]
                for _ in range(nl):
                    d = rng.uniform(0.3, 0.8) * r0
                    a = rng.uniform(0, 2 * np.pi)
                    polys.append(_blob(rng, c + d * np.array([np.cos(a), np.sin(a)]),
                                       area * rng.uniform(0.12, 0.3), rng.uniform(1.0, 1.7), 0.2))
                ok, cells = _check_dep(Wm, polys, "bulge", P, gap_b)
                if ok:
                    _commit_dep(Wm, cells, gap_d)
                    add(polys, kind, area, bulge=True)
                    break
            elif kind == "abut":
                bi = int(rng.choice(phal, p=[0.3, 0.3, 0.4]))
                b = bones[bi]
                Ql = b.local
                if b.name == "P3":
                    sel = np.nonzero(Ql[:, 0] > 0.45 * b.L)[0]
                else:
                    sel = np.nonzero((Ql[:, 0] > 0.22 * b.L) & (Ql[:, 0] < 0.78 * b.L))[0]
                j = int(rng.choice(sel))
                nrm = _normals(Ql)[j]
                area = float(np.exp(rng.uniform(np.log(1.0), np.log(18.0))))
                r0 = np.sqrt(area / np.pi)
                cl = Ql[j] + nrm * r0 * rng.uniform(0.35, 0.95)
                cw = b.to_world(cl[None])[0]
                polys = [_blob(rng, cw, area, rng.uniform(1.0, 2.0), rng.uniform(0.08, 0.25))]
                ok, cells = _check_dep(Wm, polys, "abut", P, gap_b, bone_idx=bi)
                if ok:
                    _commit_dep(Wm, cells, gap_d)
                    add(polys, kind, area, bone_idx=bi)
                    break
            elif kind == "wrap":
                b = bones[i3]
                Ql = b.local
                nq = len(Ql)
                tipj = int(np.argmax(Ql[:, 0] + 0.3 * rng.standard_normal(nq)))
                ln = rng.uniform(3.0, 8.0)
                step = np.median(np.hypot(*np.diff(Ql, axis=0).T))
                hw = int(ln / step / 2)
                ii = (np.arange(tipj - hw, tipj + hw) + int(rng.integers(-hw, hw + 1))) % nq
                th = max(rng.uniform(0.5, 1.5), min_th)
                nrm = _normals(Ql)[ii]
                Cl = ndi.gaussian_filter1d(Ql[ii] + nrm * (th / 2 + rng.uniform(-0.35 * th, 0.15)), 2, axis=0, mode="nearest")
                half = 0.5 * th * (0.6 + 0.4 * np.sin(np.pi * np.linspace(0.05, 0.95, len(ii))))
                half = np.maximum(half, 0.5 * min_th)
                polys = [_sausage(b.to_world(Cl), half)]
                ok, cells = _check_dep(Wm, polys, "abut", P, gap_b, bone_idx=i3)
                if ok:
                    _commit_dep(Wm, cells, gap_d)
                    add(polys, kind, float(abs(_area(polys[0]))), bone_idx=i3)
                    break
    if not deps:  # fallback: a simple nodule in the deepest pulp tissue
        for attempt in range(200):
            area = rng.uniform(2.0, 8.0)
            polys = [_blob(rng, pick(), area, 1.2, 0.1)]
            ok, cells = _check_dep(Wm, polys, "normal", P, gap_b, min_depth=0.2)
            if ok:
                _commit_dep(Wm, cells, gap_d)
                add(polys, "blob", area)
                break
    if not deps:
        i = int(np.argmax(w))
        polys = [_blob(rng, centres[i], max(min_area, 1.0), 1.0, 0.05)]
        add(polys, "blob", 1.0)
    return deps


def _apply_bulges(rng, Wm, deps):
    if not any(d["bulge"] for d in deps):
        return False
    add = np.zeros_like(Wm.env)
    for d in deps:
        if not d["bulge"]:
            continue
        m = np.zeros_like(Wm.env)
        for Q in d["polys"]:
            m |= Wm.raster(Q) >= 0.3
        cover = rng.uniform(0.7, 1.6)
        dd = ndi.distance_transform_edt(~m) * Wm.rw
        add |= dd <= cover
    env = Wm.env | add
    rc = 2.0 / Wm.rw
    dil = ndi.distance_transform_edt(~env) <= rc
    env = (ndi.distance_transform_edt(dil) > rc) | env
    Wm.env = env
    Wm.env_main = Wm.env_main | add
    Wm.sdf = _sdf_from_mask(env, Wm.rw)
    return True


def _deposit_map(rng, d, res=0.04):
    pts = np.vstack(d["polys"])
    xmin, ymin = pts.min(0) - 0.3
    xmax, ymax = pts.max(0) + 0.3
    nx = int(np.ceil((xmax - xmin) / res))
    ny = int(np.ceil((ymax - ymin) / res))
    lobe = np.zeros((ny, nx), np.float32)
    mask = np.zeros((ny, nx), bool)
    for Q in d["polys"]:
        m = _raster_full((Q - [xmin, ymin]) / res, ny, nx, 2) >= 0.5
        f = 1 + d["lobe_var"] * rng.standard_normal()
        lobe = np.where(m & (lobe == 0), f, lobe)
        mask |= m
    lobe[lobe == 0] = 1.0
    depth = ndi.distance_transform_edt(mask).astype(np.float32) * res
    tn = ndi.gaussian_filter(rng.standard_normal((ny, nx)).astype(np.float32), rng.uniform(0.1, 0.35) / res)
    tn /= tn.std() + 1e-6
    hu = d["base"] * lobe * (1 + d["tex"] * tn) * (1 + d["rim"] * (np.exp(-depth / 0.3) - 0.5))
    if (~mask).any() and mask.any():
        _, ind = ndi.distance_transform_edt(~mask, return_indices=True)
        hu = hu[ind[0], ind[1]]
    d["map"] = hu.astype(np.float32)
    d["map_geom"] = (xmin, ymin, res)


# =============================================================================
# image window (field of view, orientation, size)
# =============================================================================

def _choose_window(rng, P, F, deps):
    sp = P["sp"]
    # orientation: finger chord direction -> image direction
    u = rng.random()
    if u < 0.5:
        phi = np.pi / 2 * (1 if rng.random() < 0.5 else -1) + rng.normal(0, np.deg2rad(9))
    elif u < 0.75:
        phi = (0.0 if rng.random() < 0.5 else np.pi) + rng.normal(0, np.deg2rad(9))
    else:
        phi = rng.uniform(-np.pi, np.pi)
    mir = 1.0 if rng.random() < 0.5 else -1.0
    Mm = np.diag([1.0, mir])
    chord = Mm @ (F["tip"] - F["base"])
    beta = phi - np.arctan2(chord[1], chord[0])
    A = _rot(beta) @ Mm
    tf = lambda Q: Q @ A.T
    margin = max(1.5, 5 * sp)
    dep_boxes = []
    for d in deps:
        q = tf(np.vstack(d["polys"]))
        dep_boxes.append(np.r_[q.min(0) - margin, q.max(0) + margin])
    dep_boxes = np.array(dep_boxes)
    lim = (_MAX_PX - 4) * sp
    # drop deposits until the must-region fits
    order = list(range(len(deps)))
    keep = order[:]
    while True:
        bb = dep_boxes[keep]
        lo = bb[:, :2].min(0)
        hi = bb[:, 2:].max(0)
        if (hi - lo <= lim).all() or len(keep) == 1:
            break
        ctr = dep_boxes[keep[0], :2]
        dist = [np.abs(dep_boxes[k, :2] - ctr).max() for k in keep]
        keep.pop(int(np.argmax(dist)))
    mlo, mhi = lo, hi
    # desired content
    if P["cutoff"]:
        wlo = mlo - rng.uniform(1, 10, 2)
        whi = mhi + rng.uniform(1, 10, 2)
    else:
        s_cut = rng.uniform(0.45, 1.7)
        pts = []
        for j, s in enumerate(F["segs"]):
            ch = j + s["local"][:, 0] / s["bone"].L
            pts.append(s["world"][ch >= s_cut])
        pts.append(F["nail"])
        if "sf_env" in F:
            gb = [b for b in F["bones"] if b.name == "graze"][0]
            pts.append(gb.world if rng.random() < 0.7 else F["sf_env"][::7])
        q = tf(np.vstack(pts))
        wlo = np.minimum(q.min(0), mlo) - rng.uniform(1, 10, 2)
        whi = np.maximum(q.max(0), mhi) + rng.uniform(1, 10, 2)
        k = int(rng.integers(0, 4))
        extra = rng.uniform(0, 20)
        if k < 2:
            wlo[k] -= extra
        else:
            whi[k - 2] += extra
    size = whi - wlo
    for ax in range(2):
        if size[ax] > lim:
            a0 = max(wlo[ax], mhi[ax] - lim)
            a1 = min(whi[ax] - lim, mlo[ax])
            s0 = rng.uniform(min(a0, a1), max(a0, a1))
            s0 = min(max(s0, mhi[ax] - lim), mlo[ax])
            wlo[ax], whi[ax] = s0, s0 + lim
        if (whi[ax] - wlo[ax]) / sp < _MIN_PX:
            ex = _MIN_PX * sp - (whi[ax] - wlo[ax]) + 1e-6
            f = rng.random()
            wlo[ax] -= f * ex
            whi[ax] += (1 - f) * ex
    if not P["cutoff"] and rng.random() < 0.6:  # typical export matrix, finger off-centre
        n_t = float(rng.choice([256, 320, 384, 448, 512, 512, 640, 768]))
        for ax in range(2):
            cur = (whi[ax] - wlo[ax]) / sp
            tgt = min(max(cur, min(n_t * rng.uniform(0.75, 1.0), 170.0 / sp)), _MAX_PX - 4)
            if tgt > cur:
                ex = (tgt - cur) * sp
                f = rng.random()
                wlo[ax] -= f * ex
                whi[ax] += (1 - f) * ex
    if rng.random() < 0.35:  # square image
        s = max(whi - wlo)
        if s <= lim:
            for ax in range(2):
                ex = s - (whi[ax] - wlo[ax])
                f = rng.random()
                wlo[ax] -= f * ex
                whi[ax] += (1 - f) * ex
    Wpx = int(np.clip(np.ceil((whi[0] - wlo[0]) / sp), _MIN_PX, _MAX_PX))
    Hpx = int(np.clip(np.ceil((whi[1] - wlo[1]) / sp), _MIN_PX, _MAX_PX))
    o = -wlo
    return dict(A=A, o=o, H=Hpx, W=Wpx, keep=keep, phi=phi, mir=mir)


# =============================================================================
# rendering
# =============================================================================

def _render(rng, P, F, Wm, deps, win):
    sp = P["sp"]
    H, W = win["H"], win["W"]
    u = int(np.clip(np.ceil(sp / 0.16), 1, 4))
    while u > 1 and max(H, W) * u > 1500:
        u -= 1
    so = sp / u
    Ho, Wo = H * u, W * u
    A, o = win["A"], win["o"]
    Ai = np.linalg.inv(A)

    def w2g(Q, cell):
        return (Q @ A.T + o) / cell

    # world coordinates of object-grid pixel centres
    xi = ((np.arange(Wo) + 0.5) * so - o[0]).astype(np.float32)
    yi = ((np.arange(Ho) + 0.5) * so - o[1]).astype(np.float32)
    XW = Ai[0, 0] * xi[None, :] + Ai[0, 1] * yi[:, None]
    YW = Ai[1, 0] * xi[None, :] + Ai[1, 1] * yi[:, None]
    # soft tissue
    ci = (XW - Wm.X0) / Wm.rw - 0.5
    ri = (YW - Wm.Y0) / Wm.rw - 0.5
    sdf = ndi.map_coordinates(Wm.sdf, [ri, ci], order=1, mode="nearest")
    e = np.clip(0.5 - sdf / so, 0, 1)
    soft = ndi.map_coordinates(Wm.soft, [ri, ci], order=1, mode="nearest")
    air = -1000.0 + 3.0 * rng.standard_normal()
    hu = air + (soft - air) * e
    del sdf, ri, ci
    # bones
    bc = np.zeros((Ho, Wo), np.float32)
    bsum = np.zeros((Ho, Wo), np.float32)
    for b in F["bones"]:
        r = _raster(w2g(b.world, so), Ho, Wo, 4)
        if r is None:
            continue
        c, r0, c0 = r
        sl = (slice(r0, r0 + c.shape[0]), slice(c0, c0 + c.shape[1]))
        m = c > 0
        if not m.any():
            continue
        if not hasattr(b, "map"):
            _bone_map(rng, b, 0.08 if b.name == "M" else 0.06)
        xl, yl = b.to_local(XW[sl][m], YW[sl][m])
        xmin, ymin, res = b.map_geom
        v = ndi.map_coordinates(b.map, [(yl - ymin) / res - 0.5, (xl - xmin) / res - 0.5], order=1, mode="nearest")
        bc[sl] += c
        tmp = np.zeros_like(c)
        tmp[m] = c[m] * v
        bsum[sl] += tmp
    bc = np.minimum(bc, 1.0)
    hu = hu * (1 - bc) + bsum
    # deposits: fine-grid coverage minus bone
    f2 = int(np.ceil(8 / u))
    Fz = u * f2
    dc = np.zeros((Ho, Wo), np.float32)
    dsum = np.zeros((Ho, Wo), np.float32)
    dep_px = []
    for k, d in enumerate(deps):
        q = w2g(np.vstack(d["polys"]), sp)
        c0 = int(np.floor(q[:, 0].min())) - 1
        r0 = int(np.floor(q[:, 1].min())) - 1
        c1 = int(np.ceil(q[:, 0].max())) + 1
        r1 = int(np.ceil(q[:, 1].max())) + 1
        c0, r0 = max(c0, 0), max(r0, 0)
        c1, r1 = min(c1, W), min(r1, H)
        nh, nw = r1 - r0, c1 - c0
        fine = np.zeros((nh * Fz, nw * Fz), np.float32)
        for Q in d["polys"]:
            g = (w2g(Q, sp) - [c0, r0]) * Fz
            fine = np.maximum(fine, _raster_full(g, nh * Fz, nw * Fz, 2))
        bf = np.zeros_like(fine)
        for b in F["bones"]:
            g = (w2g(b.world, sp) - [c0, r0]) * Fz
            if g[:, 0].max() < 0 or g[:, 1].max() < 0 or g[:, 0].min() > nw * Fz or g[:, 1].min() > nh * Fz:
                continue
            bf += _raster_full(g, nh * Fz, nw * Fz, 2)
        fine *= 1 - np.minimum(bf, 1)
        d["area"] = float(fine.sum() * (sp / Fz) ** 2)
        cobj = fine.reshape(nh * u, f2, nw * u, f2).mean((1, 3))
        cpx = fine.reshape(nh, Fz, nw, Fz).mean((1, 3))
        dep_px.append((cpx, r0, c0))
        sl = (slice(r0 * u, r1 * u), slice(c0 * u, c1 * u))
        m = cobj > 0
        _deposit_map(rng, d)
        xmin, ymin, res = d["map_geom"]
        v = ndi.map_coordinates(d["map"], [(YW[sl][m] - ymin) / res - 0.5, (XW[sl][m] - xmin) / res - 0.5],
                                order=1, mode="nearest")
        dc[sl] += cobj
        tmp = np.zeros_like(cobj)
        tmp[m] = cobj[m] * v * P["c_cal"]
        dsum[sl] += tmp
    dc = np.minimum(dc, 1.0)
    hu = hu * (1 - dc) + dsum
    del XW, YW
    # PSF and detector integration
    s_r = P["psf"][0] / so
    s_c = P["psf"][1] / so
    hu = ndi.gaussian_filter(hu, (s_r, s_c), truncate=3.0)
    if u > 1:
        hu = hu.reshape(H, u, W, u).mean((1, 3))
        bcp = bc.reshape(H, u, W, u).mean((1, 3))
        ep = e.reshape(H, u, W, u).mean((1, 3))
    else:
        bcp, ep = bc, e
    return hu.astype(np.float32), bcp, ep, dep_px


def _dct_jpeg(v, q, rng):
    """Crude JPEG luminance quantisation on 8x8 blocks (v: 0..255 float)."""
    Q50 = np.array([
        [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], float)
    s = 5000.0 / q if q < 50 else 200.0 - 2 * q
    Qt = np.clip(np.floor((Q50 * s + 50) / 100), 1, 255)
    H, W = v.shape
    Hp, Wp = -(-H // 8) * 8, -(-W // 8) * 8
    x = np.pad(v, ((0, Hp - H), (0, Wp - W)), mode="edge") - 128.0
    b = x.reshape(Hp // 8, 8, Wp // 8, 8).transpose(0, 2, 1, 3)
    c = sfft.dctn(b, axes=(2, 3), norm="ortho")
    c = np.round(c / Qt) * Qt
    y = sfft.idctn(c, axes=(2, 3), norm="ortho").transpose(0, 2, 1, 3).reshape(Hp, Wp)
    return np.clip(np.round(y[:H, :W] + 128.0), 0, 255)


def _acquire(rng, P, img, bcp, ep, notes):
    """Pixel-level artefacts, noise, kernel and export."""
    H, W = img.shape
    sp = P["sp"]
    dense = np.clip(bcp, 0, 1)
    # motion (ghosting or directional blur)
    if P["motion"]:
        if rng.random() < 0.5:
            dmm = rng.uniform(0.6, 2.0)
            a = rng.uniform(0, 2 * np.pi)
            al = rng.uniform(0.12, 0.3)
            img = (1 - al) * img + al * ndi.shift(img, (dmm / sp * np.sin(a), dmm / sp * np.cos(a)), order=1, mode="nearest")
            notes.append("motion ghost %.1fmm" % dmm)
        else:
            ln = max(2, int(round(rng.uniform(0.8, 2.5) / sp)))
            a = rng.uniform(0, np.pi)
            k = np.zeros((2 * ln + 1, 2 * ln + 1))
            for t in np.linspace(-ln / 2, ln / 2, 4 * ln + 1):
                k[int(round(ln + t * np.sin(a))), int(round(ln + t * np.cos(a)))] += 1
            img = ndi.convolve(img, k / k.sum(), mode="nearest")
            notes.append("motion blur")
    # beam hardening: dark halo in soft tissue near dense bone
    bh = rng.uniform(0, 45)
    if bh > 3:
        halo = ndi.gaussian_filter(dense, rng.uniform(0.6, 1.5) / sp)
        img = img - bh * halo * ep * (1 - dense)
    # row-aligned streaks (scanner z = image rows) through dense rows
    rowd = dense.sum(1) * sp
    rown = rowd / (rowd.max() + 1e-6)
    if P["streaks"] and rowd.max() > 0:
        ns = int(rng.integers(2, 9))
        p = rown + 1e-3
        rows = rng.choice(H, size=ns, p=p / p.sum())
        cols = np.arange(W)
        for r in rows:
            amp = rng.uniform(25, 110) * (1 if rng.random() < 0.4 else -1)
            cc = np.average(cols, weights=dense[r] + 1e-6)
            lat = np.exp(-np.abs(cols - cc) * sp / rng.uniform(8, 40))
            rr = np.arange(max(0, r - 4), min(H, r + 5))
            prof = np.exp(-0.5 * ((rr - r) / rng.uniform(0.5, 1.2)) ** 2) * np.where((rr - r) % 2, -0.5, 1.0)
            img[rr] += amp * prof[:, None] * lat[None, :]
        notes.append("streaks")
    # correlated noise
    sig = P["noise"]
    wn = rng.standard_normal((H, W)).astype(np.float32)
    ns = rng.uniform(0.7, 1.4) if P["kernel"] == "soft" else rng.uniform(0.35, 0.7)
    aniso = P["psf"][0] / P["psf"][1]
    nz = ndi.gaussian_filter(wn, (ns * aniso ** 0.5, ns))
    if P["kernel"] != "soft":
        nz = nz - 0.5 * ndi.gaussian_filter(wn, (2.5 * ns * aniso ** 0.5, 2.5 * ns))
    nz /= nz.std() + 1e-6
    starve = 1 + rng.uniform(0, 0.7) * rown[:, None]
    img = img + sig * starve * nz
    # reconstruction kernel
    if P["kernel"] == "sharp":
        a = rng.uniform(0.3, 0.7)
        img = img + a * (img - ndi.gaussian_filter(img, rng.uniform(0.5, 0.9) / sp))
    elif P["kernel"] == "ringing":
        a = rng.uniform(0.8, 1.5)
        img = img + a * (img - ndi.gaussian_filter(img, rng.uniform(0.35, 0.7) / sp))
    img = np.clip(img, -1024, 3071)
    # export
    if P["export"] != "hu":
        v = np.clip(np.round((img + 300.0) / 1500.0 * 255.0), 0, 255)
        if P["export"] == "jpeg":
            v = _dct_jpeg(v, P["jpeg_q"], rng)
        img = v * (1500.0 / 255.0) - 300.0
    return img.astype(np.float32)


def _overlays(rng, P, img, bone, deps_lab, notes):
    H, W = img.shape
    sp = P["sp"]
    protect = ndi.binary_dilation(bone | (deps_lab > 0), iterations=3)
    dep_zone = ndi.binary_dilation(deps_lab > 0, iterations=max(3, int(1.0 / sp)))
    exported = P["export"] != "hu"
    if P["pad"]:
        if exported:
            pv = -300.0
        else:
            pv = float(rng.choice([-1024.0, -2048.0, 0.0, -3024.0], p=[0.45, 0.35, 0.1, 0.1]))
        if rng.random() < 0.4:
            yy, xx = np.mgrid[0:H, 0:W]
            cy, cx = H / 2 + rng.uniform(-0.1, 0.1) * H, W / 2 + rng.uniform(-0.1, 0.1) * W
            R = rng.uniform(0.5, 0.62) * np.hypot(H, W)
            pm = (yy - cy) ** 2 + (xx - cx) ** 2 > R * R
        else:
            pm = np.zeros((H, W), bool)
            for _ in range(int(rng.integers(1, 3))):
                side = int(rng.integers(0, 4))
                wpx = int(rng.uniform(0.04, 0.16) * (H if side < 2 else W))
                if side == 0:
                    pm[:wpx] = True
                elif side == 1:
                    pm[H - wpx:] = True
                elif side == 2:
                    pm[:, :wpx] = True
                else:
                    pm[:, W - wpx:] = True
        if not (pm & dep_zone).any() and pm.any():
            img[pm] = pv
            bone &= ~pm
            notes.append("padding %d" % pv)
    if P["text"]:
        val = 1200.0 if exported else float(rng.choice([3071.0, 2000.0, 1500.0]))
        sc = max(1, int(round(min(H, W) / rng.uniform(140, 260))))
        kev = P["kev"]
        pool = ["SAG", "R", "L", "W:1500 L:450", "DE %dKEV" % kev if kev else "DE MIX 0.6",
                "SE:%d IM:%d" % (rng.integers(2, 9), rng.integers(20, 300)), "HAND", "DECT",
                "SL 0.75MM", "KERNEL %s" % ("SOFT" if P["kernel"] == "soft" else "SHARP")]
        n = int(rng.integers(1, 4))
        corners = list(rng.permutation(4))
        drawn = 0
        for s in rng.choice(pool, size=n, replace=False):
            bm = _text_bitmap(str(s), sc)
            h, w = bm.shape
            if h + 8 > H or w + 8 > W:
                continue
            for cnr in corners:
                r0 = 4 if cnr < 2 else H - h - 4
                c0 = 4 if cnr % 2 == 0 else W - w - 4
                sl = (slice(r0, r0 + h), slice(c0, c0 + w))
                if not protect[sl].any():
                    img[sl][bm] = val
                    protect[sl] = True
                    corners.remove(cnr)
                    drawn += 1
                    break
        # scale bar
        if rng.random() < 0.5:
            L = int(round(10.0 / sp))
            if L + 20 < W:
                r0 = H - 12 - 3 * sc
                for c0 in (10, W - L - 10):
                    sl = (slice(r0 - 3 * sc, r0 + sc), slice(c0, c0 + L))
                    if not protect[sl].any():
                        img[r0:r0 + sc, c0:c0 + L] = val
                        for t in range(0, L + 1, max(1, L // 10)):
                            img[r0 - 2 * sc:r0, min(c0 + t, c0 + L - 1)] = val
                        protect[sl] = True
                        drawn += 1
                        break
        if drawn:
            notes.append("burnt-in text")
    return img, bone


# =============================================================================
# public entry point
# =============================================================================

def make_case(seed: int) -> dict:
    rng = np.random.default_rng([int(seed), 0x6E47])
    P = _sample_params(rng)
    F = _build_finger(rng, P)
    Wm = _world_setup(rng, P, F)
    deps = _place_deposits(rng, P, F, Wm)
    bulged = _apply_bulges(rng, Wm, deps)
    _soft_map(rng, P, F, Wm)
    win = _choose_window(rng, P, F, deps)
    deps = [deps[k] for k in sorted(win["keep"])]
    img, bcp, ep, dep_px = _render(rng, P, F, Wm, deps, win)
    H, W = img.shape
    bone = bcp >= 0.5
    # deposit labels
    lab = np.zeros((H, W), np.int32)
    areas, kinds = [], []
    k = 0
    struct8 = np.ones((3, 3), bool)
    for d, (cpx, r0, c0) in zip(deps, dep_px):
        sl = (slice(r0, r0 + cpx.shape[0]), slice(c0, c0 + cpx.shape[1]))
        m = (cpx >= 0.5) & ~bone[sl] & (lab[sl] == 0)
        if not m.any():
            cc = np.where(bone[sl] | (lab[sl] > 0), -1, cpx)
            j = np.unravel_index(np.argmax(cc), cc.shape)
            if cc[j] <= 0.0:
                continue
            m[j] = True
        L_, n = ndi.label(m, struct8)
        area = d["area"]
        if n > 1:
            sums = ndi.sum(cpx, L_, index=np.arange(1, n + 1))
            keepc = int(np.argmax(sums)) + 1
            m = L_ == keepc
            zone = ndi.binary_dilation(m, struct8)
            area = float((cpx * zone).sum() * P["sp"] ** 2)
        k += 1
        lab[sl][m] = k
        areas.append(area)
        kinds.append(d["kind"])
    notes = []
    img = _acquire(rng, P, img, bcp, ep, notes)
    img, bone = _overlays(rng, P, img, bone, lab, notes)
    # seeds: brightest interior pixel of each deposit in the final image
    sm = ndi.gaussian_filter(img, 0.7)
    seeds = []
    for i in range(1, k + 1):
        m = lab == i
        rr, cc = np.nonzero(m)
        r0, r1, c0, c1 = rr.min(), rr.max() + 1, cc.min(), cc.max() + 1
        mm = m[r0:r1, c0:c1]
        inner = ndi.distance_transform_edt(np.pad(mm, 1))[1:-1, 1:-1]
        score = sm[r0:r1, c0:c1] + 25.0 * np.minimum(inner, 3.0)
        score[~mm] = -np.inf
        j = np.unravel_index(np.argmax(score), score.shape)
        seeds.append((int(j[0] + r0), int(j[1] + c0)))
    # notes
    from collections import Counter
    kc = Counter(kinds)
    tags = [t for t, f in (("osteopenic", P["osteopenic"]), ("FOV-cut", P["cutoff"]),
                           ("bone-dense deposits", P["dense_dep"]), ("low-dose", P["lowdose"]),
                           ("adjacent finger", P["second_finger"]), ("acro-osteolysis", P["acro"]),
                           ("erosions", P["erosion"]), ("narrow joints", P["narrow"]),
                           ("sesamoid", P["sesamoid"]), ("skin bulge", bulged)) if f]
    en = "DECT mixed" if P["mode"] == "mixed" else "VMI %d keV" % P["kev"]
    note = ("G: %s finger, %s; %dx%d px @ %.3f mm; kernel %s, noise %.0f HU, export %s%s; "
            "tip dir %.0f deg%s; flex MCP/PIP/DIP %.0f/%.0f/%.0f; deposits %s; %s%s" % (
                P["digit"], en, H, W, P["sp"], P["kernel"], P["noise"], P["export"],
                (" q%d" % P["jpeg_q"]) if P["export"] == "jpeg" else "",
                np.rad2deg(win["phi"]) % 360, " mirrored" if win["mir"] < 0 else "",
                *P["flex"], {str(a): b for a, b in kc.items()}, ", ".join(tags) if tags else "ordinary",
                ("; " + ", ".join(notes)) if notes else ""))
    return dict(hu=img.astype(np.float32), spacing_mm=float(P["sp"]), bone=bone.astype(bool),
                deposits=lab, areas_mm2=[float(a) for a in areas], seeds=seeds, notes=note)
