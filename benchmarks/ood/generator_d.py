"""Out-of-distribution test-case generator "D": sagittal finger CT with calcinosis cutis.

Independent synthetic generator, written from first principles (finger anatomy,
calcinosis cutis in systemic sclerosis, CT image formation), used only as an
unseen test set for the calcinosis measurement plugin.

API
---
``make_case(seed: int) -> dict`` with keys

* ``"hu"``          float32 (H, W) CT numbers (HU) as read by the user: after PSF
  blur, kernel, artefacts and noise; in ~1/3 of cases the slice went through an
  8-bit (JPEG/PACS style) export with window width 1500 / level 450 and was mapped
  back to HU (quantised, clipped to [-300, 1200]); otherwise clipped to the
  12-bit CT range [-1024, 3071].
* ``"spacing_mm"``  float, isotropic pixel size (0.1 .. 0.5 mm).
* ``"bone"``        bool (H, W), pixels more than half covered by bone (4x4
  sub-sampling at the boundary).
* ``"deposits"``    int32 (H, W), 0 = none, k = deposit k (pixel more than half
  covered by the part of deposit k that lies outside bone and outside earlier
  deposits; never overlaps ``bone``).
* ``"areas_mm2"``   list of float, exact-geometry area of each deposit (outside bone
  and outside earlier deposits), computed on a fine sub-pixel grid.
* ``"seeds"``       list of (row, col) ints, one interior bright pixel per deposit.
* ``"notes"``       one-line summary.

Design
------
1. *Patient*: finger size, index/long vs thumb, osteopenia (lower cortex and
   medulla HU, thinner cortex), acro-osteolysis (resorbed irregular tuft), pulp
   atrophy, skin thickening, fat content, flexion contractures at MCP/PIP/DIP.
2. *Anatomy* is an articulated chain of bones in a finger-plane frame (mm).  Each
   bone is an implicit shape (signed-distance-like field) in its own local frame
   (u along the shaft, v dorsal): a base ellipse, a shaft with separate dorsal /
   volar profile, a round head (or a volar-projecting tuft for the distal
   phalanx); the concave base is carved by the previous head plus the joint gap,
   so flexion rotates each bone about the previous head centre.  Cortex = outer
   shell of thickness t(u) (thick mid-shaft, thin at the ends); medulla textured.
   Optional volar sesamoid at the MCP joint.  Soft tissue = smooth union of
   capsules (volar-offset, palm when the metacarpal is in view), skin layer,
   lobulated subcutaneous fat (mostly volar / pulp), flexor and extensor tendons,
   nail plate with root under the proximal fold and free edge, nail bed.
3. *Deposits* (1-8): round/ovoid/lobulated nodules, connected clusters, amorphous
   faint clouds, rim-calcified nodules, sheets along bone or along the skin; sites
   in the fingertip pulp, beyond a resorbed tuft, volar / dorsal subcutis,
   periarticular, abutting the bone (cut by the bone in the truth), or touching a
   previous deposit.  Density 250-2500+ HU with internal texture; small deposits
   are made dense enough to survive the PSF (visible).  Large subcutaneous
   masses lift the skin (a soft-tissue bulge is added around them).  Every
   deposit is fully in view, inside the skin, clear of nail / arteries / metal,
   and connected (also after the bone cut).  Truth areas are exact-geometry
   areas on a fine grid (step <= pixel/5 and <= sqrt(area)/40).
4. *Confounders*: calcified digital artery (tram-track, intermittent), nail,
   splint (thermoplastic, or aluminium + foam), metal ring with streaks, beam
   hardening (dark halo / cupping near dense bone), sesamoid bone.
5. *Scanner*: anti-aliased partial-volume rendering, Gaussian PSF (isotropic or
   axis-anisotropic, as in reformatted sagittal images), optional sharp kernel
   (edge overshoot), white / low-pass / high-pass (ramp-like) noise with
   density-dependent amplitude, 12-bit clipping or 8-bit window export.
6. *View*: any rotation and mirror, random field of view (bones cut by the border).

Only numpy and scipy are used; a case takes well under a second.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

__all__ = ["make_case"]

_SALT = 0x6D5EC0DE
_SS = 4  # sub-samples per pixel side for truth coverage
_OFF = ((np.arange(_SS) + 0.5) / _SS - 0.5)
_OFF_R = np.repeat(_OFF, _SS)
_OFF_C = np.tile(_OFF, _SS)


# ----------------------------------------------------------------------------
# geometry helpers
# ----------------------------------------------------------------------------
def _smin(a, b, k):
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1.0 - h) + a * h - k * h * (1.0 - h)


def _ell(u, v, cu, cv, a, b):
    """Approximate signed distance to an axis-aligned ellipse."""
    x = (u - cu) / a
    y = (v - cv) / b
    k0 = np.sqrt(x * x + y * y)
    k1 = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    d = k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)
    return np.where(k0 < 0.25, (k0 - 1.0) * min(a, b), d)


def _capsule(u, v, ua, ub, c, r):
    uc = np.clip(u, ua, ub)
    return np.hypot(u - uc, v - c) - r


def _fourier2(rng, n, lam_lo, lam_hi):
    """Random smooth 2D field (unit std) evaluable at arbitrary mm coordinates."""
    ang = rng.uniform(0, np.pi, n)
    lam = np.exp(rng.uniform(np.log(lam_lo), np.log(lam_hi), n))
    k = 2 * np.pi / lam
    kx, ky = k * np.cos(ang), k * np.sin(ang)
    ph = rng.uniform(0, 2 * np.pi, n)
    amp = rng.normal(size=n)
    amp /= np.sqrt((amp ** 2).sum() / 2.0)

    def f(X, Y):
        out = np.zeros(np.shape(X))
        for i in range(n):
            out += amp[i] * np.cos(kx[i] * X + ky[i] * Y + ph[i])
        return out

    return f


def _smooth_noise(rng, shape, sigma_px):
    """Gaussian-filtered white noise with unit standard deviation."""
    sigma_px = max(float(sigma_px), 0.5)
    if sigma_px > 6.0:  # generate coarse and upsample for speed
        f = sigma_px / 3.0
        small = (max(4, int(shape[0] / f) + 2), max(4, int(shape[1] / f) + 2))
        n = ndi.gaussian_filter(rng.normal(size=small), 3.0, mode="wrap")
        n = ndi.zoom(n, (shape[0] / (small[0] - 2), shape[1] / (small[1] - 2)), order=1)[: shape[0], : shape[1]]
        if n.shape != tuple(shape):
            n = np.pad(n, ((0, shape[0] - n.shape[0]), (0, shape[1] - n.shape[1])), mode="edge")
    else:
        n = ndi.gaussian_filter(rng.normal(size=shape), sigma_px, mode="wrap")
    return n / max(n.std(), 1e-9)


def _fourier1(rng, n, lam_lo, lam_hi):
    lam = np.exp(rng.uniform(np.log(lam_lo), np.log(lam_hi), n))
    k = 2 * np.pi / lam
    ph = rng.uniform(0, 2 * np.pi, n)
    amp = rng.normal(size=n)
    amp /= np.sqrt((amp ** 2).sum() / 2.0)

    def f(u):
        out = np.zeros(np.shape(u))
        for i in range(n):
            out += amp[i] * np.cos(k[i] * u + ph[i])
        return out

    return f


class _Frame:
    def __init__(self, O, theta):
        self.O = (float(O[0]), float(O[1]))
        self.theta = float(theta)
        self.c, self.s = math.cos(theta), math.sin(theta)

    def local(self, X, Y):
        dx, dy = X - self.O[0], Y - self.O[1]
        return dx * self.c + dy * self.s, -dx * self.s + dy * self.c

    def glob(self, u, v):
        return (self.O[0] + u * self.c - v * self.s, self.O[1] + u * self.s + v * self.c)


# ----------------------------------------------------------------------------
# anatomy
# ----------------------------------------------------------------------------
class _Bone(_Frame):
    def __init__(self, name, O, theta, L, hb, ab, hs, Rh, prevR, gap, t_mid, t_end,
                 distal=False, tuft=None, acro=None, rng=None):
        super().__init__(O, theta)
        self.name, self.distal, self.L = name, distal, L
        self.s0 = (prevR + gap) if prevR is not None else 0.0
        self.prevR, self.gap = prevR, gap
        self.hb, self.ab, self.hs = hb, ab, hs
        self.ub = self.s0 + 0.55 * ab
        self.vb = -0.06 * hb
        if distal:
            at, bt = tuft
            self.at, self.bt = at, bt
            self.uh = self.s0 + L - at
            self.vt = -0.22 * bt
            self.Rh = bt
            endh = bt
        else:
            self.uh = self.s0 + L - Rh
            self.Rh = Rh
            endh = Rh
        self.tip = self.s0 + L
        ub, uh = self.ub, self.uh
        self.ku = np.array([ub, ub + 0.3 * (uh - ub), ub + 0.65 * (uh - ub), uh])
        w = rng.uniform(0.95, 1.08)
        self.khd = np.array([0.8 * hb, hs * 1.05 * w, hs, endh * 0.9])
        self.khv = np.array([0.85 * hb, hs * 0.9, hs * 0.88 * w, endh * 0.85])
        mid = 0.5 * (ub + uh)
        self.tu = np.array([self.s0 - 2, ub, mid, uh, self.tip + 2])
        self.tv = np.array([t_end, t_end * 1.15, t_mid, t_end * 1.15, t_end])
        self.acro = None
        if acro is not None and distal:
            self.acro = self.tip - acro * L
            self.rag = _fourier1(rng, 4, 1.5, 5.0)
            self.rag_amp = rng.uniform(0.08, 0.3)
            self.taper = rng.uniform(0.08, 0.45)
        self.kblend = 1.0
        self.bound_r = max(hb, self.Rh, hs) + 1.5

    def hd(self, u):
        return np.interp(u, self.ku, self.khd)

    def hv(self, u):
        return np.interp(u, self.ku, self.khv)

    def _sdf_local(self, u, v):
        body = np.maximum(np.maximum(v - self.hd(u), -v - self.hv(u)),
                          np.maximum(self.ub - u, u - self.uh))
        base = _ell(u, v, self.ub, self.vb, self.ab, self.hb)
        d = _smin(body, base, self.kblend)
        if self.distal:
            head = _ell(u, v, self.uh, self.vt, self.at, self.bt)
        else:
            head = np.hypot(u - self.uh, v) - self.Rh
        d = _smin(d, head, self.kblend)
        if self.prevR is not None:
            d = np.maximum(d, self.prevR + self.gap - np.hypot(u, v))
        if self.acro is not None:
            cut = u - self.acro + self.taper * (v - self.vt) ** 2 + self.rag_amp * self.rag(v)
            d = -_smin(-d, -cut, 0.5)
        return d

    def fields(self, X, Y, want_med=False):
        u, v = self.local(X, Y)
        lo = self.s0 - self.ab
        bnd = _capsule(u, v, lo, self.tip, 0.0, self.bound_r)
        sdf = bnd.copy()
        near = bnd < 1.5
        med = None
        if near.any():
            un, vn = u[near], v[near]
            d = self._sdf_local(un, vn)
            sdf[near] = d
            if want_med:
                med = bnd.copy() + 5.0
                med[near] = d + np.interp(un, self.tu, self.tv)
        elif want_med:
            med = bnd + 5.0
        return sdf, med


class _Sesamoid:
    def __init__(self, O, theta, a, b, t):
        self.f = _Frame(O, theta)
        self.a, self.b, self.t = a, b, t

    def fields(self, X, Y, want_med=False):
        u, v = self.f.local(X, Y)
        d = _ell(u, v, 0.0, 0.0, self.a, self.b)
        return d, (d + self.t if want_med else None)


class _Finger:
    """Articulated finger: bones, soft tissue, tendons, nail, optional artery."""

    def __init__(self, rng, P):
        self.P = P
        f = P["size"]
        if P["thumb"]:
            dims = [("MC", 46, 7.2, 4.5, 4.3, 6.2), ("P1", 32, 6.4, 4.5, 3.4, 4.7),
                    ("P3", 25, 5.0, 3.6, 2.2, (2.9, 2.9))]
            flex = [P["flex"][0], P["flex"][2]]
        else:
            dims = [("MC", 64, 7.0, 5.0, 4.2, 6.2), ("P1", 42, 5.8, 4.5, 3.0, 4.1),
                    ("P2", 26, 4.6, 3.5, 2.4, 3.1), ("P3", 19, 3.8, 3.0, 1.6, (2.3, 2.3))]
            flex = list(P["flex"])
        op = P["osteo"]
        bones = []
        O = (0.0, 0.0)
        theta = 0.0
        prevR = None
        for i, (nm, L, hb, ab, hs, rh) in enumerate(dims):
            sc = f * rng.uniform(0.95, 1.05)
            distal = nm == "P3"
            if i > 0:
                theta = theta - math.radians(flex[i - 1])
            gap = P["gap"] * rng.uniform(0.85, 1.15)
            tmid = {"MC": 1.7, "P1": 1.35, "P2": 1.05, "P3": 0.6}[nm] * (0.55 + 0.45 * op) * rng.uniform(0.85, 1.15)
            tend = 0.38 * (0.7 + 0.3 * op)
            b = _Bone(nm, O, theta, L * sc, hb * sc, ab * sc, hs * sc,
                      (None if distal else rh * sc), prevR, gap, tmid * sc, tend,
                      distal=distal, tuft=((rh[0] * sc, rh[1] * sc) if distal else None),
                      acro=(P["acro"] if distal else None), rng=rng)
            bones.append(b)
            if not distal:
                O = b.glob(b.uh, 0.0)
                prevR = b.Rh
        self.bones = bones
        self.mc, self.p3 = bones[0], bones[-1]
        self.p1 = bones[1]
        self.extra = []
        self.bulges = []  # soft-tissue bulges over large deposits (cx, cy, a, b, angle)
        if P["sesamoid"]:
            mc = self.mc
            so = mc.glob(mc.uh + 0.3 * mc.Rh, -(mc.Rh + 1.6 * f))
            self.extra.append(_Sesamoid(so, mc.theta, 2.2 * f, 1.5 * f, 0.35))

        # ---- soft tissue capsules (frame, ua, ub, c, r)
        caps = []
        mc = self.mc
        caps.append((mc, -80.0, mc.uh, -4.6 * f, 14.0 * f))
        for b in bones[1:-1]:
            r = (9.0 if b.name == "P1" else 7.3) * f * P["soft"]
            c = (-1.7 if b.name == "P1" else -1.3) * f
            caps.append((b, 0.0, b.uh, c, r))
        p3 = self.p3
        # proximal part of P3 (DIP region)
        top_a = p3.hb + 1.9 * f
        bot_a = -(p3.hb + 3.0 * f * P["pulp"])
        caps.append((p3, 0.0, p3.ub + p3.ab, 0.5 * (top_a + bot_a), 0.5 * (top_a - bot_a)))
        # distal part (nail + pulp)
        self.nail_t = rng.uniform(0.4, 0.75)
        bed = rng.uniform(1.3, 2.2) * f
        top_b = p3.hs + bed + self.nail_t
        bot_b = -(p3.hs * 0.9 + P["pulp"] * rng.uniform(3.8, 5.5) * f)
        rb = 0.5 * (top_b - bot_b)
        tip_full = p3.s0 + p3.L
        tip_soft = tip_full + P["pulp"] * rng.uniform(2.5, 4.5) * f
        ua_b = p3.ub + 0.5 * p3.ab
        ub_b = max(ua_b, tip_soft - rb)
        caps.append((p3, ua_b, ub_b, 0.5 * (top_b + bot_b), rb))
        self.caps = caps
        self.tip_soft = tip_soft
        # ---- nail (P3 frame)
        self.nail = dict(u0=p3.ub + p3.ab * 0.9 + 1.0, u1=ub_b + rb * rng.uniform(0.4, 0.8),
                         top=top_b, ubend=ub_b, droop=rng.uniform(0.02, 0.07))
        # ---- tendons
        self.tendons = []
        for b in bones[:-1]:
            tf = rng.uniform(1.8, 2.8) * f
            self.tendons.append((b, b.ub + 1.0, b.uh + 0.5 * b.Rh, -1, 0.25, tf))   # flexor
            te = rng.uniform(0.6, 1.1) * f
            self.tendons.append((b, b.ub + 1.0, b.uh + 0.5 * b.Rh, +1, 0.15, te))   # extensor
        self.tendons.append((p3, p3.s0 - 0.5, p3.ub + 1.0, -1, 0.2, 1.6 * f))
        # ---- calcified digital artery
        self.artery = None
        if P["artery"]:
            segs = [b for b in bones if b.name in ("P1", "P2", "P3")]
            self.artery = []
            for b in segs:
                self.artery.append(dict(b=b, u0=b.s0 - 1.0, u1=(b.tip if b.distal else b.uh + b.Rh),
                                        depth=rng.uniform(2.8, 5.0) * f, lumen=rng.uniform(0.8, 1.5),
                                        w=rng.uniform(0.25, 0.6), gate=_fourier1(rng, 4, 3.0, 12.0),
                                        thr=rng.uniform(-0.6, 0.5), wav=_fourier1(rng, 3, 5.0, 20.0),
                                        two=rng.random() < 0.6))

    # -- soft tissue
    def outline(self, X, Y, want_vrel=False):
        d = None
        ds, vr = [], []
        for fr, ua, ub, c, r in self.caps:
            u, v = fr.local(X, Y)
            di = _capsule(u, v, ua, ub, c, r)
            if want_vrel:
                ds.append(di)
                vr.append((v - c) / r)
            d = di if d is None else _smin(d, di, 2.5)
        for cx, cy, a, b, ang in self.bulges:
            ca, sa = math.cos(ang), math.sin(ang)
            dx, dy = X - cx, Y - cy
            di = _ell(dx * ca + dy * sa, -dx * sa + dy * ca, 0.0, 0.0, a, b)
            if want_vrel:
                ds.append(di)
                vr.append(np.full(np.shape(X), -0.3))
            d = _smin(d, di, 1.5)
        if not want_vrel:
            return d, None
        idx = np.argmin(np.stack(ds), axis=0)
        vrel = np.choose(idx, vr)
        return d, vrel

    def bone_sdf(self, X, Y):
        d = None
        for b in self.bones + self.extra:
            s, _ = b.fields(X, Y)
            d = s if d is None else np.minimum(d, s)
        return d

    def bone_fields(self, X, Y):
        d = m = None
        for b in self.bones + self.extra:
            s, mm = b.fields(X, Y, want_med=True)
            if d is None:
                d, m = s, mm
            else:
                d, m = np.minimum(d, s), np.minimum(m, mm)
        return d, m

    def nail_sdf(self, X, Y):
        n = self.nail
        u, v = self.p3.local(X, Y)
        vn = n["top"] - 0.5 * self.nail_t - n["droop"] * np.clip(u - n["ubend"], 0, None) ** 2
        root = np.clip(1.0 - (u - n["u0"]) / 4.0, 0, 1)
        vn = vn - 0.7 * root
        return np.maximum(np.abs(v - vn) - 0.5 * self.nail_t, np.maximum(n["u0"] - u, u - n["u1"]))

    def tendon_sdf(self, X, Y):
        d = None
        for b, u0, u1, side, g, t in self.tendons:
            u, v = b.local(X, Y)
            surf = b.hd(u) if side > 0 else -b.hv(u)
            vc = surf + side * (g + 0.5 * t)
            di = np.maximum(np.abs(v - vc) - 0.5 * t, np.maximum(u0 - u, u - u1))
            d = di if d is None else np.minimum(d, di)
        return d

    def artery_fields(self, X, Y):
        """Returns (sdf of calcified wall, sdf of whole vessel envelope)."""
        if self.artery is None:
            return None, None
        dw = de = None
        for a in self.artery:
            b = a["b"]
            u, v = b.local(X, Y)
            vc = -b.hv(u) - a["depth"] + 0.4 * a["wav"](u)
            inu = np.maximum(a["u0"] - u, u - a["u1"])
            env = np.maximum(np.abs(v - vc) - 0.5 * a["lumen"] - a["w"], inu)
            half = 0.5 * a["lumen"] + 0.5 * a["w"]
            if a["two"]:
                wall = np.minimum(np.abs(v - vc - half), np.abs(v - vc + half)) - 0.5 * a["w"]
            else:
                wall = np.abs(v - vc + half) - 0.5 * a["w"]
            gate = a["gate"](u) - a["thr"]
            wall = np.maximum(np.maximum(wall, inu), -gate * 0.6)
            dw = wall if dw is None else np.minimum(dw, wall)
            de = env if de is None else np.minimum(de, env)
        # the vessel only exists well inside the soft tissue
        od, _ = self.outline(X, Y)
        keep = od + self.P["skin_t"] + 0.6
        return np.maximum(dw, keep), np.maximum(de, keep)


# ----------------------------------------------------------------------------
# deposits
# ----------------------------------------------------------------------------
class _Nodule:
    def __init__(self, rng, cx, cy, a, b, ang, lob, hu, tex_amp, rim=None, core=0.5,
                 falloff=0.0, nharm=6, decay=0.7):
        self.cx, self.cy, self.a, self.b = cx, cy, a, b
        self.ca, self.sa = math.cos(ang), math.sin(ang)
        ks = np.arange(2, 2 + nharm)
        amps = rng.normal(size=nharm) * lob / ks ** decay
        tot = np.abs(amps).sum()
        if tot > 0.55:
            amps *= 0.55 / tot
        self.ks, self.amps, self.phs = ks, amps, rng.uniform(0, 2 * np.pi, nharm)
        self.hu, self.tex_amp, self.rim, self.core, self.falloff = hu, tex_amp, rim, core, falloff
        self.tex = _fourier2(rng, 16, 0.5, 2.5)
        self.R = max(a, b) * (1.0 + np.abs(amps).sum()) + 0.05
        self.rmin = min(a, b) * (1.0 - np.abs(amps).sum())

    def bbox(self):
        return (self.cx - self.R, self.cx + self.R, self.cy - self.R, self.cy + self.R)

    def inside_val(self, X, Y, want_val=True):
        X, Y = np.asarray(X, float), np.asarray(Y, float)
        dx, dy = X - self.cx, Y - self.cy
        x = (dx * self.ca + dy * self.sa) / self.a
        y = (-dx * self.sa + dy * self.ca) / self.b
        rho = np.hypot(x, y)
        ins = np.zeros(X.shape, bool)
        cand = rho < 1.0 + np.abs(self.amps).sum() + 1e-9
        if not cand.any():
            return ins, (np.zeros(X.shape) if want_val else None)
        xc, yc, rc = x[cand], y[cand], rho[cand]
        phi = np.arctan2(yc, xc)
        Rb = np.ones_like(rc)
        for k, am, ph in zip(self.ks, self.amps, self.phs):
            Rb += am * np.cos(k * phi + ph)
        ic = rc < Rb
        ins[cand] = ic
        if not want_val:
            return ins, None
        val = np.zeros(X.shape)
        Xi, Yi, ri, Ri = X[cand][ic], Y[cand][ic], rc[ic], Rb[ic]
        vi = self.hu * (1.0 + self.tex_amp * self.tex(Xi, Yi))
        if self.falloff:
            vi = vi * (1.0 - self.falloff * np.clip(ri / Ri, 0, 1) ** 2)
        if self.rim is not None:
            vi = np.where(ri > Ri * (1.0 - self.rim), vi, vi * self.core)
        val[ins] = vi
        return ins, val


class _Cluster:
    def __init__(self, parts):
        self.parts = parts
        bb = np.array([p.bbox() for p in parts])
        self._bb = (bb[:, 0].min(), bb[:, 1].max(), bb[:, 2].min(), bb[:, 3].max())
        self.rmin = min(p.rmin for p in parts)

    def bbox(self):
        return self._bb

    def inside_val(self, X, Y, want_val=True):
        ins = np.zeros(np.shape(X), bool)
        val = np.full(np.shape(X), -np.inf) if want_val else None
        for p in self.parts:
            i, v = p.inside_val(X, Y, want_val)
            ins |= i
            if want_val:
                val = np.where(i, np.maximum(val, v), val)
        return ins, (np.where(ins, val, 0.0) if want_val else None)


class _Sheet:
    """Plaque/sheet following a surface (bone profile or skin) in a bone frame."""

    def __init__(self, rng, fr, ua, ub, surf, side, t0, ov, hu, tex_amp):
        self.fr, self.ua, self.ub, self.surf, self.side = fr, ua, ub, surf, side
        self.t0, self.ov, self.hu, self.tex_amp = t0, ov, hu, tex_amp
        self.th = _fourier1(rng, 3, 1.5, 6.0)
        self.wav = _fourier1(rng, 3, 3.0, 12.0)
        self.wav_amp = rng.uniform(0.0, 0.25) * t0
        self.tex = _fourier2(rng, 16, 0.5, 3.0)
        self.rmin = 0.5 * t0
        us = np.linspace(ua, ub, 40)
        tt = self._t(us)
        vc = self._vc(us, tt)
        pts = [fr.glob(us, vc + tt), fr.glob(us, vc - tt)]
        xs = np.concatenate([p[0] for p in pts])
        ys = np.concatenate([p[1] for p in pts])
        m = 0.2
        self._bb = (xs.min() - m, xs.max() + m, ys.min() - m, ys.max() + m)

    def _t(self, u):
        s = np.clip((u - self.ua) / (self.ub - self.ua), 0, 1)
        return self.t0 * np.sin(np.pi * s) ** 0.5 * (1.0 + 0.25 * self.th(u))

    def _vc(self, u, t):
        return self.surf(u) + self.side * (0.5 * t - self.ov) + self.wav_amp * self.wav(u)

    def bbox(self):
        return self._bb

    def inside_val(self, X, Y, want_val=True):
        X, Y = np.asarray(X, float), np.asarray(Y, float)
        u, v = self.fr.local(X, Y)
        ins = np.zeros(X.shape, bool)
        cand = (u > self.ua) & (u < self.ub) & (np.abs(v - self.surf(u)) < 2.5 * self.t0 + self.wav_amp + 0.1)
        if cand.any():
            uc = u[cand]
            t = self._t(uc)
            ins[cand] = np.abs(v[cand] - self._vc(uc, t)) < 0.5 * t
        if not want_val:
            return ins, None
        val = np.zeros(X.shape)
        val[ins] = self.hu * (1.0 + self.tex_amp * self.tex(X[ins], Y[ins]))
        return ins, val


# ----------------------------------------------------------------------------
# view
# ----------------------------------------------------------------------------
class _View:
    def __init__(self, cx, cy, alpha, mirror, s, H, W):
        self.cx, self.cy, self.s, self.H, self.W = cx, cy, s, H, W
        self.ca, self.sa = math.cos(alpha), math.sin(alpha)
        self.mir = -1.0 if mirror else 1.0

    def p2g(self, r, c):
        xi = (c - (self.W - 1) / 2.0) * self.s * self.mir
        yi = ((self.H - 1) / 2.0 - r) * self.s
        return self.cx + xi * self.ca - yi * self.sa, self.cy + xi * self.sa + yi * self.ca

    def g2p(self, X, Y):
        dx, dy = X - self.cx, Y - self.cy
        xi = dx * self.ca + dy * self.sa
        yi = -dx * self.sa + dy * self.ca
        return (self.H - 1) / 2.0 - yi / self.s, xi * self.mir / self.s + (self.W - 1) / 2.0

    def pix_box(self, bb, pad):
        xs = np.array([bb[0], bb[1], bb[0], bb[1]])
        ys = np.array([bb[2], bb[2], bb[3], bb[3]])
        r, c = self.g2p(xs, ys)
        return (int(math.floor(r.min())) - pad, int(math.ceil(r.max())) + pad + 1,
                int(math.floor(c.min())) - pad, int(math.ceil(c.max())) + pad + 1)


def _sub_coords(view, r, c):
    """Sub-sample coordinates (N, SS*SS) for integer pixel index arrays r, c."""
    rs = r.astype(np.float64)[:, None] + _OFF_R[None, :]
    cs = c.astype(np.float64)[:, None] + _OFF_C[None, :]
    return view.p2g(rs, cs)


# ----------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------
def _patient(rng):
    P = {}
    P["size"] = rng.uniform(0.85, 1.15)
    P["thumb"] = rng.random() < 0.15
    P["osteo"] = rng.uniform(0.0, 1.0) ** 0.7  # 1 = normal bone, 0 = marked osteopenia
    op = 0.55 + 0.45 * P["osteo"]
    P["cortex_hu"] = max(720.0, rng.uniform(1250, 1800) * op)
    P["med_hu"] = max(100.0, rng.uniform(200, 400) * op)
    mcp = rng.uniform(-10, 35)
    pip = rng.uniform(30, 85) if rng.random() < 0.35 else rng.uniform(-5, 20)
    dip = rng.uniform(20, 55) if rng.random() < 0.25 else rng.uniform(-5, 15)
    P["flex"] = (mcp, pip, dip)
    P["gap"] = rng.uniform(0.8, 1.8)
    P["acro"] = rng.uniform(0.12, 0.6) if rng.random() < 0.35 else None
    P["pulp"] = rng.uniform(0.55, 0.85) if (P["acro"] is not None or rng.random() < 0.25) else rng.uniform(0.85, 1.15)
    P["soft"] = rng.uniform(0.85, 1.1)
    P["skin_t"] = rng.uniform(0.9, 2.4)
    P["skin_hu"] = rng.uniform(50, 95)
    P["soft_hu"] = rng.uniform(25, 55)
    P["fat_hu"] = rng.uniform(-115, -70)
    P["fat"] = rng.uniform(0.3, 0.95)
    P["tendon_hu"] = rng.uniform(75, 115)
    P["nail_hu"] = rng.uniform(110, 320)
    P["sesamoid"] = rng.random() < (0.5 if P["thumb"] else 0.12)
    P["artery"] = rng.random() < 0.3
    return P


def _scanner(rng):
    S = {}
    sig = rng.uniform(0.12, 0.42)
    if rng.random() < 0.35:
        sig2 = min(0.62, sig * rng.uniform(1.3, 2.2))
        S["psf_mm"] = (sig, sig2) if rng.random() < 0.5 else (sig2, sig)
    else:
        S["psf_mm"] = (sig, sig)
    S["sharp"] = rng.uniform(0.3, 1.0) if rng.random() < 0.35 else 0.0
    S["noise"] = float(np.exp(rng.uniform(np.log(6), np.log(60))))
    S["noise_kind"] = rng.choice(["white", "lowpass", "ramp"])
    S["bh"] = rng.uniform(0, 45)
    S["eight_bit"] = rng.random() < 0.35
    S["air_hu"] = rng.uniform(-1010, -985)
    return S


def _choose_view(rng, finger):
    # skeleton path (proximal MC head region -> fingertip)
    pts = []
    for b in finger.bones:
        lo = b.uh - 18.0 if b is finger.mc else b.s0
        hi = finger.tip_soft if b.distal else b.uh
        us = np.arange(lo, hi, 1.0)
        x, y = b.glob(us, np.zeros_like(us))
        pts.append(np.stack([x, y], 1))
    pts = np.concatenate(pts)
    n = len(pts)
    w = np.linspace(0.35, 1.0, n) ** 1.5
    i = rng.choice(n, p=w / w.sum())
    fov = float(np.exp(rng.uniform(np.log(21), np.log(115))))
    s_lo, s_hi = max(0.1, fov / 800.0), min(0.5, fov / 200.0)
    s = float(np.exp(rng.uniform(np.log(s_lo), np.log(s_hi))))
    npx = fov / s
    asp = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
    H = int(np.clip(round(npx * asp), 200, 800))
    W = int(np.clip(round(npx / asp), 200, 800))
    jit = rng.normal(size=2) * 0.12 * fov
    cx, cy = pts[i] + jit
    return _View(cx, cy, rng.uniform(0, 2 * np.pi), rng.random() < 0.5, s, H, W)


def _sample_site(rng, finger, view, site, R, ext=None):
    """Rejection-sample a deposit centre. Returns (x, y, bone) or None."""
    bones = finger.bones
    p3 = finger.p3
    for _ in range(60):
        if site in ("pulp", "tip"):
            b = p3
            if site == "pulp":
                u = rng.uniform(p3.s0 + 0.3 * p3.L, finger.tip_soft)
                v = rng.uniform(-p3.hb - 8.0, 0.0)
            else:
                lo = p3.acro if p3.acro is not None else p3.tip - 2.5
                u = rng.uniform(lo - 1.0, finger.tip_soft)
                v = rng.uniform(-p3.hs - 4.0, p3.hs + 1.0)
        else:
            b = bones[rng.integers(0, len(bones))]
            if b is finger.mc and rng.random() < 0.6:
                b = bones[1]
            if site == "volar":
                u = rng.uniform(b.s0, b.tip)
                v = -rng.uniform(0.0, 10.0)
            elif site == "dorsal":
                u = rng.uniform(b.uh - 5.0, b.tip + 3.0)
                v = rng.uniform(0.0, 8.0)
            elif site == "peri":
                u = rng.uniform(b.uh - 4.0, b.tip + b.gap + 3.0)
                v = rng.uniform(-8.0, 8.0)
            else:  # abut
                u = rng.uniform(b.s0 - 1.0, b.tip + 0.5)
                v = rng.uniform(-8.0, 8.0)
        x, y = b.glob(u, v)
        r, c = view.g2p(np.array(x), np.array(y))
        mr = (ext if ext is not None else R) / view.s + 4
        if not (mr < r < view.H - 1 - mr and mr < c < view.W - 1 - mr):
            continue
        X, Y = np.array([x]), np.array([y])
        od, _ = finger.outline(X, Y)
        if od[0] > -(0.6 * R + 0.4):
            continue
        bs = finger.bone_sdf(X, Y)[0]
        if site == "abut":
            if not (-0.45 * R < bs < 0.5 * R):
                continue
        elif site == "peri":
            if not (0.4 * R < bs < R + 2.5):
                continue
        else:
            if bs < 0.8 * R + 0.2:
                continue
        if site == "volar":
            _, vv = b.local(X, Y)
            if vv[0] > -b.hv(np.array([u]))[0]:
                continue
        return x, y, b
    return None


def _make_deposit(rng, finger, view, kind, site, area, hu):
    R = math.sqrt(area / math.pi)
    if kind == "sheet_bone" or kind == "sheet_skin":
        cand = [b for b in finger.bones if b.name in ("P1", "P2", "P3", "MC")]
        b = cand[rng.integers(0, len(cand))]
        if b is finger.mc and rng.random() < 0.6:
            b = finger.p1
        t0 = float(rng.uniform(0.35, 1.6))
        t0 = max(0.3, min(t0, math.sqrt(area / (0.78 * 3.0))))  # sheets are at least 3x longer than thick
        Lp = area / (0.78 * t0)
        if kind == "sheet_bone":
            lo, hi = b.ub + 0.5 * b.ab, b.uh - (0.3 * b.at if b.distal else 0.5 * b.Rh)
            if b.distal and b.acro is not None:
                hi = min(hi, b.acro - 0.5)
        else:
            lo, hi = b.s0 + 1.0, (b.uh if not b.distal else finger.tip_soft - 3.0)
        # restrict to the part of the bone that is well inside the image
        us = np.arange(lo, hi, 0.25)
        if us.size < 8:
            return None
        gx, gy = b.glob(us, np.zeros_like(us))
        pr, pc = view.g2p(gx, gy)
        mpx = (b.hb + 4.0) / view.s + 4
        vis = (pr > mpx) & (pr < view.H - 1 - mpx) & (pc > mpx) & (pc < view.W - 1 - mpx)
        if not vis.any():
            return None
        # longest visible run
        best, cur, bi = 0, 0, 0
        for i, ok in enumerate(vis):
            cur = cur + 1 if ok else 0
            if cur > best:
                best, bi = cur, i
        lo, hi = us[bi - best + 1], us[bi]
        span = hi - lo
        if span < 2.0:
            return None
        if Lp > 0.9 * span:
            Lp = 0.9 * span
            t0 = min(3.0, area / (0.78 * Lp))
        ua = rng.uniform(lo, hi - Lp)
        side = 1 if rng.random() < 0.5 else -1
        if kind == "sheet_bone":
            surf = b.hd if side > 0 else (lambda u, b=b: -b.hv(u))
            ov = rng.uniform(0.12, 0.35) * t0
            dep = _Sheet(rng, b, ua, ua + Lp, surf, side, t0, ov, hu, rng.uniform(0.05, 0.2))
        else:
            cap = None
            for fr, cua, cub, c, r in finger.caps:
                if fr is b and (cap is None or cub > cap[2]):
                    cap = (fr, cua, cub, c, r)
            _, _, _, c, r = cap
            depth = rng.uniform(0.5, 2.2) + (finger.P["skin_t"] * 0.3)
            sv = c + side * r
            # sheet extends inward from the skin: side points inward
            dep = _Sheet(rng, b, ua, ua + Lp, lambda u, sv=sv, sd=side, d=depth: np.full(np.shape(u), sv - sd * d),
                         -side, t0, 0.0, hu, rng.uniform(0.05, 0.2))
        return dep
    big = area > 12.0
    asp = float(np.exp(rng.uniform(np.log(1.5) if big else 0.0, np.log(4.0 if big else 3.0))))
    a, bb = R * math.sqrt(asp), R / math.sqrt(asp)
    clear = (bb * (0.7 if big else 1.25)) if kind != "cluster" else R * 1.6
    site_pt = _sample_site(rng, finger, view, site, clear, ext=(a * 1.35 if kind != "cluster" else R * 2.5))
    if site_pt is None:
        return None
    x, y, b = site_pt
    if big or rng.random() < 0.7:
        ang = b.theta + rng.normal(0, 0.2 if big else 0.45)
    else:
        ang = rng.uniform(0, np.pi)
    if kind == "cluster":
        n = int(rng.integers(3, 8))
        parts = []
        sub_area = area / n * 1.3
        cx, cy = x, y
        for j in range(n):
            rr = math.sqrt(sub_area * rng.uniform(0.5, 1.5) / math.pi)
            asp = rng.uniform(1.0, 1.6)
            p = _Nodule(rng, cx, cy, rr * math.sqrt(asp), rr / math.sqrt(asp), rng.uniform(0, np.pi),
                        rng.uniform(0.0, 0.15), hu * rng.uniform(0.75, 1.25), rng.uniform(0.03, 0.12))
            parts.append(p)
            base = parts[rng.integers(0, len(parts))]
            a = rng.uniform(0, 2 * np.pi)
            step = 0.8 * (base.rmin + rr)
            cx, cy = base.cx + step * math.cos(a), base.cy + step * math.sin(a)
        return _Cluster(parts)
    if kind == "nodule":
        return _Nodule(rng, x, y, a, bb, ang, rng.uniform(0.0, 0.3), hu, rng.uniform(0.03, 0.15),
                       falloff=rng.uniform(0, 0.3))
    if kind == "amorphous":
        return _Nodule(rng, x, y, a, bb, ang, rng.uniform(0.4, 0.9), hu, rng.uniform(0.15, 0.3),
                       falloff=rng.uniform(0.2, 0.5), nharm=7, decay=1.25)
    # rim-calcified
    return _Nodule(rng, x, y, a, bb, ang, rng.uniform(0.0, 0.2), hu, rng.uniform(0.03, 0.1),
                   rim=rng.uniform(0.2, 0.4), core=rng.uniform(0.3, 0.55))


def _touching(rng, prev, area, hu):
    """Nodule placed so that it overlaps / touches an existing deposit."""
    bb = prev.bbox()
    cx, cy = 0.5 * (bb[0] + bb[1]), 0.5 * (bb[2] + bb[3])
    R = math.sqrt(area / math.pi)
    rp = 0.5 * min(bb[1] - bb[0], bb[3] - bb[2])
    a = rng.uniform(0, 2 * np.pi)
    d = rp * rng.uniform(0.7, 1.0) + R * rng.uniform(0.6, 0.95)
    asp = float(np.exp(rng.uniform(0, np.log(2.0))))
    return _Nodule(rng, cx + d * math.cos(a), cy + d * math.sin(a), R * math.sqrt(asp), R / math.sqrt(asp),
                   rng.uniform(0, np.pi), rng.uniform(0, 0.25), hu, rng.uniform(0.03, 0.12))


def _place_deposits(rng, finger, view, S, P):
    s = view.s
    sig = math.sqrt(max(S["psf_mm"]) ** 2 + s * s / 12.0)
    kinds = ["nodule", "cluster", "sheet_bone", "sheet_skin", "amorphous", "rim"]
    kp = np.array([0.32, 0.13, 0.14, 0.09, 0.17, 0.15])
    sites = ["pulp", "tip", "volar", "dorsal", "peri", "abut"]
    sp = np.array([0.27, 0.10, 0.15, 0.13, 0.12, 0.23])
    n_target = int(np.clip(rng.geometric(0.33), 1, 8))
    deps, infos = [], []
    art_w = finger.artery is not None
    fails = 0
    tries = 0
    while len(deps) < n_target and fails < 90:
        touch = len(deps) > 0 and rng.random() < 0.18
        kind = "nodule" if touch else kinds[rng.choice(len(kinds), p=kp)]
        site = "touch" if touch else (sites[rng.choice(len(sites), p=sp)] if kind not in ("sheet_bone", "sheet_skin") else kind)
        if kind == "sheet_bone":
            site = "abut"
        area = float(np.exp(rng.uniform(np.log(0.3), np.log(60.0)))) * (0.85 ** max(tries - 4, 0))
        if area > 12.0 and kind in ("nodule", "amorphous", "rim", "cluster") and not touch:
            site = ["pulp", "volar", "abut", "dorsal", "tip"][rng.choice(5, p=[0.4, 0.3, 0.15, 0.1, 0.05])]
        area = max(area, 0.3, 1.6 * s * s)
        if kind == "amorphous":
            area = max(area, rng.uniform(1.5, 6.0))
            hu = rng.uniform(250, 520)
        elif kind == "rim":
            area = max(area, rng.uniform(2.0, 8.0))
            hu = float(np.exp(rng.uniform(np.log(700), np.log(2600))))
        else:
            hu = float(np.exp(rng.uniform(np.log(250), np.log(2600))))
        if touch:
            j = int(rng.integers(0, len(deps)))
            dep = _touching(rng, deps[j], area, hu)
        else:
            dep = _make_deposit(rng, finger, view, kind, site, area, hu)
        if dep is None:
            fails += 1
            tries += 1
            continue
        # visibility: small / thin deposits must be dense enough to survive the PSF
        if isinstance(dep, _Nodule):
            rmin = 0.8 * min(dep.a, dep.b)
        else:
            rmin = max(getattr(dep, "rmin", 0.2), 0.08)
        rmin = min(rmin, 0.9 * math.sqrt(area / math.pi))
        fb = 1.0 - math.exp(-rmin * rmin / (2 * sig * sig))
        need = 60.0 + 230.0 / max(fb, 1e-3)
        if need > 3200:
            fails += 1
            tries += 1
            continue
        scale = max(1.0, need / dep_hu(dep))
        if scale > 1.0:
            _scale_hu(dep, scale)
        nb = len(finger.bulges)
        res = _check_deposit(rng, dep, deps, finger, view, site, touch, art_w)
        if res is None:
            del finger.bulges[nb:]
            fails += 1
            tries += 1
            continue
        tries = 0
        deps.append(dep)
        res["kind"], res["site"] = kind if not touch else "nodule", site
        res["hu"] = dep_hu(dep)
        infos.append(res)
    return deps, infos


def dep_hu(dep):
    if isinstance(dep, _Cluster):
        return float(np.mean([p.hu for p in dep.parts]))
    return float(dep.hu)


def _scale_hu(dep, k):
    if isinstance(dep, _Cluster):
        for p in dep.parts:
            p.hu *= k
    else:
        dep.hu *= k


def _check_deposit(rng, dep, deps, finger, view, site, touch, art_w):
    s = view.s
    bb = dep.bbox()
    # fully inside the image with a margin
    r0, r1, c0, c1 = view.pix_box(bb, 3)
    if r0 < 2 or c0 < 2 or r1 > view.H - 2 or c1 > view.W - 2:
        return None
    gap = max(0.45, 1.6 * s)
    pad = gap + 0.2
    ext = max(bb[1] - bb[0], bb[3] - bb[2]) + 2 * pad
    own_est = max((bb[1] - bb[0]) * (bb[3] - bb[2]) * 0.4, 0.05)
    h = min(s / 5.0, math.sqrt(own_est) / 40.0)
    h = max(h, ext / 420.0)
    xs = np.arange(bb[0] - pad, bb[1] + pad + h, h)
    ys = np.arange(bb[2] - pad, bb[3] + pad + h, h)
    Xg, Yg = np.meshgrid(xs, ys)
    ins, _ = dep.inside_val(Xg, Yg, False)
    n_own = int(ins.sum())
    if n_own < 30:
        return None
    Xi, Yi = Xg[ins], Yg[ins]
    od, _ = finger.outline(Xi, Yi)
    if od.max() > -0.3:
        # large subcutaneous masses lift the skin: add a soft-tissue bulge
        if not (isinstance(dep, _Nodule) and dep.a * dep.b > 2.0 and od.max() < 2.5):
            return None
        ang = math.atan2(dep.sa, dep.ca)
        m = finger.P["skin_t"] + rng.uniform(0.6, 1.5)
        fac = 1.0 + np.abs(dep.amps).sum()
        finger.bulges.append((dep.cx, dep.cy, dep.a * fac + m, dep.b * fac + m, ang))
        od, _ = finger.outline(Xi, Yi)
        if od.max() > -0.3:
            return None
    if finger.nail_sdf(Xi, Yi).min() < 0.35:
        return None
    if art_w:
        _, de = finger.artery_fields(Xi, Yi)
        if de.min() < 0.6:
            return None
    for m in finger.metal_pts:
        if np.hypot(Xi - m[0], Yi - m[1]).min() < 4.0:
            return None
    for sp in finger.splint_sdfs:
        if sp(Xi, Yi).min() < 0.5:
            return None
    bs = finger.bone_sdf(Xi, Yi)
    inb = bs < 0
    ovf = inb.mean()
    if site == "abut" or site == "sheet_bone":
        if not (0.03 <= ovf <= 0.5):
            return None
    elif touch:
        if ovf > 0.3:
            return None
    elif ovf > 0.0:
        return None
    excl = ins.copy()
    excl[ins] = ~inb
    # other deposits
    touched = False
    for j, dj in enumerate(deps):
        bj = dj.bbox()
        if bj[0] > bb[1] + pad or bj[1] < bb[0] - pad or bj[2] > bb[3] + pad or bj[3] < bb[2] - pad:
            continue
        ij, _ = dj.inside_val(Xg, Yg, False)
        if not ij.any():
            continue
        if touch and (ij & ins).any():
            touched = True
            excl &= ~ij
            continue
        dist = ndi.distance_transform_edt(~ins) * h
        if (ij & (dist < gap)).any():
            return None
    if touch and not touched:
        return None
    n_ex = int(excl.sum())
    area = n_ex * h * h
    if area < max(0.3, 1.5 * s * s) or n_ex < 0.45 * n_own:
        return None
    lab, nl = ndi.label(excl, structure=np.ones((3, 3)))
    if nl != 1:
        return None
    # pixel coverage with SS x SS sub-samples
    rr, cc = np.mgrid[r0:r1, c0:c1]
    rr, cc = rr.ravel(), cc.ravel()
    Xs, Ys = _sub_coords(view, rr, cc)
    insp, valp = dep.inside_val(Xs, Ys)
    if insp.any():
        bsp = np.ones(insp.shape)
        bsp[insp] = finger.bone_sdf(Xs[insp], Ys[insp])
        insp &= bsp >= 0
        for dj in deps:
            ij, _ = dj.inside_val(Xs, Ys, False)
            insp &= ~ij
    cov = insp.mean(axis=1)
    vsum = (insp * valp).mean(axis=1)
    shape = (r1 - r0, c1 - c0)
    cov, vsum = cov.reshape(shape), vsum.reshape(shape)
    mask = cov > 0.5
    if mask.sum() < 1:
        return None
    _, nlp = ndi.label(mask, structure=np.ones((3, 3)))
    if nlp != 1:
        return None
    return dict(area=area, box=(r0, r1, c0, c1), cov=cov, vsum=vsum, mask=mask)


def _metal_streaks(rng, H, W, centers_px, s):
    out = np.zeros((H, W))
    if not centers_px:
        return out
    rr, cc = np.mgrid[0:H, 0:W].astype(np.float64)
    for (r, c) in centers_px:
        dr, dc = rr - r, cc - c
        for _ in range(int(rng.integers(8, 16))):
            a = rng.uniform(0, np.pi)
            amp = rng.uniform(-260, 220)
            w = rng.uniform(0.6, 2.0) * max(1.0, 0.3 / s)
            along = dc * math.cos(a) + dr * math.sin(a)
            perp = -dc * math.sin(a) + dr * math.cos(a)
            out += amp * np.exp(-0.5 * (perp / w) ** 2) / (1.0 + np.abs(along) * s / 6.0)
    if len(centers_px) >= 2:
        (r1, c1), (r2, c2) = centers_px[0], centers_px[1]
        L = math.hypot(r2 - r1, c2 - c1) + 1e-6
        ur, uc = (r2 - r1) / L, (c2 - c1) / L
        t = (rr - r1) * ur + (cc - c1) * uc
        perp = -(rr - r1) * uc + (cc - c1) * ur
        w = rng.uniform(2.0, 5.0) / max(s, 0.1) * 0.3
        inside = np.clip(np.minimum(t, L - t) / (0.1 * L), 0, 1)
        out += -rng.uniform(150, 450) * np.exp(-0.5 * (perp / w) ** 2) * inside
    return out


def make_case(seed: int) -> dict:
    sd = int(seed)
    rng = np.random.default_rng([_SALT, sd] if sd >= 0 else [_SALT, 1, -sd])
    P = _patient(rng)
    finger = _Finger(rng, P)
    S = _scanner(rng)

    # ---- external objects (ring / splint); defined in finger frame
    finger.metal_pts, finger.splint_sdfs = [], []
    ring = splint = None
    u_ring = None
    if rng.random() < 0.1:
        b = finger.p1
        u_ring = rng.uniform(0.35, 0.7) * b.L + b.s0
        fr, ua, ub, c, r = [cp for cp in finger.caps if cp[0] is b][0]
        rt = rng.uniform(0.55, 0.9)
        ra = rng.uniform(0.9, 1.6)
        ring = []
        for side in (1, -1):
            vc = c + side * (r + 0.15 + rt)
            ring.append((b, u_ring, vc, ra, rt))
            finger.metal_pts.append(b.glob(u_ring, vc))
        ring_hu = rng.uniform(6000, 12000)
    splint_req = rng.random() < 0.12
    if splint_req:
        b = [bb for bb in finger.bones if bb.name in ("P2", "P1")][-1]
        fr, ua, ub, c, r = [cp for cp in finger.caps if cp[0] is b][0]
        side = 1 if rng.random() < 0.6 else -1
        alu = rng.random() < 0.45
        thick = rng.uniform(0.8, 1.3) if alu else rng.uniform(1.5, 3.0)
        gap = rng.uniform(0.2, 1.5)
        foam = rng.uniform(1.5, 3.0) if alu else 0.0
        vin = c + side * (r + gap)
        u0, u1 = rng.uniform(-8, 5), b.uh + rng.uniform(10, 30)
        us = np.arange(u0, u1, 0.4)
        vv = np.array([vin, vin + side * 0.5 * (foam + thick), vin + side * (foam + thick)])
        UU, VV = np.meshgrid(us, vv)
        gx, gy = b.glob(UU, VV)
        ok = (finger.outline(gx, gy)[0] > 0.15).all(axis=0)
        um = int(np.argmin(np.abs(us - 0.5 * (b.s0 + b.uh))))
        if ok[um]:
            lo_i = um
            while lo_i > 0 and ok[lo_i - 1]:
                lo_i -= 1
            hi_i = um
            while hi_i < len(us) - 1 and ok[hi_i + 1]:
                hi_i += 1
            u0, u1 = us[lo_i] + 0.5, us[hi_i] - 0.5
        else:
            u1 = u0
        splint_hu = rng.uniform(2000, 3000) if alu else rng.uniform(80, 220)
    if splint_req and u1 - u0 > 12.0:
        splint = dict(b=b, side=side, alu=alu, thick=thick, foam=foam, vin=vin, u0=u0, u1=u1,
                      hu=splint_hu)

        def sp_sdf(X, Y, sp=splint):
            u, v = sp["b"].local(X, Y)
            lo = sp["vin"]
            hi = sp["vin"] + sp["side"] * (sp["foam"] + sp["thick"])
            vc, hw = 0.5 * (lo + hi), 0.5 * abs(hi - lo)
            return np.maximum(np.abs(v - vc) - hw, np.maximum(sp["u0"] - u, u - sp["u1"]))
        finger.splint_sdfs.append(sp_sdf)

    # ---- view and deposits
    for _attempt in range(40):
        view = _choose_view(rng, finger)
        # enough finger in view?
        gr, gc = np.mgrid[0:view.H:20, 0:view.W:20]
        gx, gy = view.p2g(gr.astype(float), gc.astype(float))
        od, _ = finger.outline(gx, gy)
        if (od < 0).mean() < 0.2:
            continue
        cu, _ = finger.mc.local(gx, gy)
        if cu.min() < finger.mc.s0 + 0.2 * finger.mc.L:
            continue
        deps, infos = _place_deposits(rng, finger, view, S, P)
        if deps:
            break
    s, H, W = view.s, view.H, view.W

    # ---- full-grid fields
    rr, cc = np.mgrid[0:H, 0:W]
    X, Y = view.p2g(rr.astype(np.float64), cc.astype(np.float64))
    out_sdf, vrel = finger.outline(X, Y, want_vrel=True)
    bsdf, msdf = finger.bone_fields(X, Y)

    def cov_of(d):
        return np.clip(0.5 - d / s, 0.0, 1.0)

    img = np.full((H, W), S["air_hu"])
    # soft tissue
    depth = -out_sdf
    tex_soft = _smooth_noise(rng, (H, W), 1.5 / s)
    tissue = P["soft_hu"] + 5.0 * tex_soft
    lob = np.clip(0.55 + 0.6 * _smooth_noise(rng, (H, W), 0.6 / s), 0.0, 1.0)
    w_vol = np.clip(0.45 - 0.8 * vrel, 0.0, 1.0)
    w_fat = P["fat"] * (0.2 + 0.8 * w_vol) * lob
    w_fat *= np.clip((depth - P["skin_t"]) / 0.8, 0, 1) * np.clip((bsdf - 0.6) / 1.2, 0, 1)
    tissue = tissue * (1 - w_fat) + P["fat_hu"] * w_fat
    w_skin = np.clip((P["skin_t"] - depth) / max(s, 0.25) + 0.5, 0, 1)
    tissue = tissue * (1 - w_skin) + P["skin_hu"] * w_skin
    c_out = cov_of(out_sdf)
    img = img * (1 - c_out) + tissue * c_out
    # tendons
    c_t = cov_of(finger.tendon_sdf(X, Y)) * c_out
    img = img * (1 - c_t) + (P["tendon_hu"] + 4.0 * tex_soft) * c_t
    # nail
    c_n = cov_of(finger.nail_sdf(X, Y))
    img = img * (1 - c_n) + P["nail_hu"] * c_n
    # artery
    art_hu = None
    if finger.artery is not None:
        dw, _ = finger.artery_fields(X, Y)
        art_hu = rng.uniform(350, 1100)
        c_a = cov_of(dw)
        img = img * (1 - c_a) + art_hu * c_a
    # bone
    c_b = cov_of(bsdf)
    c_m = np.minimum(cov_of(msdf), c_b)
    trab = 0.8 * _smooth_noise(rng, (H, W), 0.22 / s) + 0.6 * _smooth_noise(rng, (H, W), 0.9 / s)
    med_val = P["med_hu"] * (1.0 + 0.18 * trab)
    ctx = P["cortex_hu"] * (1.0 + 0.04 * tex_soft)
    img = img * (1 - c_b) + ctx * c_b
    img = img * (1 - c_m) + med_val * c_m
    # deposits
    for info in infos:
        r0, r1, c0, c1 = info["box"]
        sub = img[r0:r1, c0:c1]
        img[r0:r1, c0:c1] = sub * (1 - info["cov"]) + info["vsum"]
    # external objects
    metal_px = []
    if ring is not None:
        for b, uc, vc, ra, rt in ring:
            u, v = b.local(X, Y)
            c_r = cov_of(_ell(u, v, uc, vc, ra, rt))
            img = img * (1 - c_r) + ring_hu * c_r
            gx, gy = b.glob(uc, vc)
            metal_px.append(view.g2p(np.array(gx), np.array(gy)))
    if splint is not None:
        b = splint["b"]
        u, v = b.local(X, Y)
        inu = np.maximum(splint["u0"] - u, u - splint["u1"])
        sd = splint["side"]
        lo = splint["vin"]
        mid = lo + sd * splint["foam"]
        hi = mid + sd * splint["thick"]
        if splint["foam"] > 0:
            fd = np.maximum(np.abs(v - 0.5 * (lo + mid)) - 0.5 * splint["foam"], inu)
            cf = cov_of(fd)
            img = img * (1 - cf) + rng.uniform(-850, -600) * cf
        pd = np.maximum(np.abs(v - 0.5 * (mid + hi)) - 0.5 * splint["thick"], inu)
        cp = cov_of(pd)
        img = img * (1 - cp) + splint["hu"] * cp
        if splint["alu"]:
            for uu in (splint["u0"] + 3, splint["u1"] - 3):
                gx, gy = b.glob(uu, 0.5 * (mid + hi))
                pr, pc = view.g2p(np.array(gx), np.array(gy))
                if 0 <= pr < H and 0 <= pc < W:
                    metal_px.append((pr, pc))
    # beam hardening: dark halo / cupping around dense material
    dense = c_b * (P["cortex_hu"] / 1500.0)
    if S["bh"] > 0:
        sh = ndi.gaussian_filter(dense, sigma=max(1.0, 1.8 / s))
        img -= S["bh"] * sh / max(sh.max(), 1e-6)
    if metal_px:
        img += _metal_streaks(rng, H, W, [(float(a), float(b_)) for a, b_ in metal_px], s)

    # ---- PSF, kernel
    sig_px = (S["psf_mm"][0] / s, S["psf_mm"][1] / s)
    clean = ndi.gaussian_filter(img, sigma=sig_px, mode="nearest")
    if S["sharp"] > 0:
        clean = clean + S["sharp"] * (clean - ndi.gaussian_filter(clean, sigma=(1.6 * sig_px[0], 1.6 * sig_px[1]), mode="nearest"))
    # ---- noise
    wn = rng.normal(size=(H, W))
    nk = S["noise_kind"]
    if nk == "lowpass":
        cs = max(0.6, 0.7 * min(sig_px))
        wn = ndi.gaussian_filter(wn, cs)
    elif nk == "ramp":
        cs = max(0.7, 0.8 * min(sig_px))
        wn = ndi.gaussian_filter(wn, 0.5) - ndi.gaussian_filter(wn, cs * 2.0)
    wn /= max(wn.std(), 1e-9)
    amp = S["noise"] * (1.0 + 0.6 * ndi.gaussian_filter(c_b, 3.0))
    hu = clean + amp * wn
    if S["eight_bit"]:
        q = np.clip(np.round((hu + 300.0) / 1500.0 * 255.0), 0, 255)
        hu = q / 255.0 * 1500.0 - 300.0
    else:
        hu = np.clip(hu, -1024.0, 3071.0)
    hu = hu.astype(np.float32)

    # ---- truth: bone (adaptive 4x4 sub-sampling at the boundary)
    bone_cov = (bsdf < 0).astype(np.float64)
    idx = np.nonzero(np.abs(bsdf) < 1.2 * s)
    if idx[0].size:
        Xs, Ys = _sub_coords(view, idx[0], idx[1])
        bone_cov[idx] = (finger.bone_sdf(Xs, Ys) < 0).mean(axis=1)
    bone = bone_cov > 0.5

    # ---- truth: deposits
    lab = np.zeros((H, W), np.int32)
    areas, seeds, desc = [], [], []
    k = 0
    for info in infos:
        r0, r1, c0, c1 = info["box"]
        m = info["mask"] & ~bone[r0:r1, c0:c1] & (lab[r0:r1, c0:c1] == 0)
        if not m.any():
            continue
        k += 1
        sub = lab[r0:r1, c0:c1]
        sub[m] = k
        dt = ndi.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        cand = dt >= max(1.0, 0.5 * dt.max())
        vals = np.where(cand, clean[r0:r1, c0:c1], -np.inf)
        ir, ic = np.unravel_index(int(np.argmax(vals)), vals.shape)
        seeds.append((int(ir + r0), int(ic + c0)))
        areas.append(float(info["area"]))
        desc.append(f"{info['kind']}@{info['site']} {info['area']:.1f}mm2 {info['hu']:.0f}HU")

    names = "+".join(b.name for b in finger.bones)
    extras = []
    if P["acro"] is not None:
        extras.append(f"acro-osteolysis {P['acro']:.2f}")
    if finger.extra:
        extras.append("sesamoid")
    if finger.artery is not None:
        extras.append("calcified artery")
    if ring is not None:
        extras.append("metal ring")
    if splint is not None:
        extras.append("aluminium splint" if splint["alu"] else "plastic splint")
    if S["sharp"]:
        extras.append(f"sharp kernel {S['sharp']:.2f}")
    if S["eight_bit"]:
        extras.append("8-bit export")
    fl = P["flex"]
    notes = (f"gen-D seed={seed} {'thumb' if P['thumb'] else 'finger'} ({names}) {H}x{W} px @ {s:.3f} mm; "
             f"flex MCP/PIP/DIP {fl[0]:.0f}/{fl[1]:.0f}/{fl[2]:.0f} deg; cortex {P['cortex_hu']:.0f} HU, "
             f"medulla {P['med_hu']:.0f} HU; PSF {S['psf_mm'][0]:.2f}x{S['psf_mm'][1]:.2f} mm, "
             f"noise {S['noise']:.0f} HU {S['noise_kind']}; {'; '.join(extras) if extras else 'no extras'}; "
             f"{k} deposits: " + ", ".join(desc))
    return {"hu": hu, "spacing_mm": float(s), "bone": bone, "deposits": lab, "areas_mm2": areas,
            "seeds": seeds, "notes": notes}
