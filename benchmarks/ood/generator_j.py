"""Synthetic sagittal DECT finger reformats with calcinosis cutis (generator J).

make_case(seed) -> dict(hu, spacing_mm, bone, deposits, areas_mm2, seeds, notes).

Anatomy: a chain of metacarpal, proximal, middle and distal phalanx. Each bone is a variable-radius
tube with a flared, concave base, a rounded head or distal tuft, and a rough surface. The cortex
comes from a distance map, with trabecular marrow inside. Bones articulate around head centres.
Flexion is MCP -10..45, PIP 5..75 and DIP 0..40 deg (35 % nearly straight). Soft tissue has skin,
lobulated fat, tendons and a fingertip pulp. Modifiers: thin sclerodactylous finger (40 %,
1.5-3 mm cover), acro-osteolysis (30 %) and osteopenia (30 %). Views run from the distal phalanx
alone to the full finger with the metacarpal head, often cut by the border. Any rotation,
sometimes mirrored.

Deposits: none in 10 % of cases, otherwise 1-8 of 0.2-60 mm2. About half the cases are hard and
get 1-2 dense deposits (1200-2500 HU) touching a phalanx or 0.2-1 mm from it: a cortical plaque,
a nodule hugging the distal tuft, or a skin plaque in a thin finger. The other deposits are
nodules (30 %), specks (22 %), faint 250-500 HU clouds (18 %), conglomerates (11 %), skin plaques
(10 %) and clusters (9 %). Outside hard cases they are kept at least 1.25 mm from bone.

Confounders: nail, calcified digital artery (15 %), table or foam (20 %), and thermoplastic or
aluminium splint (12 %).

Acquisition: spacing 0.1-0.42 mm, Gaussian PSF of 0.2-0.5 mm FWHM, sharp kernel (40 %), streaks
(30 %), correlated noise of 8-50 HU, and 8-bit W1500/L450 export (25 %). The truth is the ideal
objects before blur. Each seed is the densest point of its own blurred deposit. Timing is
0.07 s mean and 0.3 s max per case.
"""
import math

import numpy as np
from scipy import ndimage as ndi

_WIN_W, _WIN_L = 1500.0, 450.0
_BONE_NAMES = ("MC", "PP", "MP", "DP")


# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------
def _field(rng, shape, corr_px):
    """Smooth zero-mean unit-variance random field (coarse noise, upsampled)."""
    corr_px = max(float(corr_px), 1.0)
    gh = int(math.ceil(shape[0] / corr_px)) + 3
    gw = int(math.ceil(shape[1] / corr_px)) + 3
    g = ndi.gaussian_filter(rng.standard_normal((gh, gw)).astype(np.float32), 0.8)
    z = ndi.zoom(g, corr_px, order=1, prefilter=False)[: shape[0], : shape[1]]
    if z.shape != tuple(shape):  # safety (rounding)
        z = np.pad(z, ((0, shape[0] - z.shape[0]), (0, shape[1] - z.shape[1])), mode="edge")
    z = z - z.mean()
    return z / (z.std() + 1e-6)


def _noise1d(rng, lo, hi, step, corr):
    n = int((hi - lo) / step) + 3
    x = lo + step * np.arange(n)
    y = ndi.gaussian_filter1d(rng.standard_normal(n), max(corr / step, 0.5), mode="nearest")
    return x, y / (y.std() + 1e-9)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class _Bone:
    """A tubular bone in its own axis frame: s along the axis (0 = base),
    v perpendicular (+ = dorsal).  Radii are half the sagittal height."""

    def __init__(self, name, L, rb, rs, rh, cap_p, cap_d, p_d, conc, rng,
                 rough=0.03, tip_rough=0.0):
        self.name, self.L = name, float(L)
        self.rb, self.rs, self.rh = float(rb), float(rs), float(rh)
        self.cap_p, self.cap_d, self.p_d, self.conc = float(cap_p), float(cap_d), float(p_d), float(conc)
        self.rough, self.tip_rough = rough, tip_rough
        self.nx, self.nd = _noise1d(rng, -12.0, self.L + 12.0, 0.25, 0.9)
        _, self.npal = _noise1d(rng, -12.0, self.L + 12.0, 0.25, 0.9)
        _, self.nfine = _noise1d(rng, -12.0, self.L + 12.0, 0.1, 0.25)

    def radius(self, s, side, noisy=True):
        s = np.asarray(s, dtype=np.float32)
        sc = np.clip(s, 0.0, self.L)
        t = sc / self.L
        r = (self.rs + (self.rb - self.rs) * np.exp(-(t / 0.16) ** 2)
             + (self.rh - self.rs) * np.exp(-((1.0 - t) / 0.14) ** 2))
        if not noisy:
            return r.astype(np.float32)
        nd = np.interp(sc, self.nx, self.nd)
        npl = np.interp(sc, self.nx, self.npal)
        nz = np.where(np.asarray(side) > 0, nd, npl)
        amp = self.rough + self.tip_rough * np.clip((t - 0.55) / 0.45, 0, 1) ** 2
        if self.tip_rough > 0:
            nz = nz + 0.8 * np.interp(sc, np.linspace(-12.0, self.L + 12.0, self.nfine.size), self.nfine)
        return (r * (1.0 + amp * nz)).astype(np.float32)

    def inside(self, s, v):
        side = np.where(v >= 0, 1, -1)
        r = self.radius(s, side)
        q = np.clip(np.abs(v) / r, 0.0, 1.0)
        s_eff = s - self.conc * (1.0 - q * q)
        up = np.clip((self.cap_p - s_eff) / self.cap_p, 0.0, None)
        ud = np.clip((s - (self.L - self.cap_d)) / self.cap_d, 0.0, None)
        u = np.maximum(up, ud)
        p = np.where(ud > 0, self.p_d, 2.0)
        return (u <= 1.0) & (np.abs(v) <= r) & (np.power(np.minimum(u, 1.0), p) + q * q <= 1.0)


