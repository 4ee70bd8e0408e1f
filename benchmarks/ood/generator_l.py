"""Generator L: synthetic sagittal dual-energy CT finger reformats with calcinosis.

Independent out-of-distribution test-data generator for a calcinosis-cutis
measurement tool (U-Net phalanx segmentation, bone subtraction, seeded region
growing from a click on each deposit).  ``make_case(seed)`` is deterministic in
``seed`` and returns a dict with ``hu``, ``spacing_mm``, ``bone``, ``deposits``,
``areas_mm2``, ``seeds`` and ``notes`` (see ``make_case``).

Design
------
Geometry is analytic and lives in a "scene" frame in millimetres (x = along
the ray from the metacarpal towards the fingertip, y = dorsal).  A similarity
transform (rotation + optional mirror + translation) maps the scene onto the
pixel grid, so every mask is evaluated exactly at pixel centres of the
noiseless geometry (no resampling of masks ever happens).

* Anatomy.  A kinematic chain metacarpal -> proximal -> (middle) -> distal
  phalanx; thumbs have only two phalanges (15 % of cases).  Each phalanx is a
  signed-distance solid: flared base with a concave articular surface that is
  congruent with the previous head (joint gap 0.8-1.8 mm, narrowed to
  0.2-0.6 mm in 25 % of cases), a waisted shaft with slight dorsal bow, a
  round condylar head or, for the distal phalanx, an ungual tuft (resorbed /
  acro-osteolysis in ~15 %).  Cortex from the SDF depth, trabecular texture in
  the medulla.  Size scale 0.55-0.75 (child, with open physes, ~8 %) up to
  ~1.3 (large hand); digit-specific lengths.  Flexed fingers (25 %: MCP up to
  60 deg, PIP up to 80 deg, DIP up to 50 deg) otherwise near straight.
  Osteopenia (30 %: thin, less dense cortex, pale medulla), marginal
  erosions (20 %), sesamoids (thumb ~90 %, other rays ~12 %), small
  ossicles (6 %), a neighbouring finger with its own bone (~20 %, often a
  faint patchy partial-volume slice), thick-slab "edge of bone" slices of a
  phalanx that look faint and patchy (~15 %).  Soft tissue is a smooth union
  of tapered capsules (palm, each phalanx, fingertip pulp) with skin, fat
  lobules, flexor/extensor tendons, nail plate, palmar skin creases.
* Confounders (never labelled as bone or deposit): calcified digital
  arteries (15 %, dotted / tram-track), tendons, nail, skin folds,
  foam cushion and table plate (45 %), a metal ring on the proximal phalanx
  (7 %, with metal streaks).
* Deposits.  10 % of cases have none; otherwise 1 + Poisson(2.2) (and 10 %
  "speckled" cases with 4-10 extra specks).  Shapes: specks (0.04-1 mm2,
  sub-pixel ones get their nearest pixel), lobulated nodules (1-30 mm2,
  some with dense rim), curved sheets (6-95 mm2 drawn, clipped by bone and skin) and
  conglomerates of fused blobs (15-95 mm2 drawn).  Sites: fingertip pulp, tip, subungual, periarticular,
  juxtacortical (moulded onto the cortex: touching bone pixels but never
  overlapping them), subcutaneous.  Densities 250-450 HU (faint, 20 %),
  450-1400 HU, 1400-3000 HU (dense, 25 %) at 70 keV.  Deposits are separated
  from each other by >= 2 pixels, lie inside the skin, and each label is a
  single 4-connected component, at least 0.6 mm + half a pixel inside the
  skin.  Outside the juxtacortical class 75 % of deposits are kept one pixel
  short of the cortex (near-miss cases); the rest may touch it.
  ``areas_mm2`` = pixel count x pixel area (sub-pixel specks: one pixel).
  The seed is the densest point (smoothed noiseless density) of the deposit.
  Visibility rule: a reader only clicks what is visible, so each deposit's
  blurred noiseless contrast must reach max(150 HU, 2.5 x noise SD) and its
  absolute value soft tissue + that margin; weaker ones are brightened,
  and ones that cannot be (sub-pixel specks under smooth kernels) are not
  drawn at all (neither in the image nor in the truth).
* Physics.  Two material channels (non-calcium tissue HU and calcium
  excess HU) plus metal.  DECT virtual monochromatic images at 40-140 keV
  (80 %; calcium scaled x2.3 at 40 keV ... x0.53 at 140 keV, fat more
  negative at low keV, noise x1.75 at 40 keV) or conventional 120 kVp (20 %).
  Kernels: smooth (PSF sigma 0.45-0.75 mm, blotchy low-noise), standard,
  sharp bone kernels (PSF 0.15-0.3 mm, unsharp-mask overshoot/undershoot
  ringing, 30-110 HU fine-grained noise).  Anisotropic through-plane (z)
  blur and noise correlation of the sagittal reformat.  Thick slabs
  (1.5-3.5 mm, 25 %) attenuate small deposits (through-plane partial volume).
  Beam-hardening dark streaks (with bright flanks) between dense structures,
  metal streaks from rings.  8-bit re-expanded window exports (7 %:
  quantised, clipped to [-300, 1200] HU).  HU calibration offset, final
  clip [-1024, 3071].
* Field of view.  Pixel spacing 0.1-0.6 mm (square), 200-700 px a side,
  not square.  28 % of cases are deliberately shifted/shrunk towards
  cutting the finger and very fine spacings also cut it naturally; a case
  counts as cut off when a phalanx or the fingertip touches the border
  (the metacarpal shaft leaving the image is normal and not counted).  Orientation: tip left/right/up/down with +-25 deg tilt,
  dorsal side either way.

Measured over seeds 0-299: 3.2 deposits per case (max 13), 10 % with none,
23 % cut off, 25 % of deposits touching bone, areas 0.03-81 mm2 (median
2.8; 36 % under 1 mm2, 7 % over 30 mm2); 0.04 s per case on average.

Self-check: ``python generator_l.py [n_cases]`` asserts the interface over
n cases (default 20), prints summary rates and writes
/tmp/gen_l_preview_*.png (window 1500 / level 450; left raw, right with
bone in blue, deposits in red, seeds in green).
"""

import struct
import sys
import time
import zlib

import numpy as np
from scipy import ndimage as ndi

# ---------------------------------------------------------------- physics
_KEV = np.array([40, 45, 50, 55, 60, 65, 70, 80, 90, 100, 120, 140], float)
_CA = np.array([2.30, 1.95, 1.65, 1.43, 1.26, 1.12, 1.00, 0.84, 0.74, 0.67, 0.58, 0.53])
_NZ = np.array([1.75, 1.45, 1.28, 1.16, 1.08, 1.03, 1.00, 0.97, 0.96, 0.96, 0.98, 1.02])
_KEV_CHOICES = [40, 45, 50, 55, 60, 65, 70, 70, 70, 70, 80, 90, 100, 120, 140]
_CROSS = ndi.generate_binary_structure(2, 1)
_SQUARE = ndi.generate_binary_structure(2, 2)


def _u(rng, a, b):
    return float(rng.uniform(a, b))


def _logu(rng, a, b):
    return float(np.exp(rng.uniform(np.log(a), np.log(b))))


def _rot(d, a):
    c, s = np.cos(a), np.sin(a)
    return np.array([d[0] * c - d[1] * s, d[0] * s + d[1] * c])


def _frac(sdf, s):
    """Anti-aliased occupancy of a pixel from a signed distance (mm)."""
    return np.clip(0.5 - sdf / s, 0.0, 1.0)


def _smin(a, b, k):
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def _local(qx, qy, O, d):
    px = qx - O[0]
    py = qy - O[1]
    return px * d[0] + py * d[1], -px * d[1] + py * d[0]


def _capsule(qx, qy, A, B, rA, rB):
    bx, by = B[0] - A[0], B[1] - A[1]
    l2 = max(bx * bx + by * by, 1e-9)
    px = qx - A[0]
    py = qy - A[1]
    t = np.clip((px * bx + py * by) / l2, 0.0, 1.0)
    dx = px - t * bx
    dy = py - t * by
    return np.sqrt(dx * dx + dy * dy) - (rA + t * (rB - rA))


