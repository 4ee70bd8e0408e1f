"""Synthetic sagittal dual-energy CT finger reformats with calcinosis cutis (generator K).

Independent test-data generator for a calcinosis-quantification tool (phalanx
segmentation + per-deposit area by seeded region growing).  Each case is one 2-D
sagittal reformat of a finger in Hounsfield units with ideal (pre-blur) truth for
bone and for every calcinosis deposit.  Percentages below are design values;
measured rates over seeds 0..399 are given in brackets.

Geometry / rendering
  Every structure is a 2-D signed-distance function (SDF, mm): round cones (uneven
  capsules), approximate ellipses, circles, half-planes, smooth unions,
  subtractions, iso-bands, tapered iso-bands and sinusoid-sum surface
  perturbations.  SDFs are evaluated only inside each primitive's bounding window of
  a rotated (optionally mirrored) pixel grid; partial volume comes from a 1-pixel
  SDF coverage ramp.  Truth = SDF < 0 at pixel centres.  Deposit areas are
  integrated on a sub-pixel grid (<= 0.035 mm, bone-clipped) of the same SDF, so
  they match pixel counts for large compact deposits and stay exact for specks
  smaller than a pixel (a speck that covers no pixel centre gets its closest pixel).

Anatomy (world frame: finger axis +x, dorsal +y)
  Kinematic chain PP-MP-DP (index/middle/ring/little lengths x 0.86-1.12), each
  joint rotating about the condylar head centre so the base facet stays concentric;
  joint gap 0.6-1.5 mm filled with cartilage/capsule density.  PP/MP: base bar with
  concave facet and palmar lip, flared metaphysis, bowed diaphysis, round head;
  marrow is a separate inner hourglass -> thick diaphyseal cortex, thin subchondral
  shell.  DP: broad base with palmar (FDP) tubercle, narrow waist, ungual tuft with
  palmar spur and slightly irregular surface.  Trabecular marrow texture.
  Osteopenia 30 % (thin 650-1100 HU cortex, fatty marrow).  Flexion contracture
  40 % (PIP 20-75, DIP 0-40 deg), else -12..22 deg.  Soft tissue: per-segment
  dorsal/palmar thickness, palmar pads, fingertip pulp (atrophic/tapered in half),
  dermis 0.8-2.4 mm (thick sclerodactyly 45 %), subcutaneous fat with fibrous-septa
  network, flexor and extensor tendons, nail plate on the dorsal skin surface with
  root under the fold and free edge, continuation into the hand.
  Acro-osteolysis (55 % of fingertip views, 22 % otherwise) [32 %]: mild/moderate/
  severe tuft resorption with irregular, density-fading end, or pencilled shaft;
  35 % of these add 1-3 separate small bone fragments in the pulp (bone truth).
  Neighbour finger partly in view at an edge (22 % attempted) [15 %], its bones are
  bone truth.  Any in-plane rotation, 50 % mirrored.

Deposits (labels 1..n; never overlapping, >= 1 pixel apart; never on bone pixels --
  a deposit touching bone is clipped at the cortex)
  10 % of cases have none [8 %]; else 1-9 (+ speck clusters), mean ~4 per case.
  Sites: pulp, around/touching the tuft, along phalanges (touching the cortex with
  0.1-0.45 mm overlap-then-clip, or 0.2-1.0 mm gap, set on the sub-pixel grid),
  periarticular, subcutaneous, free soft tissue; fingertip views favour pulp/tuft.
  Kinds: specks 0.1-1 mm^2 (half in clusters), nodules, lobulated conglomerates
  (smooth union of 3-8 lobes, up to ~45 mm^2), sub-dermal plaques and sheets
  paralleling the skin or cortex (lens-shaped tapered bands), rim-dense (dense
  shell 900-2100 HU, 250-600 HU core).  Density: faint/cloudy 250-500 HU with
  mottling (~18 %), normal 550-1400, dense 1300-2500 HU (centrally denser).
  Seeds = argmax of the PSF-blurred deposit-only layer inside the deposit's truth
  (eroded mask when non-empty), i.e. a reader's click on the densest spot.

Confounders (neither bone nor deposit)
  Calcified digital arteries ~45 %: curving palmar vessel path along the phalanges
  with distal arch in the pulp, two-scale tortuosity; fragmented solid segments,
  beaded dots, tram-track walls or mixed, 450-1600 HU, 30 % both arteries.  Also
  tendons, nail, dermis, septa, CT table (carbon skins + foam core) with optional
  foam cushion ~28 %, moulded plastic or aluminium splint with foam pad ~10 %, metal
  ring on the PP (15 % of whole-finger views) with streaks and a dark band.

Views (field of view, pixel spacing, image sides 160-600 px, not square)
  40 % fingertip emphasis: 3/4 tight crops at 0.10-0.22 mm (DP only ~1/3, DP+MP
        ~2/3; the proximal bone is necessarily cut by the border), 1/4 whole finger at
        fine spacing 0.10-0.20 mm.  Small DPs (little finger, size 0.93x) favoured.
  50 % whole finger, 0.15-0.45 mm (coarser if needed to fit 600 px); 25 % of these
        cut by the border (metacarpal head included, or one side cropped).
  10 % distal half (MP+DP, PP cut), 0.12-0.30 mm.
  Fingertip-view-or-calcified-artery emphasis [64 %].  Bone touching the border
  [54 %]: ~25-30 % of whole-finger views, plus all tight fingertip/distal crops.

Acquisition
  Gaussian PSF 0.2-0.6 mm FWHM; sharp-kernel edge overshoot (unsharp mask) 50 %;
  correlated noise 6-50 HU (log-uniform, grain 0.08-0.3 mm); streaks / dark
  beam-hardening bands ~18 % plus always with ring or aluminium [28 %]; 25 %
  exported as 8-bit through W1500/L450 (-300..1200 HU, air and dense bone saturate),
  half of those with JPEG-like 8x8 DCT quantisation (quality 35-90), mapped back
  to HU.

Interface: make_case(seed) -> dict(hu float32, spacing_mm, bone bool, deposits
  int32, areas_mm2, seeds [(row, col)], notes).  numpy + scipy only; deterministic
  per seed; ~0.09 s mean, < 0.4 s max per case.  `python generator_k.py` runs the
  self-check on seeds 0..59 and writes montage.png / montage_truth.png.
"""
import math
import time

import numpy as np
from scipy import ndimage
from scipy import fft as sfft

F32 = np.float32
BIG = F32(1.0e3)
PAD = 3.0  # mm; SDF values are valid within bbox + PAD
_DEBUG = None  # set to a dict to receive internal maps (development aid only)

# ----------------------------------------------------------------------------- grid


class Grid:
    """Affine pixel grid: world(x, y) of pixel centre (r, c) = o + c*ex + r*ey."""

    def __init__(self, o, ex, ey, nr, nc):
        self.o = np.array(o, float)
        self.ex = np.array(ex, float)
        self.ey = np.array(ey, float)
        self.nr, self.nc = int(nr), int(nc)
        M = np.array([[self.ex[0], self.ey[0]], [self.ex[1], self.ey[1]]])
        self.Mi = np.linalg.inv(M)
        self.h = float(np.hypot(*self.ex))

    def idx(self, x, y):
        dx = np.asarray(x, float) - self.o[0]
        dy = np.asarray(y, float) - self.o[1]
        c = self.Mi[0, 0] * dx + self.Mi[0, 1] * dy
        r = self.Mi[1, 0] * dx + self.Mi[1, 1] * dy
        return r, c

    def window(self, bb, pad=0.0):
        if bb is None:
            return (0, self.nr, 0, self.nc)
        x0, x1, y0, y1 = bb
        r, c = self.idx([x0 - pad, x1 + pad, x0 - pad, x1 + pad],
                        [y0 - pad, y0 - pad, y1 + pad, y1 + pad])
        r0 = max(int(math.floor(r.min())), 0)
        r1 = min(int(math.ceil(r.max())) + 1, self.nr)
        c0 = max(int(math.floor(c.min())), 0)
        c1 = min(int(math.ceil(c.max())) + 1, self.nc)
        if r0 >= r1 or c0 >= c1:
            return None
        return (r0, r1, c0, c1)

    def coords(self, w):
        r0, r1, c0, c1 = w
        rr = np.arange(r0, r1, dtype=F32)[:, None]
        cc = np.arange(c0, c1, dtype=F32)[None, :]
        X = F32(self.o[0]) + cc * F32(self.ex[0]) + rr * F32(self.ey[0])
        Y = F32(self.o[1]) + cc * F32(self.ex[1]) + rr * F32(self.ey[1])
        return X, Y

    def world(self, r, c):
        return self.o + c * self.ex + r * self.ey

    def sub(self, w, f):
        r0, r1, c0, c1 = w
        o = self.o + (c0 - 0.5 + 0.5 / f) * self.ex + (r0 - 0.5 + 0.5 / f) * self.ey
        return Grid(o, self.ex / f, self.ey / f, (r1 - r0) * f, (c1 - c0) * f)


def _wand(a, b):
    if a is None or b is None:
        return None
    r0, r1 = max(a[0], b[0]), min(a[1], b[1])
    c0, c1 = max(a[2], b[2]), min(a[3], b[3])
    if r0 >= r1 or c0 >= c1:
        return None
    return (r0, r1, c0, c1)


def _rel(w, cw):
    return (slice(cw[0] - w[0], cw[1] - w[0]), slice(cw[2] - w[2], cw[3] - w[2]))


def _sl(w):
    return (slice(w[0], w[1]), slice(w[2], w[3]))


def _bbu(bbs):
    bbs = [b for b in bbs if b is not None]
    if not bbs:
        return None
    return (min(b[0] for b in bbs), max(b[1] for b in bbs),
            min(b[2] for b in bbs), max(b[3] for b in bbs))


def _bbpad(bb, p):
    if bb is None:
        return None
    return (bb[0] - p, bb[1] + p, bb[2] - p, bb[3] + p)


def _smin(a, b, k):
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _smax(a, b, k):
    return -_smin(-a, -b, k)


# ----------------------------------------------------------------------------- SDF shapes


class Shape:
    bb = None

    def ev(self, g, w):
        X, Y = g.coords(w)
        return self.f(X, Y)


class Circle(Shape):
    def __init__(self, c, r):
        self.c = (float(c[0]), float(c[1]))
        self.r = float(r)
        self.bb = (self.c[0] - r, self.c[0] + r, self.c[1] - r, self.c[1] + r)

    def f(self, X, Y):
        return (np.hypot(X - F32(self.c[0]), Y - F32(self.c[1])) - F32(self.r)).astype(F32)