# ----------------------------------------------------------------------------
# main entry
# ----------------------------------------------------------------------------
def make_case(seed: int) -> dict:
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x4A17])
    notes = []

    # ---------------- patient / anatomy parameters ----------------
    thin = rng.random() < 0.4            # sclerodactyly
    acro = rng.random() < 0.3            # acro-osteolysis
    osteo = rng.random() < 0.3           # osteopenia
    size = rng.uniform(0.8, 1.12)
    straight = rng.random() < 0.35
    if straight:
        flex = [rng.uniform(-5, 8), rng.uniform(0, 10), rng.uniform(0, 8)]
    else:
        flex = [rng.uniform(-10, 45), rng.uniform(5, 75), rng.uniform(0, 40)]

    def j():
        return rng.uniform(0.93, 1.07)

    gaps = [rng.uniform(0.6, 1.6) for _ in range(3)]
    concs = [min(0.6 * g, rng.uniform(0.3, 0.8)) for g in gaps]
    rough = rng.uniform(0.015, 0.04)
    specs = []
    specs.append(dict(name="MC", L=62 * size * j(), rb=5.0 * size, rs=3.7 * size * j(), rh=6.4 * size * j(),
                      cap_p=1.0, p_d=2.0, conc=0.0))
    specs[-1]["cap_d"] = specs[-1]["rh"] * 0.95
    rh = 3.5 * size * j()
    specs.append(dict(name="PP", L=41 * size * j(), rb=4.6 * size * j(), rs=3.0 * size * j(), rh=rh,
                      cap_p=0.6, cap_d=rh * rng.uniform(0.85, 1.0), p_d=2.0, conc=concs[0]))
    rh = 2.8 * size * j()
    specs.append(dict(name="MP", L=24 * size * j(), rb=3.8 * size * j(), rs=2.3 * size * j(), rh=rh,
                      cap_p=0.6, cap_d=rh * rng.uniform(0.85, 1.0), p_d=2.0, conc=concs[1]))
    rs_dp = 1.45 * size * j()
    dp = dict(name="DP", L=17 * size * j(), rb=2.75 * size * j(), rs=rs_dp, rh=rs_dp * rng.uniform(0.95, 1.3),
              cap_p=0.6, cap_d=1.3 * size, p_d=rng.uniform(3.0, 5.0), conc=concs[2])
    tip_rough = 0.0
    if acro:
        dp["L"] *= rng.uniform(0.5, 0.85)
        dp["rh"] = dp["rs"] * rng.uniform(0.55, 1.0)
        dp["cap_d"] = min(rng.uniform(1.5, 3.5), 0.4 * dp["L"])
        dp["p_d"] = rng.uniform(1.3, 2.2)
        tip_rough = rng.uniform(0.12, 0.3)
    specs.append(dp)

    bones = []
    for i, sp_ in enumerate(specs):
        bones.append(_Bone(sp_["name"], sp_["L"], sp_["rb"], sp_["rs"], sp_["rh"], sp_["cap_p"], sp_["cap_d"],
                           sp_["p_d"], sp_["conc"], rng, rough=rough, tip_rough=(tip_rough if i == 3 else 0.0)))

    # chain in finger frame (x along finger, y dorsal)
    a = 0.0
    P0 = np.array([0.0, 0.0])
    frames = []
    for i, b in enumerate(bones):
        d = np.array([math.cos(a), math.sin(a)])
        n = np.array([-math.sin(a), math.cos(a)])
        frames.append((P0.copy(), d, n))
        if i < 3:
            C = P0 + (b.L - b.cap_d) * d
            a = a - math.radians(flex[i])
            dn = np.array([math.cos(a), math.sin(a)])
            P0 = C + (b.cap_d + gaps[i] - bones[i + 1].conc) * dn

    # soft-tissue thickness parameters
    if thin:
        td, tp = rng.uniform(1.5, 2.8), rng.uniform(2.0, 3.5)
        pulp, tp_pulp = rng.uniform(2.2, 4.0), None
        bed, skin_th = rng.uniform(0.8, 1.4), rng.uniform(0.9, 1.6)
        fat_amount = rng.uniform(0.05, 0.3)
        te, tf = rng.uniform(0.5, 0.8), rng.uniform(0.9, 1.5)
    else:
        td, tp = rng.uniform(2.5, 4.5), rng.uniform(4.5, 8.5)
        pulp, tp_pulp = rng.uniform(3.5, 6.5), None
        bed, skin_th = rng.uniform(1.2, 2.2), rng.uniform(0.8, 1.5)
        fat_amount = rng.uniform(0.5, 0.9)
        te, tf = rng.uniform(0.7, 1.2), rng.uniform(1.6, 2.8)
    tp_pulp = tp * rng.uniform(1.0, 1.3)
    if acro:
        pulp *= 0.75
    nth = rng.uniform(0.5, 1.0)
    has_nail = rng.random() < 0.93
    s_n0 = dp["L"] * rng.uniform(0.25, 0.45)
    fold = rng.uniform(0.5, 2.0)
    nail_free = rng.uniform(0.0, 1.2)
    tdk = [td * 1.2 + 0.5, td * j(), td * j(), td * j()]
    tpk = [tp * 1.5 + 3.0, tp * j(), tp * j(), tp_pulp]

    def envelope(k, s):
        """Dorsal (Rd) and palmar (Rp) outline heights for segment k at s."""
        b = bones[k]
        s = np.asarray(s, dtype=np.float32)
        sc = np.clip(s, 0.0, b.L)
        rd = b.radius(sc, 1, noisy=False)
        rp = b.radius(sc, -1, noisy=False)
        if k > 0:
            wk = _smoothstep(s / (0.35 * b.L))
            tdv = tdk[k - 1] + (tdk[k] - tdk[k - 1]) * wk
            tpv = tpk[k - 1] + (tpk[k] - tpk[k - 1]) * wk
        else:
            tdv, tpv = tdk[0], tpk[0]
        Rd = np.maximum(b.rs + 0.8 * (rd - b.rs) + tdv, rd + 0.8)
        Rp = np.maximum(b.rs + 0.8 * (rp - b.rs) + tpv, rp + 0.8)
        if k == 3:
            if has_nail:
                Rd = np.where(s >= s_n0 + fold, rd + bed, Rd)
            u = np.clip((s - b.L) / pulp, 0.0, 1.0)
            Rd = Rd * np.sqrt(np.clip(1.0 - u ** 2.5, 0.0, 1.0))
            Rp = Rp * np.sqrt(np.clip(1.0 - u ** 1.8, 0.0, 1.0))
        return Rd, Rp

    def seg_range(k):
        b = bones[k]
        lo = -400.0 if k == 0 else -1.2
        hi = b.L + pulp if k == 3 else b.L + 1.2
        return lo, hi

    # ---------------- view selection ----------------
    views = ["tip", "distal", "middle", "full", "proximal", "proxmid"]
    view = views[rng.choice(6, p=[0.1, 0.25, 0.2, 0.25, 0.1, 0.1])]
    tip_end = 3.0 + (bones[3].L + pulp + 0.5) / bones[3].L
    if view == "tip":
        cp_lo, cp_hi = 3.0 + rng.uniform(0.12, 0.4), tip_end
    elif view == "distal":
        cp_lo, cp_hi = 2.0 + rng.uniform(0.2, 0.65), tip_end
    elif view == "middle":
        cp_lo, cp_hi = 1.0 + rng.uniform(0.4, 0.8), tip_end
    elif view == "full":
        cp_lo, cp_hi = rng.uniform(0.78, 1.05), tip_end
    elif view == "proximal":
        cp_lo, cp_hi = rng.uniform(0.72, 0.86), 2.0 + rng.uniform(0.3, 0.9)
    else:
        cp_lo, cp_hi = 1.0 + rng.uniform(0.0, 0.3), 3.0 + rng.uniform(0.25, 0.8)

    pts = []
    for k in range(4):
        b = bones[k]
        lo, hi = seg_range(k)
        ss = np.arange(max(lo, -1.0), hi + 0.01, 0.7)
        cp = k + ss / b.L
        ss = ss[(cp >= cp_lo) & (cp <= cp_hi)]
        if ss.size == 0:
            continue
        Rd, Rp = envelope(k, ss)
        P0f, d, n = frames[k]
        P = P0f[None, :] + ss[:, None] * d[None, :]
        pts.append(P + Rd[:, None] * n[None, :])
        pts.append(P - Rp[:, None] * n[None, :])
        if k == 3 and has_nail:
            pts.append(P + (Rd[:, None] + nth) * n[None, :])
    pts = np.concatenate(pts, 0)

    if view == "tip":
        theta = rng.integers(4) * math.pi / 2 + math.radians(rng.uniform(-8, 8))
    elif rng.random() < 0.5:
        theta = rng.uniform(0, 2 * math.pi)
    else:
        theta = rng.choice([-math.pi / 2, 0.0]) + math.radians(rng.uniform(-20, 20))
        theta = theta - math.radians(flex[1] * 0.4)
    mirror = 1.0 if rng.random() < 0.5 else -1.0
    c, s_ = math.cos(theta), math.sin(theta)
    M = np.array([[c, -s_], [s_, c]]) @ np.diag([1.0, mirror])
    q = pts @ M.T
    lo_xy, hi_xy = q.min(0), q.max(0)
    margins = rng.uniform(1.0, 8.0, size=4)  # left, right, top, bottom
    if view == "tip":
        margins = rng.uniform(0.3, 3.0, size=4)
    if rng.random() < 0.15:
        margins[rng.integers(4)] = -rng.uniform(0.5, 2.5)
    Wmm = hi_xy[0] - lo_xy[0] + margins[0] + margins[1]
    Hmm = hi_xy[1] - lo_xy[1] + margins[2] + margins[3]
    # pixel spacing 0.1-0.5 mm and 200-1000 px per side: pad the field of view with air where needed
    sp = float(math.exp(rng.uniform(math.log(0.1), math.log(0.42))))
    sp = min(sp, max(0.1, 2.2 * min(Wmm, Hmm) / 200.0))  # at most ~2x air padding
    sp = max(sp, max(Wmm, Hmm) / 980.0)
    sp = round(min(sp, 0.5), 4)
    for ax_ in (0, 1):
        ext = Wmm if ax_ == 0 else Hmm
        need = 200.0 * sp * rng.uniform(1.0, 1.25)
        if ext < need:
            extra = need - ext
            f = rng.uniform(0.2, 0.8)
            dirv = M @ frames[3][1]
            if view == "tip" and abs(dirv[ax_]) > 0.7:  # pad beyond the fingertip only
                f = 0.0 if dirv[ax_] > 0 else 1.0
            margins[2 * ax_] += extra * f
            margins[2 * ax_ + 1] += extra * (1 - f)
            if ax_ == 0:
                Wmm = need
            else:
                Hmm = need
    W = int(np.clip(round(Wmm / sp), 200, 1000))
    H = int(np.clip(round(Hmm / sp), 200, 1000))
    T = -lo_xy + np.array([margins[0], margins[2]])

    # image-frame bone frames
    fr_img = []
    for k in range(4):
        P0f, d, n = frames[k]
        fr_img.append((M @ P0f + T, M @ d, M @ n))

    X = (np.arange(W, dtype=np.float32) * sp)[None, :]
    Y = (np.arange(H, dtype=np.float32) * sp)[:, None]
    S, V = [], []
    for k in range(4):
        P, d, n = fr_img[k]
        S.append(((X - P[0]) * d[0] + (Y - P[1]) * d[1]).astype(np.float32))
        V.append(((X - P[0]) * n[0] + (Y - P[1]) * n[1]).astype(np.float32))

    # ---------------- bones ----------------
    bone = np.zeros((H, W), bool)
    bone_hu = np.zeros((H, W), np.float32)
    bone_box = [None] * 4
    if osteo:
        c0_hu, ct_sh, m0 = rng.uniform(750, 1150), rng.uniform(0.4, 0.75), rng.uniform(60, 180)
        trab = rng.uniform(30, 70)
    else:
        c0_hu, ct_sh, m0 = rng.uniform(1250, 2000), rng.uniform(0.9, 1.6), rng.uniform(180, 420)
        trab = rng.uniform(50, 130)
    ct_end = rng.uniform(0.35, 0.6)
    for k in range(4):
        b = bones[k]
        P, d, n = fr_img[k]
        rmax = max(b.rb, b.rs, b.rh) * 1.4 + 1.0
        s_lo = -2.0 if k > 0 else -400.0
        cor = []
        for ss in (s_lo, b.L + 1.0):
            for vv in (-rmax, rmax):
                cor.append(P + ss * d + vv * n)
        cor = np.array(cor)
        c0 = int(np.floor(cor[:, 0].min() / sp)) - 3
        c1 = int(np.ceil(cor[:, 0].max() / sp)) + 4
        r0 = int(np.floor(cor[:, 1].min() / sp)) - 3
        r1 = int(np.ceil(cor[:, 1].max() / sp)) + 4
        c0, c1, r0, r1 = max(c0, 0), min(c1, W), max(r0, 0), min(r1, H)
        if c1 - c0 < 2 or r1 - r0 < 2:
            continue
        sub = (slice(r0, r1), slice(c0, c1))
        s, v = S[k][sub], V[k][sub]
        m = b.inside(s, v) & ~bone[sub]
        if not m.any():
            continue
        bone_box[k] = (r0, r1, c0, c1)
        dep = ndi.distance_transform_edt(m).astype(np.float32) * sp
        t = np.clip(s / b.L, 0, 1)
        ct = min(ct_sh, 0.42 * b.rs)
        ctv = ct_end + (ct - ct_end) * np.exp(-((t - 0.5) / 0.28) ** 2)
        if k == 3:
            ctv = ctv + max(0.45 * b.rh - ct, 0.0) * _smoothstep((t - 0.6) / 0.4)  # denser tuft
        w = _smoothstep((ctv - dep) / 0.3 + 0.5)
        shp = m.shape
        marrow = m0 + trab * _field(rng, shp, 0.35 / sp) + 0.5 * trab * _field(rng, shp, 1.2 / sp)
        cort = c0_hu * (1.0 + 0.05 * _field(rng, shp, 1.0 / sp))
        hu_b = marrow + (cort - marrow) * w
        bone[sub] |= m
        bone_hu[sub] = np.where(m, hu_b, bone_hu[sub])
    dist_bone = ndi.distance_transform_edt(~bone).astype(np.float32) * sp

    # ---------------- soft tissue envelope ----------------
    body = np.zeros((H, W), bool)
    best = np.full((H, W), np.inf, np.float32)
    SEG = np.zeros((H, W), np.int8)
    for k in range(4):
        lo, hi = seg_range(k)
        s, v = S[k], V[k]
        dist = np.hypot(s - np.clip(s, lo, hi), v)
        upd = dist < best
        best = np.where(upd, dist, best)
        SEG[upd] = k
        # envelope only where the segment can matter
        sel = (s >= lo) & (s <= hi) & (np.abs(v) < 40.0)
        if not sel.any():
            continue
        Rd, Rp = envelope(k, s[sel])
        vv = v[sel]
        body[sel] |= (vv <= Rd) & (vv >= -Rp)
    # joint fillers (dorsal knuckle)
    for k in range(3):
        b = bones[k]
        P, d, n = fr_img[k]
        C = P + (b.L - b.cap_d) * d
        rr = b.rh + tdk[k + 1]
        body |= (X - C[0]) ** 2 + (Y - C[1]) ** 2 <= rr * rr
    body |= dist_bone <= 0.8
    body = ndi.gaussian_filter(body.astype(np.float32), 1.1 / sp, truncate=3.0) > 0.5
    body |= dist_bone <= 0.7
    Vn = np.choose(SEG, V)  # v of nearest segment (for palmar/dorsal)

    # nail
    nail = np.zeros((H, W), bool)
    if has_nail:
        b = bones[3]
        s, v = S[3], V[3]
        s_bed = b.L + pulp * rng.uniform(0.3, 0.6)
        s_n1 = s_bed + nail_free
        sel = (s >= s_n0) & (s <= s_n1) & (v > -1.0) & (v < 15.0)
        if sel.any():
            ss, vv = s[sel], v[sel]
            rd = b.radius(np.clip(ss, 0, b.L), 1, noisy=False)
            vin = rd + bed - 0.12 * np.clip(ss - b.L, 0, None) ** 1.3
            th = nth * np.clip((ss - s_n0) / 1.5, 0.35, 1.0)
            nl = (vv >= vin) & (vv <= vin + th)
            nail[sel] = nl
            body[sel] |= (vv >= 0) & (vv < vin) & (ss <= s_bed) & ~nl
    finger = body | nail
    depth = ndi.distance_transform_edt(finger).astype(np.float32) * sp


    # ---------------- soft tissue HU ----------------
    soft0 = rng.uniform(45, 70) if thin else rng.uniform(30, 55)
    hu = np.full((H, W), -1000.0, np.float32) + 4.0 * _field(rng, (H, W), 3.0 / sp)
    soft = soft0 + 6.0 * _field(rng, (H, W), 1.5 / sp)
    # tendons
    tendon = np.zeros((H, W), bool)
    for k in range(4):
        b = bones[k]
        s, v = S[k], V[k]
        smax = b.L if k < 3 else 0.3 * b.L
        sel = (s >= 0) & (s <= smax) & (np.abs(v) < b.rb + 6.0)
        if not sel.any():
            continue
        ss, vv = s[sel], v[sel]
        rd = b.radius(ss, 1)
        rp = b.radius(ss, -1)
        ext = (vv >= rd + 0.05) & (vv <= rd + 0.05 + te * (1.6 if k == 0 else 1.0))
        fle = (vv <= -(rp + 0.3)) & (vv >= -(rp + 0.3 + tf * (1.4 if k == 0 else 1.0)))
        tendon[sel] |= ext | fle
    tendon &= body & (depth > skin_th) & ~bone
    fatf = _field(rng, (H, W), rng.uniform(1.0, 2.0) / sp)
    fat_w = ndi.gaussian_filter(np.where(Vn < 0, 1.0, 0.4).astype(np.float32), 1.5 / sp, truncate=2.5)
    frac = (fat_amount * fat_w / (1.0 + np.exp(-3.0 * (fatf + 0.4)))
            * _smoothstep((depth - skin_th) / 0.8) * _smoothstep((dist_bone - 0.6) / 1.0))
    frac = np.where(tendon, 0.0, frac)
    fat_hu = rng.uniform(-115, -80)
    tis = soft * (1 - frac) + fat_hu * frac
    skin_w = _smoothstep((skin_th - depth) / 0.3 + 0.5)
    tis = tis + skin_w * (rng.uniform(10, 30) + soft0 - tis) * 1.0
    ten_hu = rng.uniform(75, 110)
    tis = np.where(tendon, ten_hu + 5.0 * _field(rng, (H, W), 1.0 / sp), tis)
    hu = np.where(body, tis, hu)
    nail_hu = rng.uniform(180, 450)
    hu = np.where(nail, nail_hu, hu)
    conf = []
    if has_nail and nail.any():
        conf.append("nail")

    # ---------------- confounders ----------------
    artery = np.zeros((H, W), bool)
    if rng.random() < 0.15:
        tram = rng.random() < 0.5
        w_a = rng.uniform(0.3, 0.6)
        dA = skin_th + rng.uniform(0.5, 2.0)
        period, duty = rng.uniform(2.0, 6.0), rng.uniform(0.5, 0.95)
        phase = rng.uniform(0, period)
        diam = rng.uniform(0.8, 1.4)
        for k in (1, 2, 3):
            b = bones[k]
            s, v = S[k], V[k]
            smax = b.L if k < 3 else 0.6 * b.L
            sel = (s >= 0) & (s <= smax) & (v < 0) & (v > -30)
            if not sel.any():
                continue
            ss, vv = s[sel], v[sel]
            _, Rp = envelope(k, ss)
            rp = b.radius(ss, -1)
            va = -np.maximum(Rp - dA, rp + 0.6 + diam / 2)
            on = ((ss + phase) % period) < duty * period
            if tram:
                mm = (np.abs(vv - va - diam / 2) <= w_a / 2) | (np.abs(vv - va + diam / 2) <= w_a / 2)
            else:
                mm = np.abs(vv - va) <= w_a / 2 + 0.1
            artery[sel] |= mm & on
        artery &= body & (depth > 0.6 * skin_th) & (dist_bone > 0.4)
        if artery.sum() * sp * sp > 0.5:
            hu = np.where(artery, rng.uniform(350, 950), hu)
            conf.append("calcified digital artery")
        else:
            artery[:] = False

    ext_kind = rng.choice(["none", "table", "splint"], p=[0.68, 0.2, 0.12])
    streak_force = False
    if ext_kind == "table":
        P, d, n = fr_img[1]
        ang = rng.uniform(-8, 8) * math.pi / 180
        ca, sa = math.cos(ang), math.sin(ang)
        nt = np.array([ca * n[0] - sa * n[1], sa * n[0] + ca * n[1]])  # dorsal-ish normal
        rr, cc = np.nonzero(finger)
        if rr.size:
            proj = -(cc * sp * nt[0] + rr * sp * nt[1])
            tmax = proj.max()
            g = rng.uniform(0.3, 6.0)
            th = rng.uniform(2.0, 6.0)
            pt = -(X * nt[0] + Y * nt[1])
            tab = (pt >= tmax + g) & (pt <= tmax + g + th)
            hu = np.where(tab, rng.uniform(80, 400) + 15 * _field(rng, (H, W), 2.0 / sp), hu)
            if g > 2.0 and rng.random() < 0.6:
                foam = (pt >= tmax + 0.3) & (pt < tmax + g) & ~finger
                hu = np.where(foam, rng.uniform(-920, -750), hu)
                conf.append("table with foam pad")
            else:
                conf.append("table")
    elif ext_kind == "splint":
        dist_out = ndi.distance_transform_edt(~finger).astype(np.float32) * sp
        palm = rng.random() < 0.6
        side_ok = (Vn < 0) if palm else (Vn > 0)
        side_ok &= (SEG >= 1)
        if rng.random() < 0.6:
            g, th, shu = rng.uniform(0.3, 1.5), rng.uniform(1.5, 3.0), rng.uniform(60, 220)
            kind_s = "thermoplastic splint"
        else:
            g, th, shu = rng.uniform(1.5, 3.5), rng.uniform(0.5, 1.0), rng.uniform(1800, 3000)
            kind_s = "aluminium splint"
            foam = (dist_out > 0.2) & (dist_out < g) & side_ok
            hu = np.where(foam, rng.uniform(-850, -600), hu)
            streak_force = True
        spl = (dist_out >= g) & (dist_out <= g + th) & side_ok
        lab_s, nls = ndi.label(spl)
        if nls > 1:
            cnt = np.bincount(lab_s.ravel()); cnt[0] = 0
            spl = lab_s == int(np.argmax(cnt))
        hu = np.where(spl, shu, hu)
        conf.append(kind_s)

    # bone on top
    hu = np.where(bone, bone_hu, hu)

    # ---------------- deposits ----------------
    labels = np.zeros((H, W), np.int32)
    dep_hu = np.zeros((H, W), np.float32)
    occ = np.zeros((H, W), bool)  # deposits dilated (no touching)
    excl = ndi.binary_dilation(nail | artery, iterations=1)
    bm = 3
    excl[:bm, :] = True; excl[-bm:, :] = True; excl[:, :bm] = True; excl[:, -bm:] = True
    allowed = body & ~bone & ~excl
    psf_fwhm = rng.uniform(0.2, 0.5)
    seed_sig = max(psf_fwhm / 2.355, 0.15) / sp
    areas, seeds, info = [], [], []

    vis = [(bone_box[k] is not None) and
           bone[bone_box[k][0]:bone_box[k][1], bone_box[k][2]:bone_box[k][3]].sum() * sp * sp > 12.0
           for k in range(4)]

    def box_from_pts(ptsxy, pad):
        ptsxy = np.asarray(ptsxy)
        c0 = int(np.floor((ptsxy[:, 0].min() - pad) / sp)) - 3
        c1 = int(np.ceil((ptsxy[:, 0].max() + pad) / sp)) + 4
        r0 = int(np.floor((ptsxy[:, 1].min() - pad) / sp)) - 3
        r1 = int(np.ceil((ptsxy[:, 1].max() + pad) / sp)) + 4
        c0, c1, r0, r1 = max(c0, 0), min(c1, W), max(r0, 0), min(r1, H)
        if c1 - c0 < 3 or r1 - r0 < 3:
            return None
        return (slice(r0, r1), slice(c0, c1))

    ord_gap = [None]  # minimum distance of ordinary deposits from bone

    def commit(sub, mask, inten, kind, gap=None, max_gap=None, ordinary=False):
        if len(areas) >= 8:
            return False
        if not mask.any():
            return False
        if float((mask & ~finger[sub]).sum()) > 0.12 * float(mask.sum()):
            return False  # would be clipped flat by the skin surface
        m = mask & allowed[sub] & ~occ[sub]
        if gap is not None and gap > 0:
            m &= dist_bone[sub] > gap
        if not m.any():
            return False
        lab, nl = ndi.label(m)
        if nl > 1:
            cnt = np.bincount(lab.ravel())
            cnt[0] = 0
            m = lab == int(np.argmax(cnt))
        npx = int(m.sum())
        area = npx * sp * sp
        if area < 0.2 or area > 60.0:
            return False
        dmin = float(dist_bone[sub][m].min())
        if max_gap is not None and dmin > max_gap + 0.75 * sp:
            return False
        if ordinary and ord_gap[0] is not None and dmin < ord_gap[0]:
            return False
        k = len(areas) + 1
        labels[sub][m] = k
        dep_hu[sub][m] = inten[m]
        occ[sub] |= ndi.binary_dilation(m, iterations=2)
        sm = ndi.gaussian_filter(np.where(m, inten, 0.0).astype(np.float32), seed_sig)
        sm = np.where(m, sm, -np.inf)
        idx = np.unravel_index(int(np.argmax(sm)), sm.shape)
        seeds.append((int(idx[0] + sub[0].start), int(idx[1] + sub[1].start)))
        areas.append(float(npx * sp * sp))
        info.append((kind, dmin))
        return True

    def blob(center, a, b_, ang, lob, B, lo_frac, tex=0.04):
        R = max(a, b_) * (1.0 + 2 * lob) + 0.5
        sub = box_from_pts([center], R)
        if sub is None:
            return None
        xc, yc = X[:, sub[1]] - center[0], Y[sub[0], :] - center[1]
        ca, sa = math.cos(ang), math.sin(ang)
        p = xc * ca + yc * sa
        qq = -xc * sa + yc * ca
        rho = np.sqrt((p / a) ** 2 + (qq / b_) ** 2)
        th = np.arctan2(qq / b_, p / a)
        rth = np.ones_like(th)
        for kk in range(2, 6):
            rth = rth + lob * rng.uniform(0, 1) / kk * np.cos(kk * th + rng.uniform(0, 2 * math.pi))
        mask = rho <= rth
        ci = int(round(center[1] / sp)) - sub[0].start
        cj = int(round(center[0] / sp)) - sub[1].start
        if 0 <= ci < mask.shape[0] and 0 <= cj < mask.shape[1]:
            mask[ci, cj] = True
        cp_ = rng.uniform(-0.35, 0.35, 2) * np.array([a, b_])
        sc = 0.55 * min(a, b_) + 0.15
        g = np.exp(-((p - cp_[0]) ** 2 + (qq - cp_[1]) ** 2) / (2 * sc * sc))
        inten = B * (lo_frac + (1 - lo_frac) * g) * (1 + tex * _field(rng, mask.shape, 0.4 / sp))
        return sub, mask, inten.astype(np.float32)

    def rand_pixel(cand):
        idx = np.flatnonzero(cand)
        if idx.size == 0:
            return None
        i = idx[rng.integers(idx.size)]
        return np.array([(i % W) * sp, (i // W) * sp])

    def place_bone_plaque(gap, B):
        ks = [k for k in range(4) if vis[k]]
        if not ks:
            return False
        k = ks[rng.integers(len(ks))]
        b = bones[k]
        r0, r1, c0, c1 = bone_box[k]
        sub0 = (slice(r0, r1), slice(c0, c1))
        bmk = bone[sub0] & (np.abs(V[k][sub0]) < b.rb * 1.3)
        edge = bmk & ~ndi.binary_erosion(bmk)
        s_min, s_max = b.cap_p + 0.6, b.L - 0.6 * b.cap_d
        sv = S[k][sub0]
        edge &= (sv > s_min) & (sv < s_max) & (allowed[sub0] | True)
        ii = np.flatnonzero(edge)
        if ii.size == 0:
            return False
        i = ii[rng.integers(ii.size)]
        s_pix = float(sv.ravel()[i])
        side = 1.0 if float(V[k][sub0].ravel()[i]) > 0 else -1.0
        ell = rng.uniform(2.5, max(3.0, min(12.0, 0.75 * (s_max - s_min))))
        s0 = s_pix - ell * rng.uniform(0.25, 0.75)
        s0 = float(np.clip(s0, s_min, max(s_min, s_max - ell)))
        ell = min(ell, s_max - s0)
        if ell < 1.5:
            return False
        th0 = rng.uniform(0.4, 1.6)
        P, d, n = fr_img[k]
        ptsb = [P + ss * d + side * vv * n for ss in (s0, s0 + ell) for vv in (0, b.rb + gap + th0 + 1)]
        sub = box_from_pts(ptsb, 1.0)
        if sub is None:
            return False
        s, v = S[k][sub], V[k][sub]
        u = (s - s0) / ell
        xs, nz = _noise1d(rng, s0 - 1, s0 + ell + 1, 0.2, 0.8)
        prof = np.maximum(np.sin(np.pi * np.clip(u, 0, 1)), 0) ** 0.5 * (1 + 0.25 * np.interp(s, xs, nz))
        r = b.radius(s, side)
        vv = side * v
        vin = r + gap - (0.6 if gap == 0 else 0.0)
        mask = (u > 0) & (u < 1) & (vv >= vin) & (vv <= r + gap + th0 * prof)
        s_pk = s0 + ell * rng.uniform(0.2, 0.8)
        inten = B * (0.72 + 0.28 * np.exp(-((s - s_pk) / (0.3 * ell)) ** 2)) * (1 + 0.03 * _field(rng, s.shape, 0.5 / sp))
        return commit(sub, mask, inten.astype(np.float32), "bone-surface plaque (%s %s, gap %.1f mm)" % (
            b.name, "dorsal" if side > 0 else "palmar", gap), gap=gap, max_gap=gap + 0.3)

    def place_skin_plaque(B, hard):
        ks = [k for k in range(1, 4) if vis[k]] or [k for k in range(4) if vis[k]]
        cand0 = allowed & (depth > 0.3) & (depth < 1.6)
        if not ks:
            ks = [int(x) for x in np.unique(SEG[cand0])] if cand0.any() else []
            if not ks:
                return False
        k = ks[rng.integers(len(ks))]
        c = rand_pixel(cand0 & (SEG == k))
        if c is None:
            return False
        P, d, n = fr_img[k]
        s_c = float((c - P) @ d)
        side = 1.0 if float((c - P) @ n) > 0 else -1.0
        ell = rng.uniform(3.0, 12.0)
        th0 = rng.uniform(0.4, 1.3)
        d0 = rng.uniform(0.15, 0.7) * skin_th
        Rmax = 25.0
        ptsb = [P + ss * d + side * vv * n for ss in (s_c - ell / 2, s_c + ell / 2) for vv in (0, Rmax)]
        sub = box_from_pts(ptsb, 0.5)
        if sub is None:
            return False
        s, v = S[k][sub], V[k][sub]
        u = (s - (s_c - ell / 2)) / ell
        xs, nz = _noise1d(rng, s_c - ell, s_c + ell, 0.2, 0.8)
        prof = np.maximum(np.sin(np.pi * np.clip(u, 0, 1)), 0) ** 0.6 * (1 + 0.25 * np.interp(s, xs, nz))
        dp_ = depth[sub]
        mask = (u > 0) & (u < 1) & (side * v > 0) & (dp_ >= d0) & (dp_ <= d0 + th0 * prof) & (SEG[sub] == k)
        s_pk = s_c + ell * rng.uniform(-0.3, 0.3)
        inten = B * (0.72 + 0.28 * np.exp(-((s - s_pk) / (0.3 * ell)) ** 2)) * (1 + 0.03 * _field(rng, s.shape, 0.5 / sp))
        return commit(sub, mask, inten.astype(np.float32), "skin plaque (%s%s)" % (
            _BONE_NAMES[k], ", thin finger" if hard else ""), max_gap=(1.3 if hard else None),
            ordinary=not hard)

    def place_tuft_nodule(gap, B):
        if not vis[3]:
            return False
        b = bones[3]
        P, d, n = fr_img[3]
        tip = P + b.L * d
        alpha = math.radians(rng.uniform(-30, 80))
        dr = math.cos(alpha) * d - math.sin(alpha) * n
        a = rng.uniform(0.8, 2.8)
        b_ = a * rng.uniform(0.5, 1.0)
        center = tip + (gap + rng.uniform(0.2, 0.8) * b_) * dr
        out = blob(center, a, b_, rng.uniform(0, math.pi), 0.15, B, rng.uniform(0.6, 0.85))
        if out is None:
            return False
        sub, mask, inten = out
        return commit(sub, mask, inten, "fingertip nodule by tuft (gap %.1f mm)" % gap, gap=gap, max_gap=gap + 0.3)

    def ord_center(dmin_bone=1.0, dmax=6.0):
        cand = allowed & (depth > 0.3) & (depth < dmax) & (dist_bone > dmin_bone)
        if vis[3] and rng.random() < 0.4:
            c2 = cand & (SEG == 3)
            if c2.any():
                cand = c2
        return rand_pixel(cand)

    def place_nodule():
        c = ord_center()
        if c is None:
            return False
        a = rng.uniform(0.6, 4.2)
        out = blob(c, a, a * rng.uniform(0.5, 1.0), rng.uniform(0, math.pi), 0.2,
                   rng.uniform(500, 2200), rng.uniform(0.55, 0.85))
        return out is not None and commit(*out, "nodule", ordinary=True)

    def place_speck():
        c = ord_center(0.5, 8.0)
        if c is None:
            return False
        a = rng.uniform(0.18, 0.55)
        out = blob(c, a, a * rng.uniform(0.6, 1.0), rng.uniform(0, math.pi), 0.05,
                   rng.uniform(400, 1600), 0.85)
        return out is not None and commit(*out, "speck", ordinary=True)

    def place_faint():
        c = ord_center()
        if c is None:
            return False
        a = rng.uniform(1.0, 3.5)
        out = blob(c, a, a * rng.uniform(0.4, 1.0), rng.uniform(0, math.pi), 0.25,
                   rng.uniform(250, 500), 0.8, tex=0.1)
        return out is not None and commit(*out, "faint deposit", ordinary=True)

    def place_large():
        c = ord_center(1.5, 8.0)
        if c is None:
            return False
        nb = rng.integers(3, 7)
        sub = box_from_pts([c], 8.0)
        if sub is None:
            return False
        mask = np.zeros((sub[0].stop - sub[0].start, sub[1].stop - sub[1].start), bool)
        inten = np.zeros(mask.shape, np.float32)
        for _ in range(nb):
            cc = c + rng.uniform(-2.5, 2.5, 2)
            a = rng.uniform(1.0, 3.0)
            out = blob(cc, a, a * rng.uniform(0.5, 1.0), rng.uniform(0, math.pi), 0.15,
                       rng.uniform(600, 2000), rng.uniform(0.5, 0.8), tex=0.06)
            if out is None:
                continue
            s2, m2, i2 = out
            rr0, cc0 = s2[0].start - sub[0].start, s2[1].start - sub[1].start
            rr0c, cc0c = max(rr0, 0), max(cc0, 0)
            rr1 = min(rr0 + m2.shape[0], mask.shape[0]); cc1 = min(cc0 + m2.shape[1], mask.shape[1])
            if rr1 <= rr0c or cc1 <= cc0c:
                continue
            ms = m2[rr0c - rr0: rr1 - rr0, cc0c - cc0: cc1 - cc0]
            iv = i2[rr0c - rr0: rr1 - rr0, cc0c - cc0: cc1 - cc0]
            tgt = (slice(rr0c, rr1), slice(cc0c, cc1))
            inten[tgt] = np.where(ms, np.maximum(inten[tgt], iv), inten[tgt])
            mask[tgt] |= ms
        return commit(sub, mask, inten, "conglomerate", ordinary=True)

    def place_cluster():
        c = ord_center(0.8, 6.0)
        if c is None:
            return 0
        R = rng.uniform(1.5, 4.0)
        got = 0
        for _ in range(int(rng.integers(3, 6))):
            cc = c + rng.uniform(-R, R, 2)
            a = rng.uniform(0.25, 0.9)
            out = blob(cc, a, a * rng.uniform(0.6, 1.0), rng.uniform(0, math.pi), 0.1,
                       rng.uniform(500, 2000), 0.75)
            if out is not None and commit(*out, "cluster member", ordinary=True):
                got += 1
        return got

    # low-discrepancy stratification over seeds: ~10 % K=0, ~50 % hard cases
    u_case = (int(seed) * 0.6180339887498949 + 0.31) % 1.0
    K0 = u_case < 0.1
    hard = 0.1 <= u_case < 0.6
    n_target = 0 if K0 else int(rng.choice(np.arange(1, 9), p=[.24, .22, .17, .12, .1, .07, .05, .03]))
    hard_kinds = []
    if hard:
        n_hard = 1 if rng.random() < 0.7 else 2
        for _ in range(n_hard):
            opts, w = ["bone"], [0.5]
            if vis[3]:
                opts.append("tuft"); w.append(0.3)
            if thin:
                opts.append("skin"); w.append(0.25)
            w = np.array(w) / sum(w)
            hard_kinds.append(opts[rng.choice(len(opts), p=w)])
        n_target = max(n_target, n_hard)
    for hk in hard_kinds:
        for _try in range(12):
            gap = 0.0 if rng.random() < 0.5 else round(rng.uniform(0.2, 1.0), 2)
            B = rng.uniform(1200, 2500)
            if hk == "bone":
                ok = place_bone_plaque(gap, B)
            elif hk == "tuft":
                ok = place_tuft_nodule(gap, B)
            else:
                ok = place_skin_plaque(B, True)
            if ok:
                break
    if not hard:
        ord_gap[0] = 1.25
    kinds = ["speck", "nodule", "cluster", "faint", "large", "skin"]
    kp = np.array([0.22, 0.30, 0.09, 0.18, 0.11, 0.10])
    tries = 0
    while len(areas) < n_target and tries < 40:
        tries += 1
        kd = kinds[rng.choice(6, p=kp)]
        if kd == "speck":
            place_speck()
        elif kd == "nodule":
            place_nodule()
        elif kd == "cluster":
            place_cluster()
        elif kd == "faint":
            place_faint()
        elif kd == "large":
            place_large()
        else:
            place_skin_plaque(rng.uniform(600, 2000), False)
    if not K0:
        t = 0
        while not areas and t < 60:
            t += 1
            if t > 40:
                ord_gap[0] = None
            place_nodule()

    hu = np.where(labels > 0, dep_hu, hu)

    # ---------------- acquisition ----------------
    sig = psf_fwhm / 2.355 / sp
    img = ndi.gaussian_filter(hu, sig, truncate=3.0)
    if rng.random() < 0.4:  # edge-enhancing bone kernel
        kk = rng.uniform(0.1, 0.35)
        img = img + kk * (img - ndi.gaussian_filter(img, max(2.0 * sig, 0.8), truncate=3.0))
        notes_kernel = "sharp kernel"
    else:
        notes_kernel = "smooth kernel"
    streaks = streak_force or rng.random() < 0.3
    if streaks:
        dense = np.flatnonzero((hu > 900).ravel())
        if dense.size:
            for _ in range(int(rng.integers(1, 5))):
                i = dense[rng.integers(dense.size)]
                x0, y0 = (i % W) * sp, (i // W) * sp
                if rng.random() < 0.5 and dense.size > 1:
                    i2 = dense[rng.integers(dense.size)]
                    x1, y1 = (i2 % W) * sp, (i2 // W) * sp
                    phi = math.atan2(y1 - y0, x1 - x0) if (x1 != x0 or y1 != y0) else rng.uniform(0, math.pi)
                    A = -rng.uniform(30, 110)
                    wdt = rng.uniform(0.5, 1.5)
                else:
                    phi = rng.uniform(0, math.pi)
                    A = rng.choice([-1, 1]) * rng.uniform(20, 80)
                    wdt = rng.uniform(0.2, 0.8)
                dist = (X - x0) * (-math.sin(phi)) + (Y - y0) * math.cos(phi)
                img = img + A * np.exp(-0.5 * (dist / wdt) ** 2)
    noise_sd = rng.uniform(8, 50)
    nz = rng.standard_normal((H, W)).astype(np.float32)
    nz = ndi.gaussian_filter(nz, max(0.5, 0.25 / sp), truncate=2.5)
    nz *= noise_sd / (nz.std() + 1e-6)
    img = img + nz
    eight = rng.random() < 0.25
    if eight:
        val = np.clip(np.round((img - (_WIN_L - _WIN_W / 2)) / _WIN_W * 255.0), 0, 255)
        img = (_WIN_L - _WIN_W / 2) + val / 255.0 * _WIN_W

    # ---------------- notes ----------------
    in_view = [bones[k].name for k in range(4) if bone_box[k] is not None and
               bone[bone_box[k][0]:bone_box[k][1], bone_box[k][2]:bone_box[k][3]].any()]
    near = sum(1 for _, dm in info if dm <= 1.0 + 0.75 * sp)
    desc = ["view=%s" % view, "bones " + "+".join(in_view),
            "flex MCP/PIP/DIP %.0f/%.0f/%.0f deg" % tuple(flex)]
    if thin:
        desc.append("thin sclerodactylous finger")
    if acro:
        desc.append("acro-osteolysis")
    if osteo:
        desc.append("osteopenia")
    desc.append("K=%d (%d near bone)%s" % (len(areas), near, ": " + "; ".join(k for k, _ in info) if info else ""))
    if conf:
        desc.append("confounders: " + ", ".join(conf))
    desc.append("sp %.3f mm, PSF %.2f mm, noise %.0f HU, %s%s%s" % (
        sp, psf_fwhm, noise_sd, notes_kernel, ", streaks" if streaks else "", ", 8-bit W1500/L450" if eight else ""))
    notes.append("; ".join(desc))

    return dict(hu=img.astype(np.float32), spacing_mm=float(sp), bone=bone.copy(),
                deposits=labels.astype(np.int32), areas_mm2=[float(a_) for a_ in areas],
                seeds=[tuple(int(x) for x in s_) for s_ in seeds], notes=notes[0])
