"""Independent synthetic sagittal finger-CT generator ("B") for out-of-distribution checks.

Written from anatomy and CT physics only.  A finger is a kinematic chain of bones
(metacarpal, proximal, middle, distal phalanx), each described analytically in its own
(t = along the bone, v = towards dorsal) frame: flared base with a concave articular
surface, waisted shaft, rounded head (or ungual tuft for the distal phalanx), cortical
shell of varying thickness, trabecular / marrow interior.  Bones and calcinosis deposits
are rasterised on a fine grid (partial-volume fractions, ground truth by >50 % area);
soft tissue (skin, subcutaneous fat, tendons, joint cartilage, nail) is built on the
output grid from a smoothed envelope.  Acquisition: anisotropic Gaussian PSF (in-plane
kernel + slice thickness of the reformat), optional sharp-kernel overshoot, ramp-shaped
(FBP-like) correlated noise, optional streaks from dense bone, ring artefacts, 8-bit
export at W1500/L450, rescale-intercept offsets, circular-FOV padding.

API:  make_case(seed) -> dict(hu, spacing_mm, bone, deposits, areas_mm2, seeds, notes)
Dependencies: numpy, scipy, scikit-image (montage only).
"""
import time

import numpy as np
from scipy import ndimage as ndi
from scipy.special import ndtri

AIR = -1000.0


def _unit(a):
    return np.array([np.cos(a), np.sin(a)])


