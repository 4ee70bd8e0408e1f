"""Generator H -- 3-D finger phantom, thin-slab reformat and FBP CT simulation
of calcinosis cutis in systemic sclerosis (out-of-distribution test images).

``make_case(seed)`` returns one synthetic 2-D sagittal reformat of a finger in
Hounsfield units together with exact truth for bone and for each calcinosis
deposit.  The generator was written independently of the pipeline under test;
it only uses numpy, scipy and scikit-image.

Methods
-------
Anatomy (3-D, analytic).  The finger is built in a finger frame F
(a: proximal->distal, b: dorsal, c: lateral, mm) from signed-distance
functions.  Metacarpal (distal part), proximal, middle and distal phalanx are
tubes with an elliptical cross-section (wider than deep) whose axial radius
profile (flared base, waisted shaft, neck) is a monotone PCHIP curve; heads
are ellipsoids (condyles), every base is carved concave by the neighbouring
head inflated by the joint space (0.6-1.8 mm), and the distal phalanx ends in
an ungual tuft.  Joints are flexed in the a-b plane (MCP -10..40 deg, PIP
0..70 deg -- SSc flexion contractures --, DIP -10..35 deg).  Cortex is the outer
shell of each bone with an axially varying thickness (thick mid-shaft, thin
subchondral plates), marrow is trabecular bone with a 3-D texture.  Disease
modifiers: osteopenia (~35 %: thin cortex, low marrow density) and
acro-osteolysis (~30 %: distal phalanx shortened by 15-50 % with a resorbed,
pencil-like tapered tuft while the soft-tissue tip keeps its length).  Soft
tissue is a smooth chain of round cones through the joints (palm thicker,
dorsal cover 2-4 mm, palmar 4.5-8 mm) plus an ellipsoidal pulp of variable
size (SSc pulp atrophy), with a dermis layer (0.9-2.6 mm, 35-85 HU),
subcutaneous fat (-115..-45 HU) with fibrous septa, a periosteal / capsular
sleeve, flexor and extensor tendons (70-120 HU) and a nail plate on the
dorsum of the distal phalanx.

Deposits (1-8 per case, in dermis / subcutis, never inside bone).  Locations:
fingertip pulp (most often), dorsal over PIP/DIP, palmar side of the
proximal/middle phalangeal shafts, anywhere in the dermis; ~18 % are pushed
onto the bone surface so that they abut the cortex (any overlap is removed
by subtracting bone).  Kinds: dense specks (0.1-1 mm^2 in plane, lower bound
raised to ~0.8 px at coarse spacing; 1200-3000 HU), nodules (1-10 mm^2, sometimes
lobulated, heterogeneous or rim-like), clusters of 3-7 specks (ONE label per
cluster; the label may be disconnected), plaques (0.4-1.1 mm thick sheets that
follow the skin at 0.1-0.7 mm depth), and occasional conglomerate masses
(lobulated unions of ellipsoids rescaled to 20-80 mm^2 in the central plane,
heterogeneous, sometimes with a dense rim).  Intrinsic density 200-400
(faint), 400-1000, 1000-2600 HU, or equal to the adjacent cortex.  Large
deposits locally bulge the skin.

Confounders (bright, NOT deposits).  Calcified digital artery (~30 %): a
patchy calcified wall (tube of 0.45-0.8 mm radius) running along the palmar
side through the slab, giving linear / tram-track / beaded lines.  Small
ossicles (sesamoid / accessory ossicle with cortex, labelled as bone) or bone
islands inside marrow (~25 %).  An adjacent finger (~20 %) whose bone is
grazed by the slab (labelled as bone; deposits are never placed in it).

Acquisition.  The finger is posed with an in-plane rotation (tip up / down /
left / right +-12 deg, or any angle), optional mirror (palmar side left or
right), small roll (<=7 deg) and yaw (<=2.5 deg) out of plane, and a lateral
slab offset of up to +-1.8 mm.  The view frames 1-3 phalanges (DP, MP+DP,
PP+MP+DP, PP+MP), sometimes part of the metacarpal; in ~20 % a border is
pulled into the outermost displayed phalanx.  Pixel spacing 0.1-0.6 mm,
200-1100 px per side (not square; air is added so that both constraints
hold).  A slab of 0.4-1.5 mm is sampled at 3-6 planes and averaged
(through-plane partial volume).  The slab image is rendered with
anti-aliased edges on a square grid of <=384 px (0.16-0.6 mm pixels) inside the
reconstruction circle, forward projected (skimage radon, 160-420 views),
blurred along the detector (focal spot / aperture), and reconstructed by
filtered back-projection with ramp / Shepp-Logan / cosine / Hamming / Hann
filters.  Quantum noise is Poisson-like (variance proportional to exp(line
integral)) in projection space, reconstructed with the same filter and
scaled to 6-70 HU in soft tissue.  The reconstruction is resampled (linear or
cubic) to the output grid.  ~35 % of images are 8-bit display exports at
window 1500 / level 450 (HU -> 0..255, 60 % of them with JPEG-like 8x8 DCT
quantisation, quality 55-95) mapped back to HU, so they saturate at -300 and
1200 HU.  Occasionally burnt-in text / scale bars (~15 %) or padding strips
of -1024 or 0 HU (~10 %).

Truth.  Everything is defined in the central plane of the slab (world Z=0):
``bone`` = pixels whose coverage by any bone (cortex + marrow, all phalanges,
metacarpal, ossicles, the neighbour's bone, bone cut by the border) is
>= 0.5, estimated with 6x6 supersampling near edges.  Deposit k occupies its
shape minus bone minus earlier deposits; its label is the set of pixels with
coverage >= 0.5 that are not bone (supersampled to <= 0.025 mm), and
``areas_mm2[k]`` is the supersampled continuous area (sum of coverage x
spacing^2), independent of the 0.5 threshold.  Deposits whose label would be
empty are dropped (counted in the notes; they may still be faintly visible
through the slab).  Padding strips remove truth underneath them; deposits
are never placed under strips or text.  ``seeds`` are the brightest label
pixels in the final image.

Case mix.  Roughly: views DP 22 %, MP+DP 30 %, PP+MP+DP 38 %, PP+MP 10 %;
deposits per case 1..8 (decreasing frequency); kinds speck 26 %, nodule 33 %,
cluster 12 %, plaque 15 %, mass 14 % (at most 1-2 per case); runtime ~1-4 s
per case on one core.
"""
import numpy as np
from scipy import ndimage
from skimage.transform import radon, iradon

__all__ = ["make_case"]

MU_W = 0.02  # linear attenuation of water, 1/mm (~70 keV)


# ----------------------------------------------------------------------------
# small SDF toolkit; points are given as three 1-D arrays (a, b, c) in the
# finger frame F (a: proximal->distal, b: dorsal, c: lateral), mm
# ----------------------------------------------------------------------------
def _smin(d1, d2, k):
    if k <= 0:
        return np.minimum(d1, d2)
    h = np.clip(0.5 + 0.5 * (d2 - d1) / k, 0.0, 1.0)
    return d2 * (1 - h) + d1 * h - k * h * (1 - h)