class Ellipse(Shape):
    """Approximate ellipse SDF (exact on the boundary and along the minor axis)."""

    def __init__(self, c, a, b, ang=0.0):
        self.c = (float(c[0]), float(c[1]))
        self.a, self.b = max(float(a), 1e-3), max(float(b), 1e-3)
        self.ca, self.sa = math.cos(ang), math.sin(ang)
        R = max(self.a, self.b)
        self.bb = (self.c[0] - R, self.c[0] + R, self.c[1] - R, self.c[1] + R)

    def f(self, X, Y):
        dx = X - F32(self.c[0])
        dy = Y - F32(self.c[1])
        u = (dx * F32(self.ca) + dy * F32(self.sa)) / F32(self.a)
        v = (-dx * F32(self.sa) + dy * F32(self.ca)) / F32(self.b)
        k0 = np.sqrt(u * u + v * v)
        k1 = np.sqrt((u / F32(self.a)) ** 2 + (v / F32(self.b)) ** 2)
        out = k0 * (k0 - 1.0) / np.maximum(k1, F32(1e-9))
        return np.where(k1 > 1e-9, out, F32(-min(self.a, self.b))).astype(F32)


class RoundCone(Shape):
    """Uneven capsule between points a and b with radii ra, rb."""

    def __init__(self, a, b, ra, rb=None):
        rb = ra if rb is None else rb
        a = np.asarray(a, float)
        b = np.asarray(b, float)
        v = b - a
        L = float(np.hypot(*v))
        if L <= abs(ra - rb) + 1e-4:  # degenerate -> circle of the larger end
            if ra >= rb:
                b, rb = a, ra
            else:
                a, ra = b, rb
            v = np.array([1e-3, 0.0])
            b = a + v
            rb = ra
            L = 1e-3
        self.a = a
        self.v = v
        self.hh = L * L
        self.ra, self.rb = float(ra), float(rb)
        bd = self.ra - self.rb
        self.cx = math.sqrt(max(self.hh - bd * bd, 1e-12))
        self.cy = bd
        R = max(ra, rb)
        self.bb = (min(a[0], b[0]) - R, max(a[0], b[0]) + R, min(a[1], b[1]) - R, max(a[1], b[1]) + R)

    def f(self, X, Y):
        px = X - F32(self.a[0])
        py = Y - F32(self.a[1])
        vx, vy, h = F32(self.v[0]), F32(self.v[1]), F32(self.hh)
        qx = np.abs(px * vy - py * vx) / h
        qy = (px * vx + py * vy) / h
        cx, cy = F32(self.cx), F32(self.cy)
        k = cx * qy - cy * qx
        n = qx * qx + qy * qy
        d1 = np.sqrt(h * n) - F32(self.ra)
        d2 = np.sqrt(np.maximum(h * (n + 1.0 - 2.0 * qy), 0)) - F32(self.rb)
        d3 = (cx * qx + cy * qy) - F32(self.ra)
        return np.where(k < 0, d1, np.where(k > cx, d2, d3)).astype(F32)


class HalfPlane(Shape):
    """Inside where dot(p - P, nrm) < 0 (+ optional perturbation)."""

    def __init__(self, P, nrm, noise=None, amp=0.0):
        self.P = np.asarray(P, float)
        nrm = np.asarray(nrm, float)
        self.n = nrm / np.hypot(*nrm)
        self.noise, self.amp = noise, amp
        self.bb = None

    def f(self, X, Y):
        d = (X - F32(self.P[0])) * F32(self.n[0]) + (Y - F32(self.P[1])) * F32(self.n[1])
        if self.noise is not None:
            d = d + F32(self.amp) * self.noise(X, Y)
        return d.astype(F32)


class Union(Shape):
    def __init__(self, kids, k=0.0):
        self.kids = [c for c in kids if c is not None]
        self.k = float(k)
        self.bb = _bbu([c.bb for c in self.kids]) if all(c.bb is not None for c in self.kids) else None

    def ev(self, g, w):
        out = np.full((w[1] - w[0], w[3] - w[2]), BIG, F32)
        for c in self.kids:
            cw = _wand(w, g.window(c.bb, PAD + self.k))
            if cw is None:
                continue
            s = _rel(w, cw)
            out[s] = _smin(out[s], c.ev(g, cw), self.k)
        return out

    def f(self, X, Y):
        out = np.full(np.shape(X), BIG, F32)
        for c in self.kids:
            out = _smin(out, c.f(X, Y), self.k)
        return out


class Subtract(Shape):
    def __init__(self, a, b, k=0.0):
        self.a, self.b, self.k = a, b, float(k)
        self.bb = a.bb

    def ev(self, g, w):
        A = self.a.ev(g, w)
        cw = _wand(w, g.window(self.b.bb, PAD + self.k))
        if cw is not None:
            s = _rel(w, cw)
            A[s] = _smax(A[s], -self.b.ev(g, cw), self.k)
        return A

    def f(self, X, Y):
        return _smax(self.a.f(X, Y), -self.b.f(X, Y), self.k)


class Intersect(Shape):
    def __init__(self, a, b):
        self.a, self.b = a, b
        if a.bb is None:
            self.bb = b.bb
        elif b.bb is None:
            self.bb = a.bb
        else:
            self.bb = (max(a.bb[0], b.bb[0]), min(a.bb[1], b.bb[1]),
                       max(a.bb[2], b.bb[2]), min(a.bb[3], b.bb[3]))
            if self.bb[0] > self.bb[1] or self.bb[2] > self.bb[3]:
                self.bb = (0.0, 0.0, 0.0, 0.0)

    def ev(self, g, w):
        A = self.a.ev(g, w)
        B = np.full(A.shape, BIG, F32)
        cw = _wand(w, g.window(self.b.bb, PAD))
        if cw is not None:
            B[_rel(w, cw)] = self.b.ev(g, cw)
        return np.maximum(A, B)

    def f(self, X, Y):
        return np.maximum(self.a.f(X, Y), self.b.f(X, Y))


class Offset(Shape):
    def __init__(self, a, d):
        self.a, self.d = a, float(d)
        self.bb = _bbpad(a.bb, max(self.d, 0.0))

    def ev(self, g, w):
        return self.a.ev(g, w) - F32(self.d)

    def f(self, X, Y):
        return self.a.f(X, Y) - F32(self.d)


class Band(Shape):
    """Shell |a - c| < t (iso-band of a at level c, half thickness t)."""

    def __init__(self, a, c, t):
        self.a, self.c, self.t = a, float(c), float(t)
        self.bb = _bbpad(a.bb, max(self.c + self.t, 0.0))

    def ev(self, g, w):
        return np.abs(self.a.ev(g, w) - F32(self.c)) - F32(self.t)

    def f(self, X, Y):
        return np.abs(self.a.f(X, Y) - F32(self.c)) - F32(self.t)


class TaperBand(Shape):
    """Lens-shaped shell along the iso-line a = c: half thickness t*sqrt(1-(u/Lh)^2),
    u = coordinate along the tangent through P (plaques / sheets following skin or cortex)."""

    def __init__(self, a, c, t, P, tang, Lh):
        self.a, self.c, self.t = a, float(c), float(t)
        self.P = np.asarray(P, float)
        tang = np.asarray(tang, float)
        self.tg = tang / np.hypot(*tang)
        self.Lh = float(Lh)
        self.Vh = abs(self.c) + 2.0 * self.t + 2.5
        R = math.hypot(self.Lh, self.Vh) + 0.05
        self.bb = (self.P[0] - R, self.P[0] + R, self.P[1] - R, self.P[1] + R)

    def _g(self, A, X, Y):
        dx = X - F32(self.P[0])
        dy = Y - F32(self.P[1])
        u = dx * F32(self.tg[0]) + dy * F32(self.tg[1])
        v = -dx * F32(self.tg[1]) + dy * F32(self.tg[0])
        q = np.clip(1.0 - (u / F32(self.Lh)) ** 2, 0.0, 1.0)
        d = np.abs(A - F32(self.c)) - F32(self.t) * np.sqrt(q)
        d = np.maximum(d, np.abs(u) - F32(self.Lh))
        return np.maximum(d, np.abs(v) - F32(self.Vh)).astype(F32)

    def ev(self, g, w):
        X, Y = g.coords(w)
        return self._g(self.a.ev(g, w), X, Y)

    def f(self, X, Y):
        return self._g(self.a.f(X, Y), X, Y)


class Perturb(Shape):
    def __init__(self, a, noise, amp):
        self.a, self.noise, self.amp = a, noise, float(amp)
        self.bb = _bbpad(a.bb, abs(self.amp) * noise.maxamp + 0.01)

    def ev(self, g, w):
        X, Y = g.coords(w)
        return self.a.ev(g, w) + F32(self.amp) * self.noise(X, Y)

    def f(self, X, Y):
        return self.a.f(X, Y) + F32(self.amp) * self.noise(X, Y)


class RampPerturb(Shape):
    """Surface perturbation whose amplitude ramps up along an axis (s0 -> s1)."""

    def __init__(self, a, noise, amp, P, d, s0, s1):
        self.a, self.noise, self.amp = a, noise, float(amp)
        self.P, self.d = np.asarray(P, float), np.asarray(d, float)
        self.s0, self.s1 = float(s0), float(s1)
        self.bb = _bbpad(a.bb, abs(self.amp) * noise.maxamp + 0.01)

    def _p(self, X, Y):
        s = (X - F32(self.P[0])) * F32(self.d[0]) + (Y - F32(self.P[1])) * F32(self.d[1])
        r = np.clip((s - F32(self.s0)) / F32(self.s1 - self.s0), 0.0, 1.0)
        return F32(self.amp) * r * self.noise(X, Y)

    def ev(self, g, w):
        X, Y = g.coords(w)
        return self.a.ev(g, w) + self._p(X, Y)

    def f(self, X, Y):
        return self.a.f(X, Y) + self._p(X, Y)


class AxialOffset(Shape):
    """a + t(s), s = projection on an axis: variable-thickness erosion (marrow)."""

    def __init__(self, a, P, d, sk, tk):
        self.a, self.P, self.d = a, np.asarray(P, float), np.asarray(d, float)
        self.sk, self.tk = np.asarray(sk, float), np.asarray(tk, float)
        self.bb = a.bb

    def _t(self, X, Y):
        s = (X - F32(self.P[0])) * F32(self.d[0]) + (Y - F32(self.P[1])) * F32(self.d[1])
        return np.interp(s.ravel(), self.sk, self.tk).reshape(s.shape).astype(F32)

    def ev(self, g, w):
        X, Y = g.coords(w)
        return self.a.ev(g, w) + self._t(X, Y)

    def f(self, X, Y):
        return self.a.f(X, Y) + self._t(X, Y)


class SinNoise:
    """Smooth random field = sum of plane waves, ~unit std, evaluable anywhere."""

    def __init__(self, rng, wl_min, wl_max, n=6):
        ang = rng.uniform(0, 2 * np.pi, n)
        wl = np.exp(rng.uniform(np.log(wl_min), np.log(wl_max), n))
        k = 2 * np.pi / wl
        self.kx = (k * np.cos(ang)).astype(F32)
        self.ky = (k * np.sin(ang)).astype(F32)
        self.ph = rng.uniform(0, 2 * np.pi, n).astype(F32)
        self.a = F32(math.sqrt(2.0 / n))
        self.maxamp = float(n * math.sqrt(2.0 / n))

    def __call__(self, X, Y):
        out = np.zeros(np.shape(X), F32)
        for kx, ky, ph in zip(self.kx, self.ky, self.ph):
            out += np.sin(kx * X + ky * Y + ph)
        return out * self.a