def _sig(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _span(lo, hi, step, n):
    a = max(int(np.floor(lo / step - 0.5)), 0)
    b = min(int(np.ceil(hi / step + 0.5)) + 1, n)
    return a, b


def _coords(a, b, step):
    return (np.arange(a, b) + 0.5) * step


def _window(box, step, n_rows, n_cols):
    """Rows and columns (slices) of a grid of ``step`` mm covering ``box`` (x0, x1, y0, y1),
    and its pixel-centre coordinates X (1, w) and Y (h, 1) in mm; None when it is empty."""
    ca, cb = _span(box[0], box[1], step, n_cols)
    ra, rb = _span(box[2], box[3], step, n_rows)
    if ca >= cb or ra >= rb:
        return None
    return slice(ra, rb), slice(ca, cb), _coords(ca, cb, step)[None, :], _coords(ra, rb, step)[:, None]


# --------------------------------------------------------------------------- bones
class _Bone:
    def __init__(self, **kw):
        self.tipnoise = []
        self.erosions = []
        self.__dict__.update(kw)
        self.u = _unit(self.ang)
        self.d = self.hand * np.array([-self.u[1], self.u[0]])  # dorsal normal

    def shift(self, s):
        self.O = self.O + s

    def local(self, X, Y):
        dx = X - self.O[0]
        dy = Y - self.O[1]
        return dx * self.u[0] + dy * self.u[1], dx * self.d[0] + dy * self.d[1]

    def world(self, t, v):
        return self.O + t * self.u + v * self.d

    def prof(self, t):
        tau = np.clip(t / self.L, 0.0, 1.0)
        eb = np.exp(-(tau / self.wb) ** 2)
        eh = np.exp(-((1.0 - tau) / self.wh) ** 2)
        h = self.hs + (self.hb - self.hs) * eb + (self.hh - self.hs) * eh
        c = self.bow * self.hs * np.sin(np.pi * tau) + self.hc * eh
        rd = h * (1.0 - 0.35 * self.lip * eb)
        rv = h * (1.0 + self.lip * eb)
        return tau, c, rd, rv

    def _ends(self, t, w, rd, rv, inset=0.0):
        q = np.where(w >= 0, w / rd, -w / rv)
        qc = np.minimum(q, 1.0)
        t0 = self.cb * (1.0 - qc ** 2) + self.rb * qc ** 8 + inset
        Rh = max(self.Rh - inset, 0.2)
        t1 = self.Leff - inset - Rh * (1.0 - np.sqrt(np.maximum(1.0 - qc ** 2, 0.0)))
        if self.tipnoise:
            qs = np.clip(np.where(w >= 0, w / rd, w / rv), -1, 1)
            for a, k, p in self.tipnoise:
                t1 = t1 + a * np.sin(k * np.pi * qs + p)
        return q, t0, t1

    def shape(self, X, Y, inner=True):
        t, v = self.local(X, Y)
        tau, c, rd, rv = self.prof(t)
        w = v - c
        q, t0, t1 = self._ends(t, w, rd, rv)
        outer = (q < 1.0) & (t > t0) & (t < t1)
        for te, ve, re in self.erosions:
            outer &= (t - te) ** 2 + (v - ve) ** 2 > re ** 2
        if not inner:
            return outer
        ct = self.ct_end + (self.ct_shaft - self.ct_end) * np.exp(-((tau - 0.5) / 0.22) ** 2)
        qi, t0i, t1i = self._ends(t, w, np.maximum(rd - ct, 0.15), np.maximum(rv - ct, 0.15),
                                  inset=self.ct_end)
        inn = outer & (qi < 1.0) & (t > t0i) & (t < t1i)
        return outer, inn, tau

    def hu_cort(self, tau):
        return self.cort * (0.86 + 0.14 * np.exp(-((tau - 0.5) / 0.3) ** 2))

    def hu_trab(self, tau):
        e = np.exp(-(tau / 0.2) ** 2) + np.exp(-((1 - tau) / 0.2) ** 2)
        return self.tr_mid + (self.tr_end - self.tr_mid) * np.minimum(e, 1.0)

    def _box(self, t0, t1, v0, v1):
        P = np.array([self.world(a, b) for a in (t0, t1) for b in (v0, v1)])
        return P[:, 0].min(), P[:, 0].max(), P[:, 1].min(), P[:, 1].max()

    def bbox(self):
        ts = np.linspace(0, self.L, 40)
        _, c, rd, rv = self.prof(ts)
        return self._box(-0.5, self.L + 0.5, (c - rv).min() - 0.5, (c + rd).max() + 0.5)

    # soft-tissue envelope ------------------------------------------------
    def env_lims(self, t):
        tau, c, rd, rv = self.prof(t)
        href = (self.hb + self.hs + self.hh) / 3.0
        up = c + 0.4 * rd + 0.6 * href + self.Td
        lo = c - (0.4 * rv + 0.6 * href + self.Tv)
        return up, lo

    def env(self, X, Y):
        t, v = self.local(X, Y)
        up, lo = self.env_lims(t)
        m = (t > -self.ext0) & (t < self.L + self.ext1) & (v < up) & (v > lo)
        if self.kind == "dist":
            up1, lo1 = self.env_lims(np.array(self.L))
            vc, b = 0.5 * (up1 + lo1), 0.5 * (up1 - lo1)
            m |= ((t - self.L) / self.tip_ext) ** 2 + ((v - vc) / b) ** 2 < 1.0
        return m

    def env_bbox(self):
        ts = np.linspace(-self.ext0, self.L + self.ext1, 30)
        up, lo = self.env_lims(ts)
        t1 = self.L + self.ext1 + (self.tip_ext if self.kind == "dist" else 0.0)
        return self._box(-self.ext0, t1 + 0.5, lo.min() - 0.5, up.max() + 0.5)

    def env_points(self, tmin=None, tmax=None):
        tmin = -self.ext0 if tmin is None else tmin
        tmax = self.L + self.ext1 if tmax is None else tmax
        ts = np.linspace(tmin, tmax, 12)
        up, lo = self.env_lims(ts)
        pts = [self.world(a, b) for a, b in zip(ts, up)] + [self.world(a, b) for a, b in zip(ts, lo)]
        if self.kind == "dist" and tmax >= self.L:
            up1, lo1 = self.env_lims(np.array(self.L))
            pts.append(self.world(self.L + self.tip_ext, 0.5 * (up1 + lo1)))
        return pts


_TEMPL = {  # half-heights in mm for an average adult index/middle finger (sagittal)
    "mc":   dict(L=64, hb=5.0, hs=4.0, hh=6.6, Rh=6.0, cb=0.0, rb=0.0, wb=0.10, wh=0.13, bow=0.05, lip=0.0, hc=-0.9, ct_shaft=1.7, ct_end=0.45),
    "prox": dict(L=42, hb=4.8, hs=3.1, hh=3.7, Rh=3.4, cb=1.3, rb=0.6, wb=0.16, wh=0.14, bow=0.10, lip=0.15, hc=-0.3, ct_shaft=1.3, ct_end=0.38),
    "mid":  dict(L=26, hb=4.0, hs=2.5, hh=3.0, Rh=2.7, cb=1.0, rb=0.5, wb=0.17, wh=0.15, bow=0.08, lip=0.18, hc=-0.2, ct_shaft=1.1, ct_end=0.35),
    "dist": dict(L=17, hb=3.4, hs=1.7, hh=2.3, Rh=1.0, cb=0.8, rb=0.4, wb=0.22, wh=0.10, bow=0.05, lip=0.20, hc=-0.3, ct_shaft=0.8, ct_end=0.30),
}


def _build_finger(rng, base, ang, hand, scale, wfac, flex, dis, soft, fid):
    """Chain mc -> prox -> mid -> dist. flex = (mcp, pip, dip) in degrees (volar +)."""
    bones = []
    O = np.array(base, float)
    a = ang
    H = None
    for i, kind in enumerate(("mc", "prox", "mid", "dist")):
        p = {k: (v * scale * rng.uniform(0.93, 1.07) if k in ("L", "hb", "hs", "hh", "Rh", "cb", "rb", "hc", "ct_shaft", "ct_end") else v)
             for k, v in _TEMPL[kind].items()}
        for k in ("hb", "hs", "hh", "hc"):
            p[k] *= wfac
        p["Rh"] = min(p["Rh"], 0.95 * p["hh"]) if kind != "dist" else p["Rh"]
        p["ct_shaft"] *= dis["ct_fac"]
        p["ct_end"] = max(p["ct_end"] * (0.6 + 0.4 * dis["ct_fac"]), 0.18)
        if i > 0:
            a = a - hand * np.deg2rad(flex[i - 1])
            gap = rng.uniform(0.5, 2.0) * (0.7 if dis["narrow_joints"] else 1.0)
            O = H + (bones[-1].Rh + gap - p["cb"]) * _unit(a)  # previous bone in the chain
        p["Leff"] = p["L"]
        b = _Bone(kind=kind, O=O.copy(), ang=a, hand=hand, fid=fid, **p)
        b.cort = dis["cort"] * rng.uniform(0.92, 1.08)
        b.tr_end = dis["tr_end"] * rng.uniform(0.85, 1.15)
        b.tr_mid = dis["tr_mid"] * rng.uniform(0.8, 1.2)
        # soft tissue thickness (dorsal / volar) and envelope extension
        b.Td = {"mc": 4.0, "prox": 2.8, "mid": 2.4, "dist": 1.9}[kind] * soft["d"] * scale
        b.Tv = {"mc": 11.0, "prox": 5.5, "mid": 4.8, "dist": 5.0}[kind] * soft["v"] * scale
        b.ext0 = 40.0 if kind == "mc" else 2.5
        b.ext1 = 0.0 if kind == "dist" else 2.5
        b.tip_ext = (b.hb + soft["tip"]) * scale if kind == "dist" else 0.0
        if kind == "dist":
            if dis["acro"] > 0:
                b.Leff = b.L * (1.0 - dis["acro"])
                b.hh = b.hs * rng.uniform(0.7, 1.0)
                b.Rh = rng.uniform(1.0, 2.2) * scale
                b.tipnoise = [(rng.uniform(0.15, 0.45), k, rng.uniform(0, 6.3)) for k in (2, 3, 5)]
                b.tip_ext *= rng.uniform(0.6, 0.9)
            else:
                b.tipnoise = [(rng.uniform(0.05, 0.18), k, rng.uniform(0, 6.3)) for k in (3, 5, 7)]
        bones.append(b)
        _, c1, _, _ = b.prof(np.array(b.Leff))
        H = b.world(b.Leff - b.Rh, float(c1))
        b.Hc = H
    # erosions: marginal, at joint bases/heads
    for _ in range(dis["n_eros"]):
        b = bones[rng.integers(0, 4)]
        at_head = rng.random() < 0.5 and b.kind != "dist"
        te = b.Leff - rng.uniform(1.0, 4.0) * scale if at_head else rng.uniform(0.8, 3.5) * scale
        _, c, rd, rv = b.prof(np.array(te))
        side = rng.choice([-1, 1])
        ve = float(c + (rd if side > 0 else -rv) * rng.uniform(0.75, 1.0))
        b.erosions.append((te, ve, rng.uniform(0.6, 1.8) * scale))
    return bones


# --------------------------------------------------------------------------- deposits
def _star(Xr, Yr, a, b, harm):
    rho = np.sqrt((Xr / a) ** 2 + (Yr / b) ** 2)
    th = np.arctan2(Yr / b, Xr / a)
    lim = 1.0
    for e, k, p in harm:
        lim = lim + e * np.cos(k * th + p)
    return rho < lim


def _make_shape(rng, kind, P, alpha, A):
    """Return (inside(X,Y), radius_mm, hu_mod(X,Y) -> factor)."""
    ca, sa = np.cos(alpha), np.sin(alpha)

    def rotl(X, Y, Q):
        dx, dy = X - Q[0], Y - Q[1]
        return dx * ca + dy * sa, -dx * sa + dy * ca

    if kind == "nodule":
        e = rng.uniform(1.0, 2.4)
        a, b = np.sqrt(A * e / np.pi), np.sqrt(A / (np.pi * e))
        harm = [(rng.uniform(0, 0.12), k, rng.uniform(0, 6.3)) for k in (2, 3, 4, 5)]

        def f(X, Y):
            xr, yr = rotl(X, Y, P)
            return _star(xr, yr, a, b, harm)
        R = a * 1.5
    elif kind == "plaque":
        n = int(rng.integers(3, 7))
        la = A / n * 1.25
        lobes = []
        pos = 0.0
        for i in range(n):
            e = rng.uniform(1.5, 3.5)
            a, b = np.sqrt(la * e / np.pi), np.sqrt(la / (np.pi * e))
            a *= rng.uniform(0.7, 1.3)
            off = np.array([pos, rng.uniform(-0.5, 0.5) * b + 0.15 * pos ** 2 / max(a, 1)])
            lobes.append((off, a, b, rng.uniform(-0.4, 0.4),
                          [(rng.uniform(0, 0.15), k, rng.uniform(0, 6.3)) for k in (2, 3, 5)]))
            pos += a * rng.uniform(0.9, 1.4)
        shift = pos / 2.0

        def f(X, Y):
            xr, yr = rotl(X, Y, P)
            xr = xr + shift
            m = np.zeros(np.broadcast(xr, yr).shape, bool)
            for off, a, b, rot, harm in lobes:
                c2, s2 = np.cos(rot), np.sin(rot)
                dx, dy = xr - off[0], yr - off[1]
                m |= _star(dx * c2 + dy * s2, -dx * s2 + dy * c2, a, b, harm)
            return m
        R = shift + max(l[1] for l in lobes) * 1.4 + 2.0
    else:  # streak
        w = rng.uniform(0.35, 1.1)
        ln = float(np.clip(A / w, 2.5, 22.0))
        bend = rng.uniform(-0.25, 0.25) * ln
        s = np.linspace(-0.5, 0.5, 17)
        px = s * ln
        py = bend * (1 - 4 * s ** 2) + rng.normal(0, 0.08, s.size) * ln * 0.15
        wid = w * (0.75 + 0.5 * np.sin(np.pi * (s + 0.5)) * rng.uniform(0.3, 1.0))

        def f(X, Y):
            xr, yr = rotl(X, Y, P)
            m = np.zeros(np.broadcast(xr, yr).shape, bool)
            for i in range(s.size - 1):
                ax, ay, bx, by = px[i], py[i], px[i + 1], py[i + 1]
                vx, vy = bx - ax, by - ay
                tt = np.clip(((xr - ax) * vx + (yr - ay) * vy) / (vx * vx + vy * vy), 0, 1)
                dd = (xr - ax - tt * vx) ** 2 + (yr - ay - tt * vy) ** 2
                ww = wid[i] + tt * (wid[i + 1] - wid[i])
                m |= dd < (0.5 * ww) ** 2
            return m
        R = 0.5 * ln + abs(bend) + w + 0.5

    rim = rng.random() < 0.25 and kind != "streak"
    ph = rng.uniform(0, 6.3, 2)
    kx = rng.uniform(0.8, 2.5)

    def hmod(X, Y):
        fac = 1.0 + 0.10 * np.sin(kx * (X - P[0]) + ph[0]) * np.cos(kx * (Y - P[1]) + ph[1])
        if rim:
            r = np.hypot(X - P[0], Y - P[1]) / max(R * 0.6, 0.3)
            fac = fac * (0.75 + 0.35 * np.minimum(r, 1.0) ** 2)
        return fac
    return f, R, hmod


# --------------------------------------------------------------------------- main
def make_case(seed: int) -> dict:
    rng = np.random.default_rng([seed, 0xB0B])
    notes = []

    # ---------------- disease / anatomy draws
    osteopenia = rng.random() < 0.35
    thin = rng.random() < 0.35
    acro = rng.uniform(0.15, 0.5) if rng.random() < 0.3 else 0.0
    n_eros = int(rng.integers(1, 4)) if rng.random() < 0.3 else 0
    contract = rng.random() < 0.3
    dis = dict(
        cort=rng.uniform(700, 1100) if osteopenia else rng.uniform(1250, 1900),
        tr_end=rng.uniform(110, 230) if osteopenia else rng.uniform(230, 450),
        tr_mid=rng.uniform(10, 90) if osteopenia else rng.uniform(70, 200),
        ct_fac=rng.uniform(0.4, 0.65) if thin else rng.uniform(0.85, 1.15),
        acro=acro, n_eros=n_eros, narrow_joints=rng.random() < 0.2,
    )
    sclero = rng.random() < 0.5
    soft = dict(d=rng.uniform(0.8, 1.2), v=rng.uniform(0.55, 0.85) if sclero else rng.uniform(0.85, 1.25),
                tip=rng.uniform(1.5, 3.5) if sclero else rng.uniform(3.0, 6.0))
    if contract:
        flex = (rng.uniform(-5, 40), rng.uniform(45, 95), rng.uniform(10, 55))
    else:
        flex = (rng.uniform(-10, 45), rng.uniform(0, 40), rng.uniform(-8, 25))
    scale = rng.uniform(0.82, 1.12)
    ang = rng.uniform(0, 2 * np.pi)
    hand = 1 if rng.random() < 0.5 else -1
    wfac = rng.uniform(0.88, 1.05)  # slice slightly off the mid-sagittal plane
    main = _build_finger(rng, (0.0, 0.0), ang, hand, scale, wfac, flex, dis, soft, 0)
    dn = [n for n, f in (("osteopenia", osteopenia), ("cortical-thinning", thin),
                         ("acro-osteolysis%.0f%%" % (100 * acro), acro > 0),
                         ("erosions%d" % n_eros, n_eros > 0), ("flexion-contracture", contract),
                         ("sclerodactyly/thin-pulp", sclero)) if f]
    notes.append("disease=[%s]" % ",".join(dn))
    notes.append("angle=%.0fdeg hand=%+d flex(MCP,PIP,DIP)=(%.0f,%.0f,%.0f) scale=%.2f"
                 % (np.rad2deg(ang), hand, *flex, scale))

    bones = list(main)
    # ---------------- second finger
    second = rng.random() < 0.45
    if second:
        side = rng.choice([-1, 1])
        along = rng.uniform(-25, 15)
        da = np.deg2rad(rng.uniform(-7, 7))
        wf2 = rng.uniform(0.55, 0.95)
        flex2 = tuple(f + rng.normal(0, 8) for f in flex)
        sc2 = scale * rng.uniform(0.85, 1.05)
        dis2 = dict(dis, n_eros=0)
        u0, d0 = main[0].u, main[0].d
        off = 20.0 * scale
        for _ in range(6):
            base = along * u0 + side * off * d0
            fin2 = _build_finger(rng, base, ang + da, hand, sc2, wf2, flex2, dis2, soft, 1)
            pa = np.array([b.world(t, 0) for b in main for t in np.linspace(0, b.L, 12)])
            pb = np.array([b.world(t, 0) for b in fin2 for t in np.linspace(0, b.L, 12)])
            dmin = np.sqrt(((pa[:, None] - pb[None]) ** 2).sum(-1)).min()
            if dmin > 16.0 * scale:
                break
            off += 3.0
        else:
            second = False
    if second:
        bones += fin2
        notes.append("second-finger(side=%+d, offset=%.0fmm, width=%.2f)" % (side, off, wf2))

    # ---------------- field of view
    r = rng.random()
    mode = "whole" if r < 0.3 else ("tip" if r < 0.52 else "cropped")
    mc, pp, mp, dp = main
    if mode == "whole":
        pts = mc.env_points(mc.L - 2 * mc.Rh - rng.uniform(4, 18), mc.L + mc.ext1)
        for b in (pp, mp, dp):
            pts += b.env_points()
    elif mode == "tip":
        pts = mp.env_points(mp.L * rng.uniform(0.3, 0.8), mp.L + 2) + dp.env_points()
    else:
        b = main[int(rng.integers(1, 4))]
        centre = b.world(rng.uniform(0, b.L), 0.0)
        half = rng.uniform(12, 35, 2)
        pts = [centre + np.array([sx * half[0], sy * half[1]]) for sx in (-1, 1) for sy in (-1, 1)]
    pts = np.array(pts)
    margin = rng.uniform(2, 10) if mode != "cropped" else 0.0
    lo_, hi_ = pts.min(0) - margin, pts.max(0) + margin
    ext = hi_ - lo_  # (x, y)
    dx = rng.uniform(0.12, 0.45)
    if mode == "cropped":
        dx = float(np.clip(ext.max() / rng.integers(256, 701), 0.12, 0.45))
    else:
        fov = max(ext.max(), rng.uniform(40, 150))  # reformat FOV: some context around the finger
        ext = np.maximum(ext, fov * rng.uniform(0.75, 1.0, 2))
        if fov / dx > 700:
            dx = float(min(fov / 700, 0.45))
        elif fov / dx < 256:
            dx = float(max(fov / 256, 0.12))
    W = int(np.clip(np.ceil(ext[0] / dx), 256, 700))
    H = int(np.clip(np.ceil(ext[1] / dx), 256, 700))
    if mode != "cropped" and (ext[0] / dx > 700.5 or ext[1] / dx > 700.5):
        mode += "(clipped-by-size)"
    shift = np.array([W * dx / 2, H * dx / 2]) - 0.5 * (lo_ + hi_)
    for b in bones:
        b.shift(shift)
        b.Hc = b.Hc + shift
    notes.insert(0, "view=%s size=%dx%d spacing=%.3fmm" % (mode, H, W, dx))
    Wmm, Hmm = W * dx, H * dx

    # ---------------- soft envelope (coarse grid, smoothed)
    hc = max(0.3, dx)
    Hc_, Wc_ = int(np.ceil(Hmm / hc)) + 1, int(np.ceil(Wmm / hc)) + 1
    ind = np.zeros((Hc_, Wc_), np.float32)
    for b in bones:
        win = _window(b.env_bbox(), hc, Hc_, Wc_)
        if win is None:
            continue
        rs, cs, X, Y = win
        ind[rs, cs] = np.maximum(ind[rs, cs], b.env(X, Y))
    sig_env = 1.7
    genv = ndi.gaussian_filter(ind, sig_env / hc, mode="nearest")

    def env_dist(X, Y):
        X, Y = np.broadcast_arrays(X, Y)
        g = ndi.map_coordinates(genv, [Y.ravel() / hc - 0.5, X.ravel() / hc - 0.5], order=1, mode="nearest")
        return (sig_env * ndtri(np.clip(g, 1e-5, 1 - 1e-5))).reshape(X.shape)

    # ---------------- fine grid: bones
    s = int(np.clip(round(1800 / max(H, W)), 3, 6))
    fs = dx / s
    Hf, Wf = H * s, W * s
    occ = np.zeros((Hf, Wf), bool)
    trab = np.zeros((Hf, Wf), bool)
    huf = np.zeros((Hf, Wf), np.float32)
    for b in bones:
        win = _window(b.bbox(), fs, Hf, Wf)
        if win is None:
            continue
        rs, cs, X, Y = win
        outer, inn, tau = b.shape(X, Y)
        hv = np.where(inn, b.hu_trab(tau), b.hu_cort(tau)).astype(np.float32)
        sub = huf[rs, cs]
        sub[outer] = hv[outer]
        occ[rs, cs] |= outer
        tsub = trab[rs, cs]
        tsub[outer] = inn[outer]
    bone_occ = occ.copy()

    def bone_at(X, Y, box):
        X, Y = np.broadcast_arrays(X, Y)
        m = np.zeros(X.shape, bool)
        for b in bones:
            x0, x1, y0, y1 = b.bbox()
            if x1 < box[0] or x0 > box[1] or y1 < box[2] or y0 > box[3]:
                continue
            m |= b.shape(X, Y, inner=False)
        return m

    def red(a):
        return a.reshape(H, s, W, s).mean(axis=(1, 3))

    frac_bone = red(bone_occ.astype(np.float32))
    bone_gt = frac_bone > 0.5

    # ---------------- deposits
    n_dep_target = int(rng.choice(np.arange(9), p=[.08, .17, .17, .14, .12, .1, .08, .07, .07]))
    dep_lab_f = np.zeros((Hf, Wf), np.int8)
    dep_foot = np.zeros((H, W), bool)
    deps = []
    tries = 0
    pending = []
    while len(deps) < n_dep_target and tries < 40:
        tries += 1
        if not pending:
            kind = rng.choice(["nodule", "plaque", "streak", "cluster"], p=[.4, .25, .15, .2])
            loc = rng.choice(["pulp", "volar", "dorsal", "periarticular", "touching-bone"], p=[.28, .25, .14, .2, .13])
            if kind == "cluster":
                n = int(rng.integers(2, 5))
                A_list = list(np.exp(rng.uniform(np.log(0.3), np.log(4.0), n)))
                k_list = ["nodule"] * n
            else:
                if kind == "plaque":
                    A = np.exp(rng.uniform(np.log(4), np.log(60)))
                elif kind == "streak":
                    A = np.exp(rng.uniform(np.log(0.8), np.log(14)))
                else:
                    A = np.exp(rng.uniform(np.log(0.3), np.log(35)))
                if loc == "dorsal":
                    A = min(A, 10.0)
                elif A > 15 and loc in ("periarticular", "touching-bone"):
                    loc = rng.choice(["pulp", "volar"])
                A_list, k_list = [A], [kind]
            # anchor in bone-local frame; must lie in the image, inside the soft tissue
            P0 = None
            for _a in range(12):
                if loc in ("pulp",):
                    b = dp
                elif loc == "periarticular":
                    b = main[int(rng.integers(0, 3))]
                else:
                    b = main[int(rng.integers(0 if mode.startswith("whole") else 1, 4))]
                rr = np.sqrt(max(A_list) / np.pi)
                if loc == "pulp":
                    t = b.Leff * rng.uniform(0.45, 1.1)
                    tau, c, rd, rv = b.prof(np.array(t))
                    v = float(c - rv - rng.uniform(0.5, max(b.Tv - 1.2, 0.8)))
                elif loc == "volar":
                    t = b.Leff * rng.uniform(0.1, 0.9) if b.kind != "mc" else b.L - rng.uniform(2, 15)
                    tau, c, rd, rv = b.prof(np.array(t))
                    v = float(c - rv - rng.uniform(0.4, max(b.Tv - 1.0, 0.8)))
                elif loc == "dorsal":
                    t = b.Leff * rng.uniform(0.1, 0.95) if b.kind != "mc" else b.L - rng.uniform(2, 10)
                    tau, c, rd, rv = b.prof(np.array(t))
                    v = float(c + rd + rng.uniform(0.3, max(b.Td - 0.6, 0.5)))
                elif loc == "periarticular":
                    t = b.Leff - rng.uniform(-2.0, 4.0)
                    tau, c, rd, rv = b.prof(np.array(min(t, b.L)))
                    v = float(c + rd + rng.uniform(0.3, 2.0)) if rng.random() < 0.4 else float(c - rv - rng.uniform(0.3, 3.0))
                else:
                    t = b.Leff * rng.uniform(0.1, 0.95)
                    tau, c, rd, rv = b.prof(np.array(t))
                    v = float(c + rd + 0.5 * rr) if rng.random() < 0.35 else float(c - rv - 0.5 * rr)
                P0 = b.world(t, v)
                if (3 < P0[0] < Wmm - 3 and 3 < P0[1] < Hmm - 3
                        and float(env_dist(np.array([P0[0]]), np.array([P0[1]]))[0]) > 0.6):
                    break
                P0 = None
            if P0 is None:
                continue
            base_alpha = b.ang + rng.normal(0, 0.35)
            hu0 = rng.uniform(280, 1750)
            pending = []
            for j, (A, kd) in enumerate(zip(A_list, k_list)):
                if j == 0:
                    P = P0
                else:
                    P = P0 + rng.uniform(1.2, 3.0) * _unit(rng.uniform(0, 2 * np.pi)) * (1 + rr)
                pending.append((kd, str(loc) + ("/cluster" if kind == "cluster" else ""), P, base_alpha, A,
                                float(np.clip(hu0 * rng.uniform(0.85, 1.15), 260, 1780))))
        kd, loc_s, P, alpha, A, hu0 = pending.pop(0)
        f, R, hmod = _make_shape(rng, kd, P, alpha, A)
        box = (P[0] - R, P[0] + R, P[1] - R, P[1] + R)
        # exact area on an extra-fine grid
        step = max(min(dx / 16.0, 0.02), 2 * R / 600.0)
        n = int(np.ceil(2 * R / step))
        xa = box[0] + (np.arange(n) + 0.5) * step
        ya = box[2] + (np.arange(n) + 0.5) * step
        m0 = f(xa[None, :], ya[:, None])
        if not m0.any():
            continue
        inview = ((xa > 3 * dx) & (xa < Wmm - 3 * dx))[None, :] & ((ya > 3 * dx) & (ya < Hmm - 3 * dx))[:, None]
        if (m0 & ~inview).any():
            continue
        # deposits lie in the soft tissue: clipped to >= 0.35 mm under the skin surface, bone removed
        m = m0 & (env_dist(xa[None, :], ya[:, None]) > 0.35)
        m &= ~bone_at(xa[None, :], ya[:, None], box)
        if m.sum() < 0.35 * m0.sum() or ndi.label(m)[1] != 1:
            continue
        area = float(m.sum() * step * step)
        if area < 0.3 or area > 60.0:
            continue
        # rasterise on fine grid
        ca, cb = _span(box[0], box[1], fs, Wf)
        ra, rb = _span(box[2], box[3], fs, Hf)
        Xf, Yf = _coords(ca, cb, fs)[None, :], _coords(ra, rb, fs)[:, None]
        mf = f(Xf, Yf) & ~bone_occ[ra:rb, ca:cb] & (env_dist(Xf, Yf) > 0.35)
        mm = np.zeros((Hf, Wf), bool)
        mm[ra:rb, ca:cb] = mf
        fr = red(mm.astype(np.float32))
        foot = fr > 0
        if (ndi.binary_dilation(foot, iterations=2) & dep_foot).any():
            continue
        if (mm & occ).any():
            continue
        if area < 6 * dx * dx:  # keep sub-resolution deposits visible after partial volume
            hu0 = max(hu0, rng.uniform(900, 1600))
        elif area < 15 * dx * dx:
            hu0 = max(hu0, rng.uniform(600, 1400))
        k = len(deps) + 1
        hv = (hu0 * hmod(Xf, Yf)).astype(np.float32)
        sub = huf[ra:rb, ca:cb]
        sub[mf] = np.broadcast_to(hv, mf.shape)[mf]
        occ |= mm
        dep_lab_f[mm] = k
        dep_foot |= foot
        deps.append(dict(kind=kd, loc=loc_s, area=area, hu=hu0, frac=fr, P=P))

    # ---------------- soft tissue on the output grid
    xo = _coords(0, W, dx)[None, :]
    yo = _coords(0, H, dx)[:, None]
    dist = env_dist(xo, yo)
    afrac = np.clip(dist / dx + 0.5, 0, 1)

    def lowpass_noise(sig_mm, amp):
        n_ = ndi.gaussian_filter(rng.standard_normal((H, W)).astype(np.float32), max(sig_mm / dx, 0.5))
        return n_ * (amp / (n_.std() + 1e-6))

    ts = rng.uniform(1.6, 2.8) if sclero else rng.uniform(1.0, 2.0)
    tf = rng.uniform(0.8, 2.0) if sclero else rng.uniform(1.5, 4.0)
    skin = rng.uniform(55, 85)
    fat = rng.uniform(-95, -40) if not sclero else rng.uniform(-60, -10)
    deep = rng.uniform(25, 55)
    ws = _sig((ts - dist) / 0.25)
    wfat = _sig((dist - ts) / 0.3) * _sig((ts + tf - dist) / 0.6)
    tissue = ws * (skin + lowpass_noise(0.6, 6)) + (1 - ws) * (
        wfat * (fat + lowpass_noise(0.7, 18)) + (1 - wfat) * (deep + lowpass_noise(0.9, 8)))

    def ramp(x):  # anti-aliased inside-weight for a signed distance x (>0 inside), mm
        return np.clip(x / dx + 0.5, 0, 1)

    hu_tendon = rng.uniform(85, 115)
    hu_cart = rng.uniform(85, 115)
    for b in bones:
        x0, x1, y0, y1 = b.env_bbox()
        ca, cb = _span(x0, x1, dx, W)
        ra, rb = _span(y0, y1, dx, H)
        if ca >= cb or ra >= rb:
            continue
        t, v = b.local(_coords(ca, cb, dx)[None, :], _coords(ra, rb, dx)[:, None])
        tau, c, rd, rv = b.prof(t)
        sub = tissue[ra:rb, ca:cb]
        inner_ok = _sig((dist[ra:rb, ca:cb] - ts) / 0.3)
        # flexor tendon (volar), extensor (dorsal)
        tlen = b.L if b.kind != "dist" else 0.35 * b.L
        g1, tw = 0.4 * b.hs / 3, b.hs * 0.7 * (1.0 if b.kind != "mc" else 1.3)
        vf = -(v - c) - rv - g1
        wt = ramp(np.minimum(vf, tw - vf)) * ramp(np.minimum(t + 2.0, tlen + 2.0 - t)) * inner_ok
        sub[:] = sub * (1 - wt) + hu_tendon * wt
        ve = (v - c) - rd - 0.15
        te = 0.45 + 0.25 * b.hs / 3
        wt = ramp(np.minimum(ve, te - ve)) * ramp(np.minimum(t + 2.0, min(b.L, 0.3 * b.L if b.kind == "dist" else b.L) + 2.0 - t)) * inner_ok
        sub[:] = sub * (1 - wt) + hu_tendon * wt
        # joint cartilage / capsule around the head
        if b.kind != "dist":
            P = b.Hc
            X, Y = _coords(ca, cb, dx)[None, :], _coords(ra, rb, dx)[:, None]
            rj = np.hypot(X - P[0], Y - P[1])
            wt = ramp(b.Rh + 1.3 - rj) * 0.9
            sub[:] = sub * (1 - wt) + hu_cart * wt
        if b.kind == "dist" and b.fid == 0:
            up, lo = b.env_lims(np.clip(t, 0, b.L))
            nt = rng.uniform(0.35, 0.7) if b.fid == 0 else 0.5
            vv = v - (up - 0.1)
            wn = ramp(np.minimum(-vv, nt + vv)) * ramp(np.minimum(t - 0.35 * b.L, b.L + 0.55 * b.tip_ext - t))
            b.nail = (ra, rb, ca, cb, wn)
    soft_img = AIR * (1 - afrac) + tissue * afrac
    hu_nail = rng.uniform(120, 260)
    for b in bones:
        if getattr(b, "nail", None) is not None:
            ra, rb, ca, cb, wn = b.nail
            sub = soft_img[ra:rb, ca:cb]
            sub[:] = sub * (1 - wn) + hu_nail * wn
    notes_extra = []
    if rng.random() < 0.3:  # positioning cushion / foam pad on one side
        nrm = _unit(rng.uniform(0, 2 * np.pi))
        pr = xo * nrm[0] + yo * nrm[1]
        body = dist > -1.0
        thr = pr[body].max() + rng.uniform(1.0, 8.0) if body.any() else pr.max()
        wp = ramp(pr - thr)
        soft_img = soft_img * (1 - wp) + (rng.uniform(-880, -650) + lowpass_noise(1.0, 25)) * wp
        notes_extra.append("foam-pad")

    frac_hard = red(occ.astype(np.float32))
    hu_hard = red(huf * occ)
    frac_trab = red(trab & bone_occ)
    tex = ndi.gaussian_filter(rng.standard_normal((H, W)).astype(np.float32), max(0.18 / dx, 0.4)) - \
        ndi.gaussian_filter(rng.standard_normal((H, W)).astype(np.float32), max(0.6 / dx, 0.8)) * 0.3
    tex *= rng.uniform(40, 120) / (tex.std() + 1e-6)
    img = soft_img * (1 - frac_hard) + hu_hard + frac_trab * tex

    # ---------------- acquisition
    sig_in = rng.uniform(0.18, 0.42)
    sig_z = np.hypot(sig_in, rng.uniform(0.15, 0.45))
    zax = int(rng.integers(0, 2))
    sig = [sig_in / dx, sig_in / dx]
    sig[zax] = sig_z / dx
    img = ndi.gaussian_filter(img, sig, mode="nearest")
    acq = ["psf(%.2f/%.2fmm)" % (sig_in, sig_z)]
    if rng.random() < 0.5:
        a = rng.uniform(0.15, 0.6)
        img = img + a * (img - ndi.gaussian_filter(img, rng.uniform(0.4, 0.9) / dx))
        acq.append("sharp-kernel-overshoot(%.2f)" % a)
    if rng.random() < 0.4 and bone_gt.any():
        wgt = frac_hard * np.clip(hu_hard / np.maximum(frac_hard, 1e-3) - 300, 0, None)
        dbone = ndi.distance_transform_edt(~bone_gt) * dx
        decay = np.exp(-dbone / rng.uniform(6, 25))
        st_tot = np.zeros((H, W), np.float32)
        for th in rng.uniform(0, np.pi, int(rng.integers(2, 7))):
            p = (xo * np.cos(th) + yo * np.sin(th)) / dx
            p = p - p.min()
            bins = np.broadcast_to(p, (H, W)).astype(np.int64)
            proj = np.bincount(bins.ravel(), weights=wgt.ravel())
            hp = proj - ndi.gaussian_filter1d(proj, 3.0)
            st = hp[bins]
            st_tot += st / (np.abs(st).max() + 1e-6)
        amp = rng.uniform(20, 90)
        img = img - amp * st_tot * decay
        acq.append("streaks(%.0fHU)" % amp)
    nsig = rng.uniform(8, 50)
    fc = rng.uniform(0.6, 2.0)
    fy = np.fft.fftfreq(H, d=dx)[:, None]
    fx = np.fft.rfftfreq(W, d=dx)[None, :]
    an = rng.uniform(0.8, 1.25)
    fr_ = np.sqrt(fx ** 2 + (an * fy) ** 2)
    nps = fr_ * np.exp(-(fr_ / fc) ** 2) + 0.03 * fc
    noise = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((H, W))) * np.sqrt(nps), s=(H, W))
    noise *= nsig / noise.std()
    noise *= 1.0 + 0.35 * ndi.gaussian_filter(frac_hard, 4.0 / dx)
    img = img + noise
    acq.append("fbp-noise(%.0fHU,peak~%.2fc/mm)" % (nsig, fc / np.sqrt(2)))
    if rng.random() < 0.2:
        C = np.array([rng.uniform(-0.3, 1.3) * Wmm, rng.uniform(-0.3, 1.3) * Hmm])
        rr_ = np.hypot(xo - C[0], yo - C[1])
        for _ in range(int(rng.integers(1, 4))):
            r0 = rng.uniform(rr_.min(), rr_.max())
            img = img + rng.choice([-1, 1]) * rng.uniform(15, 60) * np.exp(-((rr_ - r0) / (rng.uniform(0.6, 1.3) * dx)) ** 2)
        acq.append("rings")
    img = np.clip(img, -1024, 3071)
    if rng.random() < 0.12:
        C = np.array([Wmm / 2, Hmm / 2]) + rng.normal(0, 5, 2)
        rr_ = np.hypot(xo - C[0], yo - C[1])
        body = dist > -3.0
        rmax = rr_[np.broadcast_to(body, rr_.shape)].max() if body.any() else 0
        R = rmax + rng.uniform(2, 10)
        if (rr_ > R).any():
            img = np.where(rr_ > R, -1024.0, img)
            acq.append("circular-FOV-padding")
    e = rng.random()
    if e < 0.3:
        lo = 450 - 750
        q = np.clip(np.round((img - lo) / 1500 * 255), 0, 255)
        img = q * (1500 / 255) + lo
        acq.append("8bit-export(W1500/L450)")
    elif e < 0.55:
        off = rng.choice([-1, 1]) * rng.uniform(10, 60)
        slope = rng.uniform(0.97, 1.03)
        img = img * slope + off
        acq.append("rescale(slope=%.3f,intercept%+.0f)" % (slope, off))
    img = img.astype(np.float32)

    # ---------------- ground truth labels and seeds
    dep_lab = np.zeros((H, W), np.int32)
    areas, seeds = [], []
    dnotes = []
    for k, dd in enumerate(deps, 1):
        fr = dd["frac"]
        m = (fr >= 0.5) & ~bone_gt
        if not m.any():
            cand = np.where(bone_gt | (dep_lab > 0), -1, fr)
            idx = np.unravel_index(np.argmax(cand), cand.shape)
            m = np.zeros_like(m)
            m[idx] = True
        m &= dep_lab == 0
        dep_lab[m] = k
        rows, cols = np.nonzero(m)
        cy, cx = rows.mean(), cols.mean()
        vals = img[rows, cols]
        good = vals >= vals.min() + 0.6 * (vals.max() - vals.min())
        dd2 = (rows - cy) ** 2 + (cols - cx) ** 2
        dd2 = np.where(good, dd2, np.inf)
        # prefer pixels fully inside the deposit
        full = fr[rows, cols] >= 0.99
        if (full & good).any():
            dd2 = np.where(full, dd2, dd2 + 1e6)
        i = int(np.argmin(dd2))
        seeds.append((int(rows[i]), int(cols[i])))
        areas.append(dd["area"])
        dnotes.append("%s@%s %.1fmm2 %.0fHU" % (dd["kind"], dd["loc"], dd["area"], dd["hu"]))
    notes.append("deposits=%d[%s]" % (len(deps), "; ".join(dnotes)))
    notes.append("acq=" + ",".join(acq + notes_extra))
    return dict(hu=img, spacing_mm=float(dx), bone=bone_gt, deposits=dep_lab,
                areas_mm2=[float(a) for a in areas], seeds=seeds, notes=" | ".join(notes))


