"""Generator F: sagittal DECT finger slices cut from an implicit 3-D hand model.

Design (methods paragraph)
--------------------------
Anatomy is built once per case as a small *3-D* scene of implicit surfaces and
then cut by an oblique plane; the 2-D image is never drawn directly.  Every
structure is a chain of "round cones" (sphere-swept segments with linearly
varying radius, evaluated as exact signed distance fields), expressed in a
finger-local frame (u distal, v dorsal, w radio-ulnar) whose lateral axis is
anisotropically scaled, so bones are wider than tall and the tuft is spade-like.
A ray consists of metacarpal, proximal, middle and distal phalanges placed by
forward kinematics with MCP/PIP/DIP flexion (SSc flexion contractures are
common).  Each bone has an outer surface and an inner (endosteal) surface with
thicker shaft cortex than epiphyseal cortex; phalangeal bases are carved by a
sphere concentric with the proximal head plus a joint space (a concave
articular base with a subchondral plate).  Optional disease: osteopenia (thin,
less dense cortex, sparse trabeculae), marginal erosions (subtracted spheres),
acro-osteolysis (irregular resorption front through the tuft, mild to
severe).  Soft tissue: a finger envelope chain (volar pulp, SSc
sclerodactyly tapering, or puffy swelling), thickened fibrotic dermis, fibro-
fatty subcutis with septa, flexor and extensor tendons, joint capsules, digital
neurovascular bundles and dorsal veins, a nail plate with free edge, a palm with
intrinsic muscle, optional sesamoid at the MCP, and the neighbouring finger(s)
with their own bones and flexion/abduction, which enter the image only when the
plane's yaw or offset reaches them.  The slicing plane has a random lateral
offset (off-centre cuts make phalanges thin or patchy), yaw and roll.

Disease: calcinosis deposits are 3-D objects planned in anatomical terms
(fingertip pulp, tip/hyponychium, dorsal over PIP/DIP, volar shafts, lateral
subcutis, periarticular touching bone) at a depth under the skin surface and
a random offset from the cut plane.  Shapes: punctate ellipsoids, lobulated
nodules, large tumoral (metaball) masses that also bulge the skin, sheet-like
plaques and linear streaks that follow the skin contour at fixed depth, and
clusters of granules in a fainter matrix.  Density (hydroxyapatite, expressed
as 120-kVp-equivalent calcium HU, ~130..2000) is solid, core-dense, rim-dense
(egg-shell) or mottled (3-D plane-wave texture).  Deposits are clipped to the
soft tissue and to the outside of bone.  The truth is measured in the slice:
each connected piece of calcification in the plane is one deposit; its area is
counted on a supersampled grid (0.04 mm sub-samples, up to ~0.1 mm for the
largest masses) inside the visible field; a pixel gets the label if the majority of its sub-samples are deposit
and its centre is not bone; `bone` is the set of pixel centres inside any bone
surface.  Slivers under 0.15 mm^2 are removed from image and truth alike.

Imaging chain: a fine grid (1x or 3x the output pixel, so output pixel centres
are fine-pixel centres) is painted with material CT numbers that are derived
from a low-kV / high-kV pair (80 kV and Sn140 kV-like calcium gain 1.45 and
0.80) and combined as a linear blend, pure low, pure high, or a virtual
mono-energetic image; deposits enter as exact area fractions.  Then: Gaussian
PSF (soft or bone kernel), block averaging to the output grid, edge
enhancement for sharp kernels, optional beam-hardening dark bands between dense
structures and photon-starvation streaks, kernel-shaped correlated noise whose
level follows the DECT blend and the local tissue thickness, scan-circle or
scan-range padding (-1024/-2000/-2048/-3024/0), clipping at -1024 and/or
3071 in some scanners, integer rounding, and in a fraction of cases an 8-bit export
through window 1500 / level 450 (often JPEG-compressed, PACS-style) mapped back
to HU, occasionally with a burned-in scale bar.

What varies: finger (index..little), patient size, flexion, finger direction
in the image (tip up/down/left/right/oblique, dorsal side either way), field
of view (whole finger with MCP and palm, long view, proximally/distally cut,
zoomed on a lesion), image size 256..1024 per side (often non-square, larger
side usually 512) and spacing 0.1..0.6 mm, slice offset/tilt, bone mineral,
erosions, acro-osteolysis, skin thickening, fat atrophy, deposit number/shape/
size/density/location, kernel, noise, artefacts and export path.  Approximate
mix: whole finger with MCP ~66 %, long / whole-hand view ~12 %, cut ~16 %,
zoom ~6 %; off-centre cut (2-5 mm) ~22 %; yaw 4-9 deg ~15 % (neighbouring
finger in the slice ~5 %); osteopenia ~45 %; acro-osteolysis ~38 %; padding
~38 %; 8-bit export ~18 %; 1..13 deposits per slice, 0.15..>150 mm^2, ~20 %
touching bone.  Most cases are ordinary; the hard ones come from the tails of
these distributions.

Only numpy and scipy are used.
"""
import numpy as np
from scipy import ndimage as ndi
from scipy import fft as sfft

__all__ = ["make_case"]

F32 = np.float32
BIG = 1.0e4

# calcium (hydroxyapatite) CT-number gain relative to a 120 kVp reference
G_LOW, G_HIGH = 1.45, 0.80


# ----------------------------------------------------------------------------
# implicit primitives
# ----------------------------------------------------------------------------
def _round_cone(x, y, z, A, B, r1, r2):
    """Exact SDF of a sphere-swept segment A->B with radii r1 -> r2."""
    bax, bay, baz = B[0] - A[0], B[1] - A[1], B[2] - A[2]
    l2 = bax * bax + bay * bay + baz * baz
    rr = r1 - r2
    a2 = l2 - rr * rr
    il2 = 1.0 / l2
    pax = x - F32(A[0]); pay = y - F32(A[1]); paz = z - F32(A[2])
    yy = pax * F32(bax) + pay * F32(bay) + paz * F32(baz)
    zz = yy - F32(l2)
    cx = pax * F32(l2) - F32(bax) * yy
    cy = pay * F32(l2) - F32(bay) * yy
    cz = paz * F32(l2) - F32(baz) * yy
    x2 = cx * cx + cy * cy + cz * cz
    y2 = yy * yy * F32(l2)
    z2 = zz * zz * F32(l2)
    k = F32(np.sign(rr) * rr * rr) * x2
    d = (np.sqrt(x2 * F32(a2 * il2)) + yy * F32(rr)) * F32(il2) - F32(r1)
    cb = np.sign(zz) * F32(a2) * z2 > k
    ca = np.sign(yy) * F32(a2) * y2 < k
    if cb.any():
        d[cb] = np.sqrt(x2[cb] + z2[cb]) * F32(il2) - F32(r2)
    if ca.any():
        d[ca] = np.sqrt(x2[ca] + y2[ca]) * F32(il2) - F32(r1)
    return d


def _smin(a, b, k):
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return (b + (a - b) * h - k * h * (1.0 - h)).astype(F32)


class Chain:
    """Chain of round cones in a local frame, lateral axis scaled by kw."""

    def __init__(self, nodes, radii, kw=1.0):
        nodes = np.asarray(nodes, float).reshape(-1, 3).copy()
        radii = np.asarray(radii, float).reshape(-1).copy()
        if len(nodes) == 1:
            nodes = np.vstack([nodes, nodes + [1e-3, 0, 0]])
            radii = np.r_[radii, radii]
        # make every segment valid (|r1-r2| < length)
        for i in range(len(nodes) - 1):
            L = np.linalg.norm(nodes[i + 1] - nodes[i])
            if L < 1e-3:
                nodes[i + 1] = nodes[i] + [1e-3, 0, 0]
                L = 1e-3
            if abs(radii[i] - radii[i + 1]) > 0.98 * L:
                m = 0.5 * (radii[i] + radii[i + 1])
                h = 0.49 * L
                radii[i], radii[i + 1] = (m + h, m - h) if radii[i] > radii[i + 1] else (m - h, m + h)
        self.kw = float(kw)
        self.nodes = nodes
        self.sn = nodes.copy()
        self.sn[:, 2] /= self.kw
        self.radii = np.maximum(radii, 0.05)
        self.lo = (nodes - self.radii[:, None] * np.array([1, 1, self.kw])).min(0)
        self.hi = (nodes + self.radii[:, None] * np.array([1, 1, self.kw])).max(0)

    def sdf(self, u, v, w):
        ws = w / F32(self.kw)
        d = None
        for i in range(len(self.sn) - 1):
            di = _round_cone(u, v, ws, self.sn[i], self.sn[i + 1], self.radii[i], self.radii[i + 1])
            d = di if d is None else np.minimum(d, di)
        return d


class Frame:
    """Rigid map world -> local: local = R^T (P - T)."""

    def __init__(self, R=None, T=None):
        self.R = np.eye(3) if R is None else np.asarray(R, float)
        self.T = np.zeros(3) if T is None else np.asarray(T, float)

    def to_local(self, x, y, z):
        R = self.R
        dx, dy, dz = x - F32(self.T[0]), y - F32(self.T[1]), z - F32(self.T[2])
        return (dx * F32(R[0, 0]) + dy * F32(R[1, 0]) + dz * F32(R[2, 0]),
                dx * F32(R[0, 1]) + dy * F32(R[1, 1]) + dz * F32(R[2, 1]),
                dx * F32(R[0, 2]) + dy * F32(R[1, 2]) + dz * F32(R[2, 2]))

    def to_world(self, p):
        return self.T + self.R @ np.asarray(p, float)

    def aabb(self, lo, hi):
        c = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        wc = c @ self.R.T + self.T
        return wc.min(0), wc.max(0)


class Obj:
    """A scene object: tag, world AABB, evaluator fn(x,y,z) (world arrays)."""

    def __init__(self, tag, lo, hi, fn, fid=0):
        self.tag, self.lo, self.hi, self.fn, self.fid = tag, np.asarray(lo), np.asarray(hi), fn, fid


