"""Out-of-distribution synthetic test cases, generator E.

Sagittal 2D CT slices of a finger of a patient with systemic sclerosis and
calcinosis cutis, built from an explicit anatomical model in millimetres and
rendered through a simple CT imaging chain.

Design (independent of the project's own phantom):

* Anatomy lives in a "finger frame" (u distal, v dorsal, mm).  A kinematic
  chain metacarpal -> proximal -> middle -> distal phalanx is built from
  per-bone dorsal/palmar half-height profiles; each joint is a convex head
  (disk) seated in a concave base (disk + joint space) of the next bone, so
  flexion contractures are rotations about the head centres.  Cortex is an
  inward offset of the outer surface (thick in the diaphysis, thin
  subchondral plates), the medulla is marrow in the shaft and trabecular
  bone at the ends; osteopenia lowers cortex density/thickness.  The distal
  phalanx ends in an ungual tuft that acro-osteolysis shortens, tapers and
  makes ragged.
* Soft tissue is a smooth union of per-segment slabs, joint disks and an
  elliptical fingertip; inside it, dermis, subcutaneous fat with fibrous
  septa, a denser peri-osseous layer, flexor/extensor tendons, a nail plate
  with nail bed, palmar skin creases.  Confounders: calcified digital artery
  (tram-track or dashed), nail, ring (with metal streaks), aluminium or
  thermoplastic splint with foam.
* Calcinosis deposits are implicit shapes (nodule, lobulated cluster,
  curved plaque/sheet, faint amorphous cloud, rim-calcified lesion) placed at
  anatomical sites (pulp, tip, dorsal/palmar subcutis, periarticular, on the
  bone surface).  They are rasterised by supersampling (4..12 sub-samples per
  pixel side) with bone sub-samples removed, which gives the partial-volume
  image, the >50 % coverage truth and the sub-pixel area.  Touching pairs are
  two deposits of clearly different density and/or with a waist; the split
  between them is this generator's (each sub-sample goes to the deposit whose
  normalised shape function is smaller).
* Imaging chain: Gaussian PSF (sometimes anisotropic), metal streaks, white
  or correlated noise, optional sharp-kernel overshoot, rounding to integer
  CT numbers or an 8-bit export through window 1500 / level 450.

API: make_case(seed) -> dict (see make_case docstring).
Only numpy and scipy are used.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from scipy.interpolate import PchipInterpolator

_SALT = 0x5EC0E  # generator-E specific salt

_WIN_LO, _WIN_HI = -300.0, 1200.0  # window 1500 / level 450
_FAR = 1.0e3


# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------

def _cov(sdf, px):
    """Linear partial-volume coverage of a pixel from a signed distance (mm)."""
    return np.clip(0.5 - sdf / px, 0.0, 1.0)


def _smin(a, b, k):
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1.0 - h) + a * h - k * h * (1.0 - h)


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ell_sdf(ds, dr, a, b):
    """Approximate signed distance to an axis-aligned ellipse (first order)."""
    k = np.hypot(ds / a, dr / b)
    g = np.hypot(ds / (a * a), dr / (b * b)) / np.maximum(k, 1e-9)
    return (k - 1.0) / np.maximum(g, 1e-9 + 1.0 / max(a, b) * 0.2)


def _rot(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s], [s, c]])


def _loguni(rng, lo, hi):
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _table(ts, vals, n=160):
    ts = np.asarray(ts, float)
    f = PchipInterpolator(ts, np.asarray(vals, float))
    tg = np.linspace(ts[0], ts[-1], n)
    return tg, f(tg)


# ----------------------------------------------------------------------------
# bones
# ----------------------------------------------------------------------------

class _Bone:
    def __init__(self, kind, o, e, L, ts, rd, rp, tc, s_lo, head=None,
                 base=None, tuft=None):
        self.kind = kind
        self.o = np.asarray(o, float)
        self.e = np.asarray(e, float) / np.linalg.norm(e)
        self.n = np.array([-self.e[1], self.e[0]])
        self.L = float(L)
        self.tg, self.rd = _table(ts, rd)
        _, self.rp = _table(ts, rp)
        _, self.tc = _table(ts, tc)
        self.s_lo = float(s_lo)
        self.head = head      # (centre(2,), R)
        self.base = base      # (centre(2,), Rb)
        self.tuft = tuft      # (sc, rc, a, b, harmonics)
        self.hmax = float(max(self.rd.max(), self.rp.max()))

    def local(self, U, V):
        du = U - self.o[0]
        dv = V - self.o[1]
        return du * self.e[0] + dv * self.e[1], -du * self.e[1] + dv * self.e[0]

    def world(self, s, r):
        return self.o + self.e * s + self.n * r

    def half(self, s):
        t = s / self.L
        return (float(np.interp(t, self.tg, self.rd)),
                float(np.interp(t, self.tg, self.rp)))

    def sdf(self, U, V):
        s, r = self.local(U, V)
        t = s / self.L
        rd = np.interp(t, self.tg, self.rd)
        rp = np.interp(t, self.tg, self.rp)
        d = np.maximum(r - rd, -rp - r)
        d = np.maximum(d, self.s_lo - s)
        if self.tuft is not None:
            sc, rc, a, b, harm = self.tuft
            d = np.maximum(d, s - sc)
            ds = (s - sc) / a
            dr = (r - rc) / b
            k = np.hypot(ds, dr)
            if harm:
                ang = np.arctan2(dr, ds)
                pert = np.zeros_like(k)
                for m, amp, ph in harm:
                    pert += amp * np.cos(m * ang + ph)
                k = k / (1.0 + pert)
            d = np.minimum(d, (k - 1.0) * min(a, b))
        if self.head is not None:
            c, R = self.head
            dh = np.hypot(U - c[0], V - c[1]) - R
            d = np.maximum(d, np.where(s > self.L - R, dh, -_FAR))
        if self.base is not None:
            c, Rb = self.base
            d = np.maximum(d, Rb - np.hypot(U - c[0], V - c[1]))
        return d, t

    def corners(self, pad):
        s0 = self.s_lo - pad
        s1 = self.L + pad
        h = self.hmax + pad
        return [self.world(s, r) for s in (s0, s1) for r in (-h, h)]


# ----------------------------------------------------------------------------
# deposits
# ----------------------------------------------------------------------------

class _Shape:
    """Implicit deposit: eval(U, V) -> (q, hu); inside where q <= 1."""

    def __init__(self, kind, centre, psi, rmax, params, hu):
        self.kind = kind
        self.c = np.asarray(centre, float)
        self.psi = float(psi)
        self.rmax = float(rmax)
        self.p = params
        self.hu = float(hu)

    def _loc(self, U, V):
        du = U - self.c[0]
        dv = V - self.c[1]
        cp, sp = math.cos(self.psi), math.sin(self.psi)
        return du * cp + dv * sp, -du * sp + dv * cp

    def qmargin(self, px):
        """Upper bound of the change of q over half a pixel diagonal (x1.6)."""
        p = self.p
        if self.kind in ("nodule", "amorphous", "rim"):
            g = 1.0 + sum(abs(h[1]) * h[0] for h in p["harm"])
            lo = min(p["ax"], p["bx"]) * max(1.0 - sum(abs(h[1]) for h in p["harm"]), 0.3)
            return 1.6 * 0.71 * px * g / lo
        if self.kind == "plaque":
            tmin = p["t0"] * max(1.0 - p["wave_amp"], 0.3)
            g = 2.0 / tmin * (1.0 + abs(p["kappa"]) * p["L"] / 2 + p["wave_amp"] * 6.3 * p["L"] / p["wave_len"] / 2) + 2.0 / p["L"]
            return 1.6 * 0.71 * px * g
        return 1.6 * 0.71 * px / min(l[2] for l in p["lobes"])

    def _texture(self, a, b):
        tex = np.zeros_like(a)
        for kx, ky, ph in self.p.get("waves", ()):
            tex += np.cos(kx * a + ky * b + ph)
        nw = max(len(self.p.get("waves", ())), 1)
        return tex / math.sqrt(nw / 2.0)

    def eval(self, U, V, with_hu=True):
        a, b = self._loc(U, V)
        p = self.p
        k = self.kind
        if k in ("nodule", "amorphous", "rim"):
            ax, bx = p["ax"], p["bx"]
            an, bn = a / ax, b / bx
            rho = np.hypot(an, bn)
            ang = np.arctan2(bn, an)
            pert = np.ones_like(rho)
            for m, amp, ph in p["harm"]:
                pert += amp * np.cos(m * ang + ph)
            q = rho / pert
            if not with_hu:
                return q, None
            if k == "rim":
                hu = np.where(q > 1.0 - p["rimfrac"], self.hu, p["core_hu"])
                hu = hu * (1.0 + 0.06 * self._texture(a, b))
            elif k == "amorphous":
                hu = self.hu * (1.0 + p["tex_amp"] * self._texture(a, b))
                hu = hu * (1.0 - 0.25 * q * q)
            else:
                hu = self.hu * (1.0 + p["grad"] * (0.5 - q * q)
                                + 0.04 * self._texture(a, b))
            return q, hu
        if k == "cluster":
            q = np.full(a.shape, np.inf)
            hu = np.full(a.shape, self.hu) if with_hu else None
            for (ca, cb, rl, hl) in p["lobes"]:
                ql = np.hypot(a - ca, b - cb) / rl
                if with_hu:
                    sel = ql < q
                    hu = np.where(sel, hl * (1.0 + 0.12 * (0.5 - ql * ql)), hu)
                q = np.minimum(q, ql)
            return q, hu
        if k == "plaque":
            L, t0, kap = p["L"], p["t0"], p["kappa"]
            d = b - 0.5 * kap * a * a
            mod = 1.0 + p["wave_amp"] * np.cos(2 * math.pi * a / p["wave_len"]
                                               + p["wave_ph"])
            q = np.hypot(2.0 * a / L, 2.0 * d / (t0 * mod))
            if not with_hu:
                return q, None
            hu = self.hu * (1.0 + 0.08 * self._texture(a, b))
            return q, hu
        raise ValueError(k)


def _waves(rng, n, wavelength):
    out = []
    for _ in range(n):
        th = rng.uniform(0, 2 * math.pi)
        kk = 2 * math.pi / (wavelength * rng.uniform(0.6, 1.8))
        out.append((kk * math.cos(th), kk * math.sin(th), rng.uniform(0, 2 * math.pi)))
    return out


def _density(rng, cls, cort):
    if cls == "faint":
        return rng.uniform(240, 420)
    if cls == "moderate":
        return rng.uniform(420, 900)
    if cls == "dense":
        return rng.uniform(900, 1500)
    return rng.uniform(max(1500.0, cort * 1.05), 2600)  # very dense, above cortex


def _make_shape(rng, kind, area, centre, psi, px, cort):
    """Build a deposit of roughly `area` mm^2 (exact area measured later)."""
    if kind == "rim":
        asp = rng.uniform(1.0, 1.6)
        bx = math.sqrt(area / (math.pi * asp))
        ax = asp * bx
        t_r = max(0.3, 1.3 * px, rng.uniform(0.15, 0.3) * bx)
        if t_r > 0.45 * bx:
            kind = "nodule"
        else:
            harm = [(m, rng.uniform(0, 0.05), rng.uniform(0, 6.3)) for m in (2, 3, 4)]
            hu = rng.uniform(700, 1900)
            core = rng.uniform(140, 330)
            return _Shape("rim", centre, psi, ax * 1.2,
                          dict(ax=ax, bx=bx, harm=harm, rimfrac=t_r / bx,
                               core_hu=core, waves=_waves(rng, 5, 0.8)), hu), \
                f"rim(rim {hu:.0f}/core {core:.0f}HU)"
    if kind == "plaque":
        t0 = max(rng.uniform(0.4, 1.6), 2.2 * px)
        L = area / (math.pi / 4 * t0)
        if L > 22.0:
            L = 22.0
            t0 = area / (math.pi / 4 * L)
        if L < 2.5 * t0:
            kind = "nodule"
        else:
            kap = rng.uniform(-1, 1) * min(0.15, 1.2 / L)
            hu = _density(rng, rng.choice(["moderate", "dense", "very dense"],
                                          p=[0.35, 0.45, 0.2]), cort)
            prm = dict(L=L, t0=t0, kappa=kap, wave_amp=rng.uniform(0, 0.18),
                       wave_len=rng.uniform(2.5, 6.0), wave_ph=rng.uniform(0, 6.3),
                       waves=_waves(rng, 5, 1.0))
            rmax = 0.5 * L + t0 + abs(kap) * L * L / 8
            return _Shape("plaque", centre, psi, rmax, prm, hu), f"plaque({hu:.0f}HU)"
    if kind == "cluster":
        nl = int(rng.integers(3, 9))
        r0 = math.sqrt(area / (math.pi * nl * 0.72))
        lobes = []
        base_hu = _density(rng, rng.choice(["moderate", "dense", "very dense"],
                                           p=[0.3, 0.45, 0.25]), cort)
        elong = rng.uniform(0.0, 0.8)
        for i in range(nl):
            rl = r0 * rng.uniform(0.65, 1.3)
            if i == 0:
                ca = cb = 0.0
            else:
                j = int(rng.integers(0, len(lobes)))
                pa, pb, pr, _ = lobes[j]
                th = rng.uniform(0, 2 * math.pi)
                dist = (pr + rl) * rng.uniform(0.45, 0.85)
                ca = pa + dist * math.cos(th) * (1 + elong)
                cb = pb + dist * math.sin(th) * (1 - 0.5 * elong)
            lobes.append((ca, cb, rl, base_hu * rng.uniform(0.8, 1.2)))
        ma = np.mean([l[0] for l in lobes])
        mb = np.mean([l[1] for l in lobes])
        lobes = [(l[0] - ma, l[1] - mb, l[2], l[3]) for l in lobes]
        rmax = max(math.hypot(l[0], l[1]) + l[2] for l in lobes) * 1.02
        return _Shape("cluster", centre, psi, rmax, dict(lobes=lobes), base_hu), \
            f"cluster{nl}({base_hu:.0f}HU)"
    if kind == "amorphous":
        asp = rng.uniform(1.0, 2.0)
        bx = math.sqrt(area / (math.pi * asp))
        ax = asp * bx
        harm = []
        amps = rng.dirichlet(np.ones(5)) * rng.uniform(0.2, 0.42)
        for m, amp in zip((2, 3, 4, 5, 7), amps):
            harm.append((m, float(amp), rng.uniform(0, 6.3)))
        hu = rng.uniform(250, 430)
        prm = dict(ax=ax, bx=bx, harm=harm, tex_amp=rng.uniform(0.1, 0.22),
                   waves=_waves(rng, 9, max(0.6, 3 * px)) + _waves(rng, 5, max(1.5, 6 * px)))
        return _Shape("amorphous", centre, psi, ax * 1.45, prm, hu), \
            f"amorphous({hu:.0f}HU)"
    # nodule (default)
    asp = rng.uniform(1.0, 2.2)
    bx = math.sqrt(area / (math.pi * asp))
    ax = asp * bx
    harm = [(m, rng.uniform(0, 0.09) / (1 + 0.3 * (m - 2)), rng.uniform(0, 6.3))
            for m in (2, 3, 4, 5)]
    cls = rng.choice(["faint", "moderate", "dense", "very dense"],
                     p=[0.15, 0.35, 0.33, 0.17])
    hu = _density(rng, cls, cort)
    prm = dict(ax=ax, bx=bx, harm=harm, grad=rng.uniform(-0.1, 0.3),
               waves=_waves(rng, 4, 1.0))
    return _Shape("nodule", centre, psi, ax * 1.3, prm, hu), f"nodule({hu:.0f}HU)"


# ----------------------------------------------------------------------------
# the case
# ----------------------------------------------------------------------------

class _Case:
    pass


def _build_anatomy(rng, C):
    ssc_tip = rng.random() < 0.65           # sclerodactyly / pulp atrophy
    acro = rng.random() < 0.45              # acro-osteolysis
    osteo = rng.uniform(0.0, 1.0) ** 1.5    # 0 none .. 1 severe osteopenia
    fs = rng.uniform(0.82, 1.12)            # overall size
    C.ssc_tip, C.acro, C.osteo = ssc_tip, acro, osteo

    # joint angles (degrees, + = flexion toward palmar)
    mcp = rng.uniform(-10, 30)
    r = rng.random()
    if r < 0.45:
        pip = rng.uniform(0, 20)
    elif r < 0.85:
        pip = rng.uniform(30, 85)            # flexion contracture
    else:
        pip = rng.uniform(-15, 0)            # swan-neck
    r = rng.random()
    if r < 0.55:
        dip = rng.uniform(0, 20)
    elif r < 0.85:
        dip = rng.uniform(20, 55)
    else:
        dip = rng.uniform(-15, 0)
    C.angles = (mcp, pip, dip)

    gapf = rng.uniform(0.55, 1.0)           # joint-space narrowing
    L = dict(MC=62 * fs * rng.uniform(0.95, 1.05), PP=42 * fs * rng.uniform(0.92, 1.08),
             MP=26 * fs * rng.uniform(0.9, 1.1), DP=19 * fs * rng.uniform(0.9, 1.1))
    R = dict(MC=5.5 * fs * rng.uniform(0.92, 1.08), PP=3.8 * fs * rng.uniform(0.92, 1.08),
             MP=2.9 * fs * rng.uniform(0.92, 1.08))
    gap = dict(MC=1.5 * gapf * fs, PP=1.2 * gapf * fs, MP=1.0 * gapf * fs)
    ct_scale = 1.0 - 0.3 * osteo
    tend = rng.uniform(0.28, 0.45)

    bones = []
    e = np.array([1.0, 0.0]) @ _rot(math.radians(rng.uniform(-6, 6))).T
    o = np.array([0.0, 0.0])
    prev_head = None
    order = ["MC", "PP", "MP", "DP"]
    flex = {"MC": mcp, "PP": pip, "MP": dip}
    for kind in order:
        Lk = L[kind]
        if prev_head is not None:
            c_prev, R_prev, g_prev = prev_head
            Rb = R_prev + g_prev
            o = c_prev + e * Rb
        if kind == "MC":
            Rh = R["MC"]
            ts = [0, 0.5, 0.8, 0.93, 1.0]
            rd = [4.0, 3.5, 4.2, Rh * 0.95, Rh + 0.3]
            rp = [4.0, 3.6, 4.6, Rh * 1.05, Rh + 0.6]
            tm = rng.uniform(1.2, 1.8) * ct_scale * fs
            tc = [tm, tm, tm * 0.7, tend, tend]
            s_lo = 0.0
            rc = -0.3
        else:
            hb = {"PP": 5.0, "MP": 3.9, "DP": 3.4}[kind] * fs * rng.uniform(0.92, 1.08)
            depth = Rb - math.sqrt(max(Rb * Rb - hb * hb, 0.0))
            lip = 0.8 * depth
            t0 = -lip / Lk
            if kind == "DP":
                hs = 1.6 * fs * rng.uniform(0.85, 1.15)
                ht = 2.0 * fs * rng.uniform(0.85, 1.2)
                ts = [t0, 0.0, 0.1, 0.27, 0.6, 0.86, 1.0]
                rd = [hb * 0.95, hb, hb * 0.72, hs * 1.05, hs * 0.92, ht * 0.9, ht * 0.9]
                rp = [hb * 1.05, hb * 1.1, hb * 0.78, hs * 1.15, hs, ht * 1.05, ht * 1.05]
                tm = max(0.35, rng.uniform(0.45, 0.8) * ct_scale * fs)
                tc = [tend, tend, tm * 0.8, tm, tm, tend, tend * 0.9]
            else:
                Rh = R[kind]
                hs = {"PP": 3.0, "MP": 2.4}[kind] * fs * rng.uniform(0.9, 1.1)
                ts = [t0, 0.0, 0.12, 0.35, 0.65, 0.86, 1.0]
                rd = [hb * 0.95, hb, hb * 0.8, hs, hs * 0.98, Rh * 0.88, Rh + 0.1]
                rp = [hb * 1.05, hb * 1.1, hb * 0.85, hs * 1.08, hs * 1.02, Rh * 0.92, Rh + 0.5]
                tm = rng.uniform(0.8, 1.35) * ct_scale * fs * (1.0 if kind == "PP" else 0.8)
                tc = [tend, tend, tm * 0.55, tm, tm, tm * 0.5, tend]
            s_lo = -lip
            rc = -0.2
        head = None
        tuft = None
        if kind != "DP":
            c = o + e * (Lk - R[kind]) + np.array([-e[1], e[0]]) * rc
            head = (c, R[kind])
        else:
            a_t = 1.6 * fs * rng.uniform(0.85, 1.2)
            b_t = ht * 1.0
            harm = []
            Ld = Lk
            if acro:
                sev = rng.uniform(0.2, 0.75)
                C.acro_sev = sev
                Ld = Lk * (1.0 - 0.42 * sev)
                b_t = max(0.55, ht * (1.0 - 0.75 * sev))
                a_t = max(0.7, a_t * (1.0 - 0.5 * sev))
                # taper the distal shaft toward the resorbed tip
                rd = rd[:4] + [max(b_t, hs * (1 - 0.4 * sev)), b_t * 0.95, b_t * 0.95]
                rp = rp[:4] + [max(b_t, hs * (1 - 0.35 * sev)), b_t * 1.05, b_t * 1.05]
                harm = [(m, rng.uniform(0.03, 0.12) * sev + 0.02, rng.uniform(0, 6.3))
                        for m in (3, 4, 5, 7)]
                ts[0] = -lip / Ld
                Lk = Ld
            tuft = (Lk - a_t, (rd[-1] - rp[-1]) / 2, a_t, b_t, harm)
        base = None if prev_head is None else (prev_head[0], prev_head[1] + prev_head[2])
        bone = _Bone(kind, o, e, Lk, ts, rd, rp, tc, s_lo, head=head, base=base, tuft=tuft)
        bone.cort_var = rng.uniform(0.9, 1.08)
        bones.append(bone)
        if kind != "DP":
            prev_head = (head[0], head[1], gap[kind])
            e = _rot(-math.radians(flex[kind])) @ e
    C.bones = bones
    C.bone_by = {b.kind: b for b in bones}

    # ---- soft tissue geometry ------------------------------------------------
    hd = {"MC": 4.0, "PP": 3.0, "MP": 2.45, "DP": 1.7}
    hp = {"MC": 4.2, "PP": 3.2, "MP": 2.6, "DP": 1.8}
    t_nail = rng.uniform(0.4, 0.8)
    nailbed = rng.uniform(1.1, 2.0)
    atro = rng.uniform(0.45, 0.75) if ssc_tip else 1.0
    Td = {"MC": rng.uniform(4.0, 6.0), "PP": rng.uniform(3.3, 5.0),
          "MP": rng.uniform(2.8, 4.2), "DP": nailbed + t_nail}
    Tp = {"MC": rng.uniform(11, 17), "PP": rng.uniform(5.5, 8.5),
          "MP": rng.uniform(4.8, 7.0), "DP": rng.uniform(5.0, 8.0) * atro}
    C.D = {k: hd[k] * fs + Td[k] for k in hd}
    C.P = {k: hp[k] * fs + Tp[k] for k in hp}
    C.hd = {k: hd[k] * fs for k in hd}
    C.hp = {k: hp[k] * fs for k in hp}
    C.t_nail, C.nailbed = t_nail, nailbed
    dp = C.bone_by["DP"]
    C.tip_ext = rng.uniform(3.0, 6.0) * (0.6 if ssc_tip else 1.0)
    L_dp_orig = 19 * fs  # the soft-tissue tip follows the original length
    C.tip_end = max(L_dp_orig, dp.L + 1.0) + C.tip_ext
    C.tip_se = 0.4 * dp.L
    C.t_derm = rng.uniform(0.9, 1.4) * (rng.uniform(1.2, 1.9) if ssc_tip else 1.0)
    C.fs = fs
    C.palm_taper = rng.uniform(8.0, 18.0)
    # shallow palmar skin creases at PIP and DIP: a small groove at the skin
    C.creases = []
    creases = []
    for jk, nk in (("PP", "MP"), ("MP", "DP")):
        bj = C.bone_by[jk]
        bn = C.bone_by[nk]
        c = bj.head[0]
        nrm = bj.n + bn.n
        nrm /= np.linalg.norm(nrm)
        rs = np.arange(0.0, 25.0, 0.05)
        wp = c[None, :] - nrm[None, :] * rs[:, None]
        tsd = _tissue_sdf(C, wp[:, 0], wp[:, 1])
        rsk = rs[int(np.argmax(tsd > 0))]
        rcr = rng.uniform(0.35, 0.8)
        creases.append((c - nrm * (rsk + rcr * rng.uniform(0.35, 0.7)), rcr))
    C.creases = creases


def _tissue_sdf(C, U, V):
    b = C.bone_by
    order = ["MC", "PP", "MP", "DP"]
    d = None
    k = 2.0
    for i, kind in enumerate(order):
        bone = b[kind]
        s, r = bone.local(U, V)
        s_hi = bone.L - bone.head[1] if kind != "DP" else C.tip_se
        if kind == "MC":
            s_lo = -_FAR
        else:
            prev = b[order[i - 1]]
            s_lo = -(prev.head[1] + bone.base[1] - prev.head[1])
        if kind == "MC":
            taper = np.clip((s - (s_hi - C.palm_taper)) / C.palm_taper, 0.0, 1.0)
            Pk = C.P["MC"] + (C.P["PP"] + 1.5 - C.P["MC"]) * taper
        else:
            Pk = C.P[kind]
        di = np.maximum(np.maximum(r - C.D[kind], -Pk - r),
                        np.maximum(s_lo - s, s - s_hi))
        if kind == "DP":
            a_e = C.tip_end - C.tip_se
            b_e = 0.5 * (C.D["DP"] + C.P["DP"])
            r_e = 0.5 * (C.D["DP"] - C.P["DP"])
            de = _ell_sdf(s - C.tip_se, r - r_e, a_e, b_e)
            di = _smin(di, de, 1.5)
        d = di if d is None else _smin(d, di, k)
    for i, kind in enumerate(order[:-1]):
        bone = b[kind]
        nxt = b[order[i + 1]]
        c, Rh = bone.head
        nrm = bone.n + nxt.n
        nrm = nrm / np.linalg.norm(nrm)
        Dj = 0.5 * (C.D[kind] + C.D[order[i + 1]])
        Pj = 0.5 * (C.P[kind] + C.P[order[i + 1]])
        if kind == "MC":
            Pj = C.P["PP"] + 1.0
        cc = c + nrm * 0.5 * (Dj - Pj)
        dj = np.hypot(U - cc[0], V - cc[1]) - 0.5 * (Dj + Pj)
        d = _smin(d, dj, k)
    for cc, rcr in C.creases:
        d = -_smin(-d, np.hypot(U - cc[0], V - cc[1]) - rcr, 0.4)
    for sw in getattr(C, "swells", ()):
        d = _smin(d, _swell_sdf(sw, U, V), 2.5)
    return d


def _swell_sdf(sw, U, V):
    c, psi, ea, eb = sw
    du = U - c[0]
    dv = V - c[1]
    cp, sp = math.cos(psi), math.sin(psi)
    return _ell_sdf(du * cp + dv * sp, -du * sp + dv * cp, ea, eb)


def _nail_sdf(C, U, V):
    dp = C.bone_by["DP"]
    s, r = dp.local(U, V)
    s0 = C.nail_s0
    s1 = C.nail_s1
    # the nail plate lies on the dorsal skin of the fingertip (ellipse), with a
    # slightly flatter free edge
    a_e = C.tip_end - C.tip_se
    b_e = 0.5 * (C.D["DP"] + C.P["DP"])
    r_e = 0.5 * (C.D["DP"] - C.P["DP"])
    x = np.clip((s - C.tip_se) / a_e, 0.0, 0.97)
    top = r_e + b_e * np.sqrt(1.0 - x * x) + C.nail_curv * np.maximum(s - C.nail_s1 + 1.5, 0.0)
    return np.maximum(np.maximum(r - top, (top - C.t_nail) - r),
                      np.maximum(s0 - s, s - s1))


def _bone_sdf(C, U, V):
    d = np.full(np.shape(U), _FAR)
    for b in C.bones:
        d = np.minimum(d, b.sdf(U, V)[0])
    return d


def _bbox_px(C, pts, pad_px=2):
    pts = np.asarray(pts, float)
    P = (pts - C.roi) @ C.M  # rows: image-plane coordinates (x, y)
    cols = (P[:, 0] + C.W * C.px / 2) / C.px - 0.5
    rows = (P[:, 1] + C.H * C.px / 2) / C.px - 0.5
    i0 = int(math.floor(rows.min())) - pad_px
    i1 = int(math.ceil(rows.max())) + pad_px + 1
    j0 = int(math.floor(cols.min())) - pad_px
    j1 = int(math.ceil(cols.max())) + pad_px + 1
    return i0, i1, j0, j1


def _world_grid(C, rows, cols):
    """World coordinates of (fractional) pixel indices rows (n,1), cols (1,m)."""
    Px = (cols + 0.5) * C.px - C.W * C.px / 2
    Py = (rows + 0.5) * C.px - C.H * C.px / 2
    U = C.roi[0] + C.M[0, 0] * Px + C.M[0, 1] * Py
    V = C.roi[1] + C.M[1, 0] * Px + C.M[1, 1] * Py
    return U, V


def _to_pix(C, w):
    P = (np.asarray(w, float) - C.roi) @ C.M
    return ((P[1] + C.H * C.px / 2) / C.px - 0.5, (P[0] + C.W * C.px / 2) / C.px - 0.5)


def _in_fov(C, w, margin_mm):
    P = (np.asarray(w, float) - C.roi) @ C.M
    return (abs(P[0]) < C.W * C.px / 2 - margin_mm and abs(P[1]) < C.H * C.px / 2 - margin_mm)


def _choose_fov(rng, C):
    b = C.bone_by
    tip = b["DP"].world(C.tip_end, 0.5 * (C.D["DP"] - C.P["DP"]))
    r = rng.random()
    if r < 0.35:
        region = "distal"
        p0, p1 = b["MP"].head[0], tip
        lo, hi = 24.0, 50.0
    elif r < 0.65:
        region = "mid"
        p0, p1 = b["PP"].head[0], tip
        lo, hi = 42.0, 80.0
    elif r < 0.85:
        region = "whole"
        p0, p1 = b["MC"].head[0], tip
        lo, hi = 70.0, 125.0
    else:
        region = "proximal"
        p0, p1 = b["MC"].head[0] - b["MC"].e * 8, b["MP"].head[0]
        lo, hi = 50.0, 95.0
    ext = float(np.linalg.norm(p1 - p0))
    fov_long = float(np.clip(ext * rng.uniform(0.85, 1.3) + rng.uniform(0, 10), lo, hi))
    if rng.random() < 0.5:
        # spacing chosen for the planned field of view
        sp_lo = max(0.1, fov_long / 800.0)
        sp_hi = min(0.5, fov_long / 200.0)
        px = _loguni(rng, sp_lo, sp_hi)
    else:
        # scanner/reformat spacing first; the field of view follows
        px = _loguni(rng, 0.1, 0.5)
        fov_long = float(np.clip(fov_long, 200 * px, 800 * px))
    n_long = int(np.clip(round(fov_long / px), 200, 800))
    aspect = rng.uniform(0.55, 1.0)
    n_short = int(np.clip(round(n_long * aspect), 200, 800))
    axis = p1 - p0
    alpha = math.atan2(axis[1], axis[0])
    if rng.random() < 0.7:
        gamma = rng.integers(0, 4) * (math.pi / 2) + math.radians(rng.normal(0, 12))
    else:
        gamma = rng.uniform(0, 2 * math.pi)
    vertical = abs(math.sin(gamma)) > abs(math.cos(gamma))
    if vertical:
        H, W = n_long, n_short
    else:
        H, W = n_short, n_long
    flip = 1.0 if rng.random() < 0.5 else -1.0
    M = _rot(alpha) @ np.diag([1.0, flip]) @ _rot(-gamma)
    roi = 0.5 * (p0 + p1)
    # shift the field of view (cut bones at the border), mostly along the finger
    u = axis / max(ext, 1e-6)
    nrm = np.array([-u[1], u[0]])
    roi = roi + u * rng.uniform(-0.15, 0.15) * fov_long + nrm * rng.normal(0, 2.5)
    C.region, C.px, C.H, C.W, C.M, C.roi = region, px, H, W, M, roi
    C.gamma = math.degrees(gamma) % 360


def _render_anatomy(rng, C):
    H, W, px = C.H, C.W, C.px
    rows = np.arange(H, dtype=float)[:, None]
    cols = np.arange(W, dtype=float)[None, :]
    U, V = _world_grid(C, rows, cols)
    U = np.broadcast_to(U, (H, W))
    V = np.broadcast_to(V, (H, W))
    C.U, C.V = U, V

    # -- bones ---------------------------------------------------------------
    osteo = C.osteo
    cort = rng.uniform(1300, 1900) * (1.0 - 0.3 * osteo)
    marrow = rng.uniform(10, 140) * (1.0 - 0.5 * osteo)
    trab = rng.uniform(230, 460) * (1.0 - 0.5 * osteo)
    periart = rng.uniform(0.6, 1.0) if rng.random() < 0.5 else 1.0   # periarticular osteopenia
    C.cort = cort
    tex_sig = max(0.25 / px, 0.6)
    tex = ndi.gaussian_filter(rng.standard_normal((H, W)), tex_sig)
    tex /= tex.std() + 1e-9
    bone_sdf = np.full((H, W), _FAR)
    Bsum = np.zeros((H, W))
    cb_tot = np.zeros((H, W))
    for b in C.bones:
        i0, i1, j0, j1 = _bbox_px(C, b.corners(3.5), 2)
        i0, j0 = max(i0, 0), max(j0, 0)
        i1, j1 = min(i1, H), min(j1, W)
        if i1 <= i0 or j1 <= j0:
            continue
        Us, Vs = U[i0:i1, j0:j1], V[i0:i1, j0:j1]
        d, t = b.sdf(Us, Vs)
        bone_sdf[i0:i1, j0:j1] = np.minimum(bone_sdf[i0:i1, j0:j1], d)
        if d.min() > px:
            continue
        tcv = np.interp(t, b.tg, b.tc)
        cbv = _cov(d, px)
        cm = _cov(d + tcv, px)
        w_end = np.clip(np.maximum(1 - t / 0.22, (t - 0.78) / 0.22), 0.0, 1.0)
        if b.kind == "DP":
            w_end = np.maximum(w_end, 0.5)
        hmed = marrow + (trab * periart - marrow) * w_end \
            + (45 + 70 * w_end) * tex[i0:i1, j0:j1]
        hc = cort * b.cort_var * (1.0 + 0.04 * tex[i0:i1, j0:j1])
        Bsum[i0:i1, j0:j1] += hc * (cbv - cm) + hmed * cm
        cb_tot[i0:i1, j0:j1] += cbv
    C.bone_sdf = bone_sdf
    C.bone = bone_sdf < 0.0
    C.Bsum, C.cb = Bsum, np.minimum(cb_tot, 1.0)

    # -- soft tissue / nail geometry -------------------------------------------
    C.swells = []
    C.tsdf = _tissue_sdf(C, U, V)
    dp = C.bone_by["DP"]
    C.nail_s0 = rng.uniform(0.15, 0.35) * dp.L
    C.nail_s1 = C.tip_se + (C.tip_end - C.tip_se) * rng.uniform(0.6, 0.82)
    C.nail_curv = rng.uniform(0.0, 0.25)
    C.nail_hu = rng.uniform(180, 450) if rng.random() < 0.75 else rng.uniform(450, 700)
    i0, i1, j0, j1 = _bbox_px(C, dp.corners(C.tip_ext + 4), 2)
    i0, j0, i1, j1 = max(i0, 0), max(j0, 0), min(i1, H), min(j1, W)
    C.nail_box = (i0, i1, j0, j1)
    C.nail_sdf = np.full((H, W), _FAR)
    if i1 > i0 and j1 > j0:
        C.nail_sdf[i0:i1, j0:j1] = _nail_sdf(C, U[i0:i1, j0:j1], V[i0:i1, j0:j1])


def _render_soft(rng, C):
    H, W, px = C.H, C.W, C.px
    U, V = C.U, C.V
    bone_sdf = C.bone_sdf

    tsdf = C.tsdf
    depth = -tsdf
    fat = rng.uniform(-120, -70)
    soft = rng.uniform(35, 65)
    derm = soft + rng.uniform(0, 25)
    ff0 = rng.uniform(0.55, 0.9) * (rng.uniform(0.5, 0.85) if C.ssc_tip else 1.0)
    sept = ndi.gaussian_filter(rng.standard_normal((H, W)), max(0.35 / px, 0.7))
    sept /= sept.std() + 1e-9
    ff = np.clip(ff0 - 0.28 * sept, 0.0, 1.0)
    sub = ff * fat + (1 - ff) * soft
    w_derm = 1.0 - _smoothstep(C.t_derm - 0.3, C.t_derm + 0.3, depth)
    t_deep = rng.uniform(0.8, 1.8)
    w_deep = 1.0 - _smoothstep(t_deep - 0.4, t_deep + 0.4, bone_sdf)
    Tt = derm * w_derm + (1 - w_derm) * sub
    Tt = soft * w_deep + (1 - w_deep) * Tt
    ct = _cov(tsdf, px)
    air = -1000.0
    T = air * (1 - ct) + Tt * ct

    # tendons (flexor palmar to PP/MP, insertion on DP base; thin extensor)
    tendon_hu = rng.uniform(75, 115)
    for kind in ("PP", "MP", "DP"):
        b = C.bone_by[kind]
        i0, i1, j0, j1 = _bbox_px(C, b.corners(C.P[kind]), 2)
        i0, j0, i1, j1 = max(i0, 0), max(j0, 0), min(i1, H), min(j1, W)
        if i1 <= i0 or j1 <= j0:
            continue
        s, r = b.local(U[i0:i1, j0:j1], V[i0:i1, j0:j1])
        hpk, hdk = C.hp[kind], C.hd[kind]
        th = {"PP": 2.2, "MP": 1.7, "DP": 1.0}[kind] * C.fs
        g = 0.35
        s_a, s_b = (-0.5, 0.95 * b.L) if kind != "DP" else (-0.5, 0.3 * b.L)
        dfl = np.maximum(np.maximum(r + hpk + g - 0.0, -(hpk + g + th) - r),
                         np.maximum(s_a - s, s - s_b))
        cf = _cov(dfl, px) * ct[i0:i1, j0:j1]
        Ts = T[i0:i1, j0:j1]
        Ts[...] = Ts * (1 - cf) + tendon_hu * cf
        if kind != "DP":
            te = 0.7 * C.fs
            dex = np.maximum(np.maximum(r - (hdk + 0.25 + te), (hdk + 0.25) - r),
                             np.maximum(-0.5 - s, s - 0.95 * b.L))
            ce = _cov(dex, px) * ct[i0:i1, j0:j1]
            Ts[...] = Ts * (1 - ce) + tendon_hu * ce

    # nail plate
    i0, i1, j0, j1 = C.nail_box
    if i1 > i0 and j1 > j0:
        cn = _cov(C.nail_sdf[i0:i1, j0:j1], px)
        Ts = T[i0:i1, j0:j1]
        Ts[...] = Ts * (1 - cn) + C.nail_hu * cn
    C.T = T


def _eval_group(C, shapes):
    """Supersample a group of deposits.  Returns None if it leaves the image."""
    px, ss = C.px, C.ss
    pts = []
    for sh in shapes:
        for ang in np.linspace(0, 2 * math.pi, 8, endpoint=False):
            pts.append(sh.c + sh.rmax * np.array([math.cos(ang), math.sin(ang)]) * 1.1)
    i0, i1, j0, j1 = _bbox_px(C, pts, 2)
    if i0 < 1 or j0 < 1 or i1 > C.H - 1 or j1 > C.W - 1:
        return None
    nh, nw = i1 - i0, j1 - j0
    res = dict(bbox=(i0, i1, j0, j1), members=[])
    sa = (px / ss) ** 2
    npx = nh * nw
    # stage 1: conservative candidate pixels from the shape function at pixel centres
    Uc, Vc = _world_grid(C, np.arange(i0, i1, dtype=float)[:, None],
                         np.arange(j0, j1, dtype=float)[None, :])
    Uc, Vc = np.broadcast_to(Uc, (nh, nw)), np.broadcast_to(Vc, (nh, nw))
    cand = np.zeros((nh, nw), bool)
    for sh in shapes:
        cand |= sh.eval(Uc, Vc, with_hu=False)[0] <= 1.0 + sh.qmargin(px)
    pidx = np.flatnonzero(cand.ravel())
    # stage 2: supersample the candidate pixels only
    sub = (np.arange(ss) + 0.5) / ss - 0.5
    oy = np.repeat(sub, ss)
    ox = np.tile(sub, ss)
    R = (i0 + pidx // nw)[:, None] + oy[None, :]
    Cc = (j0 + pidx % nw)[:, None] + ox[None, :]
    Uw, Vw = _world_grid(C, R, Cc)
    qs = [sh.eval(Uw, Vw, with_hu=False)[0] for sh in shapes]
    qmin_all = qs[0] if len(qs) == 1 else np.minimum.reduce(qs)
    flat = np.flatnonzero(qmin_all.ravel() <= 1.0)
    if flat.size == 0:
        for _ in shapes:
            res["members"].append(dict(frac=np.zeros((nh, nw)), husum=np.zeros((nh, nw)),
                                       area=0.0, raw=0.0, near_bone=0.0))
        return res
    Us = Uw.ravel()[flat]
    Vs = Vw.ravel()[flat]
    pix = pidx[flat // (ss * ss)]
    qh = [sh.eval(Us, Vs) for sh in shapes]
    if len(shapes) == 1:
        idx = np.zeros(flat.size, dtype=np.intp)
        hsel = qh[0][1]
    else:
        Q = np.stack([x[0] for x in qh])
        idx = np.argmin(Q, axis=0)
        hsel = np.stack([x[1] for x in qh])[idx, np.arange(flat.size)]
    # bone distance only for bones near this group
    cen = np.mean([sh.c for sh in shapes], axis=0)
    rad = max(np.linalg.norm(sh.c - cen) + sh.rmax for sh in shapes) * 1.1 + 1.0
    bsd = np.full(flat.size, _FAR)
    for bn in C.bones:
        sl, rl = bn.local(np.array([cen[0]]), np.array([cen[1]]))
        sl, rl = float(sl[0]), float(rl[0])
        if sl < bn.s_lo - rad or sl > bn.L + rad or abs(rl) > bn.hmax + rad:
            continue
        bsd = np.minimum(bsd, bn.sdf(Us, Vs)[0])
    own = bsd >= 0.0
    for k in range(len(shapes)):
        ink = idx == k
        mk = own & ink
        frac = np.bincount(pix[mk], minlength=npx).reshape(nh, nw) / float(ss * ss)
        husum = np.bincount(pix[mk], weights=hsel[mk], minlength=npx).reshape(nh, nw) / float(ss * ss)
        res["members"].append(dict(
            frac=frac, husum=husum, area=float(mk.sum()) * sa,
            raw=float(ink.sum()) * sa,
            near_bone=float((ink & (bsd < 0.3)).sum()) * sa))
    return res


def _validate(C, res, bone_site, occ, swell=0.0):
    i0, i1, j0, j1 = res["bbox"]
    tot = sum(m["frac"] for m in res["members"])
    cov = tot > 0.0
    if not cov.any():
        return False
    if (C.tsdf[i0:i1, j0:j1][cov] > -0.1 + swell).any():
        return False
    if (C.nail_sdf[i0:i1, j0:j1][cov] < 0.3).any():
        return False
    if (occ[i0:i1, j0:j1] & cov).any():
        return False
    if getattr(C, "metal_sdf", None) is not None and \
            (C.metal_sdf[i0:i1, j0:j1][cov] < 1.0).any():
        return False
    bone = C.bone[i0:i1, j0:j1]
    for m in res["members"]:
        if m["raw"] <= 0:
            return False
        lab = (m["frac"] > 0.5) & ~bone
        if lab.sum() < 2:
            return False
        if m["area"] < 0.25:
            return False
        if bone_site:
            cut = 1.0 - m["area"] / m["raw"]
            if not (0.03 <= cut <= 0.5):
                return False
        elif m["near_bone"] > 0:
            return False
    return True


def _site(rng, C, site, minor):
    """Pick a world position and orientation for a deposit at an anatomical site."""
    b = C.bone_by
    if site == "pulp":
        dp = b["DP"]
        s = rng.uniform(0.25, 1.05) * dp.L
        _, rp = dp.half(min(s, dp.L))
        lo = rp + 0.5 + minor
        hi = C.P["DP"] - C.t_derm * 0.5 - minor
        if hi < lo:
            hi = lo
        r = -rng.uniform(lo, hi)
        return dp.world(s, r), math.atan2(dp.e[1], dp.e[0]) + rng.normal(0, 0.4), "pulp"
    if site == "tip":
        dp = b["DP"]
        s = rng.uniform(dp.L + 0.4 + minor, max(dp.L + 0.5 + minor, C.tip_end - 0.8 - minor))
        r = rng.uniform(-0.6, 0.2) * C.P["DP"] * 0.5
        return dp.world(s, r), rng.uniform(0, 2 * math.pi), "tip"
    if site == "subcut":
        kind = rng.choice(["PP", "MP", "DP", "MC"], p=[0.32, 0.33, 0.25, 0.10])
        bn = b[kind]
        s = rng.uniform(0.1, 0.95) * bn.L
        rd, rp = bn.half(s)
        if rng.random() < 0.5:
            lo, hi = rd + 0.6 + minor, C.D[kind] - 0.5 * C.t_derm - minor
            sgn, h = 1, rd
        else:
            lo, hi = rp + 0.6 + minor, C.P[kind] - 0.5 * C.t_derm - minor
            sgn, h = -1, rp
        r = sgn * rng.uniform(lo, max(lo, hi))
        return bn.world(s, r), math.atan2(bn.e[1], bn.e[0]) + rng.normal(0, 0.25), \
            f"{'dorsal' if sgn > 0 else 'palmar'} subcutis {kind}"
    if site == "periarticular":
        kind = rng.choice(["PP", "MP", "MC"], p=[0.45, 0.4, 0.15])
        bn = b[kind]
        c, Rh = bn.head
        side = 1 if rng.random() < 0.45 else -1
        ang = math.atan2(bn.e[1], bn.e[0]) + side * math.radians(rng.uniform(55, 125))
        dist = Rh + 1.2 + rng.uniform(0.5, 3.0) + minor
        w = c + dist * np.array([math.cos(ang), math.sin(ang)])
        jn = {"PP": "PIP", "MP": "DIP", "MC": "MCP"}[kind]
        return w, ang + math.pi / 2 + rng.normal(0, 0.3), \
            f"{'dorsal' if side > 0 else 'palmar'} periarticular {jn}"
    # bone surface
    kind = rng.choice(["PP", "MP", "DP", "DPtip"], p=[0.3, 0.3, 0.2, 0.2])
    if kind == "DPtip":
        dp = b["DP"]
        sc, rc, a_t, b_t, _ = dp.tuft
        ang = rng.uniform(-1.2, 1.2)
        rad = rng.uniform(-0.5, 0.3) * minor
        w = dp.world(sc + (a_t + minor + rad) * math.cos(ang), rc + (b_t + minor + rad) * math.sin(ang))
        return w, math.atan2(dp.e[1], dp.e[0]) + ang + math.pi / 2, "on resorbed tuft"
    bn = b[kind]
    s = rng.uniform(0.15, 0.9) * bn.L
    rd, rp = bn.half(s)
    sgn = 1 if rng.random() < 0.5 else -1
    h = rd if sgn > 0 else rp
    r = sgn * (h + minor * rng.uniform(0.45, 1.1))
    return bn.world(s, r), math.atan2(bn.e[1], bn.e[0]) + rng.normal(0, 0.2), \
        f"on {'dorsal' if sgn > 0 else 'palmar'} {kind} surface"


_KINDS_BY_SITE = {
    "pulp": (["nodule", "cluster", "amorphous", "rim", "plaque"], [0.3, 0.25, 0.2, 0.12, 0.13]),
    "tip": (["nodule", "cluster", "rim", "amorphous"], [0.4, 0.3, 0.15, 0.15]),
    "subcut": (["plaque", "nodule", "amorphous", "cluster"], [0.35, 0.3, 0.2, 0.15]),
    "periarticular": (["cluster", "nodule", "amorphous", "plaque"], [0.35, 0.3, 0.2, 0.15]),
    "bone": (["nodule", "plaque", "cluster"], [0.4, 0.35, 0.25]),
}


def _minor_of(sh):
    p = sh.p
    if sh.kind in ("nodule", "amorphous", "rim"):
        return min(p["ax"], p["bx"])
    if sh.kind == "plaque":
        return 0.5 * p["t0"]
    return sh.rmax * 0.6


def _place_deposits(rng, C):
    px = C.px
    C.ss = int(np.clip(round(px / 0.035), 4, 12))
    H, W = C.H, C.W
    a_min = max(0.3, 4.0 * px * px)
    n_target = int(rng.choice(np.arange(1, 9), p=[0.16, 0.2, 0.18, 0.14, 0.11, 0.09, 0.07, 0.05]))
    want_pair = n_target >= 2 and rng.random() < 0.45
    occ = np.zeros((H, W), bool)
    labels = np.zeros((H, W), np.int32)
    C.fd = np.zeros((H, W))
    C.Dsum = np.zeros((H, W))
    deps = []
    sites = ["pulp", "tip", "subcut", "periarticular", "bone"]
    site_p = np.array([0.3, 0.1, 0.25, 0.15, 0.2])
    if not C.acro:
        site_p[1] = 0.05
    site_p /= site_p.sum()
    slots = 0
    while len(deps) < n_target and slots < n_target + 5:
        slots += 1
        make_pair = want_pair and n_target - len(deps) >= 2 and rng.random() < 0.6
        site = str(rng.choice(sites, p=site_p))
        if make_pair and site == "bone":
            site = "pulp"
        kinds, kp = _KINDS_BY_SITE[site]
        kind = str(rng.choice(kinds, p=kp))
        hi = 65.0 if site in ("pulp", "tip", "periarticular") else 40.0
        if site == "bone":
            hi = 25.0
        lo = max(a_min, 1.2) if make_pair else a_min
        if rng.random() < 0.5:
            area0 = _loguni(rng, lo, max(hi, lo * 1.5))
        else:
            area0 = _loguni(rng, max(lo, 3.0), max(hi, lo * 1.5))
        for attempt in range(9):
            area = max(area0 * 0.8 ** (attempt // 2), lo)
            if _try_place(rng, C, site, kind, area, make_pair, a_min, occ, labels, deps):
                if make_pair:
                    want_pair = False
                break
    if not deps:
        _fallback_deposit(rng, C, labels, occ, deps)
    C.labels = labels
    C.occ = occ
    C.deps = deps


def _try_place(rng, C, site, kind, area, make_pair, a_min, occ, labels, deps):
    px = C.px
    if True:
        # provisional shape to get its minor size, then position
        sh, desc = _make_shape(rng, kind, area, (0.0, 0.0), 0.0, px, C.cort)
        centre, psi, where = _site(rng, C, site, _minor_of(sh))
        if not _in_fov(C, centre, sh.rmax + 2 * px):
            return False
        sh.c = np.asarray(centre, float)
        sh.psi = psi
        shapes, descs = [sh], [desc]
        if make_pair:
            area2 = float(np.clip(area * _loguni(rng, 0.3, 1.5), max(a_min, 0.8), 40.0))
            k2 = str(rng.choice(["nodule", "cluster", "nodule", "rim"]))
            sh2, desc2 = _make_shape(rng, k2, area2, (0.0, 0.0), rng.uniform(0, 6.3), px, C.cort)
            # clearly different density from the partner
            if sh2.kind != "rim":
                ratio = _loguni(rng, 1.6, 3.0)
                new = sh.hu * ratio if (sh.hu < 900 or rng.random() < 0.3) else sh.hu / ratio
                new = float(np.clip(new, 260, 2600))
                scale = new / sh2.hu
                sh2.hu = new
                if sh2.kind == "cluster":
                    sh2.p["lobes"] = [(a, b_, r_, h * scale) for a, b_, r_, h in sh2.p["lobes"]]
                desc2 = f"{sh2.kind}({new:.0f}HU)"
            ang = rng.uniform(0, 2 * math.pi)
            u = np.array([math.cos(ang), math.sin(ang)])
            r1 = math.sqrt(max(_area_guess(sh), 1e-3) / math.pi)
            r2 = math.sqrt(max(_area_guess(sh2), 1e-3) / math.pi)
            sh2.c = sh.c + u * (r1 + r2) * rng.uniform(0.8, 0.95)
            shapes.append(sh2)
            descs.append(desc2)
        swell = 0.0
        if area > 6.0 and site != "bone" and rng.random() < 0.8:
            swell = rng.uniform(1.0, 3.0)   # large deposits may distend the skin
            ci, cj = _to_pix(C, sh.c)
            ci, cj = int(round(ci)), int(round(cj))
            if not (0 <= ci < C.H and 0 <= cj < C.W) or C.tsdf[ci, cj] > -0.5:
                return False
        res = _eval_group(C, shapes)
        if res is None:
            return False
        if not _validate(C, res, site == "bone", occ, swell):
            return False
        i0, i1, j0, j1 = res["bbox"]
        bone = C.bone[i0:i1, j0:j1]
        labs = [(m["frac"] > 0.5) & ~bone for m in res["members"]]
        if make_pair:
            touch = ndi.binary_dilation(labs[0]) & labs[1]
            if not touch.any():
                return False
            if any(m["area"] < 0.55 * _area_guess(s) for m, s in zip(res["members"], shapes)):
                return False
        tag = "touching pair" if make_pair else ""
        for m, sh_, ds_, lab in zip(res["members"], shapes, descs, labs):
            k = len(deps) + 1
            labels[i0:i1, j0:j1][lab] = k
            C.fd[i0:i1, j0:j1] += m["frac"]
            C.Dsum[i0:i1, j0:j1] += m["husum"]
            deps.append(dict(area=m["area"], bbox=res["bbox"], frac=m["frac"],
                             husum=m["husum"], desc=f"{ds_}@{where}" + (f" [{tag}]" if tag else ""),
                             shape=sh_))
        tot = sum(m["frac"] for m in res["members"]) > 0
        occ[i0:i1, j0:j1] |= ndi.binary_dilation(tot, iterations=2)
        if swell > 0 and (C.tsdf[i0:i1, j0:j1][tot] > -C.t_derm).any():
            for sh_ in shapes:
                ea, eb = _extent(sh_)
                sw = (sh_.c.copy(), sh_.psi, ea + 0.7 * C.t_derm + 0.3, eb + 0.7 * C.t_derm + 0.3)
                C.swells.append(sw)
                C.tsdf = _smin(C.tsdf, _swell_sdf(sw, C.U, C.V), 2.5)
            deps[-1]["desc"] += " (distends skin)"
        return True


def _extent(sh):
    p = sh.p
    if sh.kind in ("nodule", "amorphous", "rim"):
        g = 1.0 + sum(abs(h[1]) for h in p["harm"])
        return p["ax"] * g, p["bx"] * g
    if sh.kind == "plaque":
        return 0.5 * p["L"], 0.5 * p["t0"] * 1.3 + abs(p["kappa"]) * p["L"] ** 2 / 8
    return sh.rmax, sh.rmax


def _area_guess(sh):
    p = sh.p
    if sh.kind in ("nodule", "amorphous", "rim"):
        return math.pi * p["ax"] * p["bx"]
    if sh.kind == "plaque":
        return math.pi / 4 * p["L"] * p["t0"]
    return sum(math.pi * l[2] ** 2 for l in p["lobes"]) * 0.72


def _fallback_deposit(rng, C, labels, occ, deps):
    """Guarantee one deposit: a nodule at the deepest soft-tissue point in view."""
    px = C.px
    m = int(max(6, 3.0 / px))
    score = np.minimum(-C.tsdf, C.bone_sdf - 0.5)
    score = np.minimum(score, C.nail_sdf - 0.5)
    score[:m, :] = -1
    score[-m:, :] = -1
    score[:, :m] = -1
    score[:, -m:] = -1
    for _ in range(12):
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        room = float(score[i, j])
        rad = max(min(0.55 * room, 2.5), 1.2 * px)
        w = np.array([C.U[i, j], C.V[i, j]])
        sh = _Shape("nodule", w, rng.uniform(0, 6.3), rad * 1.3,
                    dict(ax=rad, bx=rad * 0.8, harm=[], grad=0.1, waves=[]),
                    rng.uniform(500, 1400))
        res = _eval_group(C, [sh])
        if res is not None:
            mm = res["members"][0]
            i0, i1, j0, j1 = res["bbox"]
            lab = (mm["frac"] > 0.5) & ~C.bone[i0:i1, j0:j1]
            if lab.sum() >= 1:
                labels[i0:i1, j0:j1][lab] = 1
                C.fd[i0:i1, j0:j1] += mm["frac"]
                C.Dsum[i0:i1, j0:j1] += mm["husum"]
                deps.append(dict(area=mm["area"], bbox=res["bbox"], frac=mm["frac"],
                                 husum=mm["husum"], desc=f"nodule({sh.hu:.0f}HU)@deep soft tissue",
                                 shape=sh))
                return
        score[max(i - 3, 0):i + 4, max(j - 3, 0):j + 4] = -1
    raise RuntimeError("could not place any deposit")


def _seeds(C):
    out = []
    for k, d in enumerate(C.deps, start=1):
        i0, i1, j0, j1 = d["bbox"]
        mask = C.labels[i0:i1, j0:j1] == k
        hm = np.where(d["frac"] > 0, d["husum"] / np.maximum(d["frac"], 1e-9), 0.0)
        edt = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        hmax = hm[mask].max()
        cand = mask & (hm >= 0.8 * hmax)
        if not cand.any():
            cand = mask
        score = np.where(cand, edt + 0.3 * hm / max(hmax, 1.0) + 0.2 * d["frac"], -1.0)
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        out.append((int(i0 + i), int(j0 + j)))
    return out


def _confounders(rng, C):
    """Calcified digital artery, ring or splint (drawn into the tissue layer C.T)."""
    H, W, px = C.H, C.W, C.px
    U, V = C.U, C.V
    notes = []
    C.metal_pts = []
    # ---- calcified digital artery ---------------------------------------------
    if rng.random() < 0.45:
        pts = []
        depth = rng.uniform(1.6, 3.2)
        for kind in ("MC", "PP", "MP", "DP"):
            b = C.bone_by[kind]
            s0 = 0.45 * b.L if kind == "MC" else 0.0
            s1 = b.L if kind != "DP" else b.L * 0.8
            for s in np.arange(s0, s1, 0.12):
                _, rp = b.half(s)
                pts.append(b.world(s, -(C.hp[kind] + depth + 0.15 * (rp - C.hp[kind]))))
        pts = np.array(pts)
        tram = rng.random() < 0.5
        wall_r = max(rng.uniform(0.15, 0.3), 0.2 * px)
        lumen = rng.uniform(0.45, 0.8)
        hu = rng.uniform(350, 1100)
        # calcified runs
        n = len(pts)
        keep = np.zeros(n, bool)
        hf = np.ones(n)
        rf = np.ones(n)
        frac = rng.uniform(0.15, 0.6)
        pos = int(rng.uniform(0.0, 0.5) * n)
        stop = int(pos + rng.uniform(0.3, 1.0) * (n - pos))
        while pos < stop:
            run = int(rng.uniform(0.5, 5.0) / 0.12)
            gapn = int(run * (1 - frac) / max(frac, 1e-3) * rng.uniform(0.5, 1.5))
            keep[pos:pos + run] = True
            hf[pos:pos + run] = rng.uniform(0.5, 1.0)
            rf[pos:pos + run] = rng.uniform(0.7, 1.3)
            pos += run + max(gapn, 3)
        offsets = (-lumen, lumen) if tram else (0.0,)
        drawn = 0
        for off in offsets:
            # normal of the path
            tang = np.gradient(pts, axis=0)
            tang /= np.linalg.norm(tang, axis=1, keepdims=True) + 1e-9
            nrm = np.stack([-tang[:, 1], tang[:, 0]], 1)
            P = pts + nrm * off
            ok = keep.copy()
            bs = _bone_sdf(C, P[:, 0], P[:, 1])
            ts = _tissue_sdf(C, P[:, 0], P[:, 1])
            ok &= (bs > 0.8) & (ts < -0.6)
            rows, cols = [], []
            for p in P:
                r_, c_ = _to_pix(C, p)
                rows.append(r_)
                cols.append(c_)
            rows, cols = np.array(rows), np.array(cols)
            inimg = (rows > 2) & (rows < H - 3) & (cols > 2) & (cols < W - 3)
            ok &= inimg
            ri = np.clip(np.round(rows).astype(int), 0, H - 1)
            ci = np.clip(np.round(cols).astype(int), 0, W - 1)
            occd = ndi.binary_dilation(C.occ, iterations=max(2, int(1.0 / px)))
            ok &= ~occd[ri, ci]
            rad = wall_r if tram else wall_r * 1.4
            rad_px = rad / px
            cscale = min(1.0, 2 * rad / px)
            for idx in np.flatnonzero(ok):
                r_, c_ = rows[idx], cols[idx]
                rad = (wall_r if tram else wall_r * 1.4) * rf[idx]
                rad_px = rad / px
                cscale = min(1.0, 2 * rad / px) * hf[idx]
                i0, i1 = max(int(r_ - rad_px - 2), 0), min(int(r_ + rad_px + 3), H)
                j0, j1 = max(int(c_ - rad_px - 2), 0), min(int(c_ + rad_px + 3), W)
                yy = np.arange(i0, i1)[:, None]
                xx = np.arange(j0, j1)[None, :]
                dd = np.hypot(yy - r_, xx - c_) * px - rad
                cv = _cov(dd, px) * cscale
                Ts = C.T[i0:i1, j0:j1]
                Ts[...] = np.maximum(Ts, Ts * (1 - cv) + hu * cv)
                drawn += 1
        if drawn:
            notes.append(f"calcified digital artery ({'tram-track' if tram else 'dashed'}, {hu:.0f}HU)")
    # ---- ring or splint ------------------------------------------------------------
    C.metal_sdf = None
    r = rng.random()
    if r < 0.14:
        pp = C.bone_by["PP"]
        s0 = rng.uniform(0.35, 0.7) * pp.L
        if _in_fov(C, pp.world(s0, 0.0), 3.0):
            th = rng.uniform(1.0, 2.2)
            wd = rng.uniform(2.0, 5.0)
            hu = rng.uniform(2600, 3500)
            md = np.full((H, W), _FAR)
            s, rr = pp.local(U, V)
            for sgn in (1, -1):
                # find the skin along the normal
                rs = np.arange(0.0, 25.0, 0.05)
                wp = pp.world(s0, 0.0)[None, :] + pp.n[None, :] * (sgn * rs[:, None])
                tsd = _tissue_sdf(C, wp[:, 0], wp[:, 1])
                rsk = rs[np.argmax(tsd > 0)]
                rc = sgn * (rsk + 0.05 + th / 2)
                dd = np.maximum(np.abs(s - s0) - wd / 2, np.abs(rr - rc) - th / 2)
                md = np.minimum(md, dd)
                C.metal_pts.append(pp.world(s0, rc))
            cm = _cov(md, px)
            C.T = C.T * (1 - cm) + hu * cm
            C.metal_sdf = md
            C.metal_streak = rng.uniform(150, 450)
            notes.append("metal ring on proximal phalanx (streaks)")
    elif r < 0.28:
        kind = str(rng.choice(["PP", "MP", "DP"]))
        b = C.bone_by[kind]
        alu = rng.random() < 0.5
        th = rng.uniform(0.8, 1.3) if alu else rng.uniform(1.8, 3.0)
        foam = rng.uniform(1.5, 3.5) if alu else rng.uniform(0.0, 1.0)
        sgn = 1 if rng.random() < 0.65 else -1
        s_a, s_b = 0.05 * b.L, 0.95 * b.L
        ss_ = np.linspace(s_a, s_b, 40)
        best = None
        for off in np.arange(0.0, 30.0, 0.1):
            wp = b.o[None, :] + b.e[None, :] * ss_[:, None] + b.n[None, :] * (sgn * off)
            if _tissue_sdf(C, wp[:, 0], wp[:, 1]).min() >= foam:
                best = off
                break
        if best is not None:
            s, rr = b.local(U, V)
            rc = sgn * (best + th / 2)
            dd = np.maximum(np.maximum(s_a - s, s - s_b), np.abs(rr - rc) - th / 2)
            if alu:
                rf = sgn * (best - foam / 2)
                df = np.maximum(np.maximum(s_a - s, s - s_b), np.abs(rr - rf) - foam / 2)
                cf = _cov(df, px) * (C.tsdf > 0)
                fhu = rng.uniform(-900, -650)
                C.T = C.T * (1 - cf) + fhu * cf
                hu = rng.uniform(1900, 2600)
            else:
                hu = rng.uniform(60, 220)
            cs = _cov(dd, px)
            C.T = C.T * (1 - cs) + hu * cs
            C.metal_sdf = dd
            if alu:
                C.metal_pts.append(b.world(0.5 * (s_a + s_b), rc))
                C.metal_streak = rng.uniform(60, 160)
            notes.append(f"{'aluminium' if alu else 'thermoplastic'} splint {'dorsal' if sgn > 0 else 'palmar'} to {kind}")
    return notes


def _streaks(rng, C):
    if not C.metal_pts:
        return 0.0
    H, W, px = C.H, C.W, C.px
    yy = np.arange(H, dtype=float)[:, None]
    xx = np.arange(W, dtype=float)[None, :]
    out = np.zeros((H, W))
    pix = [_to_pix(C, p) for p in C.metal_pts]
    A = C.metal_streak
    for (r0, c0) in pix:
        for _ in range(int(rng.integers(6, 14))):
            phi = rng.uniform(0, math.pi)
            cp, sp = math.cos(phi), math.sin(phi)
            dperp = np.abs((xx - c0) * sp - (yy - r0) * cp)
            dal = np.abs((xx - c0) * cp + (yy - r0) * sp)
            w = rng.uniform(0.4, 1.5) / px * 0.5 + 0.6
            amp = A * rng.uniform(0.3, 1.0) * (-1 if rng.random() < 0.65 else 1)
            out += amp * np.exp(-0.5 * (dperp / w) ** 2) / (1.0 + dal * px / 15.0)
    if len(pix) == 2:
        (r0, c0), (r1, c1) = pix
        L = math.hypot(r1 - r0, c1 - c0) + 1e-9
        ur, uc = (r1 - r0) / L, (c1 - c0) / L
        tpar = (yy - r0) * ur + (xx - c0) * uc
        dperp = np.abs((yy - r0) * uc - (xx - c0) * ur)
        w = 1.2 / px
        band = np.exp(-0.5 * (dperp / w) ** 2) * _smoothstep(0, 0.15 * L, tpar) \
            * _smoothstep(0, 0.15 * L, L - tpar)
        out -= 1.2 * A * band
    return out


def make_case(seed: int) -> dict:
    """Generate one synthetic sagittal finger CT slice with calcinosis.

    Returns dict: hu (float32 HxW), spacing_mm, bone (bool), deposits (int32
    labels 1..n), areas_mm2 (sub-pixel true areas), seeds ((row, col) per
    deposit), notes (one line).
    """
    rng = np.random.default_rng([_SALT, int(seed)])
    C = _Case()
    _build_anatomy(rng, C)
    _choose_fov(rng, C)
    _render_anatomy(rng, C)
    _place_deposits(rng, C)
    _render_soft(rng, C)
    conf = _confounders(rng, C)
    px = C.px

    # ---- compose the ideal (partial-volume) image ---------------------------------
    fd = np.minimum(C.fd, 1.0)
    wsum = C.cb + fd
    scale = np.where(wsum > 1.0, 1.0 / np.maximum(wsum, 1e-9), 1.0)
    ideal = (C.Bsum + C.Dsum) * scale + C.T * np.clip(1.0 - wsum, 0.0, 1.0)
    ideal += _streaks(rng, C)

    # ---- scanner ----------------------------------------------------------------
    sig_mm = rng.uniform(0.1, 0.38)
    sr = sc = sig_mm / px
    aniso = rng.random() < 0.3
    if aniso:
        f = rng.uniform(1.3, 2.5)
        if rng.random() < 0.5:
            sr *= f
        else:
            sc *= f
    img = ndi.gaussian_filter(ideal, (sr, sc), mode="nearest", truncate=3.0)
    noise_sd = rng.uniform(8, 55) * (0.25 / max(px, 0.1)) ** 0.35
    nz = rng.standard_normal(img.shape)
    r = rng.random()
    if r < 0.35:
        ntype = "white"
    elif r < 0.75:
        ntype = "correlated"
        nz = ndi.gaussian_filter(nz, rng.uniform(0.7, 1.8))
    else:
        ntype = "ct-textured"
        nz = nz - ndi.gaussian_filter(nz, rng.uniform(1.0, 2.5))
        nz = ndi.gaussian_filter(nz, 0.6)
    nz /= nz.std() + 1e-9
    img = img + noise_sd * nz
    sharp = rng.random() < 0.35
    if sharp:
        k = rng.uniform(0.3, 1.0)
        img = img + k * (img - ndi.gaussian_filter(img, rng.uniform(0.8, 1.8)))
    eight = rng.random() < 0.4
    if eight:
        v = np.round(np.clip((img - _WIN_LO) / (_WIN_HI - _WIN_LO) * 255.0, 0, 255))
        img = v * ((_WIN_HI - _WIN_LO) / 255.0) + _WIN_LO
    else:
        img = np.clip(img, -1024, 3071)
        if rng.random() < 0.7:
            img = np.round(img)

    deposits = C.labels.astype(np.int32)
    seeds = _seeds(C)
    areas = [float(d["area"]) for d in C.deps]
    mcp, pip, dip = C.angles
    desc = "; ".join(f"{k + 1}:{d['desc']} {d['area']:.2f}mm2" for k, d in enumerate(C.deps))
    notes = (
        f"E seed={seed} {C.W}x{C.H}px@{px:.3f}mm region={C.region} axis~{C.gamma:.0f}deg "
        f"flex MCP/PIP/DIP={mcp:.0f}/{pip:.0f}/{dip:.0f} osteopenia={C.osteo:.2f} "
        f"cortex={C.cort:.0f}HU{' acro-osteolysis' if C.acro else ''}"
        f"{' sclerodactyly' if C.ssc_tip else ''} | {len(C.deps)} deposits: {desc} | "
        f"confounders: nail{'; ' + '; '.join(conf) if conf else ''} | "
        f"PSF sigma={sig_mm:.2f}mm{' anisotropic' if aniso else ''} noise={noise_sd:.0f}HU {ntype}"
        f"{' sharp-kernel' if sharp else ''}{' 8-bit W1500/L450' if eight else ''}"
        f" | touching-pair split is generator-defined"
    )
    return {
        "hu": img.astype(np.float32),
        "spacing_mm": float(px),
        "bone": C.bone.copy(),
        "deposits": deposits,
        "areas_mm2": areas,
        "seeds": seeds,
        "notes": notes,
    }


if __name__ == "__main__":  # pragma: no cover
    import sys
    import time
    for sd in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
        t0 = time.perf_counter()
        c = make_case(sd)
        print(f"{time.perf_counter() - t0:.2f}s", c["hu"].shape, c["notes"])