def _pt_eval(shape, p):
    X = np.array([[p[0]]], F32)
    Y = np.array([[p[1]]], F32)
    return float(shape.f(X, Y)[0, 0])


def _project(shape, p, iters=5):
    """Newton-project a point onto the zero level of an SDF; returns point, outward normal."""
    p = np.asarray(p, float).copy()
    e = 0.02
    nrm = np.array([1.0, 0.0])
    for _ in range(iters):
        X = np.array([[p[0], p[0] + e, p[0]]], F32)
        Y = np.array([[p[1], p[1], p[1] + e]], F32)
        v = shape.f(X, Y)[0].astype(float)
        gr = np.array([(v[1] - v[0]) / e, (v[2] - v[0]) / e])
        gn = np.hypot(*gr)
        if gn < 1e-6 or v[0] > 50:
            return None, None
        nrm = gr / gn
        p = p - v[0] * nrm
        if abs(v[0]) < 1e-3:
            break
    return p, nrm


def _paint(img, w, sdf, val, h):
    cov = np.clip(0.5 - sdf * F32(1.0 / h), 0.0, 1.0)
    sub = img[_sl(w)]
    sub += cov * (val - sub)
    return cov


def _rot(v, a):
    c, s = math.cos(a), math.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _ang(v):
    return math.atan2(v[1], v[0])


# ----------------------------------------------------------------------------- anatomy

FINGER_LEN = {"index": (40.0, 23.5, 17.5), "middle": (45.0, 28.0, 19.0),
              "ring": (42.5, 26.5, 18.5), "little": (33.5, 18.5, 16.0)}


def _W(seg, s, t):
    return seg["P"] + s * seg["d"] + t * seg["n"]


def _finger_params(rng, small_dp=False, acro_p=0.22):
    if small_dp:
        which = rng.choice(["index", "middle", "ring", "little"], p=[0.2, 0.15, 0.25, 0.4])
    else:
        which = rng.choice(["index", "middle", "ring", "little"], p=[0.3, 0.3, 0.25, 0.15])
    sc = rng.uniform(0.86, 1.12) * (0.93 if small_dp else 1.0)
    L = [l * sc * rng.uniform(0.95, 1.05) for l in FINGER_LEN[which]]
    wsc = sc * rng.uniform(0.9, 1.1) * (0.9 if which == "little" else 1.0)
    p = dict(which=str(which), sc=sc, L=L)
    p["wb"] = [4.5 * wsc, 3.75 * wsc, 3.0 * wsc * rng.uniform(0.9, 1.08)]
    p["ws"] = [2.95 * wsc, 2.4 * wsc, 1.35 * wsc * rng.uniform(0.85, 1.1)]
    p["wh"] = [3.3 * wsc, 2.7 * wsc, 0.0]
    p["wt"] = 1.9 * wsc * rng.uniform(0.82, 1.15)
    p["tl"] = rng.uniform(2.8, 4.2) * sc
    p["gap"] = [rng.uniform(0.8, 1.5), rng.uniform(0.7, 1.4), rng.uniform(0.6, 1.3)]
    p["Rmc"] = 6.2 * wsc
    p["mcp"] = math.radians(rng.uniform(-20, 50))
    if rng.random() < 0.4:
        p["pip"] = math.radians(rng.uniform(20, 75))
        p["dip"] = math.radians(rng.uniform(0, 40))
        p["contracture"] = True
    else:
        p["pip"] = math.radians(rng.uniform(-6, 22))
        p["dip"] = math.radians(rng.uniform(-12, 18))
        p["contracture"] = False
    ssc_skin = rng.random() < 0.45
    p["skin"] = rng.uniform(1.4, 2.4) if ssc_skin else rng.uniform(0.8, 1.5)
    atro = rng.uniform(0.55, 1.0) if rng.random() < 0.5 else rng.uniform(0.9, 1.15)
    p["rt"] = [rng.uniform(1.2, 1.7) * wsc, rng.uniform(1.0, 1.4) * wsc]
    p["re"] = rng.uniform(0.35, 0.6)
    p["dd"] = [rng.uniform(2.2, 3.2), rng.uniform(1.9, 2.8)]
    p["dp"] = [max(rng.uniform(3.8, 5.6), 2 * p["rt"][0] + 1.2 + p["skin"] * 0.5),
               max(rng.uniform(3.4, 5.0), 2 * p["rt"][1] + 1.0 + p["skin"] * 0.5)]
    p["pulp"] = max(rng.uniform(3.4, 6.5) * atro, 2.4 + p["skin"] * 0.6)
    p["tip_ext"] = max(rng.uniform(2.6, 5.0) * atro, 1.6 + p["skin"] * 0.3)
    p["nailbed"] = rng.uniform(1.1, 1.9)
    p["rn"] = rng.uniform(0.22, 0.38)
    p["nail_free"] = rng.uniform(-0.8, 1.0)
    p["osteopenia"] = rng.random() < 0.3
    p["acro"] = None
    if rng.random() < acro_p:
        mode = rng.choice(["mild", "moderate", "severe", "pencil"], p=[0.3, 0.35, 0.2, 0.15])
        L3 = L[2]
        cut = {"mild": rng.uniform(0.5, 1.8), "moderate": rng.uniform(1.8, 4.5),
               "severe": rng.uniform(4.5, 0.5 * L3), "pencil": rng.uniform(2.0, 5.0)}[mode]
        p["acro"] = dict(mode=str(mode), cut=cut, amp=rng.uniform(0.15, 0.55),
                         frag=rng.random() < 0.35)
        if mode in ("severe", "pencil"):
            p["tip_ext"] *= 0.75
            p["pulp"] *= 0.8
    return p


class Finger:
    pass