def _rot(axis, ang):
    c, s = np.cos(ang), np.sin(ang)
    if axis == 0:
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == 1:
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _pw_noise(params, x, y, z):
    """Smooth 3-D plane-wave noise, ~N(0, 0.7)."""
    k, ph = params
    out = np.zeros(np.shape(x), F32)
    for i in range(len(ph)):
        out += np.cos(x * F32(k[i, 0]) + y * F32(k[i, 1]) + z * F32(k[i, 2]) + F32(ph[i]))
    return out * F32(1.0 / np.sqrt(len(ph)))


def _pw_params(rng, n, lam_lo, lam_hi):
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    lam = rng.uniform(lam_lo, lam_hi, n)
    return (d * (2 * np.pi / lam)[:, None], rng.uniform(0, 2 * np.pi, n))


# ----------------------------------------------------------------------------
# anatomy
# ----------------------------------------------------------------------------
FINGERS = {  # L_mc, L_pp, L_mp, L_dp, size
    "index": (65.0, 40.0, 23.0, 17.5, 1.00),
    "middle": (63.0, 45.0, 28.0, 19.0, 1.04),
    "ring": (57.0, 42.0, 26.0, 18.5, 0.98),
    "little": (52.0, 33.0, 19.0, 16.5, 0.88),
}
ORDER = ["index", "middle", "ring", "little"]


