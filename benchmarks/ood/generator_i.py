"""Synthetic sagittal DECT finger images with calcinosis cutis.

Anatomy is analytic: a chain of bones (metacarpal head in ~18 % of cases, proximal, middle and distal phalanx) with flared bases,
concave articular cups, round condylar heads and a distal tuft, joined by
1-1.7 mm joint spaces and flexed palmarwards at MCP/PIP/DIP (straight in ~35 %).
Each bone has a cortex (1200-1950 HU, thinner at the ends) around textured
marrow (180-420 HU); ~30 % are osteopenic, ~25 % of finger views show
acro-osteolysis (shortened, pencilled, ragged tuft). Soft tissue is a smoothed
union of asymmetric capsules (thin dorsal, thick palmar pad and pulp) with
skin, patchy subcutaneous fat, flexor/extensor tendons and a nail plate. Views
(tip-only, tip, distal two, whole finger, MCP region) show 1-3 phalanges at any
rotation, mirrored or not, and ~30 % are cut by the border.

Deposits (K = 0 in ~11 %, else 1-8) lie in skin/subcutis, never in bone:
specks, round and lobulated nodules, separate-labelled clusters, faint cloudy
deposits, bone-touching nodules and thin plaques/sheets that follow the skin
at a fixed depth; 0.2-60 mm2, 250-2500 HU, denser core.

Confounders (not deposits, not bone): a calcified digital artery in ~45 %
(tram-track 2 walls 1-2 mm apart / continuous line / beaded; walls 0.2-0.8 mm,
~350-1300 HU, 4-40 mm long, gently curved, palmar, between bone and skin),
a nail over any distal phalanx; splints (plastic or aluminium, ~10 %), table/couch (~7 %),
ring (~3 %), skin marker (~4 %), tip ulcer (~7 %).

Acquisition: 0.1-0.45 mm pixels, 200-1000 px per side; Gaussian PSF
0.2-0.5 mm FWHM, correlated noise 8-50 HU, streaks (~40 %), clip to
[-1024, 3071]; ~25 % re-quantised through an 8-bit W1500/L450 export.
Truth masks are the ideal objects at pixel centres before blur; seeds are the
brightest blurred pixel in each deposit.
"""

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

__all__ = ["make_case"]

_WIN_W, _WIN_L = 1500.0, 450.0
_F32 = np.float32


# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------
def _dirs(a):
    """Unit direction along the bone axis and the dorsal normal (left of it)."""
    return np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])