def _ell(x, y, z, rx, ry, rz):
    """approximate signed distance to an axis aligned ellipsoid."""
    k0 = np.sqrt((x / rx) ** 2 + (y / ry) ** 2 + (z / rz) ** 2)
    k1 = np.sqrt((x / rx ** 2) ** 2 + (y / ry ** 2) ** 2 + (z / rz ** 2) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def _seg_dist(qa, qb, qc, A, B):
    """distance from points to segment A-B (3-vectors), and the parameter."""
    ab = B - A
    L2 = float(ab @ ab) + 1e-12
    h = ((qa - A[0]) * ab[0] + (qb - A[1]) * ab[1] + (qc - A[2]) * ab[2]) / L2
    h = np.clip(h, 0.0, 1.0)
    da = qa - A[0] - ab[0] * h
    db = qb - A[1] - ab[1] * h
    dc = qc - A[2] - ab[2] * h
    return np.sqrt(da * da + db * db + dc * dc), h


def _tex(qa, qb, qc, waves):
    """cheap smooth 3-D random texture (sum of cosines), ~unit variance."""
    out = np.zeros_like(qa)
    for kx, ky, kz, ph in waves:
        out += np.cos(kx * qa + ky * qb + kz * qc + ph)
    return out * np.sqrt(2.0 / max(len(waves), 1))


def _waves(rng, n, lam_lo, lam_hi):
    w = []
    for _ in range(n):
        v = rng.normal(size=3)
        v /= np.linalg.norm(v)
        lam = np.exp(rng.uniform(np.log(lam_lo), np.log(lam_hi)))
        k = 2 * np.pi / lam
        w.append((k * v[0], k * v[1], k * v[2], rng.uniform(0, 2 * np.pi)))
    return w


class _Shape:
    """a shape with an sdf(qa,qb,qc) and a bounding sphere (centre, radius) in F."""

    def __init__(self, fn, centre, radius):
        self.fn = fn
        self.centre = np.asarray(centre, float)
        self.radius = float(radius)

    def eval(self, qa, qb, qc, far=50.0):
        """sdf with culling by the bounding sphere (outside -> large value)."""
        out = np.full(qa.shape, far, dtype=np.float64)
        c = self.centre
        m = ((qa - c[0]) ** 2 + (qb - c[1]) ** 2 + (qc - c[2]) ** 2) <= (self.radius + 2.0) ** 2
        if m.any():
            out[m] = self.fn(qa[m], qb[m], qc[m])
        return out


# ----------------------------------------------------------------------------
# bones
# ----------------------------------------------------------------------------
class _Bone:
    """a tubular bone with a profile along its axis, closed by a head/tuft.

    P0: base centre (a, b); phi: axis angle in the a-b plane; c0: lateral offset.
    """

    def __init__(self, name, P0, phi, L, ts, hbs, hws, head=None, cut=None,
                 tc_end=0.4, tc_mid=1.2, hu_cort=1500.0, hu_marrow=300.0,
                 c0=0.0, yoff=0.0, tc_tip=None):
        self.name = name
        self.tc_tip = tc_end if tc_tip is None else tc_tip
        self.P0 = np.asarray(P0, float)
        self.phi = float(phi)
        self.L = float(L)
        self.ts = np.asarray(ts, float)
        self.hbs = np.asarray(hbs, float)
        self.hws = np.asarray(hws, float)
        self.Ls = float(self.ts[-1])
        self.head = head  # (t_centre, ra, rb, rc, yoff)
        self.cut = cut  # (centre(a,b), phi, ra, rb, rc)
        self.tc_end = tc_end
        self.tc_mid = tc_mid
        self.hu_cort = hu_cort
        self.hu_marrow = hu_marrow
        self.c0 = c0
        self.yoff = yoff
        self.e = np.array([np.cos(phi), np.sin(phi)])
        self.n = np.array([-np.sin(phi), np.cos(phi)])
        rmax = max(self.hbs.max(), self.hws.max(), 0 if head is None else max(head[1:4]))
        mid = self.P0 + self.e * self.L / 2
        self.centre = np.array([mid[0], mid[1], c0])
        self.radius = np.hypot(self.L / 2 + 1.0, rmax + 1.0)

    def local(self, qa, qb, qc):
        da = qa - self.P0[0]
        db = qb - self.P0[1]
        t = da * self.e[0] + db * self.e[1]
        y = da * self.n[0] + db * self.n[1]
        return t, y, qc - self.c0

    def point(self, t, y=0.0):
        return self.P0 + self.e * t + self.n * y

    def sdf_local(self, t, y, z):
        tt = np.clip(t, 0.0, self.Ls)
        hb = np.interp(tt, self.ts, self.hbs)
        hw = np.interp(tt, self.ts, self.hws)
        yo = y - self.yoff
        rho = np.sqrt((yo / hb) ** 2 + (z / hw) ** 2)
        d_side = (rho - 1.0) * np.minimum(hb, hw)
        d = -_smin(-d_side, t, 0.9)  # rounded base margins
        d = np.maximum(d, t - self.Ls)
        if self.head is not None:
            tcn, ra, rb, rc, hy = self.head
            dh = _ell(t - tcn, y - hy, z, ra, rb, rc)
            d = _smin(d, dh, 0.8)
        return d

    def sdf(self, qa, qb, qc):
        t, y, z = self.local(qa, qb, qc)
        d = self.sdf_local(t, y, z)
        if self.cut is not None:
            (ca, cb), cphi, ra, rb, rc = self.cut
            da = qa - ca
            db = qb - cb
            tt = da * np.cos(cphi) + db * np.sin(cphi)
            yy = -da * np.sin(cphi) + db * np.cos(cphi)
            dcut = _ell(tt, yy, qc - self.c0, ra, rb, rc)
            d = np.maximum(d, -dcut)
        return d

    def tc(self, t):
        L = self.L
        return np.interp(t, [0, 0.2 * L, 0.5 * L, 0.8 * L, L],
                         [self.tc_end, 0.8 * self.tc_mid, self.tc_mid, 0.8 * self.tc_mid, self.tc_tip])

    def fields(self, qa, qb, qc, far=50.0):
        """(d_bone, d_marrow) with culling."""
        d = np.full(qa.shape, far)
        dm = np.full(qa.shape, far)
        c = self.centre
        m = ((qa - c[0]) ** 2 + (qb - c[1]) ** 2 + (qc - c[2]) ** 2) <= (self.radius + 2.0) ** 2
        if m.any():
            a, b, cc = qa[m], qb[m], qc[m]
            dd = self.sdf(a, b, cc)
            t, _, _ = self.local(a, b, cc)
            d[m] = dd
            dm[m] = dd + self.tc(t)
        return d, dm


class _Blob:
    """ellipsoidal ossicle / bone fragment with cortex."""

    def __init__(self, centre, R, radii, tc, hu_cort, hu_marrow):
        self.centre = np.asarray(centre, float)
        self.R = np.asarray(R, float)
        self.radii = np.asarray(radii, float)
        self.tc_v = tc
        self.hu_cort = hu_cort
        self.hu_marrow = hu_marrow
        self.radius = float(self.radii.max())
        self.name = "ossicle"

    def sdf(self, qa, qb, qc):
        da, db, dc = qa - self.centre[0], qb - self.centre[1], qc - self.centre[2]
        R = self.R
        x = R[0, 0] * da + R[1, 0] * db + R[2, 0] * dc
        y = R[0, 1] * da + R[1, 1] * db + R[2, 1] * dc
        z = R[0, 2] * da + R[1, 2] * db + R[2, 2] * dc
        return _ell(x, y, z, *self.radii)

    def fields(self, qa, qb, qc, far=50.0):
        d = np.full(qa.shape, far)
        c = self.centre
        m = ((qa - c[0]) ** 2 + (qb - c[1]) ** 2 + (qc - c[2]) ** 2) <= (self.radius + 2.0) ** 2
        if m.any():
            d[m] = self.sdf(qa[m], qb[m], qc[m])
        return d, d + self.tc_v


def _rand_rot(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d]])


# ----------------------------------------------------------------------------
# deposits
# ----------------------------------------------------------------------------
class _Deposit:
    def __init__(self, kind, centre, R, parts, k, hu, hetero, rim, waves, plaque=None):
        self.kind = kind
        self.centre = np.asarray(centre, float)
        self.R = np.asarray(R, float)
        self.parts = parts  # list of (local centre (3,), radii (3,))
        self.k = k
        self.hu = hu
        self.hetero = hetero
        self.rim = rim  # (thickness, core_fraction) or None
        self.waves = waves
        self.plaque = plaque  # (tissue_fn, depth, thick) for sheets
        self.scale = 1.0
        self._update_radius()

    def _update_radius(self):
        r = 0.0
        for c, rr in self.parts:
            r = max(r, np.linalg.norm(c) + max(rr))
        self.radius = r * self.scale + 0.3

    def local(self, qa, qb, qc):
        da, db, dc = qa - self.centre[0], qb - self.centre[1], qc - self.centre[2]
        R = self.R
        x = (R[0, 0] * da + R[1, 0] * db + R[2, 0] * dc) / self.scale
        y = (R[0, 1] * da + R[1, 1] * db + R[2, 1] * dc) / self.scale
        z = (R[0, 2] * da + R[1, 2] * db + R[2, 2] * dc) / self.scale
        return x, y, z

    def sdf(self, qa, qb, qc):
        x, y, z = self.local(qa, qb, qc)
        d = None
        for c, rr in self.parts:
            di = _ell(x - c[0], y - c[1], z - c[2], rr[0], rr[1], rr[2])
            d = di if d is None else _smin(d, di, self.k)
        d = d * self.scale
        if self.plaque is not None:
            tfn, depth, thick = self.plaque
            dt = tfn(qa, qb, qc)
            d = np.maximum(d, np.abs(dt + depth + thick / 2) - thick / 2)
        return d

    def hu_at(self, qa, qb, qc, d):
        v = np.full(qa.shape, self.hu)
        if self.hetero > 0:
            v = v * (1.0 + self.hetero * _tex(qa, qb, qc, self.waves))
        if self.rim is not None:
            th, core = self.rim
            inner = np.clip((-d - th) / max(th, 1e-3), 0, 1)
            v = v * (1 - inner * (1 - core))
        return v


# ----------------------------------------------------------------------------
# the scene
# ----------------------------------------------------------------------------
def _rot_z(t):
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _rot_x(t):
    c, s = np.cos(t), np.sin(t)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(t):
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


class _Scene:
    pass


def _tissue_chain(nodes, zr, c0=0.0):
    """soft tissue envelope: chain of round cones through (a, b, radius) nodes;
    the lateral coordinate is scaled by zr (finger wider than deep)."""
    P = [np.array([n[0], n[1], 0.0]) for n in nodes]
    rads = [n[2] for n in nodes]

    def fn(qa, qb, qc):
        d = None
        z = (qc - c0) * zr
        for i in range(len(P) - 1):
            dist, h = _seg_dist(qa, qb, z, P[i], P[i + 1])
            di = dist - (rads[i] + (rads[i + 1] - rads[i]) * h)
            d = di if d is None else _smin(d, di, 1.5)
        return d

    A = np.array(P)
    c = 0.5 * (A.min(0) + A.max(0))
    r = 0.5 * np.linalg.norm(A.max(0) - A.min(0)) + max(rads) / zr
    c[2] = c0
    return _Shape(fn, c, r)


def _ell_shape(centre, phi, ra, rb, rc):
    ce, se = np.cos(phi), np.sin(phi)

    def fn(qa, qb, qc):
        da, db = qa - centre[0], qb - centre[1]
        t = da * ce + db * se
        y = -da * se + db * ce
        return _ell(t, y, qc - centre[2], ra, rb, rc)

    return _Shape(fn, centre, max(ra, rb, rc))


def _capsule_chain(points, radii):
    """round tube along a polyline (3-D points), linearly varying radius."""
    pts = [np.asarray(p, float) for p in points]

    def fn(qa, qb, qc):
        d = None
        for i in range(len(pts) - 1):
            dist, h = _seg_dist(qa, qb, qc, pts[i], pts[i + 1])
            di = dist - (radii[i] + (radii[i + 1] - radii[i]) * h)
            d = di if d is None else np.minimum(d, di)
        return d

    P = np.array(pts)
    c = 0.5 * (P.min(0) + P.max(0))
    r = 0.5 * np.linalg.norm(P.max(0) - P.min(0)) + max(radii)
    return _Shape(fn, c, r)


def _smooth_profile(f, v, n=64):
    """dense, shape preserving interpolation of an axial radius profile."""
    from scipy.interpolate import PchipInterpolator
    f = np.asarray(f, float)
    ts = np.linspace(f[0], f[-1], n)
    return ts, np.maximum(PchipInterpolator(f, np.asarray(v, float))(ts), 0.15)