class Finger:
    """One ray (MC + 3 phalanges) with soft tissue, in its own local frame."""

    def __init__(self, rng, ftype, pat, frame, fid, flex=None):
        self.ftype, self.frame, self.fid, self.pat = ftype, frame, fid, pat
        Lmc, Lpp, Lmp, Ldp, sz = FINGERS[ftype]
        s = sz * pat["scale"] * rng.normal(1.0, 0.03)
        self.s = s
        Lmc, Lpp, Lmp, Ldp = [L * s * rng.normal(1.0, 0.03) for L in (Lmc, Lpp, Lmp, Ldp)]
        if flex is None:
            flex = pat["flex"]
        th_mcp, th_pip, th_dip = [np.deg2rad(t) for t in flex]
        R = lambda r: r * s * rng.normal(1.0, 0.04)
        mc = dict(Rh=R(5.6), neck=R(4.0), shaft=R(3.5), base=R(5.0))
        pp = dict(Rb=R(4.7), Rs=R(3.1), Rh=R(3.7))
        mp = dict(Rb=R(3.9), Rs=R(2.5), Rh=R(3.0))
        dp = dict(Rb=R(3.3), Rw=R(1.6), Rt=R(1.75))
        gapf = pat["gapf"]
        gaps = [g * s * gapf * rng.uniform(0.85, 1.15) for g in (1.45, 1.2, 1.0)]
        k_ph = pat["k_ph"]
        t_sh = pat["t_shaft"] * s
        t_end = pat["t_end"] * s

        def dirs(phi):
            return np.array([np.cos(phi), -np.sin(phi), 0.0]), np.array([np.sin(phi), np.cos(phi), 0.0])

        self.bones = []   # list of dict(outer=[Chain], inner=[Chain], ops=[...], J, d, n, s0, L)
        # --- metacarpal (head centre = origin = MCP joint centre)
        d0, n0 = dirs(0.0)
        J1 = np.zeros(3)
        P = lambda J, d, n, a, v: J + a * d + v * n
        mcn = [P(J1, d0, n0, a, v) for a, v in ((0, 0), (-9 * s, 0.35 * s), (-28 * s, 0.9 * s),
                                              (-(Lmc - 14 * s), 0.5 * s), (-(Lmc - 5 * s), 0.0))]
        mcr = [mc["Rh"], mc["neck"], mc["shaft"], mc["shaft"] * 1.06, mc["base"]]
        mct = [t_end, t_sh * 0.8, t_sh, t_sh, t_end]
        self._add_bone(mcn, mcr, mct, 1.15, [], J1, d0, n0, 0.0, Lmc)
        self.mc_head = (J1.copy(), mc["Rh"])
        # --- phalanges
        phis = [th_mcp, th_mcp + th_pip, th_mcp + th_pip + th_dip]
        J = J1
        Rprev = mc["Rh"]
        self.joints = [J1.copy()]
        self.frames = []
        for bi, (L, prm, phi, gap) in enumerate(zip((Lpp, Lmp, Ldp), (pp, mp, dp), phis, gaps)):
            d, n = dirs(phi)
            s0 = Rprev + gap
            Rb = prm["Rb"]
            if bi < 2:
                Rs, Rh = prm["Rs"], prm["Rh"]
                spec = [(s0 + 0.3 * Rb, 0.0, Rb, t_end), (s0 + 0.36 * L, 0.28 * s, Rs, t_sh),
                        (s0 + 0.7 * L, 0.2 * s, Rs * 1.03, t_sh), (s0 + L - Rh, -0.1 * s, Rh, t_end)]
            else:
                Rw, Rt = prm["Rw"], prm["Rt"]
                spec = [(s0 + 0.3 * Rb, 0.0, Rb, t_end), (s0 + 0.5 * L, 0.1 * s, Rw, t_sh * 0.7),
                        (s0 + L - 2.6 * s, -0.15 * s, Rw * 1.05, t_sh * 0.6)]
                Rh = Rt
            nodes = [P(J, d, n, a, v) for a, v, _, _ in spec]
            radii = [r for _, _, r, _ in spec]
            thick = [t for _, _, _, t in spec]
            ops = [("cup", J.copy(), Rprev + gap, t_end * 0.9)]
            extra = None
            if bi == 2:
                tuft = Chain([P(J, d, n, s0 + L - 1.6 * s - Rt, -0.3 * s), P(J, d, n, s0 + L - Rt, -0.4 * s)],
                             [Rt * 0.85, Rt], pat["k_tuft"])
                tuft_in = Chain(tuft.nodes, np.maximum(tuft.radii - 0.45 * s, 0.15), pat["k_tuft"])
                extra = (tuft, tuft_in)
                if pat["ao"] > 0:
                    ops.append(("ao", J.copy(), d, n, s0 + L - pat["ao"] * 0.55 * L,
                                pat["ao_amp"], _pw_params(rng, 4, 2.5, 6.0), t_end))
            self._add_bone(nodes, radii, thick, k_ph, ops, J, d, n, s0, L, extra)
            Jn = P(J, d, n, s0 + L - Rh, -0.1 * s) if bi < 2 else P(J, d, n, s0 + L, -0.35 * s)
            self.frames.append(dict(J=J.copy(), d=d, n=n, s0=s0, L=L, Rb=Rb, Rs=prm.get("Rs", prm.get("Rw")),
                                    Rh=Rh, end=Jn))
            J = Jn
            Rprev = Rh
            self.joints.append(J.copy())
        self.tip_bone = J.copy()
        # erosions (marginal, near the joint ends)
        for _ in range(pat["n_ero"]):
            bi = rng.integers(0, 3)
            fr = self.frames[bi]
            at_base = rng.random() < 0.5
            a = fr["s0"] + (0.25 * fr["Rb"] if at_base else fr["L"] - 0.8 * fr["Rh"])
            rad = fr["Rb"] if at_base else fr["Rh"]
            ang = rng.choice([-1, 1]) * rng.uniform(0.5, 1.4)
            dirv = np.cos(ang) * fr["n"] + np.sin(ang) * fr["d"] * (-1 if at_base else 1)
            c = fr["J"] + a * fr["d"] + dirv * rad * 0.95
            c[2] = rng.normal(0, 1.0)
            self.bones[bi + 1]["ops"].append(("ero", c, rng.uniform(0.6, 1.6) * s, 0.3 * s))

        # --- soft-tissue envelope
        sc = pat["soft"]
        f_pp, f_mp, f_dp = self.frames
        bone_r = [f_pp["Rs"], f_pp["Rh"], f_mp["Rs"], f_mp["Rh"], f_dp["Rw"] if "Rw" in f_dp else 1.6 * s, dp["Rt"]]
        soft_r = np.array([8.5, 8.8, 7.6, 7.2, 6.6, 5.3]) * s

        def rsoft(i, extra_f=1.0):
            return bone_r[i] + (soft_r[i] - bone_r[i]) * sc * extra_f
        nmcp = 0.5 * (n0 + f_pp["n"])
        npip = 0.5 * (f_pp["n"] + f_mp["n"])
        ndip = 0.5 * (f_mp["n"] + f_dp["n"])
        env_nodes = [J1 - 5 * s * d0 - 2.4 * s * nmcp,
                     f_pp["J"] + (f_pp["s0"] + 0.45 * f_pp["L"]) * f_pp["d"] - 1.6 * s * f_pp["n"],
                     self.joints[1] - 1.0 * s * npip,
                     f_mp["J"] + (f_mp["s0"] + 0.5 * f_mp["L"]) * f_mp["d"] - 1.3 * s * f_mp["n"],
                     self.joints[2] - 0.9 * s * ndip,
                     f_dp["J"] + (f_dp["s0"] + 0.45 * f_dp["L"]) * f_dp["d"] - 1.6 * s * f_dp["n"],
                     f_dp["J"] + (f_dp["s0"] + f_dp["L"] - 1.4 * s) * f_dp["d"] - pat["pulp_v"] * s * f_dp["n"]]
        env_r = [10.2 * s * sc ** 0.5, rsoft(0), rsoft(1), rsoft(2), rsoft(3), rsoft(4), rsoft(5, pat["pulp"])]
        self.env = Chain(env_nodes, env_r, pat["k_env"])
        self.env_extra = []  # bulges from tumoral deposits (Chains)

        # --- tendons
        fl_nodes = [J1 + np.array([-30 * s, -7.5 * s, 0]), J1 + np.array([-8 * s, -(mc["Rh"] + 2.2 * s), 0])]
        fl_r = [2.6 * s, 2.5 * s]
        for fr, rr in zip(self.frames, (2.1, 1.5, 0.8)):
            fl_nodes.append(fr["J"] + (fr["s0"] + 0.1 * fr["L"]) * fr["d"] - (fr["Rb"] + rr * s * 0.9) * fr["n"])
            fl_r.append(rr * s)
            if rr > 1.0:
                fl_nodes.append(fr["J"] + (fr["s0"] + 0.55 * fr["L"]) * fr["d"] - (fr["Rs"] + 0.3 * s + rr * s * 0.8) * fr["n"])
                fl_r.append(rr * s * 0.9)
        self.flexor = Chain(fl_nodes, fl_r, 1.7)
        ex_nodes = [J1 + np.array([-30 * s, 5.4 * s, 0]), J1 + np.array([0, mc["Rh"] + 0.8 * s, 0])]
        ex_r = [0.9 * s, 0.8 * s]
        for fr in self.frames:
            ex_nodes.append(fr["J"] + (fr["s0"] + 0.45 * fr["L"]) * fr["d"] + (fr["Rs"] + 0.8 * s) * fr["n"])
            ex_r.append(0.65 * s)
        ex_nodes[-1] = f_dp["J"] + (f_dp["s0"] + 0.12 * f_dp["L"]) * f_dp["d"] + (f_dp["Rb"] + 0.4 * s) * f_dp["n"]
        self.extensor = Chain(ex_nodes, ex_r, 3.0)
        # --- joint capsules / volar plates
        self.capsules = []
        for ji in range(1, 4):
            Jc = self.joints[ji - 1]
            fr = self.frames[ji - 1]
            rc = (mc["Rh"] if ji == 1 else self.frames[ji - 2]["Rh"]) + 0.9 * s
            a = Jc + 0.8 * s * fr["d"] - 0.3 * s * fr["n"]
            self.capsules.append(Chain([a - 1.0 * s * fr["d"], a + 1.5 * s * fr["d"]], [rc, rc * 0.9], 1.2))
        # --- digital neurovascular bundles + a dorsal vein
        self.vessels = []
        for side in (-1, 1):
            nodes, rr = [], []
            for fr in self.frames:
                for fa in (0.2, 0.75):
                    p = fr["J"] + (fr["s0"] + fa * fr["L"]) * fr["d"] - (fr["Rs"] + 1.9 * s) * fr["n"]
                    p[2] = side * (fr["Rs"] * 1.3 + 2.2 * s)
                    nodes.append(p)
                    rr.append(0.95 * s)
            rr[-1] = 0.5 * s
            self.vessels.append(Chain(nodes, rr, 1.0))
        wv = rng.uniform(-5, 5) * s
        vn = []
        for fr in self.frames[:2]:
            for fa in (0.1, 0.9):
                p = fr["J"] + (fr["s0"] + fa * fr["L"]) * fr["d"] + (fr["Rs"] + 2.2 * s) * fr["n"]
                p[2] = wv
                vn.append(p)
        self.vessels.append(Chain(vn, [0.7 * s] * len(vn), 1.0))
        # --- sesamoid (radial side of index / ulnar side of little MCP)
        self.sesamoid = None
        if pat["sesamoid"] and ftype in ("index", "little", "middle"):
            rs = rng.uniform(1.6, 2.3) * s
            ang = np.deg2rad(rng.uniform(10, 35))
            c = J1 + (mc["Rh"] + 0.6 * s + rs) * np.array([np.sin(ang), -np.cos(ang), 0.0])
            c[2] = rng.choice([-1, 1]) * rng.uniform(1.5, 4.0) * s
            out = Chain([c - [0.6 * rs, 0, 0], c + [0.6 * rs, 0, 0]], [rs * 0.8, rs * 0.8], 1.0)
            inn = Chain(out.nodes, np.maximum(out.radii - 0.3 * s, 0.1), 1.0)
            self.sesamoid = (out, inn)
        # --- nail (plate following the dorsal skin of the distal phalanx)
        self._build_nail(rng)

    def _add_bone(self, nodes, radii, thick, kw, ops, J, d, n, s0, L, extra=None):
        radii = np.asarray(radii)
        inner = np.maximum(radii - np.asarray(thick), 0.15)
        outer_c = [Chain(nodes, radii, kw)]
        inner_c = [Chain(nodes, inner, kw)]
        if extra is not None:
            outer_c.append(extra[0])
            inner_c.append(extra[1])
        self.bones.append(dict(outer=outer_c, inner=inner_c, ops=ops, kw=kw))

    def _build_nail(self, rng):
        fr = self.frames[2]
        s = self.s
        L, s0 = fr["L"], fr["s0"]
        a = np.linspace(s0, s0 + L + 5 * s, 60)
        vv = np.linspace(-2, 12 * s, 300)
        A, V = np.meshgrid(a, vv, indexing="ij")
        Pts = fr["J"][None, None, :] + A[..., None] * fr["d"] + V[..., None] * fr["n"]
        e = self.env.sdf(Pts[..., 0].astype(F32), Pts[..., 1].astype(F32), np.zeros_like(A, F32))
        inside = e < 0
        h = np.full(len(a), np.nan)
        for i in range(len(a)):
            idx = np.nonzero(inside[i])[0]
            if len(idx):
                h[i] = vv[idx.max()]
        ok = ~np.isnan(h)
        a_ok, h_ok = a[ok], h[ok]
        # extrapolate beyond the pulp for the free edge
        slope = (h_ok[-1] - h_ok[-6]) / (a_ok[-1] - a_ok[-6]) if len(a_ok) > 6 else -0.3
        slope = min(slope, 0.0)
        ase = a_ok[-1] - 2.2 * s
        slope = (np.interp(ase, a_ok, h_ok) - np.interp(ase - 4 * s, a_ok, h_ok)) / (4 * s)
        self.nail = dict(J=fr["J"], d=fr["d"], n=fr["n"], a=a, h=np.where(ok, h, h_ok[-1] + slope * (a - a_ok[-1])),
                         ase=ase, slope=float(np.clip(slope, -0.35, 0.05)),
                         a0=s0 + 0.28 * L, a1=ase + rng.uniform(0.8, 3.2) * s,
                         t=rng.uniform(0.45, 0.8) * s, wn=rng.uniform(4.5, 6.0) * s, rc=rng.uniform(6, 9) * s)

    # ---- evaluators (finger-local coords) ----
    def bone_sdf(self, b, u, v, w, inner=True):
        out = None
        for c in b["outer"]:
            d = c.sdf(u, v, w)
            out = d if out is None else np.minimum(out, d)
        inn = None
        if inner:
            for c in b["inner"]:
                d = c.sdf(u, v, w)
                inn = d if inn is None else np.minimum(inn, d)
        kw = F32(b["kw"])
        for op in b["ops"]:
            if op[0] in ("cup", "ero"):
                c, R, t = op[1], op[2], op[3]
                dd = np.sqrt((u - F32(c[0])) ** 2 + (v - F32(c[1])) ** 2 + (w / kw - F32(c[2])) ** 2) - F32(R)
                out = np.maximum(out, -dd)
                if inner:
                    inn = np.maximum(inn, -(dd - F32(t)))
            elif op[0] == "ao":
                _, J, d, n, acut, amp, pw, t = op
                a = (u - F32(J[0])) * F32(d[0]) + (v - F32(J[1])) * F32(d[1])
                vv = (u - F32(J[0])) * F32(n[0]) + (v - F32(J[1])) * F32(n[1])
                cut = a - F32(acut) - F32(amp) * _pw_noise(pw, vv, w, a * 0.3)
                out = np.maximum(out, cut)
                if inner:
                    inn = np.maximum(inn, cut + F32(t))
        return out, inn

    def env_sdf(self, u, v, w):
        d = self.env.sdf(u, v, w)
        for c in self.env_extra:
            d = _smin(d, c.sdf(u, v, w), 1.5)
        return d

    def nail_sdf(self, u, v, w):
        """Nail plate: a band hugging the dorsal skin of the tip + a short straight free edge."""
        nl = self.nail
        J, d, n = nl["J"], nl["d"], nl["n"]
        a = (u - F32(J[0])) * F32(d[0]) + (v - F32(J[1])) * F32(d[1])
        vv = (u - F32(J[0])) * F32(n[0]) + (v - F32(J[1])) * F32(n[1])
        t = F32(nl["t"])
        hse = F32(np.interp(nl["ase"], nl["a"], nl["h"]))
        # band on the skin (sinks under the proximal nail fold at the root)
        e = self.env_sdf(u, v, w)
        root = np.clip((nl["a0"] + 2.5 - a) / 2.5, 0, 1) * F32(0.8)
        d1 = np.abs(e + root - (t / 2 - F32(0.2))) - t / 2
        d1 = np.maximum(d1, np.maximum(F32(nl["a0"]) - a, a - F32(nl["ase"])))
        d1 = np.maximum(d1, hse - F32(4.0) - vv)
        # free edge
        hf = hse + F32(nl["slope"]) * (a - F32(nl["ase"])) - w * w / F32(2 * nl["rc"]) - F32(0.2)
        d2 = np.abs(vv - (hf + t / 2)) - t / 2
        d2 = np.maximum(d2, np.maximum(F32(nl["ase"]) - a, a - F32(nl["a1"])))
        dd = np.minimum(d1, d2)
        return np.maximum(dd, np.abs(w) - F32(nl["wn"]))

    def objects(self):
        """Scene objects for this finger (world AABBs)."""
        fr = self.frame
        objs = []

        def wrap(tag, chains, fn, pad=0.5):
            lo = np.min([c.lo for c in chains], 0) - pad
            hi = np.max([c.hi for c in chains], 0) + pad
            wlo, whi = fr.aabb(lo, hi)
            objs.append(Obj(tag, wlo, whi, fn, self.fid))

        def loc(f):
            return lambda x, y, z: f(*fr.to_local(x, y, z))
        wrap("env", [self.env] + self.env_extra, loc(self.env_sdf), 1.0)
        for b in self.bones:
            wrap("bone", b["outer"], lambda x, y, z, inner=True, b=b: self.bone_sdf(b, *fr.to_local(x, y, z), inner=inner))
        if self.sesamoid is not None:
            so, si = self.sesamoid

            def ses(x, y, z, inner=True):
                u, v, w = fr.to_local(x, y, z)
                return so.sdf(u, v, w), (si.sdf(u, v, w) if inner else None)
            wrap("bone", [so], ses)
        wrap("tendon", [self.flexor], loc(self.flexor.sdf))
        wrap("tendon", [self.extensor], loc(self.extensor.sdf))
        for c in self.capsules:
            wrap("capsule", [c], loc(c.sdf))
        for c in self.vessels:
            wrap("vessel", [c], loc(c.sdf))
        nl = self.nail
        fr_dp = self.frames[2]
        pts = np.array([fr_dp["J"] + a * fr_dp["d"] + v * fr_dp["n"] for a in (nl["a0"] - 1, nl["a1"] + 1)
                        for v in (-3, 12)])
        lo = np.r_[pts[:, :2].min(0), -nl["wn"] - 1]
        hi = np.r_[pts[:, :2].max(0), nl["wn"] + 1]
        wlo, whi = fr.aabb(lo, hi)
        objs.append(Obj("nail", wlo, whi, loc(self.nail_sdf), self.fid))
        return objs