def _lowfreq(rng, shape, cell_px):
    """Smooth unit-variance random field with features ~cell_px pixels."""
    cell_px = max(cell_px, 2.0)
    h = int(np.ceil(shape[0] / cell_px)) + 2
    w = int(np.ceil(shape[1] / cell_px)) + 2
    g = ndi.gaussian_filter(rng.standard_normal((h, w)), 0.7)
    out = ndi.zoom(g, (shape[0] / h, shape[1] / w), order=1)
    out = out[: shape[0], : shape[1]]
    if out.shape != tuple(shape):
        out = np.pad(out, ((0, shape[0] - out.shape[0]), (0, shape[1] - out.shape[1])), mode="edge")
    out = out - out.mean()
    return (out / (out.std() + 1e-6)).astype(np.float32)


# ---------------------------------------------------------------- bones
def _make_bone(role, O, d, L, hb, hs, hh, ct, head="round", ta=0.0, tb=0.0, Rc=None, bow=0.0):
    d = np.asarray(d, float)
    d = d / np.linalg.norm(d)
    if Rc is not None:
        hb = min(hb, 0.93 * Rc)
    b = dict(kind="long", role=role, O=np.asarray(O, float), d=d, L=L, hb=hb, hs=hs, hh=hh,
             ct=ct, head=head, ta=ta, tb=tb, Rc=Rc, bow=bow, eros=[], phys=[], faint=None)
    if head == "round":
        b["uh"] = L - hh
        b["hend"] = 0.85 * hh
    else:
        b["uh"] = L - ta
        b["hend"] = max(hs, 0.8 * tb)
    b["dc"] = 0.0 if Rc is None else Rc - np.sqrt(max(Rc * Rc - hb * hb, 0.0))
    b["rad"] = max(hb, hh, tb, hs) + 1.0
    return b


def _make_ellipse_bone(role, C, d, a, bb, ct):
    d = np.asarray(d, float)
    d = d / np.linalg.norm(d)
    return dict(kind="ellipse", role=role, O=np.asarray(C, float), d=d, a=a, bb=bb, ct=ct,
                faint=None, rad=max(a, bb) + 1.0, L=0.0)


def _bone_profile(u, b):
    L, hs, hb, uh, hend = b["L"], b["hs"], b["hb"], b["uh"], b["hend"]
    w0 = np.exp(-(np.maximum(u, 0.0) / (0.2 * L)) ** 2)
    w1 = np.exp(-(np.minimum(u - uh, 0.0) / (0.22 * L)) ** 2)
    return hs + (hb - hs) * w0 + (hend - hs) * w1


def _bone_sdf(u, v, b):
    if b["kind"] == "ellipse":
        return (np.hypot(u / b["a"], v / b["bb"]) - 1.0) * min(b["a"], b["bb"])
    L, uh = b["L"], b["uh"]
    hw = _bone_profile(u, b)
    bow = b["bow"] * np.sin(np.pi * np.clip(u / L, 0.0, 1.0))
    tube = np.maximum(np.abs(v - bow) - hw, np.maximum(-u - b["dc"], u - uh))
    if b["head"] == "round":
        head = np.hypot(u - uh, v) - b["hh"]
    else:
        head = (np.hypot((u - uh) / b["ta"], v / b["tb"]) - 1.0) * min(b["ta"], b["tb"])
    sdf = np.minimum(tube, head)
    if b["Rc"] is not None:
        sdf = np.maximum(sdf, b["Rc"] - np.hypot(u + b["Rc"], v))
    for (eu, ev, er) in b["eros"]:
        sdf = np.maximum(sdf, er - np.hypot(u - eu, v - ev))
    for (pu, pw) in b["phys"]:
        sdf = np.maximum(sdf, pw / 2.0 - np.abs(u - pu))
    return sdf


def _bone_points(b):
    if b["kind"] == "ellipse":
        return [b["O"]]
    return [b["O"] - b["dc"] * b["d"], b["O"] + b["L"] * b["d"], b["O"] + 0.5 * b["L"] * b["d"]]


# ---------------------------------------------------------------- deposits
def _dep_params(rng, kind, area, s):
    p = dict(kind=kind, area=area)
    if kind == "speck":
        p["r"] = np.sqrt(area / np.pi)
        p["ext"] = p["r"] + 2 * s
        p["rmin"] = p["r"]
    elif kind == "nodule":
        asp = _u(rng, 1.0, 2.2)
        ax = np.sqrt(area * asp / np.pi)
        p.update(ax=ax, ay=ax / asp, rim=rng.random() < 0.15,
                 lobes=[(k, _u(rng, 0, 0.25 / k ** 0.7), _u(rng, 0, 2 * np.pi)) for k in range(2, 6)])
        p["ext"] = 1.6 * ax + 2 * s
        p["rmin"] = ax / asp
    elif kind == "sheet":
        tmean = max(_u(rng, 1.0, 3.0), 2.5 * s)
        ell = area / tmean
        if ell > 30.0:
            ell = 30.0
        tmax = 4.0 * area / (np.pi * ell)
        kap = _u(rng, -0.8, 0.8) / ell
        p.update(ell=ell, tmax=tmax, kap=kap,
                 wav=[(_u(rng, 0, 0.2), _u(rng, 2, 7), _u(rng, 0, 6.3)) for _ in range(2)])
        p["ext"] = ell / 2 + tmax + abs(kap) * ell * ell / 8 + 2 * s
        p["rmin"] = tmax / 2
    else:  # conglomerate
        k = int(rng.integers(3, 8))
        rb = np.sqrt(area / (np.pi * k * 0.62))
        cs = [np.zeros(2)]
        ang = _u(rng, 0, 2 * np.pi)
        for _ in range(k - 1):
            ang += _u(rng, -1.2, 1.2)
            base = cs[int(rng.integers(len(cs)))]
            cs.append(base + _u(rng, 0.7, 1.25) * rb * np.array([np.cos(ang), np.sin(ang)]))
        cs = np.array(cs)
        cs -= cs.mean(0)
        p.update(cs=cs, rbs=rb * rng.uniform(0.7, 1.25, k), dens=rng.uniform(0.55, 1.25, k), rb=rb)
        p["ext"] = np.abs(cs).max() + 1.4 * rb + 2 * s
        p["rmin"] = rb
    return p


def _dep_eval(rng, p, x, y):
    """sdf (mm) and relative density pattern in deposit-local coords."""
    kind = p["kind"]
    if kind == "speck":
        sdf = np.hypot(x, y) - p["r"]
        pat = np.ones_like(x)
    elif kind == "nodule":
        rho = np.hypot(x / p["ax"], y / p["ay"])
        th = np.arctan2(y / p["ay"], x / p["ax"])
        lob = np.zeros_like(x)
        for k, a, ph in p["lobes"]:
            lob = lob + a * np.cos(k * th + ph)
        sdf = (rho - (1.0 + lob)) * min(p["ax"], p["ay"])
        if p["rim"]:
            pat = 0.55 + 0.45 * np.exp(-((rho - 0.8) / 0.25) ** 2)
        else:
            pat = 0.62 + 0.38 * np.exp(-1.8 * rho ** 2)
    elif kind == "sheet":
        ell, tmax = p["ell"], p["tmax"]
        tt = np.clip(1.0 - (2.0 * x / ell) ** 2, 0.0, 1.0) ** 0.5
        for a, f, ph in p["wav"]:
            tt = tt * (1.0 + a * np.sin(f * np.pi * x / ell + ph))
        yc = p["kap"] * x * x / 2.0
        sdf = np.maximum(np.abs(y - yc) - tmax * tt / 2.0, np.abs(x) - ell / 2.0)
        pat = 0.8 + 0.2 * np.cos(2 * np.pi * x / max(1.5, ell / 6.0) + p["wav"][0][2])
    else:
        sdf = None
        num = np.zeros_like(x)
        den = np.zeros_like(x) + 1e-6
        for (cx, cy), rb, de in zip(p["cs"], p["rbs"], p["dens"]):
            dd = np.hypot(x - cx, y - cy)
            c = dd - rb
            sdf = c if sdf is None else _smin(sdf, c, 0.35 * p["rb"])
            w = np.exp(-2.0 * (dd / rb) ** 2)
            num += w * de
            den += w
        pat = num / den
    tex = ndi.gaussian_filter(rng.standard_normal(x.shape), 1.0)
    pat = pat * (1.0 + 0.12 * tex / (tex.std() + 1e-6))
    return sdf, np.clip(pat, 0.3, 1.5)