def _build_finger(rng, sc):
    """build bones, soft tissue and tendons in the finger frame."""
    size = rng.uniform(0.85, 1.15)  # overall size factor
    osteopenia = rng.random() < 0.35
    acro = rng.random() < 0.30
    sc.osteopenia = osteopenia
    sc.acro = acro
    flex_mcp = np.deg2rad(rng.uniform(-10, 40))
    flex_pip = np.deg2rad(rng.choice([rng.uniform(0, 15), rng.uniform(15, 70)], p=[0.5, 0.5]))
    flex_dip = np.deg2rad(rng.uniform(-10, 35))
    sc.flex = (np.rad2deg(flex_mcp), np.rad2deg(flex_pip), np.rad2deg(flex_dip))
    gap = rng.uniform(0.6, 1.8)
    if osteopenia:
        cort = lambda: rng.uniform(1000, 1500)
        marrow = lambda: rng.uniform(60, 200)
        tcf = rng.uniform(0.4, 0.65)
    else:
        cort = lambda: rng.uniform(1150, 1850)
        marrow = lambda: rng.uniform(180, 450)
        tcf = 1.0

    wob = lambda: 1.0 + 0.04 * rng.normal()  # mild shape variability
    bones = []
    # metacarpal: shaft ends at head centre; starts far proximal
    Lmc = 62 * size
    hb_mc_head = 6.5 * size * rng.uniform(0.92, 1.08)
    mc = _Bone("MC", (-Lmc, 0.0), 0.0, Lmc,
               ts=[0, 0.5 * Lmc, Lmc - hb_mc_head],
               hbs=[5.0 * size, 4.2 * size, 5.2 * size],
               hws=[6.0 * size, 4.8 * size, 6.5 * size],
               head=(Lmc - hb_mc_head, hb_mc_head, hb_mc_head, 7.5 * size, 0.3),
               tc_end=0.45, tc_mid=1.5 * tcf * size, hu_cort=cort(), hu_marrow=marrow())
    bones.append(mc)
    specs = [
        # name, length, base hb,hw, shaft hb,hw, head hb,hw
        ("PP", 44 * size, 5.3, 7.2, 3.2, 4.6, 4.3, 5.8),
        ("MP", 27 * size, 4.3, 6.0, 2.7, 3.8, 3.5, 4.7),
        ("DP", 18 * size, 3.6, 5.0, 1.8, 2.8, None, None),
    ]
    flexes = [flex_mcp, flex_pip, flex_dip]
    phi = 0.0
    prev_head = (mc.point(mc.head[0], mc.head[4]), mc.phi, mc.head[1], mc.head[2], mc.head[3])
    for (name, L, bhb, bhw, shb, shw, hhb, hhw), fl in zip(specs, flexes):
        phi = phi - fl
        hc, hphi, ra, rb, rc = prev_head
        e = np.array([np.cos(phi), np.sin(phi)])
        P0 = hc + e * (ra + gap)
        # joint cut: previous head inflated by the gap
        cut = ((hc[0], hc[1]), hphi, ra + gap, rb + gap, rc + gap)
        s = size
        if name != "DP":
            rh = hhb * s
            Ls = L - rh
            f = np.array([0, 0.05, 0.15, 0.28, 0.5, 0.72]) * L
            f = np.append(f[f < Ls - 1.0], Ls)
            hb_v = np.array([bhb, bhb * 0.96, 0.5 * (bhb + shb), shb * 1.05, shb, shb * 1.04, hhb * 0.8])
            hw_v = np.array([bhw, bhw * 0.96, 0.5 * (bhw + shw), shw * 1.05, shw, shw * 1.06, hhw * 0.85])
            n_f = len(f)
            ts, hbs = _smooth_profile(f, np.r_[hb_v[:n_f - 1], hb_v[-1]] * s * wob())
            _, hws = _smooth_profile(f, np.r_[hw_v[:n_f - 1], hw_v[-1]] * s * wob())
            b = _Bone(name, P0, phi, L, ts=ts, hbs=hbs, hws=hws,
                      head=(Ls, rh, hhb * s, hhw * s, 0.2), cut=cut,
                      tc_end=0.35, tc_mid=rng.uniform(0.9, 1.4) * tcf * s,
                      hu_cort=cort(), hu_marrow=marrow())
            prev_head = (b.point(Ls, 0.2), phi, rh, hhb * s, hhw * s)
        else:
            if not acro:
                tuft_hb, tuft_hw = shb * rng.uniform(0.85, 1.05) * s, rng.uniform(3.0, 4.0) * s
                tuft_ax = rng.uniform(1.3, 2.2) * s
                Ls = L - tuft_ax
                f = np.array([0, 0.08, 0.25, 0.45, 0.65]) * L
                f = np.append(f, Ls)
                hb_v = np.array([bhb, bhb * 0.93, shb * 1.25, shb * 0.95, shb * 0.95, tuft_hb * 0.9])
                hw_v = np.array([bhw, bhw * 0.95, shw * 1.35, shw * 1.05, shw * 1.05, tuft_hw * 0.8])
                ts, hbs = _smooth_profile(f, hb_v * np.r_[s, s, s, s, s, 1.0] * wob())
                _, hws = _smooth_profile(f, hw_v * np.r_[s, s, s, s, s, 1.0] * wob())
                b = _Bone(name, P0, phi, L, ts=ts, hbs=hbs, hws=hws,
                          head=(Ls, tuft_ax, tuft_hb, tuft_hw, -0.3), cut=cut,
                          tc_end=0.4, tc_mid=rng.uniform(0.6, 0.9) * tcf * s, tc_tip=rng.uniform(0.7, 1.2),
                          hu_cort=cort(), hu_marrow=marrow() + rng.uniform(100, 300))
                sc.dp_tip_t = L
            else:
                loss = rng.uniform(0.15, 0.5)
                Le = L * (1 - loss)
                tip = rng.uniform(0.25, 0.7)
                Ls = Le - tip
                f = np.array([0, 0.08, 0.3, 0.62, 1.0]) * Ls
                thin = rng.uniform(0.55, 0.9)
                hb_v = np.array([bhb * s, bhb * 0.95 * s, shb * 1.25 * s, shb * thin * s, tip])
                hw_v = np.array([bhw * s, bhw * 0.95 * s, shw * 1.25 * s, shw * thin * s, tip * 1.4])
                ts, hbs = _smooth_profile(f, hb_v * wob())
                _, hws = _smooth_profile(f, hw_v * wob())
                b = _Bone(name, P0, phi, Le, ts=ts, hbs=hbs, hws=hws,
                          head=(Ls, tip, tip, tip * 1.4, 0.0), cut=cut,
                          tc_end=0.3, tc_mid=rng.uniform(0.5, 0.8) * tcf * s,
                          hu_cort=cort(), hu_marrow=marrow() + rng.uniform(100, 300))
                sc.dp_tip_t = L  # soft tissue keeps the original length
                sc.acro_loss = loss
        bones.append(b)
    sc.bones = bones
    sc.size = size

    # ---------------- soft tissue -----------------
    td = rng.uniform(2.0, 3.8)  # dorsal soft tissue thickness over shafts
    tp = rng.uniform(4.5, 8.0)  # palmar
    pulp = rng.uniform(3.0, 7.5)  # pulp thickness (SSc: often reduced)
    tipx = rng.uniform(2.0, 5.0)
    sc.pulp = pulp
    bn = {b.name: b for b in bones}
    pp, mp, dp = bn["PP"], bn["MP"], bn["DP"]

    def node(b, t, hb, tdd, tpp):
        p = b.point(t, (tdd - tpp) / 2)
        return (p[0], p[1], (2 * hb + tdd + tpp) / 2)

    hbm = lambda b, t: float(np.interp(min(t, b.Ls), b.ts, b.hbs))
    palm = rng.uniform(10, 16)
    nodes = [
        node(mc, -25.0, 5.0 * size, 4.0, palm + 2),
        node(mc, 0.5 * Lmc, hbm(mc, 0.5 * Lmc), 3.5, palm),
        node(mc, mc.head[0], mc.head[2], td * 0.8, 0.6 * palm + 0.4 * tp),
        node(pp, 0.4 * pp.L, hbm(pp, 0.4 * pp.L), td, tp),
        node(pp, pp.head[0], pp.head[2], td * 0.8, tp * 0.85),
        node(mp, 0.5 * mp.L, hbm(mp, 0.5 * mp.L), td * 0.9, tp * 0.9),
        node(mp, mp.head[0], mp.head[2], td * 0.75, tp * 0.8),
        node(dp, 0.45 * sc.dp_tip_t, hbm(dp, 0.45 * sc.dp_tip_t), td * 0.8, 0.5 * (tp * 0.8 + pulp)),
    ]
    zr = rng.uniform(0.75, 0.9)
    tubes = [_tissue_chain(nodes, zr)]
    Ldp = sc.dp_tip_t
    tuft_hb = 2.0 * sc.size
    ra = 0.3 * Ldp + tipx
    rb = (2 * tuft_hb + td * 0.8 + pulp) / 2
    yc = (td * 0.8 - pulp) / 2
    tipc = dp.point(0.7 * Ldp, yc)
    tubes.append(_ell_shape(np.array([tipc[0], tipc[1], 0.0]), dp.phi, ra, rb, rb / zr))
    sc.tip_ell = (tipc, dp.phi, ra, rb)
    sc.td, sc.tp = td, tp
    sc.tubes = tubes

    # tendons: flexor (palmar) and extensor (dorsal) polylines
    fl_pts, fl_r, ex_pts, ex_r = [], [], [], []
    rfl = rng.uniform(1.2, 2.0)
    for b in bones:
        for f in (0.15, 0.5, 0.85):
            t = f * b.L
            if b.name == "DP" and f > 0.2:
                continue
            if b.name == "MC" and f < 0.5:
                continue
            hb = np.interp(min(t, b.Ls), b.ts, b.hbs)
            if b.head is not None and t > b.Ls - 0.5 and b.name != "DP":
                hb = max(hb, b.head[2])
            p = b.point(t, -(hb + rfl * (0.6 if b.name == "MP" else 1.0) + 0.2))
            fl_pts.append([p[0], p[1], 0.0])
            fl_r.append(rfl * (0.6 if b.name in ("MP", "DP") else 1.0))
            p = b.point(t, hb + 0.55)
            ex_pts.append([p[0], p[1], 0.0])
            ex_r.append(0.5)
    sc.flexor = _capsule_chain(fl_pts, fl_r)
    sc.extensor = _capsule_chain(ex_pts, ex_r)

    # nail plate on the dorsum of the distal phalanx
    sc.extra_bones, sc.adj_tubes = [], []
    ys = np.linspace(0.0, 12.0, 241)
    pts = np.array([dp.point(0.75 * Ldp, y) for y in ys])
    dtis = _tissue_base(sc, pts[:, 0], pts[:, 1], np.zeros(len(ys)))
    y_s = float(ys[np.argmax(dtis > 0)]) if (dtis > 0).any() else tuft_hb + td * 0.8
    th = rng.uniform(0.4, 0.8)
    n0, n1 = 0.35 * Ldp, Ldp + tipx * 0.6
    ce, se = np.cos(dp.phi), np.sin(dp.phi)
    curv = rng.uniform(0.0, 0.06)

    def nail_fn(qa, qb, qc, _P0=dp.P0.copy()):
        da, db = qa - _P0[0], qb - _P0[1]
        t = da * ce + db * se
        y = -da * se + db * ce
        ym = y_s - th / 2 - 0.1 - curv * np.maximum(t - 0.8 * Ldp, 0) ** 2
        return np.maximum(np.maximum(np.abs(t - (n0 + n1) / 2) - (n1 - n0) / 2, np.abs(y - ym) - th / 2),
                          np.abs(qc) - 5.0)

    nc = dp.point((n0 + n1) / 2, y_s)
    sc.nail = _Shape(nail_fn, [nc[0], nc[1], 0.0], (n1 - n0) / 2 + 6)
    sc.nail_hu = rng.uniform(90, 260)