def _build_finger(rng, P0, ang0, p, with_mc=False):
    F = Finger()
    F.p = p
    d = np.array([math.cos(ang0), math.sin(ang0)])
    P = np.asarray(P0, float)
    segs = []
    flex = [0.0, p["pip"], p["dip"]]
    for i, kind in enumerate(["PP", "MP", "DP"]):
        if i == 0:
            facet_r = p["Rmc"] + p["gap"][0]
            facet_c = P - d * facet_r
        else:
            d = _rot(d, -flex[i])
            prev = segs[-1]
            facet_c = prev["H"]
            facet_r = prev["wh"] + p["gap"][i]
            P = prev["H"] + d * facet_r
        n = np.array([-d[1], d[0]])
        L = p["L"][i]
        seg = dict(kind=kind, i=i, P=P.copy(), d=d.copy(), n=n, L=L, wb=p["wb"][i],
                   ws=p["ws"][i], wh=p["wh"][i], facet_c=facet_c, facet_r=facet_r)
        seg["H"] = P + d * (L - p["wh"][i]) if kind != "DP" else None
        segs.append(seg)
    F.segs = segs
    pp, mp, dp = segs
    # ---------------- bones
    bones = []  # (shape, marrow_shape or None, name, density ramp or None)

    def rc_chain(seg, knots, dt=0.0):
        out = []
        for (s0, t0, r0), (s1, t1, r1) in zip(knots[:-1], knots[1:]):
            out.append(RoundCone(_W(seg, s0, t0), _W(seg, s1, t1), max(r0 - dt, 0.05), max(r1 - dt, 0.05)))
        return out

    for seg in segs:
        L, wb, ws, wh = seg["L"], seg["wb"], seg["ws"], seg["wh"]
        dang = _ang(seg["d"])
        delta = rng.uniform(0.45, 0.9)
        ramp = None
        if p["osteopenia"]:
            tm = [0.6, 0.5, 0.45][seg["i"]] * rng.uniform(0.75, 1.2)
            te = rng.uniform(0.18, 0.28)
        else:
            tm = [1.55, 1.3, 0.75][seg["i"]] * rng.uniform(0.8, 1.2)
            te = rng.uniform(0.3, 0.45)
        if seg["kind"] != "DP":
            rb = 0.42 * wb
            bow = rng.uniform(0.05, 0.35) * ws
            plip = rng.uniform(0.1, 0.45)
            bar = ((rb - delta - plip, -(wb - rb), rb * 1.05), (rb - delta, wb - rb, rb))
            knots = [(rb + 0.3, 0.03 * wb, 0.82 * wb), (0.24 * L, 0.06 * ws + 0.5 * bow, 1.06 * ws),
                     (0.5 * L, bow, ws), (L - 2.0 * wh, 0.5 * bow, 0.97 * ws),
                     (L - 1.05 * wh, -0.06 * wh, 0.9 * wh)]
            parts = [RoundCone(_W(seg, *bar[0][:2]), _W(seg, *bar[1][:2]), bar[0][2], bar[1][2])]
            parts += rc_chain(seg, knots) + [Circle(seg["H"], wh)]
            body = Subtract(Union(parts, k=0.8), Circle(seg["facet_c"], seg["facet_r"]), k=0.25)
            # marrow: inner hourglass with thick diaphyseal cortex, thin metaphyseal/subchondral shell
            tks = [1.3 * te, 0.55 * tm, tm, 0.6 * tm, 1.4 * te]
            iknots = [(s, t, r - tk) for (s, t, r), tk in zip(knots, tks)]
            inner = [RoundCone(_W(seg, *bar[0][:2]), _W(seg, *bar[1][:2]), bar[0][2] - te, bar[1][2] - te)]
            inner += rc_chain(seg, iknots) + [Circle(seg["H"], wh - te)]
            marrow = Intersect(Union(inner, k=0.8), Offset(body, -te))
        else:
            rb = 0.45 * wb
            tl = p["tl"]
            base = RoundCone(_W(seg, rb - delta - 0.3, -(wb - rb * 1.1)), _W(seg, rb - delta, wb - rb * 1.2),
                             rb * 1.1, rb * 0.85)
            tub = Circle(_W(seg, 1.7, -(wb * 0.74)), 0.85 * p["sc"])
            knots = [(rb + 0.15, -0.12, 0.8 * wb), (0.3 * L, -0.15, 1.12 * ws), (0.55 * L, -0.15, ws),
                     (L - tl, -0.2, 1.04 * ws)]
            tuft = Perturb(Ellipse(_W(seg, L - tl * 0.55, -0.25), tl * 0.55 + 0.15, p["wt"], dang),
                           SinNoise(rng, 0.6, 2.0, 5), rng.uniform(0.03, 0.1))
            spur = RoundCone(_W(seg, L - tl * 0.7, -0.4), _W(seg, L - 0.25, -p["wt"] * 0.75),
                             0.45 * p["wt"], rng.uniform(0.25, 0.45))
            body = Union([base, tub] + rc_chain(seg, knots) + [tuft, spur], k=0.7)
            ac = p["acro"]
            if ac is not None:
                s_cut = L - ac["cut"]
                if ac["mode"] == "pencil":
                    kn = [(rb + 0.15, -0.12, 0.8 * wb), (0.3 * L, -0.15, 1.05 * ws),
                          (s_cut, -0.2, rng.uniform(0.3, 0.6))]
                    body = Union([base, tub] + rc_chain(seg, kn), k=0.7)
                hp = HalfPlane(_W(seg, s_cut, 0.0), seg["d"], SinNoise(rng, 1.2, 4.0, 6), ac["amp"])
                body = RampPerturb(Intersect(body, hp), SinNoise(rng, 1.5, 5.0, 6), rng.uniform(0.08, 0.25),
                                   seg["P"], seg["d"], s_cut - rng.uniform(3.0, 6.0), s_cut)
                # resorbing end is ill-defined: density fades over the last 1-3 mm
                ramp = (seg["P"], seg["d"], s_cut - rng.uniform(1.0, 3.0), s_cut + 0.3, rng.uniform(0.45, 0.8))
            body = Subtract(body, Circle(seg["facet_c"], seg["facet_r"]), k=0.25)
            tmd = min(tm, 0.9)
            sk = [0, 0.2 * L, 0.5 * L, 0.75 * L, L]
            tk = [te, 0.8 * tmd, tmd, 0.8 * tmd, 0.7 * tmd]
            marrow = AxialOffset(body, seg["P"], seg["d"], sk, tk)
        bones.append((body, marrow, seg["kind"], ramp))
    if with_mc:
        dmc = _rot(pp["d"], p["mcp"])
        c = pp["facet_c"]
        R = p["Rmc"]
        head = Circle(c, R)
        shaft = RoundCone(c, c - dmc * 45.0, R * 0.75, R * 0.55)
        mc = Union([head, shaft], k=2.0)
        marrow = Offset(mc, -rng.uniform(0.7, 1.3))
        bones.append((mc, marrow, "MC", None))
    F.bones = bones
    # ---------------- soft tissue
    parts = []
    for seg in segs[:2]:
        i = seg["i"]
        dd, dpp = p["dd"][i], p["dp"][i]
        toff = (dd - dpp) / 2
        ra = seg["wb"] + (dd + dpp) / 2
        rb = seg["wh"] + 0.95 * (dd + dpp) / 2
        parts.append(RoundCone(_W(seg, -0.5, toff), _W(seg, seg["L"] - seg["wh"] * 0.6, toff * 0.9), ra, rb))
        parts.append(Ellipse(_W(seg, 0.52 * seg["L"], -(seg["ws"] + dpp * 0.5)), 0.36 * seg["L"],
                             dpp * 0.62, _ang(seg["d"])))
    L3 = dp["L"]
    dd3 = p["nailbed"] + 2 * p["rn"]
    ws3 = dp["ws"]
    pul = p["pulp"]
    ra = dp["wb"] + (dd3 + 0.8 + pul * 0.7) / 2
    rt = (2 * ws3 + dd3 + pul) / 2
    tt = (dd3 - pul) / 2
    s_end = max(L3 + p["tip_ext"] - rt, 0.3 * L3)
    rt = max(rt, L3 + p["tip_ext"] - s_end)
    parts.append(RoundCone(_W(dp, -0.5, (dd3 + 0.8 - pul * 0.7) / 2), _W(dp, s_end, tt), ra, rt))
    parts.append(Ellipse(_W(dp, 0.6 * L3, -(ws3 + pul * 0.5)), 0.45 * L3, pul * 0.55, _ang(dp["d"])))
    # proximal continuation (hand / web)
    toff = (p["dd"][0] - p["dp"][0]) / 2
    ra0 = pp["wb"] + (p["dd"][0] + p["dp"][0]) / 2
    dprox = _rot(pp["d"], p["mcp"]) if with_mc else pp["d"]
    a0 = _W(pp, -1.0, toff)
    parts.append(RoundCone(a0, a0 - dprox * 30.0, ra0, ra0 * rng.uniform(1.2, 1.6)))
    F.soft = Union(parts, k=2.2)
    F.soft_parts_noprox = parts[:-1]
    # fragments after acro-osteolysis (inside the pulp, clear of the resorbed tuft)
    ac = p["acro"]
    F.n_frag = 0
    if ac is not None and ac["frag"]:
        s_cut = dp["L"] - ac["cut"]
        nf = int(rng.integers(1, 4))
        s0 = s_cut + rng.uniform(0.4, 1.2)
        dpb = bones[2][0]
        for _ in range(nf):
            a = rng.uniform(0.35, 1.3)
            b = a * rng.uniform(0.45, 1.0)
            c = _W(dp, s0 + a, rng.uniform(-1.2, 0.6))
            if _pt_eval(F.soft, c) > -(p["skin"] + a + 0.4) or _pt_eval(dpb, c) < a + 0.3:
                break
            fr = Perturb(Ellipse(c, a, b, rng.uniform(0, np.pi)), SinNoise(rng, 0.5, 1.5, 4), 0.06 * b)
            bones.append((fr, None, "fragment", None))
            s0 += 2 * a + rng.uniform(0.4, 1.5)
            F.n_frag += 1
    # ---------------- tendons
    rt0, rt1 = p["rt"]
    fl = [(_W(pp, 0.06 * pp["L"], -(pp["wb"] * 0.92 + rt0)), rt0),
          (_W(pp, 0.5 * pp["L"], -(pp["ws"] + rt0 + 0.3)), rt0),
          (_W(pp, pp["L"] - pp["wh"], -(pp["wh"] + rt0 * 0.9 + 0.25)), rt0 * 0.95),
          (_W(mp, 0.12 * mp["L"], -(mp["wb"] * 0.9 + rt1)), rt1),
          (_W(mp, 0.5 * mp["L"], -(mp["ws"] + rt1 + 0.25)), rt1),
          (_W(mp, mp["L"] - mp["wh"], -(mp["wh"] + rt1 * 0.8 + 0.25)), rt1 * 0.85),
          (_W(dp, 1.2, -(dp["wb"] * 0.78 + 0.5)), 0.6)]
    re = p["re"]
    ex = [(_W(pp, 0.05 * pp["L"], pp["wb"] + re + 0.15), re),
          (_W(pp, 0.5 * pp["L"], pp["ws"] + re + 0.35), re),
          (_W(pp, pp["L"] - pp["wh"], pp["wh"] + re + 0.2), re),
          (_W(mp, 0.5 * mp["L"], mp["ws"] + re * 0.8 + 0.3), re * 0.8),
          (_W(mp, mp["L"] - mp["wh"], mp["wh"] + re * 0.7 + 0.2), re * 0.7),
          (_W(dp, 0.8, dp["wb"] * 0.85 + 0.2), 0.3)]
    tparts = []
    for chain in (fl, ex):
        for (a, r1), (b, r2) in zip(chain[:-1], chain[1:]):
            tparts.append(RoundCone(a, b, r1, r2))
    F.tendons = Union(tparts, k=0.6)
    # ---------------- nail
    rn = p["rn"]
    tn = ws3 + p["nailbed"] + rn
    npts = []
    for s_, dep_, rr in ((0.22 * L3, rn + 0.9, rn * 0.8), (0.42 * L3, rn * 1.05, rn), (0.65 * L3, rn, rn),
                         (0.88 * L3, rn, rn), (L3 + p["tip_ext"] * 0.45, rn, rn * 0.95)):
        q, nq = _project(F.soft, _W(dp, s_, tn + 12.0))
        if q is None:
            q, nq = _W(dp, s_, tn + rn), dp["n"]
        npts.append((q - nq * dep_, rr))
    if p["nail_free"] > 0:
        tdir = npts[-1][0] - npts[-2][0]
        tdir = tdir / (np.hypot(*tdir) + 1e-9)
        tdir = _rot(tdir, -rng.uniform(0.0, 0.3))
        npts.append((npts[-1][0] + tdir * p["nail_free"], rn * 0.85))
    F.nail = Union([RoundCone(a, b, r1, r2) for (a, r1), (b, r2) in zip(npts[:-1], npts[1:])], k=0.3)
    # ---------------- joint capsules
    F.caps = [Circle(pp["H"], pp["wh"] + p["gap"][1] + 0.6), Circle(mp["H"], mp["wh"] + p["gap"][2] + 0.5)]
    F.bone_union = Union([b[0] for b in bones], k=0.0)
    F.tip = _W(dp, L3 + p["tip_ext"], tt * 0.5)
    return F


def _chain_coords(F, pts):
    """Nearest segment index and axial coordinate for world points (N, 2)."""
    best_d = np.full(len(pts), np.inf)
    best_i = np.zeros(len(pts), int)
    best_s = np.zeros(len(pts))
    for seg in F.segs:
        rel = pts - seg["P"]
        s = rel @ seg["d"]
        sc = np.clip(s, 0, seg["L"])
        q = seg["P"] + sc[:, None] * seg["d"]
        dist = np.hypot(*(pts - q).T)
        m = dist < best_d
        best_d[m] = dist[m]
        best_i[m] = seg["i"]
        best_s[m] = s[m]
    return best_i, best_s


def _soft_points(F, step=0.6):
    bb = _bbu([c.bb for c in F.soft_parts_noprox])
    xs = np.arange(bb[0], bb[1], step)
    ys = np.arange(bb[2], bb[3], step)
    X, Y = np.meshgrid(xs.astype(F32), ys.astype(F32))
    S = Union(F.soft_parts_noprox, k=2.2).f(X, Y)
    m = S < 0
    return np.stack([X[m], Y[m]], 1).astype(float)


# ----------------------------------------------------------------------------- fields


def _field(rng, nr, nc, sigma):
    """Unit-std Gaussian random field with correlation sigma (px)."""
    if sigma <= 3.0:
        f = ndimage.gaussian_filter(rng.standard_normal((nr, nc)).astype(F32), sigma, truncate=3.0)
    else:
        dn = max(int(sigma / 1.5), 2)
        sr, sc = nr // dn + 3, nc // dn + 3
        s = ndimage.gaussian_filter(rng.standard_normal((sr, sc)).astype(F32), sigma / dn, truncate=3.0)
        f = ndimage.zoom(s, dn, order=1)[:nr, :nc]
    sd = float(f.std()) + 1e-6
    return (f / F32(sd)).astype(F32)


# ----------------------------------------------------------------------------- arteries