# --------------------------------------------------------------------------- demo
def _montage(cases, path, tile=360):
    from skimage.transform import resize
    from skimage.segmentation import find_boundaries
    from skimage.io import imsave
    tiles = []
    for c in cases:
        hu = c["hu"]
        g = np.clip((hu - (450 - 750)) / 1500.0, 0, 1)
        H, W = g.shape
        f = tile / max(H, W)
        nh, nw = max(int(round(H * f)), 1), max(int(round(W * f)), 1)
        gi = resize(g, (nh, nw), order=1, anti_aliasing=True)
        bi = resize(c["bone"].astype(float), (nh, nw), order=0, anti_aliasing=False) > 0.5
        di = resize(c["deposits"].astype(float), (nh, nw), order=0, anti_aliasing=False, preserve_range=True).astype(int)
        rgb = np.repeat(gi[..., None], 3, axis=2)
        bb = find_boundaries(bi, mode="inner")
        db = find_boundaries(di, mode="inner") & (di > 0)
        rgb[bb] = [0.1, 0.9, 0.1]
        rgb[db] = [1.0, 0.15, 0.15]
        for (r, cc) in c["seeds"]:
            rr, c2 = int(r * f), int(cc * f)
            rgb[max(rr - 1, 0):rr + 2, max(c2 - 1, 0):c2 + 2] = [1.0, 1.0, 0.0]
        t = np.full((tile, tile, 3), 0.25)
        t[:nh, :nw] = rgb
        t[:, -2:] = 1.0
        t[-2:, :] = 1.0
        tiles.append(t)
    rows = [np.concatenate(tiles[i:i + 4], axis=1) for i in range(0, len(tiles), 4)]
    imsave(path, (np.concatenate(rows, axis=0) * 255).astype(np.uint8))


if __name__ == "__main__":
    cases = []
    for sd in range(12):
        t0 = time.perf_counter()
        c = make_case(sd)
        el = time.perf_counter() - t0
        cases.append(c)
        hu, bone, dep = c["hu"], c["bone"], c["deposits"]
        ok_overlap = not (bone & (dep > 0)).any()
        seed_ok = all(dep[r, q] == k + 1 for k, (r, q) in enumerate(c["seeds"]))
        seed_hu = [float(hu[r, q]) for r, q in c["seeds"]]
        bone_med = float(np.median(hu[bone])) if bone.any() else float("nan")
        print("case %2d shape=%s spacing=%.3f bone_frac=%.3f n_dep=%d time=%.2fs  no-overlap=%s seeds-in=%s "
              "bone_median_HU=%.0f seed_HU=%s areas=%s"
              % (sd, hu.shape, c["spacing_mm"], bone.mean(), len(c["areas_mm2"]), el, ok_overlap, seed_ok,
                 bone_med, [round(v) for v in seed_hu], [round(a, 1) for a in c["areas_mm2"]]))
        print("        ", c["notes"])
    _montage(cases, "/tmp/ood_b_montage.png")
    print("montage -> /tmp/ood_b_montage.png")