# ----------------------------------------------------------------------------
# field evaluation
# ----------------------------------------------------------------------------
def _bone_list(sc):
    return sc.bones + sc.extra_bones


def _bone_union(sc, qa, qb, qc):
    d = np.full(qa.shape, 50.0)
    for b in _bone_list(sc):
        db, _ = b.fields(qa, qb, qc)
        d = np.minimum(d, db)
    return d


def _own_bone_union(sc, qa, qb, qc):
    d = np.full(qa.shape, 50.0)
    for b in sc.bones:
        db, _ = b.fields(qa, qb, qc)
        d = np.minimum(d, db)
    return d


def _tissue_base(sc, qa, qb, qc, dbone=None, own=False):
    """soft tissue envelope; own=True: only the imaged finger (no neighbour)."""
    if dbone is None:
        dbone = _bone_union(sc, qa, qb, qc) if not own else _own_bone_union(sc, qa, qb, qc)
    d = None
    for s in sc.tubes:
        di = s.eval(qa, qb, qc)
        d = di if d is None else _smin(d, di, 3.0)
    d = _smin(d, dbone - 1.6, 1.0)
    if own:
        return d
    for s in sc.adj_tubes:
        d = np.minimum(d, s.eval(qa, qb, qc))
    return d


def _tissue(sc, qa, qb, qc, dbone=None):
    d = _tissue_base(sc, qa, qb, qc, dbone)
    for dep in sc.deposits:
        c = dep.centre
        m = ((qa - c[0]) ** 2 + (qb - c[1]) ** 2 + (qc - c[2]) ** 2) <= (dep.radius + 3.0) ** 2
        if m.any():
            dd = dep.sdf(qa[m], qb[m], qc[m]) - 0.7
            d[m] = _smin(d[m], dd, 1.2)
    return d


def _to_F(sc, X, Y, Z):
    Rt = sc.R.T
    dX, dY, dZ = X - sc.tvec[0], Y - sc.tvec[1], Z - sc.tvec[2]
    qa = Rt[0, 0] * dX + Rt[0, 1] * dY + Rt[0, 2] * dZ
    qb = Rt[1, 0] * dX + Rt[1, 1] * dY + Rt[1, 2] * dZ
    qc = Rt[2, 0] * dX + Rt[2, 1] * dY + Rt[2, 2] * dZ
    return qa, qb, qc


def _to_W(sc, q):
    return sc.R @ np.asarray(q, float) + sc.tvec


def _cov(d, h):
    return np.clip(0.5 - d / h, 0.0, 1.0)


def _render(sc, X, Y, Z, h):
    """HU of the phantom at world points (flattened arrays); soft edge width h."""
    qa, qb, qc = _to_F(sc, X, Y, Z)
    hu = np.full(qa.shape, -1000.0)
    dbone = np.full(qa.shape, 50.0)
    bf = []
    for b in _bone_list(sc):
        d, dm = b.fields(qa, qb, qc)
        bf.append((b, d, dm))
        dbone = np.minimum(dbone, d)
    dt = _tissue(sc, qa, qb, qc, dbone)
    inside = dt < h
    if inside.any():
        a, b_, c = qa[inside], qb[inside], qc[inside]
        sub = hu[inside]
        d = dt[inside]
        derm = sc.derm_hu + 12 * _tex(a, b_, c, sc.w_soft)
        sub += (derm - sub) * _cov(d, h)
        fat = sc.fat_hu + 15 * _tex(a, b_, c, sc.w_soft2)
        sept = np.exp(-(_tex(a, b_, c, sc.w_sept) ** 2) / 0.08)
        fat = fat + sc.sept_amp * sept
        sub += (fat - sub) * _cov(d + sc.skin_th, h)
        sub += (sc.sleeve_hu - sub) * _cov(dbone[inside] - sc.sleeve, h)
        for shp in (sc.flexor, sc.extensor):
            sub += (sc.tendon_hu - sub) * _cov(shp.eval(a, b_, c), h)
        sub += (sc.nail_hu - sub) * _cov(sc.nail.eval(a, b_, c), h)
        hu[inside] = sub
    # everything below may also sit outside the soft tissue (adjacent finger)
    if sc.artery is not None and inside.any():
        art, hu_art = sc.artery
        idx = np.nonzero(inside)[0]
        dd = art(qa[idx], qb[idx], qc[idx])
        m = dd < h
        if m.any():
            j = idx[m]
            hu[j] += (hu_art - hu[j]) * _cov(dd[m], h)
    for dep in sc.deposits:
        dd = dep.sdf_culled(qa, qb, qc)
        m = dd < h
        if m.any():
            hu[m] += (dep.hu_at(qa[m], qb[m], qc[m], dd[m]) - hu[m]) * _cov(dd[m], h)
    for b, d, dm in bf:
        m = d < h
        if not m.any():
            continue
        a, b_, c = qa[m], qb[m], qc[m]
        sub = hu[m]
        sub += (b.hu_cort + 60 * _tex(a, b_, c, sc.w_bone) - sub) * _cov(d[m], h)
        mar = b.hu_marrow + sc.trab_amp * _tex(a, b_, c, sc.w_trab)
        sub += (mar - sub) * _cov(dm[m], h)
        hu[m] = sub
    for isl in sc.islands:
        dd = isl[0].eval(qa, qb, qc)
        m = dd < h
        if m.any():
            hu[m] += (isl[1] - hu[m]) * _cov(dd[m], h)
    return hu


def _dep_sdf_culled(self, qa, qb, qc, far=50.0):
    out = np.full(qa.shape, far)
    c = self.centre
    m = ((qa - c[0]) ** 2 + (qb - c[1]) ** 2 + (qc - c[2]) ** 2) <= (self.radius + 1.0) ** 2
    if m.any():
        out[m] = self.sdf(qa[m], qb[m], qc[m])
    return out


_Deposit.sdf_culled = _dep_sdf_culled


# ----------------------------------------------------------------------------
# view / acquisition geometry
# ----------------------------------------------------------------------------
def _key_points(sc, names, mc_part=False):
    pts = []
    for b in sc.bones:
        if b.name not in names and not (b.name == "MC" and mc_part):
            continue
        t0 = 0.55 * b.L if b.name == "MC" else 0.0
        for t in np.linspace(t0, b.L, 9):
            pts.append(b.point(t, 0.0))
            hb = np.interp(min(t, b.Ls), b.ts, b.hbs)
            pts.append(b.point(t, hb + sc.td))
            pts.append(b.point(t, -(hb + sc.tp)))
        if b.name == "DP":
            tipc, phi, ra, rb = sc.tip_ell
            e = np.array([np.cos(phi), np.sin(phi)])
            n = np.array([-np.sin(phi), np.cos(phi)])
            for ang in np.linspace(-np.pi / 2, np.pi / 2, 9):
                pts.append(tipc + e * ra * np.cos(ang) + n * rb * np.sin(ang))
    return np.array(pts)


def _bone_key_points(b):
    pts = []
    for t in np.linspace(0.0, b.L, 15):
        hb = np.interp(min(t, b.Ls), b.ts, b.hbs)
        if b.head is not None and t >= b.head[0]:
            hb = b.head[2] * np.sqrt(max(1 - ((t - b.head[0]) / b.head[1]) ** 2, 0.0))
        pts.append(b.point(t, hb))
        pts.append(b.point(t, -hb))
    return np.array(pts)


def _setup_view(rng, sc):
    r = rng.random()
    if r < 0.22:
        names = ["DP"]
    elif r < 0.52:
        names = ["MP", "DP"]
    elif r < 0.90:
        names = ["PP", "MP", "DP"]
    else:
        names = ["PP", "MP"]
    mc_part = ("PP" in names) and rng.random() < 0.5
    sc.shown = names
    sc.mc_part = mc_part
    # out-of-plane tilts and in-plane orientation
    roll = np.deg2rad(np.clip(rng.normal(0, 3), -7, 7))
    yaw = np.deg2rad(np.clip(rng.normal(0, 1.0), -2.5, 2.5))
    mirror = 1.0 if rng.random() < 0.5 else -1.0
    M = np.diag([1.0, mirror, 1.0])
    R0 = M @ _rot_y(yaw) @ _rot_x(roll)
    kp = _key_points(sc, names, mc_part)
    first = [b for b in sc.bones if b.name == names[0]][0]
    last = [b for b in sc.bones if b.name == names[-1]][0]
    d = last.point(last.L) - first.point(0.0)
    v = R0 @ np.array([d[0], d[1], 0.0])
    beta = np.arctan2(v[1], v[0])
    r = rng.random()
    if r < 0.85:
        target = rng.choice([-np.pi / 2, np.pi / 2, 0.0, np.pi], p=[0.4, 0.2, 0.2, 0.2])
        target += np.deg2rad(rng.normal(0, 12))
    else:
        target = rng.uniform(-np.pi, np.pi)
    sc.tip_angle = float(np.rad2deg(target))
    R = _rot_z(target - beta) @ R0
    sc.R = R
    sc.tvec = np.zeros(3)
    W = (R[:2, :2] @ kp.T).T  # world xy of key points (c = 0)
    lo, hi = W.min(0), W.max(0)
    margin_lo = rng.uniform(1.5, 10, size=2) * (1 + 3 * (rng.random() < 0.15))
    margin_hi = rng.uniform(1.5, 10, size=2) * (1 + 3 * (rng.random() < 0.15))
    lo = lo - margin_lo
    hi = hi + margin_hi
    sc.cut = False
    fixed = np.zeros((2, 2), bool)  # (axis, side) that must not move
    if rng.random() < 0.2:
        # pull one border into the displayed phalanx that is outermost on that side
        cand = [b for b in sc.bones if b.name in names]
        ax = int(rng.integers(2))
        side = int(rng.integers(2))
        ext_b = []
        for b in cand:
            bw = (R[:2, :2] @ _bone_key_points(b).T).T
            ext_b.append((bw[:, ax].min(), bw[:, ax].max()))
        if side == 0:
            i = int(np.argmin([e[0] for e in ext_b]))
        else:
            i = int(np.argmax([e[1] for e in ext_b]))
        b = cand[i]
        blo, bhi = ext_b[i]
        f = rng.uniform(0.12, 0.45)
        if side == 0:
            lo[ax] = blo + f * (bhi - blo)
            fixed[ax, 0] = True
        else:
            hi[ax] = bhi - f * (bhi - blo)
            fixed[ax, 1] = True
        sc.cut = b.name

    def grow(ax, new_ext):
        add = new_ext - (hi[ax] - lo[ax])
        if add <= 0:
            return
        f = rng.beta(2.0, 2.0)
        if fixed[ax, 0]:
            f = 0.0
        elif fixed[ax, 1]:
            f = 1.0
        lo[ax] -= add * f
        hi[ax] += add * (1 - f)

    # target pixel spacing; the field of view grows (air) where needed
    if rng.random() < 0.5:
        s_t = float(np.exp(rng.uniform(np.log(0.1), np.log(0.6))))
    else:  # pick the image size first (long side 200..1100 px)
        n_t = float(np.exp(rng.uniform(np.log(200), np.log(1100))))
        s_t = float(np.clip((hi - lo).max() / n_t, 0.1, 0.6))
    for ax in range(2):
        grow(ax, max(20.0, 200 * s_t * rng.uniform(1.0, 1.25)))
    for ax in range(2):
        grow(ax, (hi[1 - ax] - lo[1 - ax]) / 4.0)
    ext = hi - lo
    centre = 0.5 * (lo + hi)
    Emax, Emin = ext.max(), ext.min()
    s_lo = max(0.1, Emax / 1100.0)
    s_hi = max(min(0.6, Emin / 200.0), s_lo)
    s = float(np.clip(s_t, s_lo, s_hi))
    ncol = int(np.clip(round(ext[0] / s), 200, 1100))
    nrow = int(np.clip(round(ext[1] / s), 200, 1100))
    sc.spacing = s
    sc.shape = (nrow, ncol)
    # world: view centre at the origin
    sc.tvec = np.array([-centre[0], -centre[1], 0.0])
    # slab: central plane through c = delta on the axis of the displayed bones
    ax = np.array([b.point(t) for b in sc.bones if b.name in names for t in np.linspace(0, b.L, 5)])
    q = np.array([ax[:, 0].mean(), ax[:, 1].mean(), sc.delta])
    sc.tvec[2] = -(R @ q)[2]
    sc.roll, sc.yaw, sc.mirror = np.rad2deg(roll), np.rad2deg(yaw), mirror