def _artery_shapes(rng, F):
    segs = F.segs
    p = F.p
    pts = []
    fr = rng.uniform(0.3, 0.8)
    for seg in segs:
        L = seg["L"]
        if seg["kind"] == "DP":
            ss = [0.1, 0.35, 0.58]
            dpp = p["pulp"]
        else:
            ss = [0.08, 0.3, 0.55, 0.8, 0.97]
            dpp = p["dp"][seg["i"]]
        for s in ss:
            pts.append(_W(seg, s * L, -(seg["ws"] + fr * dpp + rng.uniform(-0.3, 0.3))))
    dp = segs[2]
    # distal arch curving dorsally toward the tuft
    L3 = dp["L"]
    pts.append(_W(dp, 0.72 * L3, -(dp["ws"] + 0.45 * p["pulp"])))
    pts.append(_W(dp, 0.84 * L3, -(dp["ws"] + 0.2 * p["pulp"])))
    pts.append(_W(dp, 0.9 * L3, -(dp["ws"] * 0.4)))
    pts = np.array(pts)
    seglen = np.hypot(*np.diff(pts, axis=0).T)
    arc = np.concatenate([[0], np.cumsum(seglen)])
    st = 0.8
    a = np.arange(0, arc[-1], st)
    cx = np.interp(a, arc, pts[:, 0])
    cy = np.interp(a, arc, pts[:, 1])
    cx = ndimage.gaussian_filter1d(cx, 2.5, mode="nearest")
    cy = ndimage.gaussian_filter1d(cy, 2.5, mode="nearest")
    tx = np.gradient(cx)
    ty = np.gradient(cy)
    tn = np.hypot(tx, ty) + 1e-9
    nx, ny = -ty / tn, tx / tn
    wig = ndimage.gaussian_filter1d(rng.standard_normal(len(a)), rng.uniform(2.5, 7), mode="nearest")
    wig = wig / (wig.std() + 1e-9) * rng.uniform(0.15, 0.6)
    wig2 = ndimage.gaussian_filter1d(rng.standard_normal(len(a)), rng.uniform(10, 25), mode="nearest")
    wig = wig + wig2 / (wig2.std() + 1e-9) * rng.uniform(0.3, 1.4)
    cx, cy = cx + nx * wig, cy + ny * wig
    # only the part from a random proximal start (calcification often distal-predominant)
    N = len(a)
    i0 = int(rng.uniform(0.0, 0.5) * N)
    mode = rng.choice(["segments", "beaded", "tram", "mixed"], p=[0.3, 0.25, 0.25, 0.2])
    kids = []

    def chain(ix, off, r):
        for j0, j1 in zip(ix[:-1], ix[1:]):
            kids.append(RoundCone((cx[j0] + nx[j0] * off, cy[j0] + ny[j0] * off),
                                  (cx[j1] + nx[j1] * off, cy[j1] + ny[j1] * off), r, r))

    def runs(cover, lmin, lmax):
        out = []
        j = i0 + int(rng.integers(0, 6))
        while j < N - 2:
            ln = max(int(rng.uniform(lmin, lmax) / st), 2)
            if rng.random() < cover:
                out.append(np.arange(j, min(j + ln, N)))
            j += ln + int(rng.uniform(1.0, 5.0) / st)
        return out

    rl = rng.uniform(0.45, 0.8)  # lumen radius
    hu = rng.uniform(450, 1600)
    desc = str(mode)
    m = mode
    if m == "mixed":
        m = rng.choice(["segments", "beaded", "tram"])
    if m in ("segments",):
        r = rng.uniform(0.2, 0.5)
        for ix in runs(0.8, 1.0, 6.0):
            chain(ix, 0.0, r * rng.uniform(0.7, 1.3))
    if m == "tram" or mode == "mixed":
        wr = rng.uniform(0.1, 0.22)
        for side in (-1, 1):
            for ix in runs(0.7, 1.5, 8.0):
                chain(ix, side * rl, wr * rng.uniform(0.8, 1.2))
    if m == "beaded" or mode == "mixed":
        gap = rng.uniform(0.9, 2.5)
        j = float(i0)
        while j < N - 1:
            k = int(j)
            if rng.random() < 0.75:
                r = rng.uniform(0.18, 0.5)
                off = rng.uniform(-0.6, 0.6) * rl
                if rng.random() < 0.5:
                    kids.append(Circle((cx[k] + nx[k] * off, cy[k] + ny[k] * off), r))
                else:
                    k2 = min(k + 1, N - 1)
                    kids.append(RoundCone((cx[k] + nx[k] * off, cy[k] + ny[k] * off),
                                          (cx[k2] + nx[k2] * off, cy[k2] + ny[k2] * off), r, r * 0.8))
            j += gap / st * rng.uniform(0.7, 1.3)
    if not kids:
        chain(np.arange(i0, min(i0 + 6, N)), 0.0, 0.3)
    return Union(kids, k=0.0), hu, desc


# ----------------------------------------------------------------------------- deposits


def _dep_shape(rng, kind, c, ang, F, bones, size=None):
    """Return (shape, info) for a deposit of the given kind centred at c."""
    c = np.asarray(c, float)
    if kind == "speck":
        A = size if size is not None else rng.uniform(0.1, 1.0)
        q = rng.uniform(1.0, 1.6)
        r = math.sqrt(A / math.pi)
        return Ellipse(c, r * math.sqrt(q), r / math.sqrt(q), ang), r
    if kind in ("nodule", "rim"):
        a = size if size is not None else math.exp(rng.uniform(math.log(0.6), math.log(3.2)))
        b = a * rng.uniform(0.5, 1.0)
        amp = rng.uniform(0.03, 0.14) * b if kind == "nodule" else 0.04 * b
        sh = Perturb(Ellipse(c, a, b, ang), SinNoise(rng, max(b, 0.6), 3 * a + 1, 5), amp)
        return sh, a
    if kind == "conglom":
        R = size if size is not None else (rng.uniform(1.5, 4.5) if rng.random() < 0.85 else rng.uniform(4.5, 6.5))
        nl = int(rng.integers(3, 9))
        lobes = []
        pos = np.zeros(2)
        for j in range(nl):
            r = rng.uniform(0.25, 0.55) * R
            if j > 0:
                dirn = _rot(np.array([1.0, 0.0]), rng.uniform(0, 2 * np.pi))
                pos = pos + dirn * r * rng.uniform(0.6, 1.2)
                if np.hypot(*pos) > R:
                    pos *= R / np.hypot(*pos) * 0.8
            lobes.append(Circle(c + _rot(pos * [1.0, rng.uniform(0.6, 1.0)], ang), r))
        sh = Perturb(Union(lobes, k=rng.uniform(0.2, 0.7)), SinNoise(rng, 0.6, 2.5, 5), rng.uniform(0.05, 0.15))
        return sh, R
    raise ValueError(kind)


def _dep_value(rng, kind, dens):
    """HU parameters of a deposit."""
    if dens == "faint":
        hu = rng.uniform(250, 500)
    elif dens == "dense":
        hu = rng.uniform(1300, 2500)
    else:
        hu = rng.uniform(550, 1400)
    v = dict(hu=hu, mot=rng.uniform(0.04, 0.2), coarse=0.0, rim=None, centre=0.0)
    if dens == "faint":
        v["mot"] = rng.uniform(0.15, 0.35)
        v["coarse"] = rng.uniform(0.1, 0.3)
    if kind == "rim":
        v["hu"] = rng.uniform(250, 600)
        v["rim"] = (rng.uniform(0.25, 0.7), rng.uniform(900, 2100))
    elif kind in ("nodule", "conglom") and dens != "faint" and rng.random() < 0.5:
        v["centre"] = rng.uniform(0.1, 0.6) * hu
    return v


# ----------------------------------------------------------------------------- case