# ---------------------------------------------------------------- output
def _write_png(path, img):
    img = np.ascontiguousarray(img, dtype=np.uint8)
    h, w = img.shape[:2]
    ctype = 0 if img.ndim == 2 else 2
    raw = b"".join(b"\x00" + img[i].tobytes() for i in range(h))

    def chunk(t, data):
        return (struct.pack(">I", len(data)) + t + data
                + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


# ---------------------------------------------------------------- main
_LAST = {}  # diagnostics of the latest case (used by the self-check only)


def make_case(seed: int) -> dict:
    """Build one synthetic sagittal DECT finger image with exact ground truth.

    Returns dict(hu float32 HxW, spacing_mm (s, s), bone bool HxW,
    deposits int32 HxW (0 none, 1..n), areas_mm2 list[n], seeds list[n] of
    (row, col), notes str).
    """
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x4C4C])
    notes = []

    # ------------------------------------------------ case-level anatomy
    digit = rng.choice(["thumb", "index", "middle", "ring", "little"], p=[0.15, 0.25, 0.25, 0.2, 0.15])
    child = rng.random() < 0.08
    scale = _u(rng, 0.55, 0.75) if child else float(np.clip(rng.normal(1.0, 0.12), 0.78, 1.3))
    lenf = {"thumb": 1.0, "index": 1.0, "middle": 1.08, "ring": 1.02, "little": 0.82}[digit]
    osteo = rng.random() < 0.30
    narrow = rng.random() < 0.25
    flexed = rng.random() < 0.25
    erosive = rng.random() < 0.20
    acro = rng.random() < 0.15
    notes.append(f"{digit}{' (child)' if child else ''} x{scale:.2f}")
    ssc = scale ** 0.5

    def gap():
        return (_u(rng, 0.2, 0.6) if narrow else _u(rng, 0.8, 1.8)) * ssc

    if osteo:
        ccort, cmed = _u(rng, 800, 1250), _u(rng, 60, 180)
        ctf = _u(rng, 0.3, 0.55)
    elif child:
        ccort, cmed = _u(rng, 900, 1400), _u(rng, 150, 320)
        ctf = _u(rng, 0.5, 0.8)
    else:
        ccort, cmed = _u(rng, 1300, 1900), _u(rng, 180, 380)
        ctf = _u(rng, 0.75, 1.25)

    # ------------------------------------------------ kinematic chain
    d0 = np.array([1.0, 0.0])
    bones = []
    joints = []
    if digit == "thumb":
        mc = _make_bone("mc", (0, 0), d0, (_u(rng, 42, 50) + 40) * scale, 5.5 * scale, _u(rng, 4.0, 4.8) * scale,
                        _u(rng, 6.2, 7.4) * scale, ctf * 1.2 * ssc)
        specs = [("prox", _u(rng, 28, 34), _u(rng, 5.5, 6.3), _u(rng, 3.2, 3.9), _u(rng, 4.0, 4.8)),
                 ("dist", _u(rng, 20, 25), _u(rng, 4.4, 5.1), _u(rng, 2.1, 2.7), 0.0)]
        flex = ([_u(rng, 5, 40), _u(rng, 15, 60)] if flexed else [_u(rng, -10, 12), _u(rng, -10, 15)])
        tuft = (_u(rng, 2.1, 2.8), _u(rng, 3.0, 3.8))
        notes.append("thumb: 2 phalanges")
    else:
        mc = _make_bone("mc", (0, 0), d0, (_u(rng, 58, 68) * lenf + 40) * scale, 5.0 * scale, _u(rng, 3.6, 4.4) * scale,
                        _u(rng, 5.6, 7.0) * scale, ctf * 1.2 * ssc)
        mlen = 0.85 if digit == "little" else 1.0
        specs = [("prox", _u(rng, 38, 45) * lenf, _u(rng, 4.6, 5.6), _u(rng, 2.7, 3.4), _u(rng, 3.3, 4.1)),
                 ("mid", _u(rng, 22, 28) * lenf * mlen, _u(rng, 3.8, 4.6), _u(rng, 2.3, 2.9), _u(rng, 2.8, 3.4)),
                 ("dist", _u(rng, 16, 20) * lenf, _u(rng, 3.1, 3.8), _u(rng, 1.5, 2.0), 0.0)]
        flex = ([_u(rng, 5, 60), _u(rng, 20, 80), _u(rng, 10, 50)] if flexed
                else [_u(rng, -15, 15), _u(rng, -3, 15), _u(rng, -5, 12)])
        tuft = (_u(rng, 1.6, 2.4), _u(rng, 2.2, 3.0))
    if flexed:
        notes.append("flexed " + "/".join(f"{f:.0f}" for f in flex) + " deg")
    mc["bow"] = 0.0
    bones.append(mc)
    prev = mc
    for (role, L, hb, hs, hh), fl in zip(specs, flex):
        g = gap()
        J = prev["O"] + prev["uh"] * prev["d"]
        d = _rot(prev["d"], -np.radians(fl))
        Rc = prev["hh"] + g
        O = J + Rc * d
        joints.append(dict(J=J, flex=fl, dprev=prev["d"], d=d, name={"prox": "MCP", "mid": "PIP", "dist": "DIP"}[role]))
        ct = ctf * ssc * (0.75 if role == "dist" else 1.0)
        if role == "dist":
            ta, tb = tuft
            Ld = L * scale
            if acro:
                Ld *= _u(rng, 0.65, 0.85)
                ta, tb = hs * scale * 0.8, hs * scale * _u(rng, 0.75, 1.0)
            b = _make_bone(role, O, d, Ld, hb * scale, hs * scale, 0.0, ct, head="tuft",
                           ta=ta * (1 if acro else scale), tb=tb * (1 if acro else scale), Rc=Rc,
                           bow=_u(rng, -0.2, 0.2) * scale)
            if acro:
                for _ in range(int(rng.integers(1, 3))):
                    b["eros"].append((b["L"] - _u(rng, 0, 1.5) * scale, _u(rng, -1, 1) * b["tb"],
                                      _u(rng, 0.5, 1.2) * scale))
        else:
            b = _make_bone(role, O, d, L * scale, hb * scale, hs * scale, hh * scale, ct, Rc=Rc,
                           bow=_u(rng, 0.0, 0.5) * scale)
        bones.append(b)
        prev = b
    if digit == "thumb":
        joints[-1]["name"] = "IP"
    if acro:
        notes.append("acro-osteolysis")
    if narrow:
        notes.append("joint-space narrowing")
    if osteo:
        notes.append("osteopenic thin cortex")
    if child:
        for b in bones:
            if b["role"] == "mc":
                b["phys"].append((b["uh"] - 0.75 * b["hh"], _u(rng, 0.5, 0.9) * scale))
            else:
                b["phys"].append((_u(rng, 1.4, 2.4) * scale, _u(rng, 0.5, 0.9) * scale))
        notes.append("open physes")
    if erosive:
        cands = [b for b in bones if b["role"] != "mc"]
        for _ in range(int(rng.integers(1, 4))):
            b = cands[int(rng.integers(len(cands)))]
            if rng.random() < 0.5:
                uu = _u(rng, 0.04, 0.18) * b["L"]
            else:
                uu = b["uh"] - _u(rng, 0.0, 0.8) * max(b["hh"], b["ta"])
            hw = float(_bone_profile(np.array(uu), b))
            b["eros"].append((uu, hw * rng.choice([-1, 1]) * _u(rng, 0.8, 1.05), _u(rng, 0.6, 1.8) * scale))
        notes.append("erosions")

    # ------------------------------------------------ soft tissue capsules (scene)
    def segcap(A, B, hwA, hwB, nvec, td, tp):
        rA = hwA + (td + tp) / 2.0
        oA = (td - tp) / 2.0
        rB = hwB + (td + tp) / 2.0
        return (A + oA * nvec, B + oA * nvec, rA, rB)

    caps = []
    nmc = np.array([-mc["d"][1], mc["d"][0]])
    mc_head = mc["O"] + mc["uh"] * mc["d"]
    tdp, tpp = _u(rng, 2.5, 4.0) * scale, _u(rng, 9, 14) * scale
    caps.append(segcap(mc["O"] - 45 * mc["d"], mc_head, mc["hh"] + 1.5 * scale, mc["hh"], nmc, tdp, tpp))
    for b in bones[1:]:
        n = np.array([-b["d"][1], b["d"][0]])
        if b["role"] == "dist":
            td, tp = _u(rng, 2.0, 3.0) * scale, _u(rng, 5.0, 7.5) * scale
            rtip = _u(rng, 4.5, 6.5) * scale * (1.1 if digit == "thumb" else 1.0)
            otip = -_u(rng, 0.4, 1.4) * scale
            tipext = _u(rng, 3.0, 6.0) * scale
            A = b["O"] + (td - tp) / 2.0 * n
            B = b["O"] + max(b["L"] + tipext - rtip, 0.5 * b["L"]) * b["d"] + otip * n
            caps.append((A, B, b["hb"] + (td + tp) / 2.0, rtip))
        else:
            td, tp = _u(rng, 2.5, 4.0) * scale, _u(rng, 4.5, 7.0) * scale
            caps.append(segcap(b["O"], b["O"] + b["uh"] * b["d"], b["hb"], b["hh"], n, td, tp))
    ksm = 1.5 * scale

    def soft_sdf(qx, qy):
        out = None
        for (A, B, rA, rB) in caps:
            c = _capsule(qx, qy, A, B, rA, rB)
            out = c if out is None else _smin(out, c, ksm)
        return out

    # sesamoids / ossicles (scene)
    extra_bones = []
    if (digit == "thumb" and rng.random() < 0.9) or (digit != "thumb" and rng.random() < 0.12):
        for _ in range(1 if (digit != "thumb" or rng.random() < 0.5) else 2):
            bs = _u(rng, 1.3, 2.1) * scale
            C = mc["O"] + (mc["uh"] + _u(rng, -1.5, 2.0) * scale) * mc["d"] - (mc["hh"] + _u(rng, 0.6, 1.3) * scale + bs) * nmc
            extra_bones.append(_make_ellipse_bone("sesamoid", C, _rot(mc["d"], _u(rng, -0.3, 0.3)),
                                                  _u(rng, 1.8, 3.0) * scale, bs, 0.5 * ssc))
    if rng.random() < 0.06 and len(joints) > 1:
        jj = joints[int(rng.integers(1, len(joints)))]
        nj = np.array([-jj["d"][1], jj["d"][0]])
        C = jj["J"] + _u(rng, 4.0, 6.0) * scale * nj * rng.choice([-1, 1])
        extra_bones.append(_make_ellipse_bone("ossicle", C, jj["d"], _u(rng, 0.8, 1.6) * scale,
                                              _u(rng, 0.6, 1.1) * scale, 5.0))

    # ------------------------------------------------ orientation / spacing / FOV
    theta = float(rng.choice([0.0, np.pi, np.pi / 2, -np.pi / 2], p=[0.3, 0.3, 0.2, 0.2])) + np.radians(_u(rng, -25, 25))
    mirror = float(rng.choice([-1.0, 1.0]))
    Amat = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) @ np.diag([1.0, mirror])
    roi_c, roi_r = [], []
    for (A, B, rA, rB) in caps[1:]:
        roi_c += [A, B]
        roi_r += [rA, rB]
    roi_c += [mc_head, mc_head - (mc["hh"] + _u(rng, 3, 25) * scale) * mc["d"]]
    roi_r += [mc["hh"] + tdp, mc["hh"] + tdp]
    pc = np.array(roi_c) @ Amat.T
    pr = np.array(roi_r)[:, None]
    lo = (pc - pr).min(0)
    hi = (pc + pr).max(0)
    ext = hi - lo  # (x extent, y extent) in mm

    rr = rng.random()
    if rr < 0.15:
        s = _u(rng, 0.1, 0.18)
    elif rr < 0.85:
        s = _u(rng, 0.18, 0.45)
    else:
        s = _u(rng, 0.45, 0.6)
    want_cut = rng.random() < 0.28
    marg = rng.uniform(2, 15, 2)
    need = ext + 2 * marg
    if not want_cut and need.max() / s > 700 and rng.random() < 0.8:
        s = min(0.6, max(s, need.max() / 690.0))
    s = float(round(s, 4))
    W = int(np.clip(round(need[0] / s), 200, 700))
    H = int(np.clip(round(need[1] / s), 200, 700))
    slack = np.array([W * s, H * s]) - ext
    shift = np.array([rng.uniform(-1, 1) * max(slack[0] / 2 - 1.0, 0), rng.uniform(-1, 1) * max(slack[1] / 2 - 1.0, 0)])
    if want_cut:
        axis_img = int(np.argmax(np.abs(Amat @ bones[1]["d"])))
        if rng.random() < 0.5:
            if axis_img == 0:
                W = int(np.clip(round(need[0] * _u(rng, 0.45, 0.85) / s), 200, 700))
            else:
                H = int(np.clip(round(need[1] * _u(rng, 0.45, 0.85) / s), 200, 700))
            slack = np.array([W * s, H * s]) - ext
            shift = np.zeros(2)
        ax = axis_img if rng.random() < 0.7 else 1 - axis_img
        shift[ax] += rng.choice([-1, 1]) * _u(rng, 0.15, 0.4) * ext[ax]
    centre = (lo + hi) / 2.0
    T = np.array([W * s / 2.0, H * s / 2.0]) + shift - centre
    zaxis = int(np.argmax(np.abs(Amat @ bones[1]["d"])))  # image axis (0=x/cols,1=y/rows)
    if rng.random() < 0.3:
        zaxis = 1 - zaxis

    X = ((np.arange(W) + 0.5) * s - T[0]).astype(np.float32)
    Y = ((np.arange(H) + 0.5) * s - T[1]).astype(np.float32)
    qx = (Amat[0, 0] * X[None, :] + Amat[1, 0] * Y[:, None]).astype(np.float32)
    qy = (Amat[0, 1] * X[None, :] + Amat[1, 1] * Y[:, None]).astype(np.float32)

    def to_pix(q):
        P = Amat @ np.asarray(q, float) + T
        return P[1] / s - 0.5, P[0] / s - 0.5  # row, col

    def crop_of(points, rad):
        rc = np.array([to_pix(p) for p in points])
        rpx = rad / s + 2
        r0 = int(max(np.floor(rc[:, 0].min() - rpx), 0))
        r1 = int(min(np.ceil(rc[:, 0].max() + rpx) + 1, H))
        c0 = int(max(np.floor(rc[:, 1].min() - rpx), 0))
        c1 = int(min(np.ceil(rc[:, 1].max() + rpx) + 1, W))
        if r1 <= r0 or c1 <= c0:
            return None
        return (slice(r0, r1), slice(c0, c1))

    # ------------------------------------------------ soft tissue (grid)
    sdf_main = soft_sdf(qx, qy)
    creases = []
    for jj in joints:
        if rng.random() < (0.8 if jj["flex"] > 25 else 0.2):
            nb = np.array([-(jj["d"] + jj["dprev"])[1], (jj["d"] + jj["dprev"])[0]])
            nb /= np.linalg.norm(nb) + 1e-9
            ts = np.linspace(0, 30 * scale, 300)
            pts = jj["J"][None, :] - ts[:, None] * nb[None, :]
            sd = soft_sdf(pts[:, 0], pts[:, 1])
            idx = np.argmax(sd > 0)
            if sd[idx] > 0:
                sk = pts[idx]
                depth = _u(rng, 1.0, 3.5) * scale
                creases.append((sk - 1.0 * nb, sk + depth * nb, _u(rng, 0.2, 0.45) * scale))
    for (P0, P1, cr) in creases:
        sdf_main = np.maximum(sdf_main, -_capsule(qx, qy, P0, P1, cr, 0.05))
    if creases:
        notes.append(f"{len(creases)} skin crease(s)")

    # neighbouring finger
    sdf_nb = None
    nb_bones = []
    if rng.random() < 0.20:
        side = -1.0 if rng.random() < 0.7 else 1.0
        ref = bones[1]
        nref = np.array([-ref["d"][1], ref["d"][0]])
        for attempt in range(2):
            dn = _rot(ref["d"], np.radians(_u(rng, -35, 35)))
            rn = _u(rng, 6.0, 9.0) * scale
            Cn = ref["O"] + _u(rng, 0.2, 1.0) * ref["L"] * ref["d"] + side * (
                caps[1][2] + rn + _u(rng, 1.0, 8.0) * scale + (4 if attempt else 0)) * nref
            ln = _u(rng, 30, 60) * scale
            capn = (Cn - 0.5 * ln * dn, Cn + 0.5 * ln * dn, rn, rn * _u(rng, 0.8, 1.0))
            sdf_try = _capsule(qx, qy, *capn)
            if not np.any((sdf_try < 0.5) & (sdf_main < 0.5)):
                sdf_nb = sdf_try
                Lb = _u(rng, 0.45, 0.7) * ln
                hsb = _u(rng, 2.0, 3.2) * scale
                bnb = _make_bone("nb", Cn - 0.5 * Lb * dn, dn, Lb, hsb * 1.5, hsb, hsb * 1.25, ctf * ssc,
                                 Rc=hsb * 1.25 + 1.0)
                if rng.random() < 0.6:
                    bnb["faint"] = _u(rng, 250, 650)
                nb_bones.append(bnb)
                notes.append("neighbouring finger" + (" (partial-volume bone)" if bnb["faint"] else ""))
                break
    sdf_all = sdf_main if sdf_nb is None else np.minimum(sdf_main, sdf_nb)

    # ------------------------------------------------ bones (grid)
    tex = ndi.gaussian_filter(rng.standard_normal((H, W)).astype(np.float32), max(0.35 / s, 0.6))
    tex /= tex.std() + 1e-6
    lf_patch = _lowfreq(rng, (H, W), 3.0 / s)
    faint_pv = rng.random() < 0.15
    if faint_pv:
        ph = [b for b in bones if b["role"] != "mc"]
        for b in rng.choice(ph, size=int(rng.integers(1, min(2, len(ph)) + 1)), replace=False):
            b["faint"] = _u(rng, 250, 650)
            b["hs"] *= _u(rng, 0.7, 0.9)
        notes.append("thick-slab edge-of-bone slice (faint patchy phalanx)")

    bone = np.zeros((H, W), bool)
    bone_main = np.zeros((H, W), bool)
    bone_id = np.full((H, W), -1, np.int16)
    Cb = np.zeros((H, W), np.float32)
    all_bones = bones + extra_bones + nb_bones
    bone_local = {}
    for bi, b in enumerate(all_bones):
        cr = crop_of(_bone_points(b), b["rad"] + 1.0)
        if cr is None:
            continue
        u, v = _local(qx[cr], qy[cr], b["O"], b["d"])
        sdf = _bone_sdf(u, v, b)
        m = sdf < 0
        if b["role"] in ("sesamoid", "ossicle", "nb"):
            if not m.any() or np.any(m & bone[cr]):
                continue
            if b["role"] != "nb" and np.any(m & (sdf_main[cr] > -0.5)):
                continue
            if b["role"] == "sesamoid":
                notes.append("sesamoid")
            if b["role"] == "ossicle":
                notes.append("ossicle")
        bone_local[bi] = (cr, u, v, sdf)
        if not m.any():
            continue
        bone[cr] |= m
        if b["role"] not in ("nb",):
            bone_main[cr] |= m
        bone_id[cr][m] = bi
        fo = _frac(sdf, s)
        if b["faint"] is not None:
            patch = np.clip(0.6 + 0.6 * lf_patch[cr], 0.08, 1.3)
            cb = fo * b["faint"] * patch * (1 + 0.15 * tex[cr])
        else:
            if b["kind"] == "long":
                # thick diaphyseal cortex, thin subchondral plate; fatty shaft
                # marrow, denser trabecular ends
                if b["role"] == "mc":
                    shaft = np.clip((b["uh"] - b["hh"] - u) / (15.0 * scale), 0, 1)
                else:
                    shaft = np.exp(-((u - 0.5 * b["L"]) / (0.28 * b["L"])) ** 2)
                fi = _frac(sdf + b["ct"] * (0.4 + 0.6 * shaft), s)
                cm = cmed * (1.25 - 0.6 * shaft) * (1.0 + 0.35 * tex[cr])
            else:
                fi = _frac(sdf + b["ct"], s)
                cm = cmed * (1.0 + 0.35 * tex[cr])
            cb = ccort * fo + (cm - ccort) * fi
        Cb[cr] = np.maximum(Cb[cr], cb)

    # ------------------------------------------------ tissue map S
    depth = -sdf_all
    f_soft = _frac(sdf_all, s)
    base_hu = _u(rng, 30, 55)
    lf_fat = _lowfreq(rng, (H, W), 2.5 / s)
    fatw = np.clip(0.2 + 0.5 * lf_fat, 0, 1) * np.exp(-((depth - 2.5 * scale) / (1.8 * scale)) ** 2)
    fat_hu = _u(rng, -110, -60)
    S_t = base_hu + fatw * (fat_hu - base_hu) + (depth < _u(rng, 0.6, 1.3)) * _u(rng, 10, 30)
    S_t += 6.0 * tex
    forbidden = np.zeros((H, W), bool)
    tendon = np.zeros((H, W), np.float32)
    art_C = np.zeros((H, W), np.float32)
    art_on = rng.random() < 0.15
    art_d = _u(rng, 300, 1100)
    nail_info = None
    for bi, b in enumerate(bones):
        if bi not in bone_local or b["role"] == "mc":
            continue
        cr0 = crop_of(_bone_points(b), b["rad"] + 9 * scale)
        if cr0 is None:
            continue
        u, v = _local(qx[cr0], qy[cr0], b["O"], b["d"])
        hw = _bone_profile(np.clip(u, 0, b["uh"]), b)
        tf = _u(rng, 1.8, 3.2) * scale
        te = _u(rng, 0.7, 1.2) * scale
        uend = b["L"] if b["role"] != "dist" else 0.35 * b["L"]
        inu = (u > 0) & (u < uend)
        flex_t = np.abs(v + hw + 0.3 + tf / 2) - tf / 2
        ext_t = np.abs(v - hw - 0.2 - te / 2) - te / 2
        tdel = _u(rng, 35, 70)
        tendon[cr0] = np.maximum(tendon[cr0], inu * tdel * np.maximum(_frac(flex_t, s), _frac(ext_t, s)))
        if art_on:
            va = -(hw + tf + 0.3 + _u(rng, 1.0, 2.5) * scale)
            wa = _u(rng, 0.35, 0.8)
            per = _u(rng, 2.0, 6.0)
            duty = _u(rng, 0.35, 0.8)
            phase = _u(rng, 0, per)
            on = (np.mod(u + phase, per) < duty * per) & (u > 0) & (u < b["L"])
            wig = 0.4 * np.sin(u / _u(rng, 2, 5))
            a_sdf = np.abs(v - va - wig) - wa / 2
            if rng.random() < 0.4:
                a_sdf = np.minimum(a_sdf, np.abs(v - va - wig - _u(rng, 1.2, 1.8)) - wa / 2)
            ac = on * _frac(a_sdf, s) * (art_d - base_hu)
            art_C[cr0] = np.maximum(art_C[cr0], ac)
        if b["role"] == "dist":
            tn = _u(rng, 0.5, 0.9) * scale
            u0 = _u(rng, 0.3, 0.45) * b["L"]
            u1 = b["L"] + _u(rng, 1.0, 3.0) * scale
            nl = (u > u0) & (u < u1) & (v > 0) & (sdf_main[cr0] < 0) & (sdf_main[cr0] > -tn)
            S_t[cr0] = np.where(nl, _u(rng, 90, 250), S_t[cr0])
            forbidden[cr0] |= nl
            nail_info = (cr0, u, v, u0, tn)
    art_mask = art_C > 0.3 * (art_d - base_hu)
    forbidden |= ndi.binary_dilation(art_mask, _SQUARE)
    if art_on and art_mask.any():
        notes.append("calcified digital artery")
    S_t = S_t + tendon
    S = -1000.0 * (1 - f_soft) + f_soft * S_t

    # ring
    M = np.zeros((H, W), np.float32)
    ring_pts = []
    if digit != "thumb" and rng.random() < 0.07 and 1 in bone_local:
        b = bones[1]
        n = np.array([-b["d"][1], b["d"][0]])
        P = b["O"] + _u(rng, 0.35, 0.65) * b["L"] * b["d"]
        tr = _u(rng, 1.2, 2.5) * scale
        wr = _u(rng, 2.0, 5.0) * scale
        for sg in (1.0, -1.0):
            ts = np.linspace(0, 25 * scale, 400)
            pts = P[None, :] + sg * ts[:, None] * n[None, :]
            sd = soft_sdf(pts[:, 0], pts[:, 1])
            idx = np.argmax(sd > 0)
            Cr = pts[idx] + sg * (tr / 2 + 0.05) * n
            cr = crop_of([Cr], max(tr, wr) + 1)
            if cr is None:
                continue
            u, v = _local(qx[cr], qy[cr], Cr, b["d"])
            rs = np.maximum(np.abs(u) - wr / 2 + 0.3, np.abs(v) - tr / 2 + 0.3)
            rsdf = np.minimum(rs, 0) + np.hypot(np.maximum(np.abs(u) - wr / 2 + 0.3, 0), np.maximum(np.abs(v) - tr / 2 + 0.3, 0)) - 0.3
            M[cr] = np.maximum(M[cr], 6000.0 * _frac(rsdf, s))
            forbidden[cr] |= rsdf < 1.0
            ring_pts.append(to_pix(Cr))
        if ring_pts:
            notes.append("metal ring")

    # cushion / table (image frame)
    if rng.random() < 0.45:
        soft_any = sdf_all < 0
        side = rng.choice(["bottom", "top", "left", "right"], p=[0.4, 0.2, 0.2, 0.2])
        arr = {"bottom": soft_any[::-1, :], "top": soft_any, "left": soft_any.T, "right": soft_any.T[::-1, :]}[side]
        rows_any = np.flatnonzero(arr.any(1))
        g0 = rows_any[0] if rows_any.size else arr.shape[0]
        if g0 * s > 3.0:
            thick = min(g0, int(round(_u(rng, 8, 35) / s)))
            if rng.random() < 0.5:
                thick = g0  # hand resting on the cushion
            band = np.zeros(arr.shape, np.float32)
            foam = _u(rng, -900, -650)
            band[:thick] = foam
            tp = int(round(_u(rng, 1.5, 5.0) / s))
            if tp < thick * 0.5 and rng.random() < 0.6:
                band[:tp] = _u(rng, 100, 450)
            band = {"bottom": band[::-1, :], "top": band, "left": band.T, "right": band[::-1, :].T}[side]
            cm = (band != 0) & (f_soft < 0.5)
            S = np.where(cm, band + 25 * lf_fat, S)
            notes.append("cushion/table")

    # ------------------------------------------------ deposits
    labels = np.zeros((H, W), np.int32)
    Cd = np.zeros((H, W), np.float32)
    areas, seeds, dep_notes, dep_touch = [], [], [], []
    slab = _u(rng, 0.4, 1.0) if rng.random() < 0.75 else _u(rng, 1.5, 3.5)
    if rng.random() < 0.10:
        n_target = 0
    else:
        n_target = 1 + int(min(rng.poisson(2.2), 11))
        if rng.random() < 0.10:
            n_target += int(rng.integers(4, 11))
    inside = sdf_main < -(0.6 + 0.5 * s)
    blocked = bone | forbidden | ~inside
    if n_target > 0 and inside.any():
        dist_b, inds = ndi.distance_transform_edt(~bone, return_indices=True)
        ring4 = ndi.binary_dilation(bone_main, _CROSS) & ~bone
        ring_all = ndi.binary_dilation(bone, _CROSS) & ~bone
        cls_masks = {}
        dst = bones[-1]
        near_bone = (dist_b * s <= 1.0) & (dist_b > 0)
        cls_masks["juxtacortical"] = near_bone & bone_main[tuple(inds)]
        cls_masks["subcutaneous"] = (depth > 0.4) & (depth < 4.5 * scale)
        m = np.zeros((H, W), bool)
        for jj in joints:
            cr = crop_of([jj["J"]], 7 * scale)
            if cr is not None:
                m[cr] |= np.hypot(qx[cr] - jj["J"][0], qy[cr] - jj["J"][1]) < 6.5 * scale
        cls_masks["periarticular"] = m
        di = bones.index(dst)
        if di in bone_local:
            cr0 = crop_of(_bone_points(dst), dst["rad"] + 9 * scale)
            if cr0 is not None:
                u, v = _local(qx[cr0], qy[cr0], dst["O"], dst["d"])
                hw = _bone_profile(np.clip(u, 0, dst["uh"]), dst)
                mp = np.zeros((H, W), bool)
                mp[cr0] = (u > 0.15 * dst["L"]) & (u < dst["L"] + 4) & (v < -(np.minimum(hw, dst["tb"]) + 0.4))
                cls_masks["pulp"] = mp
                mt = np.zeros((H, W), bool)
                mt[cr0] = u > dst["L"] - 0.5
                cls_masks["tip"] = mt
        if nail_info is not None:
            cr0, u, v, u0, tn = nail_info
            ms = np.zeros((H, W), bool)
            ms[cr0] = (u > u0 + 0.5) & (u < dst["L"] + 0.5) & (v > 0) & (sdf_main[cr0] < -(tn + 0.2))
            cls_masks["subungual"] = ms
        cls_names = ["pulp", "tip", "subungual", "periarticular", "juxtacortical", "subcutaneous"]
        cls_p = np.array([0.30, 0.08, 0.07, 0.2, 0.17, 0.18])
        n_done, tries = 0, 0
        specky = n_target > 8
        while n_done < n_target and tries < n_target * 8:
            tries += 1
            if specky and n_done >= n_target - 6:
                kind = "speck"
            else:
                kind = str(rng.choice(["speck", "nodule", "sheet", "conglomerate"], p=[0.22, 0.45, 0.15, 0.18]))
            area = {"speck": lambda: _logu(rng, 0.04, 1.0), "nodule": lambda: _logu(rng, 1.0, 30.0),
                    "sheet": lambda: _logu(rng, 6.0, 95.0), "conglomerate": lambda: _u(rng, 15.0, 95.0)}[kind]()
            cls = str(rng.choice(cls_names, p=cls_p))
            cand = cls_masks.get(cls)
            free = ~blocked
            if cls == "juxtacortical" and kind == "speck":
                cand = ring4
            pool = np.flatnonzero(cand & free) if cand is not None else np.empty(0, int)
            if pool.size == 0:
                cls = "soft tissue"
                pool = np.flatnonzero(free)
                if pool.size == 0:
                    break
            k = int(pool[int(rng.integers(pool.size))])
            ar, ac = divmod(k, W)
            cx, cy = float(qx[ar, ac]), float(qy[ar, ac])
            p = _dep_params(rng, kind, area, s)
            if kind != "speck" or cls != "juxtacortical":
                cx += _u(rng, -0.5, 0.5) * s
                cy += _u(rng, -0.5, 0.5) * s
            # orientation from the nearest bone axis
            br, bc = inds[0][ar, ac], inds[1][ar, ac]
            bid = int(bone_id[br, bc]) if bone[br, bc] else 1
            dref = all_bones[bid]["d"] if bid >= 0 else bones[1]["d"]
            ang = np.arctan2(dref[1], dref[0]) + np.radians(_u(rng, -25, 25))
            if cls == "juxtacortical" and kind != "speck":
                vb = np.array([qx[br, bc] - cx, qy[br, bc] - cy])
                dd = np.linalg.norm(vb)
                if dd > 1e-6:
                    sh = max(dd - 0.5 * p["rmin"], 0.0)
                    cx += vb[0] / dd * sh
                    cy += vb[1] / dd * sh
            if kind == "conglomerate" or (kind == "nodule" and rng.random() < 0.3):
                ang = _u(rng, 0, 2 * np.pi)
            rc, cc = to_pix((cx, cy))
            hp = int(np.ceil(p["ext"] / s)) + 4
            r0, r1 = max(int(rc) - hp, 0), min(int(rc) + hp + 2, H)
            c0, c1 = max(int(cc) - hp, 0), min(int(cc) + hp + 2, W)
            cr = (slice(r0, r1), slice(c0, c1))
            ca_, sa_ = np.cos(ang), np.sin(ang)
            xx = (qx[cr] - cx) * ca_ + (qy[cr] - cy) * sa_
            yy = -(qx[cr] - cx) * sa_ + (qy[cr] - cy) * ca_
            sdf, pat = _dep_eval(rng, p, xx, yy)
            fr = ~blocked[cr]
            if cls != "juxtacortical" and rng.random() < 0.75:
                fr &= ~ring_all[cr]  # stops one pixel short of the cortex
            mk = (sdf < 0) & fr
            if not mk.any():
                if kind != "speck":
                    continue
                nr, nc = int(round(rc)), int(round(cc))
                if not (0 <= nr < H and 0 <= nc < W) or blocked[nr, nc]:
                    continue
                mk = np.zeros_like(mk)
                mk[nr - r0, nc - c0] = True
            lab, nl = ndi.label(mk, _CROSS)
            if nl > 1:
                sums = ndi.sum(pat, lab, index=np.arange(1, nl + 1))
                mk = lab == (1 + int(np.argmax(sums)))
            cnt = int(mk.sum())
            if kind != "speck" and (cnt < 2 or cnt * s * s < 0.45 * area):
                continue
            # density (70 keV apparent HU) and through-plane partial volume
            rr_ = rng.random()
            if kind == "speck":
                D = _u(rng, 600, 3000)
            elif rr_ < 0.2:
                D = _u(rng, 250, 450)
            elif rr_ < 0.75:
                D = _u(rng, 450, 1400)
            else:
                D = _u(rng, 1400, 3000)
            deq = 2 * np.sqrt(max(area, cnt * s * s) / np.pi)
            pvf = float(np.clip(deq * _u(rng, 0.7, 1.3) / slab, 0.25, 1.0))
            keep = ndi.binary_dilation(mk, _SQUARE)
            if kind == "speck" and area < s * s:
                cdep = np.where(mk, (D - base_hu) * max(area / (s * s), 0.15), 0.0)
            else:
                cdep = (D - base_hu) * pat * _frac(sdf, s) * keep
                cdep = np.where(mk, np.maximum(cdep, 0.5 * (D - base_hu) * pat), cdep)
            cdep = cdep * pvf
            Cd[cr] = np.maximum(Cd[cr], cdep.astype(np.float32))
            lbl = n_done + 1
            labels[cr][mk] = lbl
            blocked[cr] |= ndi.binary_dilation(mk, _SQUARE, iterations=2)
            sm = ndi.gaussian_filter(np.where(mk, pat, 0.0), 0.8)
            sm = np.where(mk, sm, -1)
            sr, sc = np.unravel_index(int(np.argmax(sm)), sm.shape)
            seeds.append((int(sr + r0), int(sc + c0)))
            areas.append(float(cnt * s * s))
            touch = bool(np.any(ndi.binary_dilation(mk, _CROSS) & bone[cr]))
            dep_touch.append(touch)
            dep_notes.append(f"{cls} {kind} {cnt * s * s:.1f}mm2 {D:.0f}HU{' touching bone' if touch else ''}")
            n_done += 1

    # ------------------------------------------------ reconstruction physics
    if rng.random() < 0.8:
        keV = int(rng.choice(_KEV_CHOICES))
        fca = float(np.interp(keV, _KEV, _CA))
        fnz = float(np.interp(keV, _KEV, _NZ))
        ffat = float(np.clip(1 + 0.45 * (70 - keV) / 30, 0.7, 1.5))
        fsoft = float(np.clip(1 + 0.12 * (70 - keV) / 30, 0.85, 1.2))
        bhf = 0.3 + 0.6 * float(np.clip((80 - keV) / 40, 0, 1))
        recon = f"VMI {keV} keV"
    else:
        fca, fnz, ffat, fsoft, bhf = _u(rng, 0.9, 1.0), 1.0, 1.0, 1.0, 1.0
        recon = "120 kVp"
    kern = str(rng.choice(["smooth", "standard", "sharp"], p=[0.3, 0.35, 0.35]))
    if kern == "smooth":
        psf, ring_a, ring_s = _u(rng, 0.45, 0.75), 0.0, 1.0
        nsd, ncorr, hp = _u(rng, 6, 22), _u(rng, 0.5, 1.0), 0.0
    elif kern == "standard":
        psf, ring_a, ring_s = _u(rng, 0.3, 0.45), _u(rng, 0.0, 0.25), _u(rng, 0.6, 1.0)
        nsd, ncorr, hp = _u(rng, 12, 35), _u(rng, 0.3, 0.6), _u(rng, 0.0, 0.4)
    else:
        psf, ring_a, ring_s = _u(rng, 0.15, 0.3), _u(rng, 0.3, 0.9), _u(rng, 0.4, 0.8)
        nsd, ncorr, hp = _u(rng, 30, 110), _u(rng, 0.12, 0.25), _u(rng, 0.5, 0.85)
    zextra = _u(rng, 0.0, 0.4) if rng.random() < 0.6 else 0.0

    sig = [psf / s, psf / s]
    sig[1 - zaxis] = np.hypot(psf, zextra) / s  # sigma order (rows, cols); zaxis 0 -> cols

    Cbg = np.maximum(Cb, art_C)
    fac = np.where((S < 0) & (S > -500), ffat, np.where(S > 0, fsoft, 1.0)).astype(np.float32)
    img = ndi.gaussian_filter((S * fac + Cbg * fca + M).astype(np.float32), sig)

    # visibility: a reader only clicks what is visible.  Each deposit's blurred
    # noiseless image must rise >= thr = max(150 HU, 2.5 noise SD) above what
    # is there without it, and reach >= soft tissue + thr in absolute HU.
    # Weaker ones are brightened; ones that cannot be (sub-pixel specks under
    # a smooth kernel) are removed from the image and from the truth.
    n_dep = len(areas)
    n_drop = 0
    if n_dep:
        thr = max(150.0, 2.5 * nsd * fnz)
        athr = base_hu * fsoft + thr
        for it in range(2):
            Cde = np.maximum(Cd - Cbg, 0.0)
            bl = ndi.gaussian_filter(Cde * fca, sig)
            owner = ndi.grey_dilation(labels, footprint=_SQUARE)
            idx = np.arange(1, n_dep + 1)
            pk = ndi.maximum(bl, labels, index=idx)
            pos = ndi.maximum_position(bl, labels, index=idx)
            tot = ndi.maximum(bl + img, labels, index=idx)
            changed = False
            for k in range(n_dep):
                if not areas[k] or (pk[k] >= thr * 0.98 and tot[k] >= athr * 0.98):
                    continue
                p_ = pos[k]
                g1 = thr / max(float(pk[k]), 1e-3)
                g2 = (athr - float(img[p_])) / max(float(bl[p_]), 1e-3)
                gfac = max(g1, g2, 1.0) * 1.03
                region = owner == k + 1
                if it == 0 and float(Cd[region].max()) * gfac <= 3000.0 - base_hu:
                    Cd[region] *= gfac
                else:
                    Cd[region] = 0.0
                    labels[labels == k + 1] = 0
                    areas[k] = 0.0
                    n_drop += 1
                changed = True
            if not changed:
                break
        keepk = [k for k in range(n_dep) if areas[k]]
        lut = np.zeros(n_dep + 1, np.int32)
        for i, k in enumerate(keepk):
            lut[k + 1] = i + 1
        labels = lut[labels]
        areas = [areas[k] for k in keepk]
        seeds = [seeds[k] for k in keepk]
        dep_notes = [dep_notes[k] for k in keepk]
        dep_touch = [dep_touch[k] for k in keepk]
        if n_drop:
            notes.append(f"{n_drop} invisible deposit(s) not drawn")
    img = img + ndi.gaussian_filter(np.maximum(Cd - Cbg, 0.0) * fca, sig)
    if ring_a > 0:
        img = img + ring_a * (img - ndi.gaussian_filter(img, ring_s / s))

    # streaks
    pts = []
    for bi, b in enumerate(all_bones):
        if bi in bone_local and b["kind"] == "long":
            cr, u, v, sdf = bone_local[bi]
            if (sdf < 0).any():
                pts.append(to_pix(b["O"] + 0.5 * b["L"] * b["d"]))
                pts.append(to_pix(b["O"] + b["uh"] * b["d"]))
    for k_, a_ in enumerate(areas):
        if a_ > 3:
            pts.append(seeds[k_])
    rows_ = np.arange(H, dtype=np.float32)[:, None]
    cols_ = np.arange(W, dtype=np.float32)[None, :]
    art = np.zeros((H, W), np.float32)

    def streak(p1, p2, amp, wpx, lam_px, flank=0.35):
        (r1, c1), (r2, c2) = p1, p2
        dv = np.array([r2 - r1, c2 - c1], float)
        Ls = np.linalg.norm(dv)
        if Ls < 2:
            return 0
        dv /= Ls
        t = (rows_ - r1) * dv[0] + (cols_ - c1) * dv[1]
        dp = np.abs(-(rows_ - r1) * dv[1] + (cols_ - c1) * dv[0])
        along = np.exp(-np.maximum(np.maximum(-t, t - Ls), 0) / lam_px)
        prof = np.exp(-(dp / wpx) ** 2) - flank * np.exp(-((dp - 1.8 * wpx) / wpx) ** 2)
        return amp * along * prof

    n_st = int(rng.integers(0, 4)) if len(pts) >= 2 else 0
    for _ in range(n_st):
        i1, i2 = rng.choice(len(pts), 2, replace=False)
        if np.hypot(pts[i1][0] - pts[i2][0], pts[i1][1] - pts[i2][1]) * s < 5:
            continue
        art += streak(pts[i1], pts[i2], -_u(rng, 20, 90) * bhf, _u(rng, 1.0, 3.0) / s, _u(rng, 3, 15) / s)
    if len(ring_pts) == 2:
        art += streak(ring_pts[0], ring_pts[1], -_u(rng, 200, 500), _u(rng, 1.0, 2.5) / s, _u(rng, 5, 20) / s, 0.5)
        for rp in ring_pts:
            for _ in range(int(rng.integers(6, 14))):
                a = _u(rng, 0, np.pi)
                far = (rp[0] + 2000 * np.sin(a), rp[1] + 2000 * np.cos(a))
                dist = np.hypot(rows_ - rp[0], cols_ - rp[1]) * s
                art += streak((rp[0] - 2000 * np.sin(a), rp[1] - 2000 * np.cos(a)), far,
                              rng.choice([-1, 1]) * _u(rng, 80, 300), _u(rng, 0.3, 0.9) / s, 1e6, 0.0) / (1 + dist / 10.0)
    if n_st:
        notes.append(f"{n_st} beam-hardening streak(s)")
    img = img + art

    # correlated noise (anisotropic along the reformat z axis)
    wn = rng.standard_normal((H, W)).astype(np.float32)
    nsig = [max(ncorr / s, 0.3)] * 2
    nsig[1 - zaxis] *= _u(rng, 1.0, 1.8)
    nz = ndi.gaussian_filter(wn, nsig)
    if hp > 0:
        nz = nz - hp * ndi.gaussian_filter(nz, [2.5 * x for x in nsig])
    nz *= nsd * fnz / (nz.std() + 1e-6)
    img = img + nz + rng.normal(0, 6)
    img = np.clip(img, -1024, 3071)
    eight = rng.random() < 0.07
    if eight:
        q = np.round((np.clip(img, -300, 1200) + 300) / 1500 * 255)
        img = q * (1500 / 255) - 300
        notes.append("8-bit window export (-300..1200)")
    hu = img.astype(np.float32)

    # cut-off flag: a phalanx or the fingertip touches the border
    border = np.zeros((H, W), bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    phal = np.zeros((H, W), bool)
    for bi, b in enumerate(bones):
        if b["role"] != "mc" and bi in bone_local:
            cr, u, v, sdf = bone_local[bi]
            phal[cr] |= sdf < 0
    tipcut = False
    if len(caps) > 1:
        A, B, rA, rB = caps[-1]
        cr = crop_of([B], rB + 1)
        if cr is not None:
            tipm = np.zeros((H, W), bool)
            tipm[cr] = (np.hypot(qx[cr] - B[0], qy[cr] - B[1]) < rB + 0.5) & (sdf_main[cr] < 0)
            tipcut = bool((tipm & border).any())
        else:
            tipcut = True
    cut = bool((phal & border).any()) or tipcut
    if cut:
        notes.append("finger cut off by field of view")

    head = (f"s={s:.3f}mm {H}x{W} {recon} {kern} kernel (psf {psf:.2f}mm, noise {nsd * fnz:.0f}HU)"
            f" slab {slab:.1f}mm")
    notes_s = head + "; " + ", ".join(notes) + f"; {len(areas)} deposit(s)"
    if dep_notes:
        notes_s += ": " + "; ".join(dep_notes)
    _LAST.clear()
    _LAST.update(cut=cut, touch=dep_touch, sdf_main=sdf_main, S=S, C=np.maximum(Cbg, Cd))
    return dict(hu=hu, spacing_mm=(s, s), bone=bone, deposits=labels, areas_mm2=areas, seeds=seeds,
                notes=notes_s)


# ---------------------------------------------------------------- self-check
def _preview(case, path):
    hu = case["hu"]
    g = np.clip((hu - (450 - 750)) / 1500.0 * 255, 0, 255).astype(np.uint8)
    rgb = np.stack([g, g, g], -1).copy()
    be = case["bone"] & ~ndi.binary_erosion(case["bone"])
    de = (case["deposits"] > 0) & ~ndi.binary_erosion(case["deposits"] > 0)
    rgb[be] = (60, 120, 255)
    rgb[de] = (255, 40, 40)
    for (r, c) in case["seeds"]:
        rgb[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2] = (0, 255, 0)
    gap = np.zeros((g.shape[0], 6, 3), np.uint8)
    _write_png(path, np.concatenate([np.stack([g] * 3, -1), gap, rgb], 1))


def _check(n=20):
    t0 = time.time()
    ndep, none, cut, touch, areas, times = [], 0, 0, [], [], []
    for seed in range(n):
        t1 = time.time()
        c = make_case(seed)
        times.append(time.time() - t1)
        hu, bone, dep = c["hu"], c["bone"], c["deposits"]
        assert hu.dtype == np.float32 and hu.ndim == 2
        assert 200 <= hu.shape[0] <= 700 and 200 <= hu.shape[1] <= 700, hu.shape
        assert np.isfinite(hu).all()
        s0, s1 = c["spacing_mm"]
        assert s0 == s1 and 0.1 <= s0 <= 0.6
        assert bone.dtype == np.bool_ and bone.shape == hu.shape
        assert dep.dtype == np.int32 and dep.shape == hu.shape
        k = len(c["areas_mm2"])
        assert len(c["seeds"]) == k and int(dep.max()) == k
        assert not np.any(bone & (dep > 0))
        for i in range(k):
            m = dep == i + 1
            cnt = int(m.sum())
            assert cnt > 0
            r, cc = c["seeds"][i]
            assert dep[r, cc] == i + 1, (seed, i)
            if cnt > 4:
                assert abs(c["areas_mm2"][i] - cnt * s0 * s1) < 1e-6 * max(1, cnt)
            assert ndi.label(m, _CROSS)[1] == 1
        assert isinstance(c["notes"], str) and c["notes"]
        ndep.append(k)
        none += k == 0
        cut += _LAST["cut"]
        touch += _LAST["touch"]
        areas += c["areas_mm2"]
        if seed < 3:
            _preview(c, f"/tmp/gen_l_preview_{seed}.png")
            print(f"seed {seed}: {c['notes']}")
    a = np.array(areas) if areas else np.zeros(1)
    print(f"{n} cases in {time.time() - t0:.1f}s (max {max(times):.2f}s, mean {np.mean(times):.2f}s per case)")
    print(f"deposits/case mean {np.mean(ndep):.2f} (max {max(ndep)}), share with none {none / n:.2f}, "
          f"share cut off {cut / n:.2f}, share of deposits touching bone {np.mean(touch) if touch else 0:.2f}")
    print(f"areas mm2: min {a.min():.3f} median {np.median(a):.2f} max {a.max():.1f}; "
          f"<1 mm2 {np.mean(a < 1):.2f}, >30 mm2 {np.mean(a > 30):.2f}")


if __name__ == "__main__":
    _check(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