def _pix_xy(sc):
    nr, nc = sc.shape
    s = sc.spacing
    xs = (np.arange(nc) - (nc - 1) / 2.0) * s
    ys = (np.arange(nr) - (nr - 1) / 2.0) * s
    return xs, ys


def _in_content(sc, X, Y, pad=1.0):
    nr, nc = sc.shape
    s = sc.spacing
    x0, x1 = -(nc - 1) / 2.0 * s, (nc - 1) / 2.0 * s
    y0, y1 = -(nr - 1) / 2.0 * s, (nr - 1) / 2.0 * s
    top, bot, left, right = sc.pads
    x0 += left * s
    x1 -= right * s
    y0 += top * s
    y1 -= bot * s
    ok = (X - pad >= x0) & (X + pad <= x1) & (Y - pad >= y0) & (Y + pad <= y1)
    for (r0, r1, c0, c1) in sc.text_boxes:
        bx0, bx1 = (c0 - (nc - 1) / 2.0) * s, (c1 - (nc - 1) / 2.0) * s
        by0, by1 = (r0 - (nr - 1) / 2.0) * s, (r1 - (nr - 1) / 2.0) * s
        ok &= ~((X + pad >= bx0) & (X - pad <= bx1) & (Y + pad >= by0) & (Y - pad <= by1))
    return ok


# ----------------------------------------------------------------------------
# deposits: shape factories and placement
# ----------------------------------------------------------------------------
def _grad(fn, p, eps=0.05):
    g = np.zeros(3)
    for i in range(3):
        dp = np.zeros(3)
        dp[i] = eps
        g[i] = (fn(*(p + dp)[:, None]) - fn(*(p - dp)[:, None]))[0] / (2 * eps)
    return g


def _dep_hu(rng, sc):
    r = rng.random()
    if r < 0.2:
        return rng.uniform(200, 400), "faint"
    if r < 0.55:
        return rng.uniform(400, 1000), "moderate"
    if r < 0.9:
        return rng.uniform(1000, 2600), "dense"
    b = sc.bones[1 + rng.integers(3)]
    return b.hu_cort * rng.uniform(0.9, 1.1), "cortex-like"


def _make_deposit(rng, sc, kind):
    s = sc.spacing
    w = _waves(rng, 6, 0.6, 2.5)
    hetero, rim = 0.0, None
    if kind == "speck":
        amin = max(0.1, 0.8 * s * s)
        A = float(np.exp(rng.uniform(np.log(amin), np.log(max(amin * 1.05, 1.0)))))
        r = np.sqrt(A / np.pi)
        asp = rng.uniform(1.0, 1.5)
        parts = [(np.zeros(3), np.array([r * np.sqrt(asp), r / np.sqrt(asp), r * rng.uniform(0.8, 1.3)]))]
        hu = rng.uniform(1200, 3000)
        lab = "dense"
        k = 0.0
    elif kind == "nodule":
        A = float(np.exp(rng.uniform(np.log(1.0), np.log(10.0))))
        r = np.sqrt(A / np.pi)
        asp = rng.uniform(1.0, 2.0)
        parts = [(np.zeros(3), np.array([r * np.sqrt(asp), r / np.sqrt(asp), r * rng.uniform(0.7, 1.3)]))]
        for _ in range(rng.integers(0, 3)):
            v = rng.normal(size=3)
            v /= np.linalg.norm(v)
            parts.append((v * r * 0.7, np.full(3, r * rng.uniform(0.3, 0.6))))
        hu, lab = _dep_hu(rng, sc)
        k = 0.3 * r
        if rng.random() < 0.3:
            hetero = rng.uniform(0.1, 0.3)
        if rng.random() < 0.15 and r > 0.9:
            rim = (rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.5))
    elif kind == "cluster":
        n = int(rng.integers(3, 8))
        R0 = rng.uniform(0.6, 1.8)
        parts = []
        for _ in range(n):
            for _try in range(20):
                c = np.array([rng.uniform(-R0, R0), rng.uniform(-R0, R0), rng.uniform(-0.3, 0.3)])
                rr = rng.uniform(0.2, 0.45)
                if all(np.linalg.norm(c - pc) > rr + max(pr) + 0.05 for pc, pr in parts):
                    break
            parts.append((c, np.array([rr, rr * rng.uniform(0.8, 1.2), rr])))
        hu = rng.uniform(1000, 2800)
        lab = "dense"
        k = 0.05
    elif kind == "mass":
        A = rng.uniform(20, 80)
        r = np.sqrt(A / np.pi)
        asp = rng.uniform(1.0, 1.8)
        parts = [(np.zeros(3), np.array([r * np.sqrt(asp), r / np.sqrt(asp), r * rng.uniform(0.7, 1.1)]))]
        for _ in range(rng.integers(2, 6)):
            v = rng.normal(size=3)
            v[2] *= 0.5
            v /= np.linalg.norm(v)
            parts.append((v * r * rng.uniform(0.5, 0.9), np.full(3, r * rng.uniform(0.3, 0.55))))
        hu, lab = _dep_hu(rng, sc)
        hu = max(hu, 350)
        k = 0.4 * r
        hetero = rng.uniform(0.1, 0.4)
        if rng.random() < 0.3:
            rim = (rng.uniform(0.4, 1.0), rng.uniform(0.2, 0.6))
    else:  # plaque: long flat ellipsoid cut by a shell below the skin
        Lp = rng.uniform(3.0, 12.0)
        Wp = rng.uniform(1.5, 4.5)
        parts = [(np.zeros(3), np.array([Lp / 2, 2.5, Wp / 2]))]
        hu, lab = _dep_hu(rng, sc)
        k = 0.0
        if rng.random() < 0.4:
            hetero = rng.uniform(0.1, 0.35)
    dep = _Deposit(kind, np.zeros(3), np.eye(3), parts, k, hu, hetero, rim, w)
    dep.density = lab
    return dep


def _host_candidate(rng, sc, region):
    """a candidate centre (F frame, c still free) for a deposit region."""
    bones = {b.name: b for b in sc.bones}
    if region == "any":
        nr, nc = sc.shape
        X = rng.uniform(-0.5, 0.5) * nc * sc.spacing
        Y = rng.uniform(-0.5, 0.5) * nr * sc.spacing
        qa, qb, _ = _to_F(sc, np.array([X]), np.array([Y]), np.array([0.0]))
        return np.array([qa[0], qb[0]])
    if region == "pulp":
        b = bones["DP"]
        t = rng.uniform(0.45, 1.0) * sc.dp_tip_t + rng.uniform(0, 3.0)
        hb = np.interp(min(t, b.Ls), b.ts, b.hbs)
        y = -rng.uniform(hb * 0.3, hb + sc.pulp)
        return b.point(t, y)
    if region == "dorsal":
        b = bones[rng.choice(["PP", "MP", "DP"], p=[0.45, 0.45, 0.1])]
        t = b.L + rng.uniform(-7, 3) if b.name != "DP" else rng.uniform(0, 0.4) * b.L
        hb = np.interp(min(max(t, 0), b.Ls), b.ts, b.hbs)
        if b.head is not None and t > b.head[0]:
            hb = max(hb, b.head[2])
        return b.point(t, hb + rng.uniform(0.3, sc.td + 0.8))
    if region == "palmar":
        b = bones[rng.choice(["PP", "MP"])]
        t = rng.uniform(0.15, 0.9) * b.L
        hb = np.interp(min(t, b.Ls), b.ts, b.hbs)
        return b.point(t, -(hb + rng.uniform(0.3, sc.tp + 0.5)))
    # dermal anywhere along the displayed part
    b = bones[rng.choice(["PP", "MP", "DP"])]
    t = rng.uniform(0.0, 1.05) * b.L
    hb = np.interp(min(t, b.Ls), b.ts, b.hbs)
    side = rng.choice([-1, 1])
    y = side * (hb + (sc.td if side > 0 else sc.tp) - rng.uniform(0.5, 2.0))
    return b.point(t, y)