def make_case(seed: int) -> dict:
    rng = np.random.default_rng(int(seed))
    notes = []
    # ---------------- scenario
    view = str(rng.choice(["tip", "finger", "distal"], p=[0.40, 0.50, 0.10]))
    cut_mode = None
    if view == "finger" and rng.random() < 0.25:
        cut_mode = str(rng.choice(["mc", "crop"]))
    acro_p = 0.55 if view == "tip" else 0.22
    fp = _finger_params(rng, small_dp=(view == "tip" and rng.random() < 0.6), acro_p=acro_p)
    F = _build_finger(rng, (0.0, 0.0), 0.0, fp, with_mc=(cut_mode == "mc"))
    pp, mp, dp = F.segs
    # ---------------- field of view
    pts = _soft_points(F)
    ci, cs = _chain_coords(F, pts)
    tip_wide = False
    if view == "tip":
        u_ = rng.random()
        if u_ < 0.27:
            jc, sp_ = 1, mp["L"] - mp["wh"] * rng.uniform(0.2, 1.3)
            vname = "fingertip (DP only)"
            h = rng.uniform(0.10, 0.22)
        elif u_ < 0.75:
            jc, sp_ = 1, mp["L"] * rng.uniform(0.0, 0.7)
            vname = "fingertip (DP+MP)"
            h = rng.uniform(0.10, 0.22)
        else:
            jc, sp_ = 0, -rng.uniform(1.0, 3.0)
            vname = "fingertip-weighted whole finger (fine spacing)"
            h = rng.uniform(0.10, 0.16)
            tip_wide = True
    elif view == "distal":
        jc, sp_ = 0, pp["L"] * rng.uniform(0.55, 0.9)
        vname = "distal half (MP+DP)"
        h = rng.uniform(0.12, 0.30)
    else:
        jc, sp_ = 0, -rng.uniform(1.0, 4.0)
        if cut_mode == "mc":
            sp_ = -rng.uniform(8.0, 16.0)
        vname = "whole finger"
        h = rng.uniform(0.15, 0.45)
    keep = (ci > jc) | ((ci == jc) & (cs >= sp_))
    kp = pts[keep]
    if cut_mode == "mc":
        # metacarpal head region: include points proximal of PP base
        ext = pp["P"][None, :] - np.outer(np.linspace(0, -sp_, 12), _rot(pp["d"], fp["mcp"]))
        kp = np.concatenate([kp, ext + pp["n"] * 4.0, ext - pp["n"] * 4.0])
    th = rng.uniform(0, 2 * np.pi)
    mir = 1.0 if rng.random() < 0.5 else -1.0
    eu = np.array([math.cos(th), math.sin(th)])
    ev_ = mir * np.array([-math.sin(th), math.cos(th)])
    u = kp @ eu
    w = kp @ ev_
    mg = rng.uniform(1.0, 6.0, 4)
    if view == "tip":
        mg = rng.uniform(1.0, 4.0, 4)
    u0, u1 = u.min() - mg[0], u.max() + mg[1]
    w0, w1 = w.min() - mg[2], w.max() + mg[3]
    if cut_mode == "crop":
        side = int(rng.integers(0, 4))
        frac = rng.uniform(0.08, 0.3)
        if side == 0:
            u0 += frac * (u1 - u0)
        elif side == 1:
            u1 -= frac * (u1 - u0)
        elif side == 2:
            w0 += frac * (w1 - w0)
        else:
            w1 -= frac * (w1 - w0)
    ext_max = max(u1 - u0, w1 - w0)
    if ext_max / h > 600:
        h = min(ext_max / 598.0, 0.2 if tip_wide else 0.45)
    h = float(round(h, 4))
    nc = int(math.ceil((u1 - u0) / h))
    nr = int(math.ceil((w1 - w0) / h))
    if nc > 600:
        d_ = (nc - 600) * h
        u0 += d_ * rng.uniform(0.3, 0.7)
        nc = 600
    if nr > 600:
        d_ = (nr - 600) * h
        w0 += d_ * rng.uniform(0.3, 0.7)
        nr = 600
    if nc < 160:
        u0 -= (160 - nc) * h * rng.uniform(0.2, 0.8)
        nc = 160
    if nr < 160:
        w0 -= (160 - nr) * h * rng.uniform(0.2, 0.8)
        nr = 160
    o = u0 * eu + w0 * ev_ + 0.5 * h * (eu + ev_)
    g = Grid(o, eu * h, ev_ * h, nr, nc)
    notes.append(f"{vname}, {fp['which']} finger, spacing {h:.3f} mm, {nr}x{nc} px, rot {math.degrees(th):.0f} deg"
                 + (" mirrored" if mir < 0 else ""))
    full = (0, nr, 0, nc)
    X, Y = g.coords(full)
    # ---------------- global texture fields
    fine = _field(rng, nr, nc, max(0.6, 0.12 / h))
    coarse = _field(rng, nr, nc, 0.6 / h)
    sfield = _field(rng, nr, nc, 0.3 / h)
    img = np.full((nr, nc), F32(-1000.0), F32)
    img += F32(rng.uniform(-15, 15))
    bone_sdf = np.full((nr, nc), BIG, F32)
    occ = np.zeros((nr, nc), bool)
    all_bones = list(F.bones)
    # HU parameters of the patient
    if fp["osteopenia"]:
        hu_cort, hu_marrow = rng.uniform(650, 1100), rng.uniform(30, 180)
    else:
        hu_cort, hu_marrow = rng.uniform(1050, 1900), rng.uniform(160, 420)
    hu_fat = rng.uniform(-115, -55)
    hu_septa = rng.uniform(10, 60)
    hu_skin = rng.uniform(35, 95)
    hu_tendon = rng.uniform(70, 115)
    hu_cart = rng.uniform(60, 100)
    hu_nail = rng.uniform(110, 300)
    septa = np.exp(-(sfield / F32(0.25)) ** 2)
    subcut_val = F32(hu_fat) + (F32(hu_septa - hu_fat) * rng.uniform(0.2, 0.5)) * septa + F32(8.0) * fine

    # ---------------- table / cushion (under the palmar or dorsal side)
    table = None
    if rng.random() < 0.28:
        side = -1.0 if rng.random() < 0.7 else 1.0
        axis = F.tip - pp["P"]
        axis = axis / np.hypot(*axis)
        tang = _rot(axis, math.radians(rng.uniform(-10, 10)))
        nrm = np.array([-tang[1], tang[0]]) * side  # points away from table towards finger side
        pr = pts @ nrm
        gap = rng.uniform(0.0, 8.0)
        lvl = pr.min() - gap  # table surface level along nrm
        table = (nrm, lvl, gap)
        dist = (X * F32(nrm[0]) + Y * F32(nrm[1])) - F32(lvl)  # >0 finger side
        if gap > 1.0 and rng.random() < 0.6:  # foam cushion
            cush = np.clip(0.5 + dist / h, 0, 1) * np.clip(0.5 - (dist - F32(gap + 2.0)) / h, 0, 1)
            img += cush * (F32(rng.uniform(-900, -750)) + 15 * coarse - img)
        tthk = rng.uniform(4.0, 12.0)
        skin_t = rng.uniform(0.6, 1.2)
        core = np.clip(0.5 - dist / h, 0, 1) * np.clip(0.5 + (dist + F32(tthk)) / h, 0, 1)
        img += core * (F32(rng.uniform(-750, -350)) - img)
        for lv in (0.0, -tthk + skin_t):
            lay = np.clip(0.5 - (dist - F32(lv)) / h, 0, 1) * np.clip(0.5 + (dist - F32(lv) + F32(skin_t)) / h, 0, 1)
            img += lay * (F32(rng.uniform(150, 450)) - img)
        notes.append("table")

    # ---------------- neighbour finger
    nb = None
    if rng.random() < 0.22:
        for _try in range(12):
            p2 = _finger_params(rng, acro_p=0.1)
            ang2 = rng.uniform(-0.9, 0.9) + (np.pi if rng.random() < 0.3 else 0.0)
            edge = int(rng.integers(0, 4))
            t_ = rng.uniform(0.15, 0.85)
            # anchor on the image edge (world) and outward normal
            if edge == 0:
                A = g.world(-0.5, t_ * nc); on = -ev_
            elif edge == 1:
                A = g.world(nr - 0.5, t_ * nc); on = ev_
            elif edge == 2:
                A = g.world(t_ * nr, -0.5); on = -eu
            else:
                A = g.world(t_ * nr, nc - 0.5); on = eu
            F2 = _build_finger(rng, (0.0, 0.0), ang2, p2)
            segc = F2.segs[int(rng.integers(0, 3))]
            anchor = _W(segc, 0.5 * segc["L"], 0.0)
            shift = A + on * rng.uniform(-4.0, 6.0) - anchor
            F2 = _build_finger(np.random.default_rng(int(rng.integers(1 << 30))), shift, ang2, p2)
            gc = Grid(g.o, g.ex * 4, g.ey * 4, (nr + 3) // 4, (nc + 3) // 4)
            m1 = F.soft.ev(gc, (0, gc.nr, 0, gc.nc)) < 1.0
            m2 = F2.soft.ev(gc, (0, gc.nr, 0, gc.nc)) < 1.0
            if table is not None:
                nrm, lvl, gap_ = table
                Xc, Yc = gc.coords((0, gc.nr, 0, gc.nc))
                m1 = m1 | ((Xc * nrm[0] + Yc * nrm[1]) < lvl + gap_)
            frac = m2.mean()
            if not (m1 & m2).any() and 0.03 < frac < 0.35:
                nb = F2
                break
    def render_finger(Fx, main):
        wsoft = g.window(Fx.soft.bb, PAD)
        if wsoft is None:
            return None
        S = Fx.soft.ev(g, wsoft)
        _paint(img, wsoft, S, F32(hu_skin) + 6 * fine[_sl(wsoft)], h)
        _paint(img, wsoft, S + F32(Fx.p["skin"]), subcut_val[_sl(wsoft)], h)
        for cap in Fx.caps:
            wc = g.window(cap.bb, 1.0)
            if wc is not None:
                _paint(img, wc, cap.ev(g, wc), F32(hu_cart) + 5 * fine[_sl(wc)], h)
        wt = g.window(Fx.tendons.bb, 1.0)
        if wt is not None:
            _paint(img, wt, Fx.tendons.ev(g, wt), F32(hu_tendon) + 6 * fine[_sl(wt)], h)
        wn = g.window(Fx.nail.bb, 1.0)
        nail_mask = None
        if wn is not None:
            sn = Fx.nail.ev(g, wn)
            _paint(img, wn, sn, F32(hu_nail) + 15 * fine[_sl(wn)], h)
            nail_mask = (wn, sn < h)
        for body, marrow, name, ramp in Fx.bones:
            wb = g.window(body.bb, 1.0)
            if wb is None:
                continue
            sb = body.ev(g, wb)
            bsl = _sl(wb)
            bone_sdf[bsl] = np.minimum(bone_sdf[bsl], sb)
            fac = F32(1.0)
            if ramp is not None:
                Xb, Yb = X[bsl], Y[bsl]
                sax = (Xb - F32(ramp[0][0])) * F32(ramp[1][0]) + (Yb - F32(ramp[0][1])) * F32(ramp[1][1])
                fac = 1.0 - F32(1.0 - ramp[4]) * np.clip((sax - F32(ramp[2])) / F32(ramp[3] - ramp[2]), 0, 1)
            if name == "fragment":
                _paint(img, wb, sb, F32(hu_cort * rng.uniform(0.5, 0.9)) + 40 * fine[bsl], h)
                continue
            _paint(img, wb, sb, (F32(hu_cort) + F32(0.05 * hu_cort) * fine[bsl]) * fac, h)
            if marrow is not None:
                sm = marrow.ev(g, wb)
                tex = F32(hu_marrow) + F32(rng.uniform(50, 140)) * np.tanh(1.5 * fine[bsl]) + 20 * coarse[bsl]
                _paint(img, wb, sm, tex * fac, h)
        return wsoft, S, nail_mask

    if nb is not None:
        render_finger(nb, False)
        all_bones += nb.bones
        notes.append("neighbour finger")
    wsoft, S, nail_mask = render_finger(F, True)
    S_full = np.full((nr, nc), BIG, F32)
    S_full[_sl(wsoft)] = S
    if _DEBUG is not None:
        _DEBUG["soft"] = S_full < 0
        _DEBUG["img_clean"] = img
    if nail_mask is not None:
        occ[_sl(nail_mask[0])] |= nail_mask[1]
    bone_union = Union([b[0] for b in all_bones], k=0.0)
    bone = bone_sdf < 0
    if fp["osteopenia"]:
        notes.append("osteopenia")
    if fp["contracture"]:
        notes.append(f"flexion PIP {math.degrees(fp['pip']):.0f} DIP {math.degrees(fp['dip']):.0f} deg")
    if fp["acro"] is not None:
        notes.append(f"acro-osteolysis {fp['acro']['mode']}" + (f" +{F.n_frag} fragment(s)" if F.n_frag else ""))

    # ---------------- splint (moulded plate along the dorsal or palmar side, foam padding)
    streak_src = []
    if rng.random() < 0.10:
        side = 1.0 if rng.random() < 0.6 else -1.0
        thk = rng.uniform(1.2, 3.0)
        gp = rng.uniform(0.0, 2.5)
        first = 0 if rng.random() < 0.6 else 1
        knots = []
        for seg in F.segs[first:]:
            for fr_ in (0.1, 0.9):
                q, nq = _project(F.soft, _W(seg, fr_ * seg["L"], side * 16.0))
                if q is not None:
                    knots.append((q, nq))
        if len(knots) >= 3:
            ext = rng.uniform(1.0, 6.0)
            q0, n0 = knots[-1]
            tdir = knots[-1][0] - knots[-2][0]
            tdir = tdir / (np.hypot(*tdir) + 1e-9)
            knots.append((q0 + tdir * ext, n0))
            pl = [RoundCone(a[0] + a[1] * (gp + thk / 2), b[0] + b[1] * (gp + thk / 2), thk / 2, thk / 2)
                  for a, b in zip(knots[:-1], knots[1:])]
            plate = Subtract(Union(pl, k=3.0), Offset(F.soft, gp * 0.5 + 0.1))
            wsp = g.window(plate.bb, 1.0)
            if wsp is not None:
                alu = rng.random() < 0.3
                if gp > 0.6:  # foam padding between plate and skin
                    pads = [RoundCone(a[0] + a[1] * (gp / 2), b[0] + b[1] * (gp / 2), gp / 2 + 0.2, gp / 2 + 0.2)
                            for a, b in zip(knots[:-1], knots[1:])]
                    pad = Subtract(Union(pads, k=1.0), F.soft)
                    wpd = g.window(pad.bb, 1.0)
                    if wpd is not None:
                        _paint(img, wpd, pad.ev(g, wpd), F32(rng.uniform(-850, -500)) + 20 * coarse[_sl(wpd)], h)
                ssp = plate.ev(g, wsp)
                val = F32(rng.uniform(1800, 2600) if alu else rng.uniform(60, 220)) + 10 * fine[_sl(wsp)]
                _paint(img, wsp, ssp, val, h)
                occ[_sl(wsp)] |= ssp < h
                if alu:
                    for q, nq in knots[1:-1:2]:
                        streak_src.append((q + nq * (gp + thk / 2), rng.uniform(20, 60)))
                notes.append("aluminium splint" if alu else "plastic splint")

    # ---------------- calcified arteries
    if rng.random() < (0.45 if view != "tip" else 0.42):
        n_art = 2 if rng.random() < 0.3 else 1
        descs = []
        for _ in range(n_art):
            ash, ahu, adesc = _artery_shapes(rng, F)
            ash = Intersect(Subtract(ash, Offset(bone_union, 0.35)), Offset(F.soft, -0.3))
            wa = g.window(ash.bb, 1.0)
            if wa is None:
                continue
            sa = ash.ev(g, wa)
            if not (sa < 0).any():
                continue
            val = F32(ahu) * (1 + 0.1 * fine[_sl(wa)] + 0.22 * coarse[_sl(wa)])
            _paint(img, wa, sa, val, h)
            occ[_sl(wa)] |= ndimage.binary_dilation(sa < h, iterations=2)
            descs.append(adesc)
        if descs:
            notes.append("calcified digital artery (" + ", ".join(descs) + ")")

    # ---------------- ring
    if cut_mode != "crop" and view == "finger" and rng.random() < 0.15:
        s_r = pp["L"] * rng.uniform(0.25, 0.6)
        thr = rng.uniform(0.7, 1.2)
        wid = rng.uniform(1.0, 2.2)
        hu_r = rng.uniform(2600, 3500)
        rs = []
        for sgn in (1, -1):
            q0 = _W(pp, s_r, sgn * 12.0)
            q, nq = _project(F.soft, q0)
            if q is None:
                continue
            c = q + nq * thr * 0.8
            rs.append(Ellipse(c, wid, thr, _ang(pp["d"])))
            streak_src.append((c, rng.uniform(40, 120)))
        if len(rs) == 2:
            ring = Union(rs)
            wr = g.window(ring.bb, 1.0)
            if wr is not None:
                sr = ring.ev(g, wr)
                _paint(img, wr, sr, F32(hu_r), h)
                occ[_sl(wr)] |= ndimage.binary_dilation(sr < h, iterations=2)
                streak_src.append(("band", rs[0].c, rs[1].c))
                notes.append("metal ring")

    # ---------------- deposits
    labels = np.zeros((nr, nc), np.int32)
    areas, seeds, dep_render, dep_desc = [], [], [], []
    if rng.random() < 0.10:
        n_target = 0
    else:
        n_target = int(rng.choice(np.arange(1, 10), p=np.array([22, 20, 16, 12, 10, 8, 5, 4, 3]) / 100.0))
    if view == "tip":
        sites, sw = ["pulp", "tuft", "shaft", "joint", "subcut", "soft"], [0.44, 0.22, 0.14, 0.08, 0.08, 0.04]
    else:
        sites, sw = ["pulp", "tuft", "shaft", "joint", "subcut", "soft"], [0.24, 0.10, 0.26, 0.14, 0.14, 0.12]
    vis_segs = [s for s in F.segs if g.window((_W(s, 0.5 * s["L"], 0)[0],) * 2 + (_W(s, 0.5 * s["L"], 0)[1],) * 2) is not None
                or s["kind"] == "DP"]
    subh = min(h / 3.0, 0.035)

    def sub_factor(w):
        f = int(math.ceil(h / subh))
        npx = (w[1] - w[0]) * (w[3] - w[2])
        while f > 2 and npx * f * f > 150_000:
            f -= 1
        return f

    def try_accept(shape, info):
        wt_ = g.window(shape.bb, 0.0)
        if wt_ is None or wt_[0] < 2 or wt_[2] < 2 or wt_[1] > nr - 2 or wt_[3] > nc - 2:
            return False
        wp = g.window(shape.bb, 2 * h + 0.6)
        raw = shape.ev(g, wp)
        Bw = bone_sdf[_sl(wp)]
        sd = np.maximum(raw, -Bw)
        mask = sd < 0
        if not mask.any():
            k = np.unravel_index(np.argmin(sd), sd.shape)
            if sd[k] > 0.75 * h:
                return False
            mask = np.zeros_like(mask)
            mask[k] = True
        if (occ[_sl(wp)] & mask).any() or (labels[_sl(wp)][mask] != 0).any():
            return False
        if S_full[_sl(wp)][mask].max() > -0.15:
            return False
        if bone[_sl(wp)][mask].any():
            return False
        # true area on a sub-pixel grid of the tight window (bone clipped where near)
        ws_ = _wand((wt_[0] - 1, wt_[1] + 1, wt_[2] - 1, wt_[3] + 1), (0, nr, 0, nc))
        f = sub_factor(ws_)
        sg = g.sub(ws_, f)
        fw = (0, sg.nr, 0, sg.nc)
        rin = shape.ev(sg, fw) < 0
        a_raw = int(rin.sum())
        if a_raw == 0:
            return False
        if float(bone_sdf[_sl(ws_)].min()) < 2.0 * h + 0.05:
            cin = rin & (bone_union.ev(sg, fw) >= 0)
            a_clip = int(cin.sum())
        else:
            a_clip = a_raw
        if a_clip < 0.4 * a_raw or a_clip * (h / f) ** 2 < 0.1:
            return False
        kidx = len(areas) + 1
        lab = labels[_sl(wp)]
        lab[mask] = kidx
        occ[_sl(wp)] |= ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool))
        areas.append(float(a_clip) * (h / f) ** 2)
        dep_render.append((wp, sd, raw, mask, info))
        return True

    def min_bone_dist(shape):
        wp = g.window(shape.bb, 0.3)
        if wp is None:
            return None
        f = max(int(math.ceil(h / 0.05)), 1)
        npx = (wp[1] - wp[0]) * (wp[3] - wp[2])
        while f > 1 and npx * f * f > 120_000:
            f -= 1
        sg = g.sub(wp, f)
        fw = (0, sg.nr, 0, sg.nc)
        rin = shape.ev(sg, fw) < 0
        if not rin.any():
            return None
        return float(bone_union.ev(sg, fw)[rin].min())

    def pick_kind(site):
        if site == "subcut":
            return str(rng.choice(["plaque", "speck", "nodule"], p=[0.6, 0.2, 0.2]))
        if site == "shaft":
            return str(rng.choice(["nodule", "conglom", "sheet", "speck", "rim"], p=[0.3, 0.2, 0.22, 0.18, 0.1]))
        return str(rng.choice(["speck", "nodule", "conglom", "rim"], p=[0.3, 0.35, 0.23, 0.12]))

    def pick_dens(kind):
        if kind == "sheet":
            return str(rng.choice(["faint", "normal"], p=[0.6, 0.4]))
        return str(rng.choice(["faint", "normal", "dense"], p=[0.18, 0.45, 0.37]))

    def soft_point(seg):
        """random point inside the soft tissue of a segment (world)."""
        for _ in range(12):
            s = rng.uniform(0.05, 1.0) * seg["L"]
            t = rng.uniform(-seg["ws"] - 6, seg["ws"] + 3)
            q = _W(seg, s, t)
            if S_full is not None:
                r_, c_ = g.idx(q[0], q[1])
                r_, c_ = int(round(float(r_))), int(round(float(c_)))
                if 0 <= r_ < nr and 0 <= c_ < nc and S_full[r_, c_] < -0.8 and bone_sdf[r_, c_] > 0.5:
                    return q
        return None

    n_made = 0
    attempts = 0
    while n_made < n_target and attempts < n_target * 30:
        attempts += 1
        site = str(rng.choice(sites, p=sw))
        kind = pick_kind(site)
        dens = pick_dens(kind)
        ang = rng.uniform(0, np.pi)
        gap_t = None
        c = None
        shape = None
        seg = None
        if site == "pulp":
            c = _W(dp, rng.uniform(0.35, 1.0) * dp["L"] + rng.uniform(0, max(fp["tip_ext"] - 1.5, 0.1)),
                   -(dp["ws"] + rng.uniform(0.3, 0.95) * fp["pulp"]))
            ang = _ang(dp["d"]) + rng.uniform(-0.6, 0.6)
        elif site in ("tuft", "shaft"):
            if site == "tuft":
                seg = dp
                phi = rng.uniform(-2.0, 1.6)
                ctr = _W(dp, dp["L"] - fp["tl"] * 0.6 - (fp["acro"]["cut"] if fp["acro"] else 0.0), -0.3)
                q0 = ctr + _rot(dp["d"], phi) * 4.0
            else:
                cand = [s for s in vis_segs]
                seg = cand[int(rng.integers(0, len(cand)))]
                side = -1.0 if rng.random() < 0.65 else 1.0
                q0 = _W(seg, rng.uniform(0.15, 0.9) * seg["L"], side * (seg["ws"] + 3.0))
            q, nq = _project(F.bone_union, q0)
            if q is None:
                continue
            gap_t = -rng.uniform(0.1, 0.45) if rng.random() < 0.5 else rng.uniform(0.2, 1.0)
            ang = _ang(nq) + np.pi / 2 + rng.uniform(-0.4, 0.4)
            if kind == "sheet":
                th_ = rng.uniform(0.3, 1.0)
                g0 = max(gap_t, 0.15) if gap_t > 0 else rng.uniform(0.15, 0.5)
                Ls = rng.uniform(3.0, 12.0)
                tg = np.array([-nq[1], nq[0]])
                shape = Perturb(TaperBand(F.bone_union, g0 + th_ / 2, th_ / 2, q, tg, Ls / 2),
                                SinNoise(rng, 1.0, 4.0, 5), 0.12 * th_)
                gap_t = None
            else:
                c = q + nq * 1.5
        elif site == "joint":
            seg = mp if (rng.random() < 0.6 or view == "tip") else pp
            phi = rng.choice([-1.0, 1.0]) * rng.uniform(0.9, 2.2)
            c = seg["H"] + _rot(seg["d"], phi) * (seg["wh"] + fp["gap"][seg["i"] + 1] + rng.uniform(1.0, 3.0))
        elif site == "subcut":
            seg = vis_segs[int(rng.integers(0, len(vis_segs)))]
            side = -1.0 if rng.random() < 0.6 else 1.0
            q0 = _W(seg, rng.uniform(0.1, 1.0) * seg["L"], side * 15.0)
            q, nq = _project(F.soft, q0)
            if q is None:
                continue
            depth = fp["skin"] * rng.uniform(0.2, 0.9) + 0.25
            if kind == "plaque":
                th_ = rng.uniform(0.35, 1.5)
                Lp = rng.uniform(2.5, 12.0)
                tg = np.array([-nq[1], nq[0]])
                shape = Perturb(TaperBand(F.soft, -(depth + th_ / 2), th_ / 2, q, tg, Lp / 2),
                                SinNoise(rng, 0.8, 4.0, 5), 0.15 * th_)
            else:
                c = q - nq * (depth + 1.0)
        else:
            seg = vis_segs[int(rng.integers(0, len(vis_segs)))]
            c = soft_point(seg)
            if c is None:
                continue
        if shape is None:
            if kind in ("plaque", "sheet"):
                kind = "nodule"
            shape, _ = _dep_shape(rng, kind, c, ang, F, bone_union)
        # gap targeting towards the cortex
        if gap_t is not None and c is not None:
            ok = True
            for _ in range(3):
                dm = min_bone_dist(shape)
                if dm is None:
                    ok = False
                    break
                if abs(dm - gap_t) < 0.04:
                    break
                c = c + nq * (gap_t - dm)
                rs = np.random.default_rng(int(rng.integers(1 << 30)))
                shape, _ = _dep_shape(rs, kind, c, ang, F, bone_union)
            if not ok:
                continue
        val = _dep_value(rng, kind, dens)
        info = dict(kind=kind, dens=dens, site=site, val=val)
        if not try_accept(shape, info):
            continue
        n_made += 1
        dep_desc.append(f"{site}:{kind}/{dens}" + (f"(gap {gap_t:.2f})" if gap_t is not None else ""))
        # clustered specks around this one
        if kind == "speck" and rng.random() < 0.5:
            for _ in range(int(rng.integers(1, 6))):
                c2 = c + _rot(np.array([1.0, 0.0]), rng.uniform(0, 2 * np.pi)) * rng.uniform(0.8, 3.0)
                sh2, _ = _dep_shape(rng, "speck", c2, rng.uniform(0, np.pi), F, bone_union)
                if try_accept(sh2, dict(kind="speck", dens=dens, site=site, val=_dep_value(rng, "speck", dens))):
                    dep_desc.append(f"{site}:speck/{dens}")

    # render deposits + seeds
    sig = rng.uniform(0.2, 0.6) / 2.3548 / h  # PSF sigma in px (also used for the image)
    fwhm = sig * 2.3548 * h
    for k, (wp, sd, raw, mask, info) in enumerate(dep_render):
        v = info["val"]
        sl = _sl(wp)
        val = F32(v["hu"]) * (1 + F32(v["mot"]) * fine[sl] + F32(v["coarse"]) * coarse[sl])
        if v["centre"] > 0:
            val = val + F32(v["centre"]) * np.clip(-raw / F32(1.5), 0, 1)
        if v["rim"] is not None:
            rt_, rhu = v["rim"]
            wgt = np.clip((raw + F32(rt_)) / F32(h) + 0.5, 0, 1)
            val = val * (1 - wgt) + F32(rhu) * wgt
        cov = _paint(img, wp, sd, val, h)
        layer = cov * val
        lb = ndimage.gaussian_filter(layer, sig, mode="constant", truncate=3.0)
        m2 = ndimage.binary_erosion(mask)
        if not m2.any():
            m2 = mask
        sc = np.where(m2, lb, -np.inf)
        r_, c_ = np.unravel_index(int(np.argmax(sc)), sc.shape)
        seeds.append((int(r_ + wp[0]), int(c_ + wp[2])))
        if (k == 0 or rng.random() < 0.3) and v["hu"] > 1500:
            streak_src.append((g.world(*seeds[-1]), rng.uniform(15, 50)))
    n = len(areas)

    # ---------------- acquisition
    blur = ndimage.gaussian_filter(img, sig, truncate=3.0)
    sharp = rng.random() < 0.5
    if sharp:
        kk = rng.uniform(0.3, 1.0)
        so = rng.uniform(0.25, 0.6) / h
        blur = blur + F32(kk) * (blur - ndimage.gaussian_filter(blur, so, truncate=2.5))
    # streaks / beam hardening
    streaky = bool(streak_src) and (rng.random() < 0.18 or any(isinstance(s[0], str) for s in streak_src))
    if not streaky and rng.random() < 0.18:
        ys, xs = np.nonzero(bone)
        if len(ys):
            for _ in range(int(rng.integers(1, 3))):
                j = int(rng.integers(0, len(ys)))
                streak_src.append((g.world(ys[j], xs[j]), rng.uniform(20, 70)))
            streaky = True
    if streaky:
        for src in streak_src:
            if isinstance(src[0], str):
                a_, b_ = np.array(src[1]), np.array(src[2])
                dv = b_ - a_
                Ld = np.hypot(*dv)
                dv = dv / Ld
                par = (X - F32(a_[0])) * F32(dv[0]) + (Y - F32(a_[1])) * F32(dv[1])
                per = -(X - F32(a_[0])) * F32(dv[1]) + (Y - F32(a_[1])) * F32(dv[0])
                wdt = rng.uniform(1.0, 3.0)
                prof = np.exp(-(per / F32(wdt)) ** 2) * np.clip(np.minimum(par, Ld - par) / 1.0, 0, 1)
                blur -= F32(rng.uniform(40, 120)) * prof
                continue
            c, amp = src
            for _ in range(int(rng.integers(2, 6))):
                a = rng.uniform(0, np.pi)
                dx, dy = math.cos(a), math.sin(a)
                rx = X - F32(c[0])
                ry = Y - F32(c[1])
                per = rx * F32(-dy) + ry * F32(dx)
                par = rx * F32(dx) + ry * F32(dy)
                wdt = rng.uniform(0.25, 0.9)
                Ld = rng.uniform(8, 40)
                sgn = 1.0 if rng.random() < 0.45 else -1.0
                blur += F32(sgn * amp) * np.exp(-(per / F32(wdt)) ** 2 - np.abs(par) / F32(Ld))
        notes.append("streak artefacts")
    # correlated noise
    nsd = math.exp(rng.uniform(math.log(6), math.log(50)))
    ns = max(0.45, (rng.uniform(0.08, 0.18) if sharp else rng.uniform(0.12, 0.3)) / h)
    noise = _field(rng, nr, nc, ns)
    noise *= F32(nsd)
    hu = blur + noise
    export = ""
    if rng.random() < 0.25:
        v8 = np.clip(np.round((hu + 300.0) / 1500.0 * 255.0), 0, 255)
        if rng.random() < 0.5:
            q = int(rng.integers(35, 91))
            v8 = _jpeg_like(v8, q)
            export = f", 8-bit W1500/L450 JPEG-like q{q}"
        else:
            export = ", 8-bit W1500/L450"
        hu = (v8.astype(F32) / F32(255.0) * F32(1500.0) - F32(300.0)).astype(F32)
    notes.append(f"PSF {fwhm:.2f} mm FWHM{' sharp kernel' if sharp else ''}, noise {nsd:.0f} HU{export}")
    notes.insert(1, f"{n} deposit(s)" + (": " + ", ".join(dep_desc) if dep_desc else ""))
    cutb = bone[0, :].any() or bone[-1, :].any() or bone[:, 0].any() or bone[:, -1].any()
    if cutb:
        notes.append("bone cut by border")
    return dict(hu=hu.astype(F32), spacing_mm=float(h), bone=bone, deposits=labels,
                areas_mm2=[float(a) for a in areas], seeds=[tuple(s) for s in seeds], notes="; ".join(notes))