def _smooth_noise(rng, shape, sigma_px):
    """Zero-mean, unit-std Gaussian random field with correlation ~sigma_px."""
    f = int(max(1, sigma_px // 2))
    sh = (shape[0] // f + 4, shape[1] // f + 4)
    n = rng.standard_normal(sh).astype(_F32)
    n = ndi.gaussian_filter(n, max(sigma_px / f, 0.5), mode="wrap")
    if f > 1:
        n = ndi.zoom(n, f, order=1, prefilter=False)
    n = n[: shape[0], : shape[1]]
    n = n - n.mean()
    return (n / (n.std() + 1e-6)).astype(_F32)


def _largest_cc(mask, conn4=True):
    st = ndi.generate_binary_structure(2, 1 if conn4 else 2)
    lab, n = ndi.label(mask, structure=st)
    if n <= 1:
        return mask
    cnt = np.bincount(lab.ravel())
    cnt[0] = 0
    return lab == int(np.argmax(cnt))


def _disk(r_px):
    r = int(np.ceil(r_px))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy) <= r_px * r_px + 1e-9


def _seg_overlap(x, a, b, s):
    """1-D exact overlap fraction of pixel [x-s/2, x+s/2] with interval [a, b]."""
    return np.clip(np.minimum(x + s / 2, b) - np.maximum(x - s / 2, a), 0, None) / s


# ----------------------------------------------------------------------------
# anatomy: bones as analytic shapes in their own (s = along, t = dorsal) frame
# ----------------------------------------------------------------------------
def _bone_inside(b, s, t):
    L, rh = b["L"], b["rh"]
    s0 = L - rh
    u = np.clip(s / s0, 0, 1)
    tc = t - b["bow"] * np.sin(np.pi * u)
    w = (
        b["ws"]
        + (b["wb"] - b["ws"]) * np.exp(-((s / b["lb"]) ** 2))
        + (b["wcap"] - b["ws"]) * np.exp(-(((s0 - s) / b["lh"]) ** 2))
    )
    if b["jag"] > 0:
        zone = np.clip((s - b["jag_s0"]) / (s0 - b["jag_s0"] + 1e-6), 0, 1)
        w = w * (1 + b["jag"] * zone * (np.sin(b["jag_f"] * s + b["jag_ph"])
                                        + 0.6 * np.sin(2.3 * b["jag_f"] * s + 2 * b["jag_ph"])))
    kb = np.clip((s0 - s) / b["lh"], 0, 1)
    kd = 1 + (b["kd"] - 1) * kb
    kp = 1 + (b["kp"] - 1) * kb
    shaft = (s >= 0) & (s <= s0) & (tc <= w * kd) & (tc >= -w * kp)
    if b["cup"] > 0:
        shaft &= s >= b["cup"] * (1 - np.minimum((tc / b["wb"]) ** 2, 1))
    cap = (s > s0) & (((s - s0) / rh) ** 2 + (tc / b["wcap"]) ** 2 <= 1)
    return shaft | cap


def _build_finger(rng, with_mc, acro, osteo):
    """Bones + soft-tissue capsules in a finger frame (x along the finger)."""
    sc = rng.uniform(0.85, 1.12)
    chain = (["MC"] if with_mc else []) + ["P1", "P2", "P3"]
    straight = rng.random() < 0.35
    flex = {
        "MCP": 0.0 if straight else np.radians(rng.uniform(0, 50)),
        "PIP": np.radians(rng.uniform(0, 8)) if straight else np.radians(rng.uniform(0, 65)),
        "DIP": np.radians(rng.uniform(0, 6)) if straight else np.radians(rng.uniform(0, 40)),
    }
    joint_after = {"MC": "MCP", "P1": "PIP", "P2": "DIP"}
    bones = []
    origin = np.zeros(2)
    if with_mc:
        origin = np.array([-rng.uniform(58, 64) * sc, 0.0])
    ang = rng.normal(0, 0.03)
    for name in chain:
        b = dict(name=name, jag=0.0, jag_s0=0.0, jag_f=0.0, jag_ph=0.0)
        if name == "MC":
            ws = rng.uniform(3.8, 4.8)
            b.update(L=60.0, wb=ws, ws=ws, rh=rng.uniform(6.0, 7.4), lb=5.0, lh=9.0, cup=0.0)
        elif name == "P1":
            b.update(L=rng.uniform(38, 46), wb=rng.uniform(4.6, 5.6), ws=rng.uniform(2.8, 3.5),
                     rh=rng.uniform(3.8, 4.5), lb=6.0, lh=5.5, cup=rng.uniform(0.6, 1.2))
        elif name == "P2":
            b.update(L=rng.uniform(23, 29), wb=rng.uniform(3.9, 4.6), ws=rng.uniform(2.3, 2.9),
                     rh=rng.uniform(3.0, 3.5), lb=4.5, lh=4.0, cup=rng.uniform(0.5, 0.9))
        else:  # distal phalanx
            b.update(L=rng.uniform(17, 21), wb=rng.uniform(3.3, 4.0), ws=rng.uniform(1.6, 2.1),
                     lb=3.5, lh=2.8, cup=rng.uniform(0.4, 0.7))
            if acro:
                b["L"] *= rng.uniform(0.55, 0.82)
                b["rh"] = rng.uniform(0.5, 1.1)
                b["wcap_"] = rng.uniform(0.5, 1.3)
                b["lh"] = rng.uniform(3.0, 5.0)
                b["jag"] = rng.uniform(0.03, 0.1)
                b["jag_f"] = rng.uniform(0.8, 2.0)
                b["jag_ph"] = rng.uniform(0, 2 * np.pi)
            else:
                b["rh"] = rng.uniform(1.1, 1.9)
                b["wcap_"] = b["ws"] * rng.uniform(1.2, 1.6)
        for k in ("L", "wb", "ws", "rh", "lb", "lh", "cup"):
            b[k] = b[k] * sc if k != "L" or name != "MC" else b[k]
        b["wcap"] = b.pop("wcap_") * sc if "wcap_" in b else b["rh"]
        if b["jag"] > 0:
            b["jag_s0"] = 0.6 * b["L"]
        b["bow"] = rng.uniform(0.1, 0.5) * sc if name != "MC" else 0.0
        b["kd"] = rng.uniform(1.0, 1.12)
        b["kp"] = rng.uniform(0.85, 1.0)
        cs = rng.uniform(0.7, 1.4) * sc * (0.55 if osteo else 1.0)
        b["c_shaft"] = cs
        b["c_end"] = rng.uniform(0.3, 0.5) * (0.8 if osteo else 1.0)
        b["origin"] = origin.copy()
        b["angle"] = ang
        # soft-tissue capsule (dorsal / palmar radii from the bone axis)
        wmax_b = b["wb"]
        if name == "MC":
            b["Rd0"] = b["ws"] + rng.uniform(2.0, 3.0)
            b["Rd1"] = b["rh"] + rng.uniform(1.8, 3.0)
            b["Rp0"] = rng.uniform(16, 22)
            b["Rp1"] = b["rh"] + rng.uniform(5.0, 8.0)
            b["sa"], b["sb"] = -60.0, b["L"]
        else:
            b["Rd0"] = wmax_b * b["kd"] + rng.uniform(1.6, 2.8)
            b["Rd1"] = max(b["rh"], b["wcap"]) + rng.uniform(1.6, 2.8)
            b["Rp0"] = wmax_b * b["kp"] + rng.uniform(3.5, 6.5)
            b["Rp1"] = max(b["rh"], b["wcap"]) + rng.uniform(3.0, 6.0)
            b["sa"], b["sb"] = (-60.0 if (name == "P1" and not with_mc) else 0.0), b["L"]
        b["pulp"] = 0.0
        if name == "P3":
            b["Rd1"] = b["wcap"] + rng.uniform(1.4, 2.4)
            b["Rp1"] = b["wcap"] + rng.uniform(2.5, 5.0) * (0.7 if acro else 1.0)
            b["pulp"] = rng.uniform(0.5, 2.0) * (0.4 if acro else 1.0)
            b["Rax1"] = rng.uniform(2.5, 5.0) * (0.8 if acro else 1.0) + (b["L"] * 0.25 if acro else 0)
        else:
            b["Rax1"] = 0.9 * min(b["Rd1"], b["Rp1"])
        b["Rax0"] = 0.9 * min(b["Rd0"], b["Rp0"])
        bones.append(b)
        if name in joint_after:
            d, _ = _dirs(ang)
            hc = origin + d * (b["L"] - b["rh"])
            ang = ang - flex[joint_after[name]]
            d2, _ = _dirs(ang)
            gap = rng.uniform(1.0, 1.7) * (1.15 if name == "MC" else 1.0)
            origin = hc + d2 * (b["rh"] + gap)
    return bones, flex


def _capsule_margin(b, s, t):
    """Signed margin (mm, >0 inside) of a bone segment's soft-tissue capsule."""
    sa, sb = b["sa"], b["sb"]
    scl = np.clip(s, sa, sb)
    ds = s - scl
    frac = (scl - sa) / (sb - sa)
    if b["sa"] < -1:  # long proximal capsule: keep radius constant proximally
        frac = np.clip(scl / max(sb, 1e-3), 0, 1)
    Rd = b["Rd0"] + (b["Rd1"] - b["Rd0"]) * frac
    Rp = b["Rp0"] + (b["Rp1"] - b["Rp0"]) * frac
    if b["pulp"] > 0:
        Rp = Rp + b["pulp"] * np.exp(-(((frac - 0.65) / 0.28) ** 2))
    r2 = ds * ds + t * t
    ct2 = t * t / (r2 + 1e-9)
    Rax = np.where(ds > 0, b["Rax1"], b["Rax0"])
    Rs = np.where(t >= 0, Rd, Rp)
    R = Rax + (Rs - Rax) * ct2
    return R - np.sqrt(r2)


# ----------------------------------------------------------------------------
# the case generator
# ----------------------------------------------------------------------------
def _make_case_full(seed):
    rng = np.random.default_rng([int(seed), 90210])
    notes = []

    # ---------------- anatomy choices ----------------
    view = str(rng.choice(["tip1", "tip", "distal2", "whole", "proximal"], p=[0.1, 0.26, 0.26, 0.2, 0.18]))
    with_mc = view == "proximal"
    acro = (view != "proximal") and rng.random() < 0.3
    osteo = rng.random() < 0.3
    bones, flex = _build_finger(rng, with_mc, acro, osteo)
    B = {b["name"]: b for b in bones}

    # pieces of bones defining the field of view (name, s_from, s_to)
    if view == "tip1":
        pieces = [("P3", rng.uniform(0.3, 0.5) * B["P3"]["L"], B["P3"]["L"])]
    elif view == "tip":
        pieces = [("P2", rng.uniform(0.35, 0.95) * B["P2"]["L"], B["P2"]["L"]), ("P3", 0, B["P3"]["L"])]
    elif view == "distal2":
        pieces = [("P1", rng.uniform(0.6, 0.92) * B["P1"]["L"], B["P1"]["L"]), ("P2", 0, B["P2"]["L"]),
                  ("P3", 0, B["P3"]["L"])]
    elif view == "whole":
        pieces = [("P1", rng.uniform(0.0, 0.2) * B["P1"]["L"], B["P1"]["L"]), ("P2", 0, B["P2"]["L"]),
                  ("P3", 0, B["P3"]["L"])]
    else:
        pieces = [("MC", B["MC"]["L"] - rng.uniform(9, 14), B["MC"]["L"]), ("P1", 0, B["P1"]["L"]),
                  ("P2", 0, rng.uniform(0.2, 0.7) * B["P2"]["L"])]
    kp = []
    for nm, s_a, s_b in pieces:
        b = B[nm]
        d, n = _dirs(b["angle"])
        for s_ in np.linspace(s_a, s_b, 6):
            f = np.clip((s_ - b["sa"]) / (b["sb"] - b["sa"]), 0, 1) if b["sa"] > -1 else np.clip(s_ / b["sb"], 0, 1)
            rd = b["Rd0"] + (b["Rd1"] - b["Rd0"]) * f
            rp = b["Rp0"] + (b["Rp1"] - b["Rp0"]) * f
            if nm == "MC":
                rp = min(rp, rng.uniform(9, 16))
            kp.append(b["origin"] + d * s_ + n * rd)
            kp.append(b["origin"] + d * s_ - n * rp)
        if nm == "P3":
            kp.append(b["origin"] + d * (b["L"] + b["Rax1"]))
    kp = np.array(kp)

    # ---------------- image geometry ----------------
    if rng.random() < 0.6:
        theta = rng.integers(0, 4) * np.pi / 2 + np.radians(rng.normal(0, 8))
    else:
        theta = rng.uniform(0, 2 * np.pi)
    mirror = 1.0 if rng.random() < 0.5 else -1.0
    ec = np.array([np.cos(theta), np.sin(theta)])
    er = mirror * np.array([-np.sin(theta), np.cos(theta)])
    pc, pr = kp @ ec, kp @ er
    margins = rng.uniform(1.5, 6.0, size=4)  # cmin, cmax, rmin, rmax
    cut = rng.random() < 0.3
    if cut:
        margins[rng.integers(0, 4)] = -rng.uniform(2.0, 8.0)
        notes.append("bone cut by border")
    cmin, cmax = pc.min() - margins[0], pc.max() + margins[1]
    rmin, rmax = pr.min() - margins[2], pr.max() + margins[3]
    wmm, hmm = cmax - cmin, rmax - rmin
    s_lo = max(0.1, max(wmm, hmm) / 1000.0)
    s_hi = min(0.5, min(wmm, hmm) / 200.0)
    if s_hi < s_lo:  # too elongated: pad the short side
        s_hi = s_lo
    s_top = max(s_lo, min(0.45, 2.0 * s_hi))
    sp = float(np.exp(rng.uniform(np.log(s_lo), np.log(s_top))))
    sp = round(sp, 4)
    W = int(np.clip(round(max(wmm, 200 * sp) / sp), 200, 1000))
    H = int(np.clip(round(max(hmm, 200 * sp) / sp), 200, 1000))
    ctr = ec * (cmin + cmax) / 2 + er * (rmin + rmax) / 2
    cc = ((np.arange(W, dtype=_F32) - (W - 1) / 2) * sp)[None, :]
    rr = ((np.arange(H, dtype=_F32) - (H - 1) / 2) * sp)[:, None]
    X = (ctr[0] + cc * ec[0] + rr * er[0]).astype(_F32)
    Y = (ctr[1] + cc * ec[1] + rr * er[1]).astype(_F32)
    shape = (H, W)

    def w2p(p):  # world -> (row, col) float
        q = np.asarray(p) - ctr
        return q @ er / sp + (H - 1) / 2, q @ ec / sp + (W - 1) / 2

    # ---------------- per-segment local coordinates ----------------
    loc = []
    Fmax = np.full(shape, -1e9, dtype=_F32)
    owner = np.zeros(shape, dtype=np.int8)
    for i, b in enumerate(bones):
        d, n = _dirs(b["angle"])
        dx, dy = X - _F32(b["origin"][0]), Y - _F32(b["origin"][1])
        s_ = dx * _F32(d[0]) + dy * _F32(d[1])
        t_ = dx * _F32(n[0]) + dy * _F32(n[1])
        loc.append((s_, t_))
        m = _capsule_margin(b, s_, t_).astype(_F32)
        better = m > Fmax
        owner[better] = i
        Fmax = np.where(better, m, Fmax)
    t_own = np.choose(owner, [l[1] for l in loc])

    # ---------------- bones ----------------
    bone = np.zeros(shape, bool)
    bone_id = np.full(shape, -1, np.int8)
    for i, b in enumerate(bones):
        s_, t_ = loc[i]
        m = _bone_inside(b, s_, t_)
        bone_id[m & ~bone] = i
        bone |= m
    bones_in_view = [bones[i]["name"] for i in range(len(bones)) if (bone_id == i).any()]

    # soft tissue outline (smoothed union of capsules), optional pulp ulcer
    sig = max(0.8, 1.0 / sp)
    Fs = ndi.gaussian_filter(Fmax, sig)
    if "P3" in B and rng.random() < 0.08:
        b3 = B["P3"]
        d, n = _dirs(b3["angle"])
        ang_u = rng.uniform(-0.9, 0.3)
        rad = b3["Rax1"] + 0.6
        uc = b3["origin"] + d * (b3["L"] + rad * np.cos(ang_u)) + n * rad * np.sin(ang_u) * 1.3
        ru = rng.uniform(1.2, 2.5)
        Fs = np.minimum(Fs, np.hypot(X - uc[0], Y - uc[1]) - ru)
        notes.append("tip ulcer")
    soft = (Fs > 0) | bone
    soft = ndi.binary_fill_holes(soft)

    D = ((ndi.distance_transform_edt(soft) - 0.5) * sp).astype(_F32)  # depth below skin (mm)
    DB = ((ndi.distance_transform_edt(~bone) - 0.5) * sp).astype(_F32)  # distance to bone (mm)

    # ---------------- artery (confounder) ----------------
    artery_cov = np.zeros(shape, _F32)
    artery_hu = np.zeros(shape, _F32)
    art_keep = np.zeros(shape, bool)
    art_kind = None
    if rng.random() < 0.4:
        art_kind = rng.choice(["tram-track", "line", "beaded"], p=[0.4, 0.3, 0.3])
        for _try in range(6):
            fpos = rng.uniform(0.3, 0.7)
            pts = []
            for b in bones:
                d, n = _dirs(b["angle"])
                s_a = b["L"] - 18 if b["name"] == "MC" else 0.0
                s_b = b["L"] * (0.6 if b["name"] == "P3" else 1.0)
                ss = np.arange(s_a, s_b, 0.25)
                bone_p = b["ws"] * b["kp"]
                rpm = 0.5 * (b["Rp0"] + b["Rp1"]) if b["name"] != "MC" else b["Rp1"]
                toff = -(bone_p + fpos * (rpm - bone_p))
                pts.append(b["origin"][None, :] + ss[:, None] * d[None, :] + toff * n[None, :])
            P = np.concatenate(pts)
            P = ndi.gaussian_filter1d(P, 10.0, axis=0, mode="nearest")
            seg = np.hypot(*np.diff(P, axis=0).T)
            al = np.concatenate([[0], np.cumsum(seg)])
            step = 0.04
            aa = np.arange(0, al[-1], step)
            P = np.stack([np.interp(aa, al, P[:, 0]), np.interp(aa, al, P[:, 1])], 1)
            tang = np.gradient(P, axis=0)
            tang /= np.linalg.norm(tang, axis=1, keepdims=True) + 1e-12
            nrm = np.stack([-tang[:, 1], tang[:, 0]], 1)
            wig_a, wig_l, wig_p = rng.uniform(0.03, 0.25), rng.uniform(10, 30), rng.uniform(0, 6.3)
            P = P + nrm * (wig_a * np.sin(2 * np.pi * aa / wig_l + wig_p))[:, None]
            if art_kind == "tram-track":
                h = rng.uniform(0.5, 1.0)  # half separation of the two walls
            else:
                h = 0.0
            wt = rng.uniform(0.2, 0.8)
            need_d = h + wt + 1.2
            need_b = h + wt + 0.8
            r_, c_ = w2p(P)
            ri, ci = np.round(r_).astype(int), np.round(c_).astype(int)
            inv = (ri >= 2) & (ri < H - 2) & (ci >= 2) & (ci < W - 2)
            ok = np.zeros(len(P), bool)
            ok[inv] = (D[ri[inv], ci[inv]] >= need_d) & (DB[ri[inv], ci[inv]] >= need_b)
            # longest run of valid samples
            edges = np.diff(np.concatenate([[0], ok.astype(int), [0]]))
            st, en = np.where(edges == 1)[0], np.where(edges == -1)[0]
            if len(st) == 0:
                continue
            k = int(np.argmax(en - st))
            run = (en[k] - st[k]) * step
            if run < 4.0:
                continue
            Lart = min(run, rng.uniform(5.0, 40.0))
            a0 = st[k] + int(rng.uniform(0, (run - Lart)) / step)
            a1 = a0 + int(Lart / step)
            Pa, ta, na = P[a0:a1], tang[a0:a1], nrm[a0:a1]
            arc = (np.arange(len(Pa)) * step).astype(_F32)
            # pixel box
            rA, cA = w2p(Pa)
            pad = (h + wt + 2.0) / sp
            r0, r1 = max(0, int(rA.min() - pad)), min(H, int(rA.max() + pad) + 1)
            c0, c1 = max(0, int(cA.min() - pad)), min(W, int(cA.max() + pad) + 1)
            Xc, Yc = X[r0:r1, c0:c1], Y[r0:r1, c0:c1]
            q = np.stack([Xc.ravel(), Yc.ravel()], 1).astype(np.float64)
            dist, idx = cKDTree(Pa).query(q)
            rel = q - Pa[idx]
            dp = np.sum(rel * na[idx], 1)
            dl = np.sum(rel * ta[idx], 1)
            inside_len = np.abs(dl) <= step * 0.75
            if art_kind == "tram-track":
                cov = _seg_overlap(dp, h - wt / 2, h + wt / 2, sp) + _seg_overlap(dp, -h - wt / 2, -h + wt / 2, sp)
            else:
                cov = _seg_overlap(dp, -wt / 2, wt / 2, sp)
            along = arc[idx]
            hu_w = rng.uniform(350, 1300) * (1 + 0.2 * np.sin(2 * np.pi * along / rng.uniform(3, 12) + rng.uniform(0, 6.3)))
            if art_kind == "beaded":
                nb = int(Lart / 0.5) + 2
                sp_b = rng.uniform(1.0, 3.2)
                centers = np.cumsum(rng.uniform(0.6, 1.4, nb) * sp_b)
                centers = centers[centers < Lart + 1]
                blen = rng.uniform(0.5, 1.8, len(centers))
                j = np.clip(np.searchsorted(centers, along), 1, len(centers) - 1)
                jj = np.where(np.abs(along - centers[j - 1]) < np.abs(along - centers[j]), j - 1, j)
                bc = _seg_overlap(along, centers[jj] - blen[jj] / 2, centers[jj] + blen[jj] / 2, sp)
                cov = cov * bc
                # beads are a little plumper and denser
                cov = np.clip(cov * 1.3, 0, 1)
                hu_w = hu_w * 1.1
            cov = cov * inside_len
            artery_cov[r0:r1, c0:c1] = cov.reshape(Xc.shape).astype(_F32)
            artery_hu[r0:r1, c0:c1] = hu_w.reshape(Xc.shape).astype(_F32)
            kk = (np.abs(dp) <= h + wt / 2 + 1.0) & (np.abs(dl) <= 1.0 + step)
            art_keep[r0:r1, c0:c1] = kk.reshape(Xc.shape)
            notes.append(f"artery:{art_kind}")
            break
        else:
            art_kind = None
    artery_mask = artery_cov > 0.25

    # ---------------- deposits ----------------
    gap = max(1.0, 3 * sp)
    deposits = np.zeros(shape, np.int32)
    dep_hu = np.zeros(shape, _F32)
    keepout = art_keep.copy()
    kinds_done = []
    weights_seg = {"MC": 0.4, "P1": 1.0, "P2": 1.5, "P3": 3.0}
    seg_w = np.array([weights_seg[b["name"]] for b in bones], dtype=_F32)
    border = 4
    valid_c = soft & ~bone
    valid_c[:border + 2, :] = False
    valid_c[-border - 2:, :] = False
    valid_c[:, :border + 2] = False
    valid_c[:, -border - 2:] = False
    cand_idx = np.flatnonzero(valid_c)
    if len(cand_idx) > 60000:
        cand_idx = rng.choice(cand_idx, 60000, replace=False)
    cD, cDB = D.ravel()[cand_idx], DB.ravel()[cand_idx]
    cW = seg_w[owner.ravel()[cand_idx]] * np.where(t_own.ravel()[cand_idx] < 0, 1.5, 1.0)

    def pick(lo_d, hi_d, lo_b, hi_b=1e9):
        ok = (cD >= lo_d) & (cD <= hi_d) & (cDB >= lo_b) & (cDB <= hi_b)
        if not ok.any():
            return None
        w = cW * ok
        j = rng.choice(len(cand_idx), p=w / w.sum())
        return divmod(int(cand_idx[j]), W)

    def crop(rc, half_mm):
        hp = int(np.ceil(half_mm / sp)) + 3
        r, c = rc
        return max(0, r - hp), min(H, r + hp + 1), max(0, c - hp), min(W, c + hp + 1)

    def try_accept(mask, box, touching, peak, kind, core=None, texture=0.0):
        r0, r1, c0, c1 = box
        rr_m, cc_m = np.nonzero(mask)
        if len(rr_m) and (rr_m.min() + r0 < border or cc_m.min() + c0 < border or
                          rr_m.max() + r0 >= H - border or cc_m.max() + c0 >= W - border):
            return False  # a deposit must not reach the image border
        full = mask.sum()
        if full == 0:
            return False
        sb = soft[r0:r1, c0:c1]
        bb = bone[r0:r1, c0:c1]
        m = mask & sb & ~bb
        if m.sum() < 0.6 * full:
            return False
        if not touching:
            if (m & (DB[r0:r1, c0:c1] < gap)).any():
                return False
        m = _largest_cc(m, conn4=True)
        if touching:
            if not (ndi.binary_dilation(m) & bb).any():
                return False
        area = m.sum() * sp * sp
        if area < 0.2 or area > 60.0:
            return False
        if (m & keepout[r0:r1, c0:c1]).any():
            return False
        lab = int(deposits.max()) + 1
        deposits[r0:r1, c0:c1][m] = lab
        # density profile: brighter interior / eccentric core, optional mottling
        ed = ndi.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        prof = 0.72 + 0.28 * np.clip(ed / max(ed.max(), 1.0), 0, 1) ** 0.7
        if core is not None:
            rr_, cc_ = np.mgrid[r0:r1, c0:c1]
            prof = prof * (0.8 + 0.35 * np.exp(-((rr_ - core[0]) ** 2 + (cc_ - core[1]) ** 2) / (2 * core[2] ** 2)))
        if texture > 0:
            tx = rng.standard_normal(m.shape).astype(_F32)
            tx = ndi.gaussian_filter(tx, max(0.6, 0.35 / sp))
            tx /= tx.std() + 1e-6
            prof = prof * (1 + texture * tx)
        dep_hu[r0:r1, c0:c1][m] = (peak * prof)[m]
        rad = int(np.ceil(gap / sp))
        keepout[r0:r1, c0:c1] |= ndi.binary_dilation(m, structure=_disk(rad)) if rad > 0 else m
        kinds_done.append(kind)
        return True

    def peak_hu(faint_p=0.2):
        u = rng.random()
        if u < faint_p:
            return rng.uniform(250, 500), True
        if u < faint_p + 0.3:
            return rng.uniform(500, 1000), False
        return rng.uniform(1000, 2500), False

    def blob_mask(rc, area, aspect, nharm, irregular, lobes=1):
        """Irregular ellipse or union of lobes around pixel rc, target area mm^2."""
        a = np.sqrt(area * aspect / np.pi)
        bax = np.sqrt(area / (aspect * np.pi))
        half = a * (1.9 if lobes > 1 else 1.3) + 0.5
        box = crop(rc, half)
        r0, r1, c0, c1 = box
        Xc, Yc = X[r0:r1, c0:c1], Y[r0:r1, c0:c1]
        x0, y0 = X[rc], Y[rc]
        phi = rng.uniform(0, np.pi)
        m = np.zeros(Xc.shape, bool)
        if lobes == 1:
            cen = [(0.0, 0.0, a, bax)]
        else:
            cen = []
            la = np.sqrt(area / lobes / np.pi) * 1.15
            for k in range(lobes):
                rr0 = 0 if k == 0 else rng.uniform(0.5, 1.1) * la
                aa = rng.uniform(0, 2 * np.pi)
                cen.append((rr0 * np.cos(aa), rr0 * np.sin(aa), la * rng.uniform(0.75, 1.2), la * rng.uniform(0.7, 1.1)))
        for (ox, oy, ea, eb) in cen:
            u = (Xc - x0 - ox) * np.cos(phi) + (Yc - y0 - oy) * np.sin(phi)
            v = -(Xc - x0 - ox) * np.sin(phi) + (Yc - y0 - oy) * np.cos(phi)
            ang = np.arctan2(v, u)
            rad = np.ones_like(ang)
            for hh in range(2, 2 + nharm):
                rad = rad + irregular / hh * np.cos(hh * ang + rng.uniform(0, 2 * np.pi))
            m |= (u / ea) ** 2 + (v / eb) ** 2 <= rad ** 2
        return m, box

    # plan
    u = rng.random()
    if u < 0.11:
        K_plan = 0
    else:
        K_plan = int(rng.choice(np.arange(1, 9), p=np.array([14, 17, 17, 15, 12, 10, 8, 7]) / 100.0))
    kinds = ["speck", "nodule", "lobulated", "plaque", "cluster", "cloud", "touching"]
    kp_ = np.array([0.17, 0.18, 0.13, 0.2, 0.1, 0.1, 0.12])
    plan = list(rng.choice(kinds, size=K_plan, p=kp_)) if K_plan else []
    if K_plan >= 2 and "plaque" not in plan and rng.random() < 0.5:
        plan[0] = "plaque"
    n_faint = 0
    for kind in plan:
        if len(kinds_done) >= K_plan:
            break
        for _ in range(25):
            if kind == "speck":
                rc = pick(0.2, 5.0, gap + 0.3)
                if rc is None:
                    break
                area = float(np.exp(rng.uniform(np.log(0.2), np.log(1.6))))
                area = max(area, 1.05 * sp * sp)
                m, box = blob_mask(rc, area, rng.uniform(1, 1.6), 2, 0.1)
                pk, fa = peak_hu(0.1)
                pk = max(pk, rng.uniform(700, 2500)) if rng.random() < 0.7 else pk
                if try_accept(m, box, False, pk, "speck"):
                    n_faint += fa
                    break
            elif kind in ("nodule", "lobulated"):
                lob = kind == "lobulated"
                area = float(np.exp(rng.uniform(np.log(5.0 if lob else 1.5), np.log(60 if lob else 30))))
                rc = pick(0.5, 6.0, gap + 0.3)
                if rc is None:
                    break
                m, box = blob_mask(rc, area, rng.uniform(1.0, 2.2), 4, rng.uniform(0.03, 0.15),
                                   lobes=int(rng.integers(3, 7)) if lob else 1)
                pk, fa = peak_hu(0.2)
                rr_c = rc[0] + rng.normal(0, 0.3 * np.sqrt(area) / sp)
                cc_c = rc[1] + rng.normal(0, 0.3 * np.sqrt(area) / sp)
                core = (rr_c, cc_c, max(1.0, 0.25 * np.sqrt(area) / sp))
                if try_accept(m, box, False, pk, kind, core=core, texture=0.05 if lob else 0.03):
                    n_faint += fa
                    break
                if _ > 12:
                    area *= 0.6
            elif kind == "cloud":
                area = float(np.exp(rng.uniform(np.log(2.0), np.log(35))))
                rc = pick(0.5, 6.0, gap + 0.3)
                if rc is None:
                    break
                m0, box = blob_mask(rc, area * 1.4, rng.uniform(1.0, 2.5), 3, 0.12)
                r0, r1, c0, c1 = box
                fld = _smooth_noise(rng, m0.shape, max(1.0, 0.5 / sp))
                ed = ndi.distance_transform_edt(m0)
                m = m0 & ((ed * sp) / (ed.max() * sp + 1e-6) + 0.25 * fld > 0.2)
                pk = rng.uniform(250, 600)
                if try_accept(m, box, False, pk, "cloud", texture=0.12):
                    n_faint += 1
                    break
            elif kind == "touching":
                area = float(np.exp(rng.uniform(np.log(1.0), np.log(25))))
                rr = np.sqrt(area / np.pi)
                rc = pick(0.8, 8.0, 0.3 * rr, 0.8 * rr + sp)
                if rc is None:
                    break
                m, box = blob_mask(rc, area, rng.uniform(1.0, 1.8), 3, 0.08)
                pk, fa = peak_hu(0.15)
                if try_accept(m, box, True, pk, "touching-bone"):
                    n_faint += fa
                    break
            elif kind == "plaque":
                Lp = rng.uniform(4.0, 28.0)
                th = rng.uniform(max(0.3, 1.7 * sp), max(1.5, 2.2 * sp))
                d0 = rng.uniform(0.0, 1.0)
                rc = pick(d0 + 0.1, d0 + th, gap + 0.5)
                if rc is None:
                    break
                box = crop(rc, Lp / 2 + 1.0)
                r0, r1, c0, c1 = box
                Xc, Yc = X[r0:r1, c0:c1], Y[r0:r1, c0:c1]
                rho = np.hypot(Xc - X[rc], Yc - Y[rc])
                fld = _smooth_noise(rng, Xc.shape, max(1.0, 1.5 / sp))
                thl = th * (1 + 0.3 * fld) * np.sqrt(np.clip(1 - (rho / (Lp / 2)) ** 2, 0, 1)) ** 0.5
                thl = np.maximum(thl, np.where(rho < Lp / 2 - 0.5, 1.2 * sp, 0))
                Dc = D[r0:r1, c0:c1]
                m = (Dc >= d0) & (Dc < d0 + thl) & (rho < Lp / 2)
                m &= DB[r0:r1, c0:c1] >= gap
                m = _largest_cc(m)
                pk, fa = peak_hu(0.25)
                if try_accept(m, box, False, pk, "plaque", texture=0.06):
                    n_faint += fa
                    break
            elif kind == "cluster":
                rc = pick(0.4, 5.0, gap + 1.0)
                if rc is None:
                    break
                nk = int(rng.integers(2, 5))
                pk0, fa = peak_hu(0.15)
                got = 0
                for j in range(nk * 5):
                    if got >= nk or len(kinds_done) >= K_plan:
                        break
                    rad = rng.uniform(0, 3.5) / sp
                    a_ = rng.uniform(0, 2 * np.pi)
                    r2 = int(np.clip(rc[0] + rad * np.sin(a_), border + 3, H - border - 4))
                    c2 = int(np.clip(rc[1] + rad * np.cos(a_), border + 3, W - border - 4))
                    if not valid_c[r2, c2]:
                        continue
                    area = float(np.exp(rng.uniform(np.log(0.25), np.log(2.5))))
                    area = max(area, 1.05 * sp * sp)
                    m, box = blob_mask((r2, c2), area, rng.uniform(1, 1.8), 2, 0.12)
                    if try_accept(m, box, False, pk0 * rng.uniform(0.8, 1.2), "cluster"):
                        got += 1
                if got:
                    n_faint += fa
                    break
    K = int(deposits.max())

    # ---------------- tissue rendering (clean HU) ----------------
    hu = np.full(shape, rng.uniform(-1010, -985), _F32)
    base = rng.uniform(25, 55)
    tis = base + 6 * _smooth_noise(rng, shape, max(1.0, 1.5 / sp))
    skin_th = rng.uniform(0.8, 1.8)
    fat_amt = rng.uniform(0.05, 0.55)
    ffield = _smooth_noise(rng, shape, max(1.0, 0.7 / sp))
    thr = np.quantile(ffield[:: 7, :: 7], 1 - fat_amt)
    fat = 1 / (1 + np.exp(-(ffield - thr) / 0.25))
    fat_zone = np.clip((D - skin_th) / 0.5, 0, 1) * np.clip((DB - 0.6) / 0.6, 0, 1) * np.clip((5.0 - D) / 1.5, 0, 1)
    fat = (fat * fat_zone).astype(_F32)
    tis = tis * (1 - fat) + rng.uniform(-110, -70) * fat
    # tendons (flexor palmar, extensor dorsal) hugging the phalanges
    ten = np.zeros(shape, bool)
    for i, b in enumerate(bones):
        if b["name"] == "MC":
            continue
        s_, t_ = loc[i]
        bp, bd = b["ws"] * b["kp"], b["ws"] * b["kd"]
        tt = rng.uniform(1.5, 2.6)
        te = rng.uniform(0.5, 1.0)
        sl = (s_ > 0.08 * b["L"]) & (s_ < b["L"] * (0.35 if b["name"] == "P3" else 1.0))
        ten |= sl & (t_ < -(bp + 0.25)) & (t_ > -(bp + 0.25 + tt))
        ten |= sl & (t_ > bd + 0.15) & (t_ < bd + 0.15 + te)
    ten &= soft & ~bone & (D > skin_th)
    tis = np.where(ten, tis + rng.uniform(35, 60), tis)
    skin_hu = rng.uniform(55, 95)
    tis = np.where(D < skin_th, skin_hu + 5 * _smooth_noise(rng, shape, 2.0), tis)
    hu = np.where(soft, tis, hu).astype(_F32)
    # nail plate on the dorsal distal phalanx
    nail = np.zeros(shape, bool)
    if "P3" in B:
        i3 = bones.index(B["P3"])
        s_, t_ = loc[i3]
        b3 = B["P3"]
        nth = rng.uniform(0.4, 0.8)
        nail = (owner == i3) & (t_ > b3["ws"]) & (s_ > rng.uniform(0.3, 0.45) * b3["L"]) & \
               (s_ < b3["L"] + 0.6 * b3["Rax1"]) & (D < nth) & soft
        if nail.any():
            hu[nail] = rng.uniform(130, 330)
            notes.append("nail")
    # bone: cortex + trabecular marrow
    if bone.any():
        DBi = np.zeros(shape, _F32)
        rows = np.flatnonzero(bone.any(1))
        cols = np.flatnonzero(bone.any(0))
        ra, rb = max(0, rows[0] - 2), min(H, rows[-1] + 3)
        ca, cb = max(0, cols[0] - 2), min(W, cols[-1] + 3)
        sub = bone[ra:rb, ca:cb]
        DBi[ra:rb, ca:cb] = (ndi.distance_transform_edt(np.pad(sub, 0)) - 0.5) * sp
        ct = np.zeros(shape, _F32)
        for i, b in enumerate(bones):
            mi = bone_id == i
            if not mi.any():
                continue
            s_ = loc[i][0][mi]
            mid = np.exp(-(((s_ - 0.5 * b["L"]) / (0.3 * b["L"])) ** 4))
            ct[mi] = b["c_end"] + (b["c_shaft"] - b["c_end"]) * mid
        cortex = bone & (DBi < ct)
        c_hu = rng.uniform(750, 1150) if osteo else rng.uniform(1200, 1950)
        m_hu = rng.uniform(60, 200) if osteo else rng.uniform(180, 420)
        trab = _smooth_noise(rng, shape, max(0.7, 0.3 / sp))
        marrow_val = m_hu + rng.uniform(50, 110) * trab
        cort_val = c_hu * (1 + 0.06 * _smooth_noise(rng, shape, max(1.0, 1.0 / sp)))
        hu = np.where(bone, np.where(cortex, cort_val, marrow_val), hu).astype(_F32)
    # deposits
    hu = np.where(deposits > 0, dep_hu, hu)
    # artery (partial-volume blend, sub-pixel walls)
    if art_kind is not None:
        hu = hu * (1 - artery_cov) + artery_cov * artery_hu

    # ---------------- external confounders ----------------
    ext = ~soft
    dense_pts = []
    Dout = None

    def out_dist():
        nonlocal Dout
        if Dout is None:
            Dout = ((ndi.distance_transform_edt(~soft) - 0.5) * sp).astype(_F32)
        return Dout

    if rng.random() < 0.1:
        alu = rng.random() < 0.4
        g = rng.uniform(0.3, 3.0)
        th = rng.uniform(1.0, 2.5) if not alu else rng.uniform(0.6, 1.5)
        side = 1 if rng.random() < 0.6 else -1
        sel = [i for i, b in enumerate(bones) if b["name"] in ("P2", "P3", "P1")]
        first = sel[int(rng.integers(0, len(sel)))]
        Do = out_dist()
        band = ext & (Do >= g) & (Do < g + th) & (t_own * side > 0) & (owner >= first)
        if g > 0.8 and rng.random() < 0.6:  # padding foam between splint and skin
            hu = np.where(ext & (Do < g) & (t_own * side > 0) & (owner >= first), rng.uniform(-850, -700), hu)
        if band.any():
            band = _largest_cc(band, conn4=False)
            hu = np.where(band, rng.uniform(2000, 2600) if alu else rng.uniform(90, 250), hu)
            notes.append("splint:" + ("aluminium" if alu else "plastic"))
            if alu:
                rws, cls = np.nonzero(band)
                k = rng.integers(0, len(rws))
                dense_pts.append((rws[k], cls[k], 60))
    if "P1" in B and rng.random() < 0.07:
        i1 = bones.index(B["P1"])
        s_, t_ = loc[i1]
        b1 = B["P1"]
        sr = rng.uniform(0.35, 0.7) * b1["L"]
        wr = rng.uniform(2.0, 5.0)
        thr_ = rng.uniform(1.2, 2.0)
        Do = out_dist()
        ring = ext & (np.abs(s_ - sr) < wr / 2) & (Do < thr_ + 0.2) & (owner == i1)
        if ring.any():
            hu = np.where(ring, 3071.0, hu)
            notes.append("ring")
            rws, cls = np.nonzero(ring)
            for k in rng.integers(0, len(rws), 2):
                dense_pts.append((rws[k], cls[k], 300))
    if rng.random() < 0.04:
        Do = out_dist()
        cand = np.flatnonzero(ext.ravel() & (Do.ravel() > 0.2) & (Do.ravel() < 0.8))
        if len(cand):
            j = int(rng.choice(cand))
            r, c = divmod(j, W)
            rb_ = rng.uniform(0.5, 1.0)
            bead = (np.hypot(X - X[r, c], Y - Y[r, c]) < rb_) & ext
            hu = np.where(bead, 3071.0, hu)
            notes.append("skin marker")
            dense_pts.append((r, c, 150))
    if rng.random() < 0.12:
        Do = out_dist()
        a = rng.uniform(0, np.pi)
        nn = np.array([np.cos(a), np.sin(a)], dtype=_F32)
        proj = (X - ctr[0]) * nn[0] + (Y - ctr[1]) * nn[1]
        pin = proj[soft]
        if pin.size:
            off = pin.max() + rng.uniform(3, 8)
            tb = rng.uniform(1.5, 4.0)
            table = (proj > off) & (proj < off + tb)
            if table.any():
                hu = np.where(table, rng.uniform(150, 400), hu)
                notes.append("table")

    # ---------------- acquisition ----------------
    fwhm = rng.uniform(0.2, 0.5)
    sig_px = float(np.sqrt((fwhm / 2.3548 / sp) ** 2 + 0.3 ** 2))
    clean = ndi.gaussian_filter(hu, sig_px)
    img = clean.copy()
    streak_amp = 0.0
    if rng.random() < 0.3 or dense_pts:
        # a few faint streaks through dense objects (bone / metal)
        if not dense_pts:
            rws, cls = np.nonzero(bone if bone.any() else soft)
            for k in rng.integers(0, len(rws), 3):
                dense_pts.append((rws[k], cls[k], rng.uniform(8, 30)))
        rgrid = np.arange(H, dtype=_F32)[:, None]
        cgrid = np.arange(W, dtype=_F32)[None, :]
        for (r, c, amp) in dense_pts:
            for _k in range(int(rng.integers(2, 5))):
                a = rng.uniform(0, np.pi)
                dd = (rgrid - r) * np.cos(a) - (cgrid - c) * np.sin(a)
                al_ = (rgrid - r) * np.sin(a) + (cgrid - c) * np.cos(a)
                wpx = rng.uniform(0.4, 1.2) / sp
                img += (amp * rng.choice([-1, 1]) * np.exp(-(dd / wpx) ** 2) *
                        np.exp(-np.abs(al_) * sp / rng.uniform(15, 50))).astype(_F32)
                streak_amp = max(streak_amp, amp)
        notes.append("streaks")
    noise_sd = rng.uniform(8, 50)
    ncorr = rng.uniform(0.5, 1.3)
    nz = rng.standard_normal(shape).astype(_F32)
    nz = ndi.gaussian_filter(nz, ncorr)
    nz /= nz.std() + 1e-6
    img = img + noise_sd * nz
    img = np.clip(img, -1024, 3071)
    eight = rng.random() < 0.25
    if eight:
        lo = _WIN_L - _WIN_W / 2
        v = np.round(np.clip((img - lo) / _WIN_W * 255.0, 0, 255))
        img = lo + v / 255.0 * _WIN_W
        notes.append("8-bit W1500/L450")
    img = img.astype(_F32)

    # ---------------- truth ----------------
    areas = []
    seeds = []
    for k in range(1, K + 1):
        m = deposits == k
        areas.append(float(m.sum()) * sp * sp)
        idx = np.flatnonzero(m.ravel())
        j = idx[int(np.argmax(clean.ravel()[idx]))]
        seeds.append((int(j // W), int(j % W)))

    phal = [n for n in bones_in_view if n.startswith("P")]
    desc = [f"view={view}", "bones=" + ",".join(bones_in_view)]
    fl = [f"{k}{int(round(np.degrees(v)))}" for k, v in flex.items() if (k != "MCP" or with_mc) and np.degrees(v) >= 10]
    if fl:
        desc.append("flex " + "/".join(fl))
    if acro:
        desc.append("acro-osteolysis")
    if osteo:
        desc.append("osteopenia")
    if K:
        from collections import Counter
        cnt = Counter(kinds_done)
        desc.append(f"K={K} (" + ",".join(f"{k}x{v}" for k, v in cnt.items()) + (f"; faint {n_faint}" if n_faint else "") + ")")
    else:
        desc.append("K=0")
    desc += notes
    desc.append(f"sp={sp:.3f}mm fwhm={fwhm:.2f}mm noise={noise_sd:.0f}HU")

    return dict(
        hu=img,
        spacing_mm=float(sp),
        bone=bone,
        deposits=deposits.astype(np.int32),
        areas_mm2=areas,
        seeds=seeds,
        notes="; ".join(desc),
        # internal extras (not part of the public interface)
        _artery=artery_mask,
        _soft=soft,
        _n_phalanges=len(phal),
    )


def make_case(seed: int) -> dict:
    """Generate one synthetic sagittal finger DECT case (deterministic in seed)."""
    full = _make_case_full(seed)
    return {k: full[k] for k in ("hu", "spacing_mm", "bone", "deposits", "areas_mm2", "seeds", "notes")}