def _solve_c(sc, ab, zoff):
    """F-frame c so that the point (a, b, c) lies at world Z = zoff."""
    R = sc.R
    return (zoff - sc.tvec[2] - R[2, 0] * ab[0] - R[2, 1] * ab[1]) / R[2, 2]


def _place_deposits(rng, sc, n_target):
    kinds = ["speck", "nodule", "cluster", "plaque", "mass"]
    pk = np.array([0.26, 0.33, 0.12, 0.15, 0.14])
    regions = ["pulp", "dorsal", "palmar", "dermal"]
    if "DP" in sc.shown and sc.cut != "DP":
        pr = np.array([0.45, 0.2, 0.2, 0.15])
    elif "DP" in sc.shown:
        pr = np.array([0.25, 0.3, 0.25, 0.2])
    else:
        pr = np.array([0.0, 0.4, 0.4, 0.2])
    n_mass = 0
    tries = 0
    while len(sc.deposits) < n_target and tries < 450:
        tries += 1
        kind = kinds[rng.choice(5, p=pk)]
        if kind == "mass" and n_mass >= 1 + (rng.random() < 0.2):
            kind = "nodule"
        region = regions[rng.choice(4, p=pr)]
        if kind == "plaque":
            region = "dermal" if rng.random() < 0.6 else region
        if tries > 250:
            kind = str(rng.choice(["speck", "nodule"]))
            region = "any"
        dep = _make_deposit(rng, sc, kind)
        ab = _host_candidate(rng, sc, region)
        rad = dep.radius
        rz = min(rad, 1.0)
        rz = min(min(pp[1].min() for pp in dep.parts) * (0.3 if kind == "cluster" else 1.0), 1.0)
        zoff = rng.uniform(-0.3, 0.3) * rz
        c = _solve_c(sc, ab, zoff)
        p = np.array([ab[0], ab[1], c])
        tis = lambda a, b, cc: _tissue_base(sc, a, b, cc, own=True)
        abut = (rng.random() < 0.18) and kind in ("nodule", "speck", "mass", "cluster")
        dep.centre = p
        if kind == "plaque":
            depth = rng.uniform(0.1, 0.7)
            thick = rng.uniform(0.4, 1.1)
            # move the centre onto the mid-depth of the sheet along the gradient
            for _ in range(6):
                dv = tis(*p[:, None])[0]
                g = _grad(tis, p)
                gn = np.linalg.norm(g) + 1e-9
                p = p - (dv + depth + thick / 2) * g / gn ** 2
            g = _grad(tis, p)
            g /= np.linalg.norm(g) + 1e-9
            tang = np.array([-g[1], g[0], 0.0])
            tang /= np.linalg.norm(tang) + 1e-9
            Rm = np.stack([tang, np.cross(np.array([0, 0, 1.0]), tang), np.array([0, 0, 1.0])], 1)
            dep.R = Rm
            dep.plaque = (lambda a, b, cc: _tissue_base(sc, a, b, cc, own=True), depth, thick)
            dep.centre = p
        else:
            dep.R = _rand_rot(rng) if kind != "cluster" else _rot_x(rng.uniform(-0.2, 0.2)) @ _rot_z(rng.uniform(0, 6.3))
        if abut:
            db = lambda a, b, cc: _bone_union(sc, a, b, cc)
            rr = min(max(pp[1].min() for pp in dep.parts), rad)
            target = rr * rng.uniform(0.85, 1.05)
            p = dep.centre.copy()
            for _ in range(8):
                dv = db(*p[:, None])[0]
                if dv > 20:
                    break
                g = _grad(db, p)
                g[2] = 0.0
                gn = np.linalg.norm(g) + 1e-9
                p = p - (dv - target) * g / gn ** 2
            dep.centre = p
        p = dep.centre
        p[2] = _solve_c(sc, p[:2], zoff)
        dep.centre = p
        # checks
        dbv = _bone_union(sc, *p[:, None])[0]
        if kind == "plaque":
            if dbv < 1.0:
                continue
        elif abut:
            if dbv < 0.5 * min(pp[1].min() for pp in dep.parts) or dbv > rad + 0.6:
                continue
        elif dbv < rad * 0.9 + 0.2:
            continue
        dtv = _tissue_base(sc, *p[:, None], own=True)[0]
        if dtv > -0.25 or (kind != "plaque" and dtv > -min(rad, 1.5) * 0.3):
            continue
        if region in ("dorsal", "palmar", "dermal") and kind != "plaque" and dtv < -7.0:
            continue
        if kind in ("nodule", "mass", "cluster", "speck"):
            if sc.flexor.eval(*p[:, None])[0] < 0.3:
                continue
        if any(np.linalg.norm(p - o.centre) < rad + o.radius + 0.4 for o in sc.deposits):
            continue
        if sc.artery is not None and sc.artery_fn_dist(*p[:, None])[0] < rad + 0.8:
            continue
        if any(np.linalg.norm(p - isl.centre) < rad + isl.radius + 0.5 for isl in sc.extra_bones):
            continue
        W = _to_W(sc, p)
        if not _in_content(sc, np.array([W[0]]), np.array([W[1]]), pad=rad + 1.0)[0]:
            continue
        if kind == "mass":
            # rescale to the sampled target area in the central plane
            A0 = _plane_area(sc, dep)
            if A0 <= 0.5:
                continue
            dep.scale = float(np.clip(np.sqrt(rng.uniform(20, 80) / A0), 0.5, 2.0))
            dep._update_radius()
            if any(np.linalg.norm(p - o.centre) < dep.radius + o.radius + 0.4 for o in sc.deposits):
                continue
            if not _in_content(sc, np.array([W[0]]), np.array([W[1]]), pad=dep.radius + 1.0)[0]:
                continue
            n_mass += 1
        dep.region = region + ("/abutting cortex" if abut else "")
        sc.deposits.append(dep)


def _plane_area(sc, dep, step=0.05):
    """area of the deposit (minus bone) in the central plane, fine grid."""
    W = _to_W(sc, dep.centre)
    r = dep.radius + 0.2
    g = np.arange(-r, r + step / 2, step)
    X, Y = np.meshgrid(W[0] + g, W[1] + g)
    X, Y = X.ravel(), Y.ravel()
    qa, qb, qc = _to_F(sc, X, Y, np.zeros_like(X))
    d = np.maximum(dep.sdf(qa, qb, qc), -_bone_union(sc, qa, qb, qc))
    return float((d < 0).sum() * step * step)


# ----------------------------------------------------------------------------
# confounders
# ----------------------------------------------------------------------------
def _add_artery(rng, sc):
    ra = rng.uniform(0.45, 0.8)
    th = rng.uniform(0.15, 0.35)
    c_art = sc.delta + rng.uniform(-1, 1) * (ra + 0.3 * th)
    yart = rng.uniform(0.8, 2.5)
    pts = []
    for b in sc.bones:
        fr = (0.5, 0.8) if b.name == "MC" else ((0.1, 0.5) if b.name == "DP" else (0.1, 0.5, 0.9))
        for f in fr:
            t = f * b.L
            hb = np.interp(min(t, b.Ls), b.ts, b.hbs)
            p = b.point(t, -(hb + yart))
            pts.append(np.array([p[0], p[1], c_art]))
    w = _waves(rng, 3, 4.0, 14.0)
    thr = rng.uniform(-0.6, 0.4)
    hu = rng.uniform(500, 1800)

    def axis_dist(qa, qb, qc, ends=False):
        d, endf = None, None
        n = len(pts) - 1
        for i in range(n):
            di, h = _seg_dist(qa, qb, qc, pts[i], pts[i + 1])
            e = ((h >= 1.0) & (i == n - 1)) | ((h <= 0.0) & (i == 0))
            if d is None:
                d, endf = di, e
            else:
                m = di < d
                d = np.where(m, di, d)
                endf = np.where(m, e, endf)
        return (d - ra, endf) if ends else d - ra

    def fn(qa, qb, qc):
        da, endf = axis_dist(qa, qb, qc, ends=True)
        d = np.abs(da) - th / 2
        patch = _tex(qa, qb, qc, w)
        d = np.where(patch > thr, d, np.maximum(d, 0.5 + (thr - patch)))
        return np.where(endf, np.maximum(d, 1.0), d)  # open ends, no caps

    sc.artery = (fn, hu)
    sc.artery_fn_dist = axis_dist
    sc.conf.append("calcified digital artery (wall %.0f HU)" % hu)


def _add_ossicle(rng, sc):
    names = [n for n in sc.shown if n != "DP"] + (["MC"] if sc.mc_part else [])
    if not names or rng.random() < 0.35:
        # bone island inside a displayed phalanx
        nm = sc.shown[int(rng.integers(len(sc.shown)))]
        b = [x for x in sc.bones if x.name == nm][0]
        t = rng.uniform(0.25, 0.75) * b.L
        hb = np.interp(t, b.ts, b.hbs)
        r = min(rng.uniform(0.6, 1.8), max(hb - b.tc(t) - 0.3, 0.4))
        p = b.point(t, rng.uniform(-0.3, 0.3) * hb)
        c = _solve_c(sc, p, rng.uniform(-0.2, 0.2))
        shp = _ell_shape(np.array([p[0], p[1], c]), b.phi, r * rng.uniform(1.0, 2.0), r, r)
        sc.islands.append((shp, rng.uniform(800, 1500)))
        sc.conf.append("bone island in %s" % b.name)
        return
    nm = names[rng.integers(len(names))]
    b = [x for x in sc.bones if x.name == nm][0]
    if b.head is None:
        return
    side = -1 if rng.random() < 0.7 else 1
    r = np.array([rng.uniform(1.0, 2.4), rng.uniform(0.8, 1.6), rng.uniform(1.0, 2.0)])
    t = b.head[0] + rng.uniform(-0.3, 0.6) * b.head[1]
    p = b.point(t, side * (b.head[2] + r[1] + rng.uniform(0.4, 1.5)))
    c = _solve_c(sc, p, rng.uniform(-0.3, 0.3) * r[2])
    R = _rot_z(b.phi + rng.uniform(-0.4, 0.4))
    blob = _Blob([p[0], p[1], c], R, r, rng.uniform(0.3, 0.5), rng.uniform(900, 1500), rng.uniform(150, 400))
    blob.name = "sesamoid/ossicle"
    sc.extra_bones.append(blob)
    sc.conf.append("ossicle %s %s" % ("palmar to" if side < 0 else "dorsal to", nm))