def _palm_objects(s):
    palm = Chain([[-80 * s, -5.5 * s, 0], [-38 * s, -6.0 * s, 0], [-7 * s, -5.2 * s, 0]],
                 [15.0 * s, 14.5 * s, 11.3 * s], 3.0)
    musc = Chain([[-72 * s, -12.5 * s, 0], [-16 * s, -11 * s, 0]], [6.0 * s, 4.2 * s], 3.4)
    inter = Chain([[-62 * s, 0.3 * s, 0], [-14 * s, -0.5 * s, 0]], [4.6 * s, 3.6 * s], 6.0)
    objs = []
    for tag, c in (("env", palm), ("muscle", musc), ("muscle", inter)):
        objs.append(Obj(tag, c.lo - 0.5, c.hi + 0.5, c.sdf, -1))
    return objs


# ----------------------------------------------------------------------------
# calcinosis deposits (3-D)
# ----------------------------------------------------------------------------
class Deposit:
    def __init__(self, kind, centre, frame_axes, prm, rb, main):
        self.kind, self.c, self.ax, self.p, self.rb, self.main = kind, np.asarray(centre), frame_axes, prm, rb, main
        self.lo = self.c - rb
        self.hi = self.c + rb

    def eval(self, x, y, z):
        """-> inside (bool), calcium HU (120 kVp-equivalent) per point."""
        p = self.p
        dx, dy, dz = x - F32(self.c[0]), y - F32(self.c[1]), z - F32(self.c[2])
        t1, t2, t3 = self.ax
        a1 = dx * F32(t1[0]) + dy * F32(t1[1]) + dz * F32(t1[2])
        a2 = dx * F32(t2[0]) + dy * F32(t2[1]) + dz * F32(t2[2])
        a3 = dx * F32(t3[0]) + dy * F32(t3[1]) + dz * F32(t3[2])
        kind = self.kind
        if kind in ("punct", "nodule"):
            r = p["r"]
            rho = np.sqrt((a1 / F32(r[0])) ** 2 + (a2 / F32(r[1])) ** 2 + (a3 / F32(r[2])) ** 2)
            bnd = 1.0 + F32(p["lob"]) * _pw_noise(p["pw_shape"], x, y, z)
            inside = rho < bnd
            q = np.clip(1.0 - rho / np.maximum(bnd, 0.3), 0, 1)
        elif kind in ("tumoral", "cluster"):
            fld = np.zeros_like(a1)
            for (c1, c2, c3), sg in zip(p["balls"], p["sig"]):
                fld += np.exp(-((a1 - F32(c1)) ** 2 + (a2 - F32(c2)) ** 2 + (a3 - F32(c3)) ** 2) / F32(2 * sg * sg))
            fld *= (1.0 + F32(p["lob"]) * _pw_noise(p["pw_shape"], x, y, z))
            inside = fld > F32(p["tau"])
            q = np.clip((fld - F32(p["tau"])) / F32(max(1e-3, 1.0 - p["tau"])), 0, 1)
        else:  # sheet / linear: band at a fixed depth under the skin
            e = self.main.env_sdf(*self.main.frame.to_local(x, y, z))
            depth = -e
            t = F32(p["th"]) * (1.0 + F32(p["th_var"]) * _pw_noise(p["pw_shape"], x * 0.5, y * 0.5, z * 0.5))
            ff = (a1 / F32(p["A1"])) ** 2 + (a3 / F32(p["A3"])) ** 2
            edge = 1.0 + F32(p["lob"]) * _pw_noise(p["pw_edge"], x, y, z)
            band = (depth - F32(p["d0"])) / np.maximum(t, 0.05)
            inside = (band > 0) & (band < 1) & (ff < edge) & (np.abs(a2) < F32(p["A2"]))
            q = np.clip(1.0 - np.abs(2 * band - 1), 0, 1) * np.clip(1.5 * (1 - ff / np.maximum(edge, 0.2)), 0, 1)
        prof = p["profile"]
        pk = F32(p["peak"])
        if prof == "solid":
            ca = pk * (0.85 + 0.15 * q)
        elif prof == "core":
            ca = pk * (0.35 + 0.65 * np.power(q, 0.7))
        elif prof == "rim":
            ca = pk * (0.45 + 0.55 * (1 - q) ** 2)
        else:
            m = _pw_noise(p["pw_tex"], x, y, z)
            ca = pk * (0.55 + 0.45 * np.tanh(1.5 * m)) * (0.8 + 0.2 * q)
        if kind == "cluster":
            ca = ca * (F32(p["matrix"]) + (1 - F32(p["matrix"])) * np.clip(q * 3, 0, 1))
        return inside, ca.astype(F32)


# ----------------------------------------------------------------------------
# sampling grids on the slicing plane
# ----------------------------------------------------------------------------
class Plane:
    def __init__(self, P0, ex, ey):
        self.P0, self.ex, self.ey = np.asarray(P0, float), np.asarray(ex, float), np.asarray(ey, float)
        self.n = np.cross(self.ex, self.ey)

    def to_xy(self, P):
        d = np.asarray(P, float) - self.P0
        return d @ self.ex, d @ self.ey, d @ self.n

    def world(self, X, Y):
        """X: (nc,), Y: (nr,) in mm -> world arrays (nr, nc)."""
        X = X.astype(F32)[None, :]
        Y = Y.astype(F32)[:, None]
        return tuple(F32(self.P0[i]) + X * F32(self.ex[i]) + Y * F32(self.ey[i]) for i in range(3))


class Sampler:
    """Regular grid of sample centres: X = x0 + (j+0.5)*st, Y = y0 + (i+0.5)*st."""

    def __init__(self, plane, x0, y0, st, nr, nc):
        self.pl, self.x0, self.y0, self.st, self.nr, self.nc = plane, x0, y0, st, nr, nc

    def window(self, lo, hi, pad=0.0):
        corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        X, Y, D = self.pl.to_xy(corners)
        if D.min() > 0 or D.max() < 0:
            return None
        c0 = int(np.floor((X.min() - pad - self.x0) / self.st - 0.5))
        c1 = int(np.ceil((X.max() + pad - self.x0) / self.st + 0.5)) + 1
        r0 = int(np.floor((Y.min() - pad - self.y0) / self.st - 0.5))
        r1 = int(np.ceil((Y.max() + pad - self.y0) / self.st + 0.5)) + 1
        c0, r0 = max(c0, 0), max(r0, 0)
        c1, r1 = min(c1, self.nc), min(r1, self.nr)
        if c1 <= c0 or r1 <= r0:
            return None
        return r0, r1, c0, c1

    def coords(self, win):
        r0, r1, c0, c1 = win
        X = self.x0 + (np.arange(c0, c1) + 0.5) * self.st
        Y = self.y0 + (np.arange(r0, r1) + 0.5) * self.st
        return X, Y

    def world(self, win):
        return self.pl.world(*self.coords(win))


def _render_fields(sampler, objs, tags, inner=True):
    """Evaluate objects on a sampler; returns dict tag -> array (BIG outside)."""
    shp = (sampler.nr, sampler.nc)
    out = {t: np.full(shp, BIG, F32) for t in tags}
    if "bone" in tags and inner:
        out["bone_in"] = np.full(shp, BIG, F32)
    for o in objs:
        if o.tag not in tags:
            continue
        win = sampler.window(o.lo, o.hi)
        if win is None:
            continue
        r0, r1, c0, c1 = win
        x, y, z = sampler.world(win)
        sl = (slice(r0, r1), slice(c0, c1))
        if o.tag == "bone":
            do, di = o.fn(x, y, z, inner=inner)
            if o.fid > 0 and (do < 0).any():
                out.setdefault("_seen", set()).add(o.fid)
            if inner:
                out["bone_in"][sl] = np.minimum(out["bone_in"][sl], di)
            out["bone"][sl] = np.minimum(out["bone"][sl], do)
        elif o.tag == "env":
            de = o.fn(x, y, z)
            if o.fid > 0 and (de < 0).any():
                out.setdefault("_seen", set()).add(o.fid)
            out["env"][sl] = _smin(out["env"][sl], de, 2.5)
        else:
            out[o.tag][sl] = np.minimum(out[o.tag][sl], o.fn(x, y, z))
    return out