_Q50 = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], float)


def _jpeg_like(v8, q):
    """8x8 block DCT quantisation with the JPEG luminance table at quality q."""
    s = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    Qt = np.clip(np.floor((_Q50 * s + 50.0) / 100.0), 1, 255)
    nr, nc = v8.shape
    pr, pc = (-nr) % 8, (-nc) % 8
    a = np.pad(v8.astype(np.float64) - 128.0, ((0, pr), (0, pc)), mode="edge")
    R, C = a.shape
    b = a.reshape(R // 8, 8, C // 8, 8).transpose(0, 2, 1, 3)
    d = sfft.dctn(b, axes=(2, 3), norm="ortho")
    d = np.round(d / Qt) * Qt
    b = sfft.idctn(d, axes=(2, 3), norm="ortho")
    a = b.transpose(0, 2, 1, 3).reshape(R, C)[:nr, :nc]
    return np.clip(np.round(a + 128.0), 0, 255)


# ----------------------------------------------------------------------------- self-check

if __name__ == "__main__":
    import sys

    N = 60
    times, cases = [], []
    for sd in range(N):
        t0 = time.perf_counter()
        cs = make_case(sd)
        times.append(time.perf_counter() - t0)
        cases.append(cs)
    bad = 0
    ncut = 0
    nzero = 0
    worst = 0.0
    for sd, cs in enumerate(cases):
        hu, b, L = cs["hu"], cs["bone"], cs["deposits"]
        h = cs["spacing_mm"]
        errs = []
        if hu.dtype != np.float32 or hu.ndim != 2:
            errs.append("hu dtype")
        if b.dtype != bool or b.shape != hu.shape or L.shape != hu.shape or L.dtype != np.int32:
            errs.append("mask dtype/shape")
        if not (160 <= min(hu.shape) and max(hu.shape) <= 600):
            errs.append(f"size {hu.shape}")
        if not (0.1 <= h <= 0.45):
            errs.append(f"spacing {h}")
        n = len(cs["areas_mm2"])
        if len(cs["seeds"]) != n or set(np.unique(L)) - {0} != set(range(1, n + 1)):
            errs.append("labels/seeds count")
        if (b & (L > 0)).any():
            errs.append("bone/deposit overlap")
        for k in range(1, n + 1):
            r, c = cs["seeds"][k - 1]
            if L[r, c] != k:
                errs.append(f"seed {k} outside")
            px = (L == k).sum() * h * h
            a = cs["areas_mm2"][k - 1]
            mk = L == k
            nb = int((mk & ~ndimage.binary_erosion(mk)).sum())
            tol = 0.05 * a + 1.5 * math.sqrt(nb) * h * h  # pixel-centre sampling error
            if a > 4.0:
                worst = max(worst, abs(px - a) / a)
            if abs(px - a) > tol and (mk.sum() > 8):
                errs.append(f"area {k}: {a:.2f} vs px {px:.2f} (tol {tol:.2f})")
        if b[0].any() or b[-1].any() or b[:, 0].any() or b[:, -1].any():
            ncut += 1
        if n == 0:
            nzero += 1
        if errs:
            bad += 1
            print(sd, errs)
    t = np.array(times)
    print(f"checked {N} cases, {bad} with errors; time mean {t.mean():.3f}s max {t.max():.3f}s; "
          f"bone cut {ncut}/{N}; no deposit {nzero}/{N}; worst large-area rel diff {worst:.3f}")
    for sd in range(min(N, 12)):
        print(sd, cases[sd]["notes"])
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        sys.exit(0)
    pick = list(range(12)) if len(sys.argv) < 2 else [int(x) for x in sys.argv[1:13]]
    for fname, overlay in (("montage.png", False), ("montage_truth.png", True)):
        fig, axs = plt.subplots(3, 4, figsize=(20, 15))
        for ax, sd in zip(axs.ravel(), pick):
            cs = cases[sd] if sd < N else make_case(sd)
            ax.imshow(cs["hu"], cmap="gray", vmin=-300, vmax=1200, interpolation="nearest")
            if overlay:
                ax.contour(cs["bone"], [0.5], colors="c", linewidths=0.6)
                ax.contour(cs["deposits"] > 0, [0.5], colors="r", linewidths=0.6)
                for (r, c) in cs["seeds"]:
                    ax.plot(c, r, "y+", ms=6)
            ax.set_title(f"seed {sd}: {cs['spacing_mm']:.2f} mm, n={len(cs['areas_mm2'])}", fontsize=9)
            ax.axis("off")
        plt.tight_layout()
        plt.savefig(f"/work/gen_k/{fname}", dpi=70)
        plt.close(fig)