def _add_adjacent(rng, sc):
    hosts = [b for b in sc.bones if b.name in sc.shown]
    for _ in range(12):
        h = hosts[rng.integers(len(hosts))]
        L = rng.uniform(22, 42) * sc.size
        hb, hw = rng.uniform(2.6, 3.6), rng.uniform(3.6, 4.8)
        side = -1 if rng.random() < 0.75 else 1
        off = rng.uniform(0.6, 0.92) * hw * (1 if rng.random() < 0.5 else -1)
        c0 = sc.delta + off
        phi = h.phi + np.deg2rad(rng.uniform(-35, 35))
        t = rng.uniform(0.0, 0.8) * h.L
        hh = np.interp(min(t, h.Ls), h.ts, h.hbs)
        skin = hh + (sc.tp if side < 0 else sc.td)
        T = hb + rng.uniform(2.5, 4.5)  # adjacent soft tissue half thickness
        y = side * (skin + T + rng.uniform(0.3, 3.0))
        centre = h.point(t, y)
        e = np.array([np.cos(phi), np.sin(phi)])
        Lb = L + 40.0  # proximal part continues out of view
        P0 = centre - e * (L / 2 + 40.0)
        ts = [0, 0.6 * Lb, 0.85 * Lb, Lb - hb * 1.2]
        adj = _Bone("ADJ", P0, phi, Lb, ts, [hb * 1.05, hb, hb, hb * 1.1],
                    [hw * 1.05, hw, hw, hw * 1.1], head=(Lb - hb * 1.2, hb * 1.2, hb * 1.25, hw * 1.2, 0.0),
                    tc_end=0.35, tc_mid=rng.uniform(0.7, 1.3), hu_cort=rng.uniform(1100, 1800),
                    hu_marrow=rng.uniform(150, 400), c0=c0)
        tip = P0 + e * (Lb + rng.uniform(2.0, 6.0) - T)
        tube = _tissue_chain([(P0[0] - 10 * e[0], P0[1] - 10 * e[1], T), (tip[0], tip[1], T)], 0.85, c0)
        # no collision with our finger (check along the axis, central plane)
        ok = True
        for f in np.linspace(0.0, 1.0, 25):
            p = P0 + e * f * (Lb + 4)
            dd = _tissue_base(sc, np.array([p[0]]), np.array([p[1]]), np.array([sc.delta]))[0]
            if dd < T + 0.3:
                ok = False
                break
        if not ok:
            continue
        kp = (sc.R[:2, :2] @ _bone_key_points(adj).T).T + sc.tvec[:2]
        frac = _in_content(sc, kp[:, 0], kp[:, 1], pad=0.0).mean()
        if not 0.03 < frac < 0.45:
            continue
        sc.extra_bones.append(adj)
        sc.adj_tubes.append(tube)
        sc.conf.append("adjacent finger bone grazing the slab")
        return


# ----------------------------------------------------------------------------
# CT simulation
# ----------------------------------------------------------------------------
_FILTERS = ["ramp", "shepp-logan", "cosine", "hamming", "hann"]


def _simulate_ct(rng, sc):
    nr, nc = sc.shape
    s = sc.spacing
    half_diag = 0.5 * np.hypot(nr * s, nc * s) + 1.5
    side = 2 * half_diag
    pr_min = rng.uniform(0.16, 0.3)
    Nr = int(np.clip(np.ceil(side / max(s, pr_min)), 128, 384))
    Nr += Nr % 2
    pr = side / Nr
    ss = 2
    g = (np.arange(Nr * ss) - (Nr * ss - 1) / 2.0) * (pr / ss)
    X, Y = np.meshgrid(g, g)
    X, Y = X.ravel(), Y.ravel()
    inside = X ** 2 + Y ** 2 <= (half_diag + pr) ** 2
    T = sc.slab
    nz = int(np.clip(round(T / 0.28) + 1, 3, 6))
    zs = -T / 2 + (np.arange(nz) + 0.5) * T / nz
    # only points that can meet soft tissue somewhere in the slab are rendered
    Xi, Yi = X[inside], Y[inside]
    d0 = _tissue(sc, *_to_F(sc, Xi, Yi, np.zeros_like(Xi)))
    act = d0 < T / 2 + 1.0 + pr
    acc = np.full(inside.sum(), -1000.0 * nz)
    if act.any():
        acc[act] = 0.0
        for z in zs:
            acc[act] += _render(sc, Xi[act], Yi[act], np.full(act.sum(), z), pr / ss)
    hu_ph = np.full(X.shape, -1000.0)
    hu_ph[inside] = acc / nz
    hu_ph = hu_ph.reshape(Nr * ss, Nr * ss).reshape(Nr, ss, Nr, ss).mean(axis=(1, 3))
    mu = MU_W * (1.0 + hu_ph / 1000.0)
    yy, xx = np.mgrid[0:Nr, 0:Nr]
    circ = (xx - Nr // 2) ** 2 + (yy - Nr // 2) ** 2 <= (Nr // 2 - 1) ** 2
    mu = np.where(circ, np.maximum(mu, 0.0), 0.0)
    n_ang = int(np.clip(Nr * rng.uniform(0.9, 1.3), 160, 420))
    theta = np.linspace(0.0, 180.0, n_ang, endpoint=False) + rng.uniform(0, 180.0 / n_ang)
    sino = radon(mu, theta=theta, circle=True) * pr  # line integrals (dimensionless)
    blur = rng.uniform(0.2, 0.8)
    sino_b = ndimage.gaussian_filter1d(sino, blur, axis=0, mode="constant")
    filt = _FILTERS[rng.choice(5, p=[0.3, 0.25, 0.15, 0.15, 0.15])]
    rec = iradon(sino_b / pr, theta=theta, filter_name=filt, circle=True)
    noise = rng.normal(size=sino.shape) * np.sqrt(np.exp(sino))
    rec_n = iradon(noise, theta=theta, filter_name=filt, circle=True)
    tissue = (hu_ph > -500) & circ
    sd = rec_n[tissue].std() if tissue.sum() > 50 else rec_n[circ].std()
    sigma = float(np.exp(rng.uniform(np.log(6.0), np.log(70.0))))
    hu_rec = (rec / MU_W - 1.0) * 1000.0 + rec_n * (sigma / max(sd, 1e-12))
    hu_rec = np.where(circ, hu_rec, -1000.0 + rec_n * (sigma / max(sd, 1e-12)))
    # resample onto the output grid
    xs, ys = _pix_xy(sc)
    ci = xs / pr + (Nr - 1) / 2.0
    ri = ys / pr + (Nr - 1) / 2.0
    RI, CI = np.meshgrid(ri, ci, indexing="ij")
    order = 3 if rng.random() < 0.6 else 1
    out = ndimage.map_coordinates(hu_rec, [RI, CI], order=order, mode="nearest")
    sc.ct = dict(Nr=Nr, pr=pr, n_ang=n_ang, filt=filt, sigma=sigma, blur=blur, nz=nz, order=order)
    return out.astype(np.float64)


# ----------------------------------------------------------------------------
# truth
# ----------------------------------------------------------------------------
def _sub_offsets(ss, s):
    o = (np.arange(ss) + 0.5) / ss - 0.5
    ox, oy = np.meshgrid(o * s, o * s)
    return ox.ravel(), oy.ravel()


def _bone_truth(sc):
    nr, nc = sc.shape
    s = sc.spacing
    xs, ys = _pix_xy(sc)
    cov = np.zeros((nr, nc))
    X, Y = np.meshgrid(xs, ys)
    # coarse culling per bone via world-projected bounding spheres
    for b in _bone_list(sc):
        W = _to_W(sc, b.centre)
        r = b.radius + 1.0
        c0 = max(0, int(np.floor((W[0] - r) / s + (nc - 1) / 2.0)))
        c1 = min(nc, int(np.ceil((W[0] + r) / s + (nc - 1) / 2.0)) + 1)
        r0 = max(0, int(np.floor((W[1] - r) / s + (nr - 1) / 2.0)))
        r1 = min(nr, int(np.ceil((W[1] + r) / s + (nr - 1) / 2.0)) + 1)
        if c1 <= c0 or r1 <= r0:
            continue
        Xs, Ys = X[r0:r1, c0:c1].ravel(), Y[r0:r1, c0:c1].ravel()
        qa, qb, qc = _to_F(sc, Xs, Ys, np.zeros_like(Xs))
        d = b.sdf(qa, qb, qc)
        cv = (d < 0).astype(float)
        margin = 0.75 * s + 0.1
        edge = np.abs(d) < margin
        if edge.any():
            ss = 6
            ox, oy = _sub_offsets(ss, s)
            Xe = (Xs[edge][:, None] + ox[None]).ravel()
            Ye = (Ys[edge][:, None] + oy[None]).ravel()
            qa, qb, qc = _to_F(sc, Xe, Ye, np.zeros_like(Xe))
            cv[edge] = (b.sdf(qa, qb, qc) < 0).reshape(-1, ss * ss).mean(1)
        # bones never overlap each other, so coverages add up
        cov[r0:r1, c0:c1] += cv.reshape(r1 - r0, c1 - c0)
    return cov >= 0.5


def _deposit_truth(sc, bone):
    nr, nc = sc.shape
    s = sc.spacing
    lab = np.zeros((nr, nc), np.int32)
    areas, keep = [], []
    ss = int(np.clip(np.ceil(s / 0.025), 4, 24))
    ox, oy = _sub_offsets(ss, s)
    for k, dep in enumerate(sc.deposits):
        W = _to_W(sc, dep.centre)
        r = dep.radius + s
        c0 = max(0, int(np.floor((W[0] - r) / s + (nc - 1) / 2.0)))
        c1 = min(nc, int(np.ceil((W[0] + r) / s + (nc - 1) / 2.0)) + 1)
        r0 = max(0, int(np.floor((W[1] - r) / s + (nr - 1) / 2.0)))
        r1 = min(nr, int(np.ceil((W[1] + r) / s + (nr - 1) / 2.0)) + 1)
        if c1 <= c0 or r1 <= r0:
            continue
        cx = (np.arange(c0, c1) - (nc - 1) / 2.0) * s
        cy = (np.arange(r0, r1) - (nr - 1) / 2.0) * s
        Xc, Yc = np.meshgrid(cx, cy)
        Xe = (Xc.ravel()[:, None] + ox[None]).ravel()
        Ye = (Yc.ravel()[:, None] + oy[None]).ravel()
        qa, qb, qc = _to_F(sc, Xe, Ye, np.zeros_like(Xe))
        d = np.maximum(dep.sdf(qa, qb, qc), -_bone_union(sc, qa, qb, qc))
        for j in keep:
            o = sc.deposits[j]
            if np.linalg.norm(o.centre - dep.centre) < o.radius + dep.radius + 0.5:
                d = np.maximum(d, -o.sdf(qa, qb, qc))
        cv = (d < 0).reshape(-1, ss * ss).mean(1).reshape(r1 - r0, c1 - c0)
        area = float(cv.sum() * s * s)
        m = (cv >= 0.5) & ~bone[r0:r1, c0:c1] & (lab[r0:r1, c0:c1] == 0)
        if area <= 0 or not m.any():
            sc.dropped.append(dep.kind)
            continue
        keep.append(k)
        blk = lab[r0:r1, c0:c1]
        blk[m] = len(keep)
        areas.append(area)
    sc.kept = keep
    return lab, areas


# ----------------------------------------------------------------------------
# display export, burnt-in text, padding
# ----------------------------------------------------------------------------
_JPEG_Q = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], float)