def _smooth_noise(rng, shape, sigma_px):
    ds = max(1, int(sigma_px / 1.5))
    small = (max(2, -(-shape[0] // ds)), max(2, -(-shape[1] // ds)))
    n = ndi.gaussian_filter(rng.standard_normal(small).astype(F32), max(sigma_px / ds, 0.3), mode="wrap")
    n /= (n.std() + 1e-6)
    if ds > 1:
        n = ndi.zoom(n, (shape[0] / small[0], shape[1] / small[1]), order=1, mode="nearest")[:shape[0], :shape[1]]
        if n.shape != shape:
            n = np.pad(n, ((0, shape[0] - n.shape[0]), (0, shape[1] - n.shape[1])), mode="edge")
    return n.astype(F32)


def _block_mean(a, f):
    if f == 1:
        return a
    h, w = a.shape
    return a.reshape(h // f, f, w // f, f).mean(axis=(1, 3))


# ----------------------------------------------------------------------------
# case parameters
# ----------------------------------------------------------------------------
def _patient(rng):
    pat = {}
    pat["scale"] = float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15))
    straight = rng.random() < 0.12
    if straight:
        flex = [rng.normal(0, 5), rng.normal(3, 4), rng.normal(2, 3)]
    else:
        contract = rng.random() < 0.5
        flex = [np.clip(rng.normal(8, 14), -20, 60),
                rng.uniform(30, 80) if contract else rng.uniform(0, 30),
                rng.uniform(0, 45) if rng.random() < 0.7 else rng.uniform(-10, 5)]
    pat["flex"] = flex
    osteo = rng.random()
    pat["osteo"] = 0 if osteo < 0.55 else (1 if osteo < 0.85 else 2)
    pat["t_shaft"] = [rng.uniform(0.95, 1.4), rng.uniform(0.65, 0.95), rng.uniform(0.4, 0.65)][pat["osteo"]]
    pat["t_end"] = rng.uniform(0.28, 0.45) * (1.0 if pat["osteo"] == 0 else 0.8)
    pat["cort_ca"] = rng.uniform(1250, 1750) * [1.0, rng.uniform(0.75, 0.9), rng.uniform(0.55, 0.75)][pat["osteo"]]
    pat["trab_ca"] = rng.uniform(220, 420) * [1.0, rng.uniform(0.6, 0.85), rng.uniform(0.35, 0.6)][pat["osteo"]]
    pat["gapf"] = rng.uniform(0.55, 0.85) if rng.random() < 0.3 else rng.uniform(0.9, 1.15)
    pat["k_ph"] = rng.uniform(1.2, 1.4)
    pat["k_tuft"] = rng.uniform(1.9, 2.5)
    r = rng.random()
    pat["ao"] = 0.0 if r < 0.62 else (rng.uniform(0.1, 0.35) if r < 0.9 else rng.uniform(0.35, 0.7))
    pat["ao_amp"] = rng.uniform(0.15, 0.6)
    pat["n_ero"] = int(rng.choice([0, 0, 0, 0, 0, 1, 1, 2, 3]))
    r = rng.random()
    pat["soft"] = rng.uniform(0.78, 0.92) if r < 0.45 else (rng.uniform(0.92, 1.05) if r < 0.9 else rng.uniform(1.05, 1.18))
    pat["pulp"] = rng.uniform(0.7, 0.95) if rng.random() < 0.5 else rng.uniform(0.95, 1.08)
    pat["pulp_v"] = rng.uniform(1.6, 2.6)
    pat["k_env"] = rng.uniform(1.02, 1.15)
    pat["skin_t"] = rng.uniform(1.0, 1.6) if rng.random() < 0.4 else rng.uniform(1.5, 2.8)
    pat["sesamoid"] = rng.random() < 0.45
    return pat


def _neighbour_patient(rng, pat):
    q = dict(pat)
    q["flex"] = [pat["flex"][0] + rng.normal(0, 8), max(-5, pat["flex"][1] + rng.normal(0, 15)),
                 max(-10, pat["flex"][2] + rng.normal(0, 10))]
    q["ao"] = pat["ao"] * rng.uniform(0, 1)
    q["n_ero"] = 0
    q["sesamoid"] = False
    return q


# ----------------------------------------------------------------------------
# deposit planning
# ----------------------------------------------------------------------------
def _env_main_pts(main, P):
    u, v, w = main.frame.to_local(*(P[:, i].astype(F32) for i in range(3)))
    return main.env_sdf(u, v, w)


def _bone_pts(objs, P):
    x, y, z = (P[:, i].astype(F32) for i in range(3))
    d = np.full(len(P), BIG, F32)
    lo, hi = P.min(0), P.max(0)
    for o in objs:
        if o.tag != "bone" or np.any(o.lo > hi) or np.any(o.hi < lo):
            continue
        d = np.minimum(d, o.fn(x, y, z, inner=False)[0])
    return d


def _plan_deposits(rng, main, objs, plane_n, plane_O, n_dep):
    deps = []
    s = main.s
    loc_types = ["pulp", "tip", "dorsal", "volar", "lateral", "peri"]
    loc_p = np.array([0.33, 0.10, 0.20, 0.16, 0.14, 0.07])
    kinds = ["punct", "nodule", "tumoral", "sheet", "linear", "cluster"]
    kind_p = np.array([0.23, 0.37, 0.05, 0.13, 0.09, 0.13])
    tries = 0
    big_allowed = 1
    while len(deps) < n_dep and tries < n_dep * 12:
        tries += 1
        lt = str(rng.choice(loc_types, p=loc_p))
        kind = str(rng.choice(kinds, p=kind_p))
        if not deps and kind == "punct":   # the index lesion is usually clinically evident
            kind = "nodule"
        if not deps and rng.random() < 0.06:
            kind = "tumoral"
        if kind == "tumoral":
            if big_allowed <= 0:
                kind = "nodule"
            else:
                big_allowed -= 1
        # bone segment and ray start on the plane
        if lt in ("pulp", "tip"):
            bi = 2
        elif lt == "dorsal":
            bi = int(rng.choice([0, 1, 2], p=[0.3, 0.5, 0.2]))
        elif lt == "volar":
            bi = int(rng.choice([0, 1], p=[0.55, 0.45]))
        else:
            bi = int(rng.integers(0, 3))
        fr = main.frames[bi]
        if lt == "pulp":
            a = fr["s0"] + rng.uniform(0.35, 1.0) * fr["L"]
        elif lt == "tip":
            a = fr["s0"] + fr["L"] - 1.0 * s
        elif lt in ("dorsal", "peri"):
            a = fr["s0"] + (fr["L"] - 0.5 * fr["Rh"] if rng.random() < 0.65 else 0.5 * fr["Rb"])
        else:
            a = fr["s0"] + rng.uniform(0.2, 0.85) * fr["L"]
        C = main.frame.to_world(fr["J"] + a * fr["d"])
        Dw = main.frame.R @ fr["d"]
        Nw = main.frame.R @ fr["n"]
        Cp = C - plane_n * np.dot(plane_n, C - plane_O)
        dp = Dw - plane_n * np.dot(plane_n, Dw)
        dp /= np.linalg.norm(dp)
        o = np.cross(plane_n, dp)
        if np.dot(o, Nw) < 0:
            o = -o
        side = {"pulp": -1, "tip": -1, "dorsal": 1, "volar": -1}.get(lt, rng.choice([-1, 1]))
        if lt == "peri" and rng.random() < 0.5:
            side = -1
        ang = {"tip": rng.uniform(0.9, 1.45), "pulp": rng.uniform(-0.2, 0.5)}.get(lt, rng.uniform(-0.35, 0.35))
        ray = side * o * np.cos(ang) + dp * np.sin(ang)
        ts = np.arange(0.0, 30.0, 0.05)
        R = Cp[None, :] + ts[:, None] * ray[None, :]
        e = _env_main_pts(main, R)
        bd = _bone_pts(objs, R)
        ins = np.nonzero(e < 0)[0]
        if len(ins) == 0:
            continue
        # size parameters first (they set the required depth)
        prm = {}
        rt = rng.random()
        prm["peak"] = float(rng.uniform(130, 400) if rt < 0.18 else (rng.uniform(400, 900) if rt < 0.5 else rng.uniform(900, 2000)))
        prm["profile"] = str(rng.choice(["solid", "core", "rim", "mottled"], p=[0.35, 0.3, 0.1, 0.25]))
        prm["pw_shape"] = _pw_params(rng, 5, 1.0, 4.0)
        prm["pw_tex"] = _pw_params(rng, 20, 0.5, 2.5)
        prm["lob"] = float(rng.uniform(0.0, 0.25))
        if kind == "tumoral":
            prm["peak"] = max(prm["peak"], float(rng.uniform(500, 1400)))
        if kind == "punct":
            r0 = rng.uniform(0.28, 0.9) * (1.0 if rng.random() < 0.8 else 0.7)
            prm["r"] = [r0 * rng.uniform(0.8, 1.3), r0 * rng.uniform(0.7, 1.0), r0 * rng.uniform(0.7, 1.2)]
            prm["lob"] *= 0.3
            prm["pw_shape"] = _pw_params(rng, 5, 0.5, 1.5)
            rb = max(prm["r"]) * 1.3
            depth = rng.uniform(0.4, 3.0)
        elif kind == "nodule":
            r0 = rng.uniform(0.9, 3.4)
            prm["r"] = [r0 * rng.uniform(0.9, 1.5), r0 * rng.uniform(0.6, 1.0), r0 * rng.uniform(0.7, 1.2)]
            rb = max(prm["r"]) * 1.35
            depth = rng.uniform(0.3, 1.5) + prm["r"][1] * 0.8
        elif kind in ("tumoral", "cluster"):
            if kind == "tumoral":
                Rm = rng.uniform(3.5, 8.5) * s
                nb = rng.integers(4, 10)
                sig = rng.uniform(0.3, 0.5, nb) * Rm
                prm["tau"] = float(rng.uniform(0.35, 0.55))
                prm["profile"] = str(rng.choice(["mottled", "rim", "core", "solid"], p=[0.45, 0.2, 0.15, 0.2]))
                depth = Rm * 0.75 + rng.uniform(0.5, 1.5)
            else:
                Rm = rng.uniform(1.0, 3.2)
                nb = rng.integers(3, 11)
                sig = rng.uniform(0.22, 0.45, nb)
                prm["tau"] = float(rng.uniform(0.25, 0.45))
                prm["matrix"] = float(rng.uniform(0.3, 0.6))
                depth = Rm * 0.6 + rng.uniform(0.3, 1.2)
            balls = rng.normal(size=(nb, 3)) * np.array([1.25, 0.6, 0.8]) * Rm * 0.55
            prm["balls"] = [tuple(b) for b in balls]
            prm["sig"] = list(sig)
            prm["lob"] = float(rng.uniform(0.0, 0.2))
            rb = float(np.max(np.linalg.norm(balls, axis=1) + 3.2 * sig)) + 0.5
        else:  # sheet / linear
            prm["d0"] = float(rng.uniform(0.25, 1.5))
            prm["th"] = float(rng.uniform(0.35, 1.3) if kind == "sheet" else rng.uniform(0.35, 1.0))
            prm["th_var"] = float(rng.uniform(0.0, 0.35))
            prm["pw_edge"] = _pw_params(rng, 5, 1.5, 5.0)
            if kind == "sheet":
                prm["A1"], prm["A3"] = float(rng.uniform(2.5, 9.0)), float(rng.uniform(2.0, 6.0))
            else:
                prm["A1"], prm["A3"] = float(rng.uniform(2.5, 7.0)), float(rng.uniform(0.4, 1.1))
                if rng.random() < 0.5:   # linear across the finger axis instead of along it
                    prm["A1"], prm["A3"] = prm["A3"], prm["A1"]
            prm["A2"] = 3.5
            rb = max(prm["A1"], prm["A3"]) * 1.3 + prm["d0"] + prm["th"] + 1.0
            depth = prm["d0"] + prm["th"] * 0.5
        # position along ray
        e_in = e.copy()
        e_in[: ins[0]] = -BIG
        k_out = np.nonzero((e_in > -depth) & (np.arange(len(ts)) >= ins[0]))[0]
        if len(k_out) == 0:
            continue
        k = k_out[0]
        if lt == "peri":
            kb = np.nonzero(bd > 0.05)[0]
            if len(kb) == 0:
                continue
            rr = prm.get("r", [1.0])[1] if "r" in prm else 1.0
            kk = np.nonzero(bd > rr * rng.uniform(0.2, 0.8))[0]
            if len(kk) == 0:
                continue
            k = min(kk[0], k)
        elif kind == "tumoral":
            kk = np.nonzero((bd > 0.5) & (np.arange(len(ts)) >= k))[0]
            if len(kk) == 0:
                continue
            k = kk[0]
        else:
            clear = 0.4 if kind in ("sheet", "linear") else 0.3 + 0.9 * max(prm["r"]) if "r" in prm else 1.5
            if bd[k] < clear and rng.random() < 0.93:
                continue
        pos = R[k]
        # frame: t1 along the finger axis (in plane), t2 outward, t3 plane normal; small random rotation about t2
        t2 = ray - dp * np.dot(ray, dp)
        t2 /= np.linalg.norm(t2)
        t1 = dp - t2 * np.dot(dp, t2)
        t1 /= np.linalg.norm(t1)
        t3 = np.cross(t1, t2)
        g = rng.uniform(-0.6, 0.6)
        t1, t3 = np.cos(g) * t1 + np.sin(g) * t3, -np.sin(g) * t1 + np.cos(g) * t3
        if kind in ("sheet", "linear"):
            half = prm["A3"] * 0.5
        elif "r" in prm:
            half = prm["r"][2] * np.cos(g) * 0.6
        else:
            half = 0.3 * rb
        delta = rng.uniform(-1, 1) * half
        centre = pos + plane_n * delta
        if any(np.linalg.norm(centre - d.c) < rb + d.rb + 0.6 for d in deps):
            continue
        dep = Deposit(kind, centre, (t1, t2, t3), prm, rb, main)
        dep.loc = lt
        deps.append(dep)
        if kind == "tumoral" and np.min(e[k:k + 1]) > -(Rm + 1.5):
            # the mass bulges the skin: add a soft-tissue lobe to the envelope
            bulge_c = main.frame.R.T @ (centre + t2 * 0.6 * Rm - main.frame.T)
            main.env_extra.append(Chain([bulge_c - [0.8, 0, 0], bulge_c + [0.8, 0, 0]],
                                        [Rm * 0.75 + 2.0, Rm * 0.75 + 2.0], 1.0))
    return deps


# ----------------------------------------------------------------------------
# imaging
# ----------------------------------------------------------------------------
def _jpeg_roundtrip(g8, quality):
    q50 = np.array([[16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
                    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
                    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
                    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], float)
    sc = 5000 / quality if quality < 50 else 200 - 2 * quality
    q = np.clip(np.floor((q50 * sc + 50) / 100), 1, 255)
    h, w = g8.shape
    H8, W8 = -(-h // 8) * 8, -(-w // 8) * 8
    a = np.pad(g8.astype(float) - 128, ((0, H8 - h), (0, W8 - w)), mode="edge")
    b = a.reshape(H8 // 8, 8, W8 // 8, 8).transpose(0, 2, 1, 3)
    c = sfft.dctn(b, axes=(2, 3), norm="ortho")
    c = np.round(c / q) * q
    r = sfft.idctn(c, axes=(2, 3), norm="ortho").transpose(0, 2, 1, 3).reshape(H8, W8)[:h, :w]
    return np.clip(np.round(r + 128), 0, 255)


def _streaks(rng, hu, s, ang, amp):
    """Dark bands between dense structures along one in-plane direction (beam hardening)."""
    ds = max(1, int(round(0.5 / s)))
    dense = np.clip((_block_mean(hu[: hu.shape[0] // ds * ds, : hu.shape[1] // ds * ds], ds) - 350) / 1000, 0, 2)
    rot = ndi.rotate(dense, np.rad2deg(ang), reshape=True, order=1)
    cf = np.cumsum(rot, axis=1) * s * ds
    cb = np.cumsum(rot[:, ::-1], axis=1)[:, ::-1] * s * ds
    band = np.sqrt(cf * cb)
    band = ndi.gaussian_filter1d(band, 1.0, axis=0)
    back = ndi.rotate(band, -np.rad2deg(ang), reshape=False, order=1)
    # crop the centre back to original (downsampled) size
    H0, W0 = dense.shape
    hb, wb = back.shape
    r0, c0 = (hb - H0) // 2, (wb - W0) // 2
    back = back[r0:r0 + H0, c0:c0 + W0]
    out = ndi.zoom(back, (hu.shape[0] / H0, hu.shape[1] / W0), order=1)
    out = np.pad(out, ((0, max(0, hu.shape[0] - out.shape[0])), (0, max(0, hu.shape[1] - out.shape[1]))), mode="edge")
    return -amp * out[: hu.shape[0], : hu.shape[1]]


def _choose_geometry(rng, main, deps, plane, palm_s):
    """Pick display orientation, field of view, size and spacing."""
    # key points of the main finger in plane coordinates
    env = main.env
    nodes_w = np.array([main.frame.to_world(p) for p in env.nodes])
    radii = env.radii.copy()
    p_ = (nodes_w - plane.P0) @ plane.ex
    q_ = (nodes_w - plane.P0) @ plane.ey
    # chord MCP -> fingertip
    tip = np.array([p_[-1], q_[-1]])
    mcp = np.array([p_[0], q_[0]])
    chord = tip - mcp
    kappa = np.arctan2(chord[1], chord[0])
    r = rng.random()
    if r < 0.38:
        tau = -np.pi / 2
    elif r < 0.50:
        tau = np.pi / 2
    elif r < 0.68:
        tau = 0.0
    elif r < 0.85:
        tau = np.pi
    else:
        tau = rng.uniform(-np.pi, np.pi)
    tau += np.deg2rad(rng.normal(0, 6))
    sig = rng.choice([-1, 1])
    tau_img = tau - sig * kappa
    M = np.array([[np.cos(tau_img), -sig * np.sin(tau_img)], [np.sin(tau_img), sig * np.cos(tau_img)]])
    # extra proximal points along the MC / palm
    mcw = [main.frame.to_world(np.array([-a * palm_s, -4.0 * palm_s, 0])) for a in (15, 30, 45)]
    extra_p = np.array([(m - plane.P0) @ plane.ex for m in mcw])
    extra_q = np.array([(m - plane.P0) @ plane.ey for m in mcw])
    PQ = np.c_[p_, q_]
    XY = PQ @ M.T
    EXY = np.c_[extra_p, extra_q] @ M.T
    mode_r = rng.random()
    if mode_r < 0.66:
        mode = "whole"
    elif mode_r < 0.78:
        mode = "long"
    elif mode_r < 0.94:
        mode = "cut"
    else:
        mode = "zoom"
    if mode == "whole":
        idx = np.arange(len(radii))
        pts, rr = XY[idx], radii[idx]
        pts = np.vstack([pts, EXY[:1]])
        rr = np.r_[rr, 12.0]
    elif mode == "long":
        pts = np.vstack([XY, EXY[: rng.integers(2, 4)]])
        rr = np.r_[radii, [13.0] * (len(pts) - len(radii))]
    elif mode == "cut":
        k0 = int(rng.integers(1, 5))      # proximal parts cut off (sometimes the tip instead)
        if rng.random() < 0.12:
            pts, rr = XY[: len(radii) - 1], radii[: len(radii) - 1]
        else:
            pts, rr = XY[k0:], radii[k0:]
    else:
        pts, rr = XY[-4:], radii[-4:]
    lo = (pts - rr[:, None]).min(0)
    hi = (pts + rr[:, None]).max(0)
    if mode == "zoom" and deps:
        dc = np.array([(deps[0].c - plane.P0) @ plane.ex, (deps[0].c - plane.P0) @ plane.ey]) @ M.T
        half = rng.uniform(9, 20)
        lo = dc - half * rng.uniform(0.7, 1.3, 2)
        hi = dc + half * rng.uniform(0.7, 1.3, 2)
    margins = rng.uniform(1.0, 14.0, 4)
    if mode == "cut":
        # make the cut bite into the anatomy on the proximal side
        margins = rng.uniform(-4.0, 6.0, 4)
    lo = lo - margins[:2]
    hi = hi + margins[2:]
    if mode == "long" and rng.random() < 0.5:
        # whole-hand field of view, finger small in a large image
        c0 = 0.5 * (lo + hi)
        half = 0.5 * rng.uniform(140, 230)
        lo = np.minimum(lo, c0 - half * rng.uniform(0.8, 1.0, 2))
        hi = np.maximum(hi, c0 + half * rng.uniform(0.8, 1.0, 2))
    # keep the primary deposit in view
    if deps:
        dc = np.array([(deps[0].c - plane.P0) @ plane.ex, (deps[0].c - plane.P0) @ plane.ey]) @ M.T
        lo = np.minimum(lo, dc - 4.0)
        hi = np.maximum(hi, dc + 4.0)
    wmm, hmm = hi - lo
    if rng.random() < 0.45:
        m = max(wmm, hmm)
        c = 0.5 * (lo + hi)
        lo, hi = c - m / 2, c + m / 2
        wmm = hmm = m
    # aspect constraint so that size/spacing limits can be met
    c = 0.5 * (lo + hi)
    big = max(wmm, hmm)
    asp = rng.uniform(1.25, 2.4)
    wmm, hmm = max(wmm, big / asp), max(hmm, big / asp)
    # matrix size of the larger side as exported (512 most common), then spacing
    r = rng.random()
    nmax = 512 if r < 0.4 else (1024 if r < 0.55 else (768 if r < 0.65 else int(rng.integers(300, 1000))))
    spacing = float(np.clip(max(wmm, hmm) / nmax, 0.1, 0.6))
    spacing = float(np.round(spacing, 4))
    W = int(np.clip(round(wmm / spacing), 256, 1024))
    H = int(np.clip(round(hmm / spacing), 256, 1024))
    if rng.random() < 0.5:
        W, H = (W + 7) // 8 * 8, (H + 7) // 8 * 8
        W, H = min(W, 1024), min(H, 1024)
    # plane offset so that image centre is c (in image XY)
    cpq = M.T @ c
    P0 = plane.P0 + cpq[0] * plane.ex + cpq[1] * plane.ey
    ex = M[0, 0] * plane.ex + M[0, 1] * plane.ey
    ey = M[1, 0] * plane.ex + M[1, 1] * plane.ey
    img_plane = Plane(P0, ex, ey)
    return img_plane, H, W, spacing, mode, tau


# ----------------------------------------------------------------------------
# main entry
# ----------------------------------------------------------------------------
def _make(seed, attempt):
    rng = np.random.default_rng([int(seed), 7919, attempt])
    pat = _patient(rng)
    ftype = str(rng.choice(ORDER, p=[0.3, 0.3, 0.25, 0.15]))
    main = Finger(rng, ftype, pat, Frame(), 0)
    fingers = [main]
    # neighbours: +w radial side, -w ulnar side (index: only ulnar neighbour etc.)
    fi = ORDER.index(ftype)
    for side, nj in ((+1, fi - 1), (-1, fi + 1)):
        if 0 <= nj < 4:
            dw = side * rng.uniform(17.0, 21.0) * pat["scale"]
            du = rng.uniform(-7, 7)
            psi = np.deg2rad(rng.normal(0, 4) - side * rng.uniform(0, 5))
            fr = Frame(_rot(1, psi), np.array([du, rng.normal(0, 1.0), dw]))
            fingers.append(Finger(rng, ORDER[nj], _neighbour_patient(rng, pat), fr, len(fingers)))
    objs = []
    for f in fingers:
        objs += f.objects()
    objs += _palm_objects(pat["scale"])
    # ---- slicing plane (through the main finger's sagittal plane, offset + tilt)
    r = rng.random()
    w0 = rng.normal(0, 1.0) if r < 0.78 else rng.choice([-1, 1]) * rng.uniform(2.2, 4.8) * pat["scale"]
    yaw = np.deg2rad(rng.normal(0, 2.0) if rng.random() < 0.85 else rng.choice([-1, 1]) * rng.uniform(4, 9))
    roll = np.deg2rad(rng.normal(0, 1.5) if rng.random() < 0.85 else rng.normal(0, 5))
    Rp = _rot(1, yaw) @ _rot(0, roll)
    # the plane pivots about a point on the finger (between PIP and DIP), offset laterally by w0
    pivot = main.joints[int(rng.integers(1, 3))].copy()
    pivot[2] = w0
    plane0 = Plane(pivot, Rp[:, 0], Rp[:, 1])
    # ---- deposits
    nd = int(rng.choice([1, 2, 3, 4, 5, 6, 8, 11], p=[0.24, 0.2, 0.16, 0.12, 0.09, 0.08, 0.06, 0.05]))
    deps = _plan_deposits(rng, main, objs, plane0.n, plane0.P0, nd)
    # rebuild main objects (envelope may have bulges now)
    objs = [o for o in objs if o.fid != 0] + main.objects()
    # ---- geometry of the exported image
    img_plane, H, W, s, fov_mode, tau = _choose_geometry(rng, main, deps, plane0, pat["scale"])
    f = 3 if (s >= 0.22 and H * W * 9 <= 2.3e6) else 1
    sf = s / f
    x0, y0 = -W * s / 2, -H * s / 2
    fine = Sampler(img_plane, x0, y0, sf, H * f, W * f)
    fld = _render_fields(fine, objs, ["env", "bone", "tendon", "capsule", "vessel", "muscle", "nail"])
    # ---- visibility (scan circle / scan range padding)
    pad_r = rng.random()
    pad_mode = "none" if pad_r < 0.62 else ("circle" if pad_r < 0.86 else "band")
    pad_val = float(rng.choice([-1024, -2000, -2048, -3024, 0], p=[0.3, 0.15, 0.2, 0.25, 0.1]))
    circ = None
    band = None
    if pad_mode == "circle":
        rad = (min(H, W) if rng.random() < 0.5 else max(H, W)) * s * rng.uniform(0.5, 0.62)
        cc = np.array([rng.normal(0, 0.03) * W * s, rng.normal(0, 0.03) * H * s])
        circ = (cc, rad)
    elif pad_mode == "band":
        side = int(rng.integers(0, 4))
        frac = rng.uniform(0.04, 0.16)
        band = (side, frac)

    def visible(X, Y):
        """X (nc,), Y (nr,) image mm coords -> bool (nr, nc)."""
        Xg, Yg = X[None, :], Y[:, None]
        v = np.ones((len(Y), len(X)), bool)
        if circ is not None:
            v &= (Xg - circ[0][0]) ** 2 + (Yg - circ[0][1]) ** 2 <= circ[1] ** 2
        if band is not None:
            sd, fr_ = band
            if sd == 0:
                v &= Yg >= y0 + fr_ * H * s
            elif sd == 1:
                v &= Yg <= -y0 - fr_ * H * s
            elif sd == 2:
                v &= Xg >= x0 + fr_ * W * s
            else:
                v &= Xg <= -x0 - fr_ * W * s
        return v

    outX = x0 + (np.arange(W) + 0.5) * s
    outY = y0 + (np.arange(H) + 0.5) * s
    vis = visible(outX, outY)
    bone_fine = fld["bone"] < 0
    c = f // 2
    bone_px = bone_fine[c::f, c::f] & vis

    # ---- deposits: supersampled slice truth
    out_s = Sampler(img_plane, x0, y0, s, H, W)
    main_env_objs = [o for o in objs if o.fid == 0 and o.tag == "env"]
    bone_objs = [o for o in objs if o.tag == "bone"]
    comps = []
    for dep in deps:
        pw = out_s.window(dep.lo, dep.hi)
        if pw is None:
            continue
        pr0, pr1, pc0, pc1 = pw
        if dep.rb > 2.0:
            # coarse pass (<= 0.2 mm) to find the deposit's real extent in the slice
            kc = max(1, int(np.ceil(s / 0.2)))
            cs = Sampler(img_plane, x0 + pc0 * s, y0 + pr0 * s, s / kc, (pr1 - pr0) * kc, (pc1 - pc0) * kc)
            ins_c, _ = dep.eval(*cs.world((0, cs.nr, 0, cs.nc)))
            if not ins_c.any():
                continue
            rr, cc = np.nonzero(ins_c)
            padp = int(np.ceil(0.6 / s)) + 1
            nr0 = max(pr0, pr0 + rr.min() // kc - padp)
            nr1 = min(pr1, pr0 + rr.max() // kc + 1 + padp)
            nc0 = max(pc0, pc0 + cc.min() // kc - padp)
            nc1 = min(pc1, pc0 + cc.max() // kc + 1 + padp)
            pr0, pr1, pc0, pc1 = nr0, nr1, nc0, nc1
        ext = max(pr1 - pr0, pc1 - pc0) * s
        m = max(1, int(np.ceil(sf / max(0.04, ext / 420.0))))
        M = f * m
        sst = s / M
        sub = Sampler(img_plane, x0 + pc0 * s, y0 + pr0 * s, sst, (pr1 - pr0) * M, (pc1 - pc0) * M)
        full = (0, sub.nr, 0, sub.nc)
        inside, ca = dep.eval(*sub.world(full))
        if not inside.any():
            continue
        rr, cc = np.nonzero(inside)
        # crop to the inside bbox (aligned to output pixels) before evaluating tissue/bone
        cr0, cr1 = (rr.min() // M) * M, min(-(-(rr.max() + 1) // M) * M, sub.nr)
        cc0, cc1 = (cc.min() // M) * M, min(-(-(cc.max() + 1) // M) * M, sub.nc)
        inside, ca = inside[cr0:cr1, cc0:cc1], ca[cr0:cr1, cc0:cc1]
        pr0, pc0 = pr0 + cr0 // M, pc0 + cc0 // M
        sub = Sampler(img_plane, x0 + pc0 * s, y0 + pr0 * s, sst, cr1 - cr0, cc1 - cc0)
        sf_ = _render_fields(sub, main_env_objs + bone_objs, ["env", "bone"], inner=False)
        Xs, Ys = sub.coords((0, sub.nr, 0, sub.nc))
        inside &= (sf_["env"] < -0.03) & (sf_["bone"] > 0) & visible(Xs, Ys)
        if not inside.any():
            continue
        lab, nl = ndi.label(inside, structure=np.ones((3, 3)))
        if nl == 0:
            continue
        sizes = np.bincount(lab.ravel())
        for li in range(1, nl + 1):
            area = sizes[li] * sst * sst
            if area < 0.15:
                continue
            cm = lab == li
            frac = _block_mean(cm.astype(F32), M)
            ffr = _block_mean(cm.astype(F32), m)
            fca = _block_mean(np.where(cm, ca, 0).astype(F32), m)
            comps.append(dict(area=float(area), pix=(pr0, pc0), frac=frac, ffrac=ffr, fca=fca,
                              kind=dep.kind, loc=dep.loc, peak=dep.p["peak"]))
    # ---- pixel labels
    best = np.zeros((H, W), F32)
    lab_img = np.zeros((H, W), np.int32)
    for ci, cp in enumerate(comps):
        pr0, pc0 = cp["pix"]
        fr_ = cp["frac"]
        sl = (slice(pr0, pr0 + fr_.shape[0]), slice(pc0, pc0 + fr_.shape[1]))
        ok = (fr_ >= 0.5) & (fr_ > best[sl]) & ~bone_px[sl] & vis[sl]
        best[sl] = np.where(ok, fr_, best[sl])
        lab_img[sl] = np.where(ok, ci + 1, lab_img[sl])
    keep = []
    for ci, cp in enumerate(comps):
        if np.any(lab_img == ci + 1):
            keep.append(ci)
            continue
        pr0, pc0 = cp["pix"]
        fr_ = cp["frac"].copy()
        sl = (slice(pr0, pr0 + fr_.shape[0]), slice(pc0, pc0 + fr_.shape[1]))
        fr_[bone_px[sl] | ~vis[sl] | (lab_img[sl] > 0)] = 0
        k = np.argmax(fr_)
        if fr_.flat[k] >= 0.12:
            rr_, cc_ = np.unravel_index(k, fr_.shape)
            lab_img[pr0 + rr_, pc0 + cc_] = ci + 1
            keep.append(ci)
    comps_k = [comps[i] for i in keep]
    remap = np.zeros(len(comps) + 1, np.int32)
    for new, old in enumerate(keep):
        remap[old + 1] = new + 1
    lab_img = remap[lab_img]

    # ---- materials (DECT blend)
    er = rng.random()
    if er < 0.62:
        emode, wl = "mixed", float(rng.uniform(0.3, 0.7))
    elif er < 0.74:
        emode, wl = "80kV", 1.0
    elif er < 0.84:
        emode, wl = "Sn140kV", 0.0
    else:
        kev = float(rng.uniform(55, 90))
        emode, wl = "VMI%dkeV" % kev, float(np.clip((90 - kev) / 45 * 1.4 - 0.2, -0.1, 1.2))
    g = wl * G_LOW + (1 - wl) * G_HIGH

    def mat(lo_hu, hi_hu):
        return F32(wl * lo_hu + (1 - wl) * hi_hu)
    Hf, Wf = H * f, W * f
    hu = np.full((Hf, Wf), mat(-1000, -1000), F32)
    env = fld["env"]
    body = env < 0
    fat_hu = rng.uniform(-110, -40)
    sep = _smooth_noise(rng, (Hf, Wf), 0.35 / sf)
    sep_f = F32(rng.uniform(0.1, 0.45)) * (1 / (1 + np.exp(-(sep - 0.8) / 0.25)))
    sub_hu = mat(fat_hu - 12, fat_hu + 8) * (1 - sep_f) + mat(55, 48) * sep_f
    hu = np.where(body, sub_hu, hu)
    hu = np.where((fld["muscle"] < 0) & body, mat(58, 50), hu)
    skin_t = pat["skin_t"] * main.s
    derm = mat(*(2 * [rng.uniform(45, 85)]))
    hu = np.where(body & (env > -skin_t), derm, hu)
    hu = np.where((fld["vessel"] < 0) & body, mat(45, 40), hu)
    hu = np.where((fld["capsule"] < 0) & body, mat(68, 62), hu)
    hu = np.where((fld["tendon"] < 0) & body, mat(98, 88), hu)
    hu = np.where(fld["nail"] < 0, mat(125, 108), hu)
    trab = _smooth_noise(rng, (Hf, Wf), 0.13 / sf)
    marrow = mat(-40, -25) + F32(pat["trab_ca"] * g) * np.clip(0.7 + 0.4 * trab, 0.05, 1.6)
    inner = fld["bone_in"] < 0
    hu = np.where(bone_fine & inner, marrow, hu)
    cort = mat(60, 55) + F32(pat["cort_ca"] * g) * (1 + 0.05 * trab)
    hu = np.where(bone_fine & ~inner, cort, hu)
    # deposits (exact partial volume on the fine grid)
    Fd = np.zeros((Hf, Wf), F32)
    CA = np.zeros((Hf, Wf), F32)
    for cp in comps_k:
        pr0, pc0 = cp["pix"]
        sl = (slice(pr0 * f, pr0 * f + cp["ffrac"].shape[0]), slice(pc0 * f, pc0 * f + cp["ffrac"].shape[1]))
        Fd[sl] += cp["ffrac"]
        CA[sl] += cp["fca"]
    Fd = np.clip(Fd, 0, 1)
    hu = hu * (1 - Fd) + Fd * mat(50, 45) + CA * F32(g)

    # ---- scanner: PSF, kernel, artefacts, noise
    kernel = "bone" if rng.random() < 0.55 else "soft"
    fwhm = rng.uniform(0.35, 0.6) if kernel == "bone" else rng.uniform(0.55, 1.0)
    hu = ndi.gaussian_filter(hu, fwhm / 2.355 / sf, mode="nearest")
    img = _block_mean(hu, f)
    if kernel == "bone":
        alpha = rng.uniform(0.2, 0.8)
        img = img + F32(alpha) * (img - ndi.gaussian_filter(img, 0.7 / s, mode="nearest"))
    clean = img.copy()
    art = []
    if rng.random() < 0.22:
        amp = rng.uniform(8, 45)
        img = img + _streaks(rng, img, s, rng.uniform(0, np.pi), amp).astype(F32)
        art.append("BH-bands")
    if rng.random() < 0.08 and comps_k:
        # photon-starvation streaks from the densest large deposit
        cp = max(comps_k, key=lambda c: c["area"] * c["peak"])
        rr, cc = np.nonzero(lab_img == comps_k.index(cp) + 1)
        cy, cx = rr.mean(), cc.mean()
        Yg, Xg = np.mgrid[0:H, 0:W]
        for _ in range(int(rng.integers(2, 6))):
            th = rng.uniform(0, np.pi)
            dist = np.abs((Xg - cx) * np.sin(th) - (Yg - cy) * np.cos(th)) * s
            along = np.hypot(Xg - cx, Yg - cy) * s
            img = img + (rng.choice([-1, 1]) * rng.uniform(20, 90) * np.exp(-dist / 0.25)
                         * np.exp(-along / rng.uniform(8, 25))).astype(F32)
        art.append("streaks")
    sig0 = rng.uniform(6, 22) * (0.35 / s) ** 0.6
    if kernel == "bone":
        sig0 *= rng.uniform(2.0, 3.5)
    if emode == "mixed":
        sig = sig0 * np.hypot(wl * 1.35, (1 - wl) * 1.1)
    elif emode == "80kV":
        sig = sig0 * 1.35
    elif emode == "Sn140kV":
        sig = sig0 * 1.1
    else:
        sig = sig0 * 0.8
    sig = float(np.clip(sig, 4, 160))
    wn = rng.standard_normal((H, W)).astype(F32)
    cl = max(0.15, fwhm / 2.355 * 0.8) / s
    if kernel == "bone":
        nz = ndi.gaussian_filter(wn, cl * 0.7) - 0.6 * ndi.gaussian_filter(wn, cl * 2.0)
    else:
        nz = ndi.gaussian_filter(wn, cl)
    nz /= (nz.std() + 1e-6)
    thick = ndi.gaussian_filter((clean > -500).astype(F32), 6.0 / s)
    img = img + F32(sig) * nz * (0.8 + 0.5 * thick)
    if rng.random() < 0.5:
        img = np.maximum(img, -1024)
    if rng.random() < 0.85:   # 12-bit storage ceiling (extended HU range otherwise)
        img = np.minimum(img, 3071)
    img = np.where(vis, img, F32(pad_val))
    export = "int16"
    if rng.random() < 0.18:
        lo_w = 450 - 750
        g8 = np.clip(np.round((img - lo_w) / 1500 * 255), 0, 255)
        if rng.random() < 0.75:
            qj = int(rng.integers(70, 96))
            g8 = _jpeg_roundtrip(g8, qj)
            export = "8bit-jpeg-q%d" % qj
        else:
            export = "8bit"
        if rng.random() < 0.12:   # burned-in scale bar in a corner
            L = int(10 / s)
            r_ = int(H * 0.95)
            c_ = int(W * 0.05)
            g8[r_:r_ + 2, c_:c_ + L] = 255
            for k in range(0, L + 1, max(1, L // 10)):
                g8[r_ - 4:r_, c_ + min(k, L - 1)] = 255
            export += "+scalebar"
        img = g8 / 255.0 * 1500 + lo_w
    elif rng.random() < 0.9:
        img = np.round(img)
    hu_out = img.astype(F32)

    # ---- seeds
    n = len(comps_k)
    seeds, areas = [], []
    for i in range(n):
        ys, xs = np.nonzero(lab_img == i + 1)
        r0, r1, c0, c1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        mk = np.pad(lab_img[r0:r1, c0:c1] == i + 1, 1)
        edt = ndi.distance_transform_edt(mk)[1:-1, 1:-1]
        cv = clean[r0:r1, c0:c1]
        sel = lab_img[r0:r1, c0:c1] == i + 1
        hv = cv[sel]
        hn = (hv - hv.min()) / (hv.max() - hv.min() + 1e-6)
        en = edt[sel] / edt[sel].max()
        k = int(np.argmax((0.25 + hn) * np.sqrt(en)))
        yy, xx = np.nonzero(sel)
        seeds.append((int(yy[k] + r0), int(xx[k] + c0)))
        areas.append(comps_k[i]["area"])
    kinds = {}
    for cp in comps_k:
        kinds[cp["kind"]] = kinds.get(cp["kind"], 0) + 1
    notes = ("%s %s finger, tip %s, FOV %s %dx%d @%.3fmm, flex MCP/PIP/DIP %d/%d/%d, off %.1fmm yaw %.0f, "
             "osteo %d, AO %.2f, ero %d, %d dep (%s), %s %s kernel sigma~%.0f, pad %s, %s%s%s") % (
        "SSc", ftype, {True: "oblique"}.get(abs(((np.rad2deg(tau) + 45) % 90) - 45) > 20,
                                             ["right", "down", "left", "up"][int(round(np.rad2deg(tau) / 90)) % 4]),
        fov_mode, W, H, s, *[int(round(t)) for t in pat["flex"]], w0, np.rad2deg(yaw),
        pat["osteo"], pat["ao"], pat["n_ero"], n, ",".join("%s:%d" % kv for kv in sorted(kinds.items())),
        emode, kernel, sig, pad_mode, export, (" " + "+".join(art)) if art else "",
        ", neighbour finger in slice" if fld.get("_seen") else "")
    return dict(hu=hu_out, spacing_mm=float(s), bone=bone_px.astype(bool), deposits=lab_img.astype(np.int32),
                areas_mm2=[float(a) for a in areas], seeds=seeds, notes=notes)


def make_case(seed: int) -> dict:
    """One synthetic sagittal DECT finger slice with calcinosis cutis (deterministic in seed)."""
    for attempt in range(6):
        out = _make(seed, attempt)
        if len(out["areas_mm2"]) > 0:
            return out
    return out