def _jpeg_like(v, quality):
    from scipy.fft import dctn, idctn
    nr, nc = v.shape
    pr, pc = (-nr) % 8, (-nc) % 8
    x = np.pad(v.astype(float), ((0, pr), (0, pc)), mode="edge") - 128.0
    H, W = x.shape
    blocks = x.reshape(H // 8, 8, W // 8, 8).transpose(0, 2, 1, 3)
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2 * quality
    Q = np.maximum(np.floor((_JPEG_Q * scale + 50) / 100), 1)
    C = dctn(blocks, axes=(2, 3), norm="ortho")
    C = np.round(C / Q) * Q
    y = idctn(C, axes=(2, 3), norm="ortho").transpose(0, 2, 1, 3).reshape(H, W) + 128.0
    return np.clip(np.round(y[:nr, :nc]), 0, 255)


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
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
    "W": ["10001", "10001", "10001", "10101", "10101", "10101", "01010"],
    "S": ["01111", "10000", "10000", "01110", "00001", "00001", "11110"],
    "m": ["00000", "00000", "11010", "10101", "10101", "10101", "10101"],
    ":": ["00000", "01100", "01100", "00000", "01100", "01100", "00000"],
    ".": ["00000", "00000", "00000", "00000", "00000", "01100", "01100"],
    " ": ["00000"] * 7,
}


def _text_string(rng):
    opts = ["R", "L", "W1500 L450", "SL 0.6mm", "%d" % rng.integers(1, 400),
            "S%d" % rng.integers(1, 30), "%d.%dmm" % (rng.integers(1, 40), rng.integers(0, 10))]
    return opts[rng.integers(len(opts))]


def _plan_text(rng, sc):
    nr, nc = sc.shape
    g = max(1, int(round(min(nr, nc) / 220)))
    txt = _text_string(rng)
    h, w = 7 * g, 6 * g * len(txt)
    if w + 6 > nc - 10 or h + 6 > nr - 10:
        return
    corner = rng.integers(4)
    r0 = 4 + sc.pads[0] if corner < 2 else nr - 4 - h - sc.pads[1]
    c0 = 4 + sc.pads[2] if corner % 2 == 0 else nc - 4 - w - sc.pads[3]
    sc.text_boxes.append((r0, r0 + h, c0, c0 + w))
    sc.texts.append((txt, r0, c0, g))
    if rng.random() < 0.4:  # a small marker (arrow-like bar) near the opposite corner
        L = int(rng.integers(8, 25)) * g
        r1 = nr - 6 - 3 * g - sc.pads[1] if corner < 2 else 6 + sc.pads[0]
        c1 = nc - 6 - L - sc.pads[3] if corner % 2 == 0 else 6 + sc.pads[2]
        sc.text_boxes.append((r1, r1 + 2 * g, c1, c1 + L))
        sc.texts.append(("#bar%d" % L, r1, c1, g))


def _draw_text(img, sc, value):
    for txt, r0, c0, g in sc.texts:
        if txt.startswith("#bar"):
            L = int(txt[4:])
            img[r0:r0 + 2 * g, c0:c0 + L] = value
            continue
        for i, ch in enumerate(txt):
            gl = _FONT.get(ch, _FONT[" "])
            bm = np.array([[c == "1" for c in row] for row in gl])
            bm = np.kron(bm, np.ones((g, g), bool))
            rr, cc = r0, c0 + i * 6 * g
            sub = img[rr:rr + bm.shape[0], cc:cc + bm.shape[1]]
            sub[bm[:sub.shape[0], :sub.shape[1]]] = value


# ----------------------------------------------------------------------------
# the case
# ----------------------------------------------------------------------------
def _new_scene():
    sc = _Scene()
    sc.extra_bones = []
    sc.adj_tubes = []
    sc.deposits = []
    sc.islands = []
    sc.artery = None
    sc.artery_fn_dist = None
    sc.conf = []
    sc.dropped = []
    sc.texts = []
    sc.text_boxes = []
    sc.pads = (0, 0, 0, 0)
    sc.cut = False
    return sc


def make_case(seed: int) -> dict:
    """one synthetic case; deterministic for a given seed."""
    out = None
    for attempt in range(8):
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, attempt, 0x6E4E7A])
        out = _make_case_once(rng)
        if out is not None:
            break
    return out


def _make_case_once(rng, allow_empty=False):
    sc = _new_scene()
    _build_finger(rng, sc)
    # tissue appearance
    sc.derm_hu = rng.uniform(35, 85)
    sc.fat_hu = rng.uniform(-115, -45)
    sc.sept_amp = rng.uniform(20, 80)
    sc.skin_th = rng.uniform(0.9, 2.6)
    sc.sleeve = rng.uniform(0.6, 1.4)
    sc.sleeve_hu = rng.uniform(30, 70)
    sc.tendon_hu = rng.uniform(70, 120)
    sc.trab_amp = rng.uniform(20, 90)
    sc.w_soft = _waves(rng, 5, 3.0, 12.0)
    sc.w_soft2 = _waves(rng, 5, 3.0, 12.0)
    sc.w_sept = _waves(rng, 6, 1.5, 5.0)
    sc.w_bone = _waves(rng, 4, 2.0, 8.0)
    sc.w_trab = _waves(rng, 8, 0.6, 2.5)
    sc.slab = float(rng.uniform(0.4, 1.5))
    want_art = rng.random() < 0.3
    sc.delta = float(rng.uniform(-1.8, 1.8))
    _setup_view(rng, sc)
    # padding strips and burnt-in text (decided before deposits are placed)
    if rng.random() < 0.1:
        nr, nc = sc.shape
        pads = [0, 0, 0, 0]
        for _ in range(1 + (rng.random() < 0.4)):
            i = int(rng.integers(4))
            n = nr if i < 2 else nc
            pads[i] = int(n * rng.uniform(0.03, 0.1))
        sc.pads = tuple(pads)
        sc.pad_value = -1024.0 if rng.random() < 0.6 else 0.0
    if rng.random() < 0.15:
        _plan_text(rng, sc)
    if want_art:
        _add_artery(rng, sc)
    if rng.random() < 0.25:
        _add_ossicle(rng, sc)
    if rng.random() < 0.2:
        _add_adjacent(rng, sc)
    n_dep = int(rng.choice(np.arange(1, 9), p=[0.14, 0.18, 0.17, 0.14, 0.11, 0.10, 0.08, 0.08]))
    _place_deposits(rng, sc, n_dep)

    hu = _simulate_ct(rng, sc)
    bone = _bone_truth(sc)
    lab, areas = _deposit_truth(sc, bone)

    # display export round trip
    exported = rng.random() < 0.35
    jpeg_q = None
    if exported:
        v = np.clip(np.round((hu - (450 - 750)) / 1500.0 * 255.0), 0, 255)
        if rng.random() < 0.6:
            jpeg_q = int(rng.integers(55, 96))
            v = _jpeg_like(v, jpeg_q)
        if sc.texts:
            _draw_text(v, sc, 255.0)
        hu = v / 255.0 * 1500.0 - 300.0
    elif sc.texts:
        _draw_text(hu, sc, float(rng.choice([3071.0, 2000.0, 1500.0])))
    top, bot, left, right = sc.pads
    if any(sc.pads):
        nr, nc = sc.shape
        pv = sc.pad_value
        sl = [np.s_[:top, :], np.s_[nr - bot:, :], np.s_[:, :left], np.s_[:, nc - right:]]
        for w, s_ in zip(sc.pads, sl):
            if w > 0:
                hu[s_] = pv
                bone[s_] = False
                lab[s_] = 0

    # seeds: brightest pixel of each label
    K = len(areas)
    if K == 0 and not allow_empty:
        return None
    seeds = []
    for k in range(1, K + 1):
        rr, cc = np.nonzero(lab == k)
        i = int(np.argmax(hu[rr, cc]))
        seeds.append((int(rr[i]), int(cc[i])))

    kinds = [sc.deposits[j].kind for j in sc.kept]
    notes = ("%s; %s in view%s%s; flex MCP/PIP/DIP %.0f/%.0f/%.0f deg; slab %.2f mm; "
             "%s%s; deposits: %s%s; confounders: %s; CT %s filt, %d px recon @%.2f mm, noise %.0f HU%s%s%s" % (
                 "tip %.0f deg" % sc.tip_angle,
                 "+".join(sc.shown), " (+MC)" if sc.mc_part else "",
                 (", %s cut by border" % sc.cut) if sc.cut else "",
                 *sc.flex, sc.slab,
                 "acro-osteolysis " if sc.acro else "", "osteopenia" if sc.osteopenia else "normal bone density",
                 ",".join(kinds) if kinds else "none",
                 (" (%d sub-threshold not labelled)" % len(sc.dropped)) if sc.dropped else "",
                 "; ".join(sc.conf) if sc.conf else "none",
                 sc.ct["filt"], sc.ct["Nr"], sc.ct["pr"], sc.ct["sigma"],
                 "; 8-bit W1500/L450 export" if exported else "",
                 (" + JPEG q%d" % jpeg_q) if jpeg_q else "",
                 "; burnt-in text" if sc.texts else ""))
    if any(sc.pads):
        notes += "; padding strips %.0f HU" % sc.pad_value
    return {
        "hu": hu.astype(np.float32),
        "spacing_mm": float(sc.spacing),
        "bone": bone.astype(bool),
        "deposits": lab.astype(np.int32),
        "areas_mm2": [float(a) for a in areas],
        "seeds": seeds,
        "notes": notes,
    }
