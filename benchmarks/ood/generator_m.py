"""Synthetic sagittal dual-energy CT (DECT) finger images with calcinosis cutis.

Independent test-image generator ("generator M") for a calcinosis-quantification
tool: U-Net bone segmentation + seeded region growing of calcinosis deposits on a
2-D sagittal DECT reformat of one finger (Chandrasekaran et al., Arthritis Res
Ther 2021).  ``make_case(seed)`` returns an image in Hounsfield units with exact
ground truth (bone mask, labelled deposits, areas in mm^2, one seed per deposit).

Design emphasis: SEVERE and EXTENSIVE calcinosis, as enrolled in treatment trials
in systemic sclerosis (SSc) and juvenile dermatomyositis (JDM), mixed with milder
and calcinosis-free fingers.

Anatomy (drawn in mm in a finger frame, then rotated/translated into the image):
  * a kinematic chain metacarpal -> proximal -> middle -> distal phalanx with
    random finger size (child/JDM to large adult), slight flexion at MCP/PIP/DIP,
    random mirror, random in-plane rotation and position; the field of view is
    often smaller than the finger, so phalanges are regularly cut by the border;
  * every phalanx has a base, a waisted shaft with volar concavity and a
    condylar head; the next base is cupped around the previous head with a
    joint gap; cortex (thicker in the shaft, thinner at the ends, osteopenic
    variants) and trabecular marrow with texture; distal phalanx with tuft, or in
    ~35 % of SSc fingers acro-osteolysis (resorbed, tapered, irregular tuft);
    occasional sesamoid (near the MCP) or small ossicle; ALL of them are in the
    bone mask;
  * soft tissue as a union of rounded capsules per segment (palm, finger, pulp
    and rounded fingertip), skin layer (thickened in sclerodactyly), fibro-fatty
    subcutis with septa texture, flexor and extensor tendons, periosteal/capsular
    tissue, nail plate and nail bed on the distal dorsum.

Deposits (truth = drawn, unblurred geometry; 1 label = one 4-connected
component, never on bone, separated from other deposits by >= 1 pixel, i.e. no
8-neighbour contact):
  * case severity: ~8 % none, ~30 % mild (1-4), ~22 % moderate (5-9), ~40 %
    severe (10-30 deposits);
  * types: irregular dense nodules; clusters of small nodules in chains with
    1-3 px gaps; confluent sheets following the skin along pulp / dorsum (a band
    at a given depth below the skin); elongated plaques; lobulated
    periarticular masses near the joints; deposits hugging the cortex (touching
    bone); fingertip deposits where the tuft is resorbed; "milk of calcium"
    (smooth, 150-450 HU fluid-like collections, sometimes with a dependent denser
    layer along +row);
  * densities 150-3000 HU (dense core, softer rim, texture), areas ~0.05-100 mm^2
    (at least one pixel).

Scanner model: pixel 0.1-0.6 mm, image sides 200-800 px; Gaussian PSF (smooth
kernels) or narrower PSF plus unsharp-mask edge overshoot (sharp kernels);
additive noise 10-80 HU SD, white, Gaussian-correlated or band-pass (NPS-like);
~15 % exported as 8-bit at window 1500 / level 450 and mapped back to HU (clips
at -300 and 1200 HU).

Visibility: after blurring the noiseless image, each deposit's contrast (peak in
its mask minus the median of a surrounding soft-tissue ring, and also its own
blurred contribution) must reach max(150 HU, 2.5 x noise SD); failing deposits
are brightened (up to a type-specific cap) or removed from image and truth.
Seeds are the maximum of each deposit's own blurred contribution (its densest,
most central point).
"""
import numpy as np
from scipy import ndimage as ndi

_C8 = np.ones((3, 3), bool)


# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------
def _lu(rng, a, b):
    return float(np.exp(rng.uniform(np.log(a), np.log(b))))


def _smooth(rng, shape, sigma):
    """Unit-SD Gaussian random field with correlation length sigma (px)."""
    shape = tuple(int(s) for s in shape)
    if sigma > 4.0:
        f = int(sigma / 2.0)
        small = (max(4, shape[0] // f + 2), max(4, shape[1] // f + 2))
        z = ndi.gaussian_filter(rng.standard_normal(small).astype(np.float32), sigma / f)
        z = ndi.zoom(z, (shape[0] / small[0] * 1.0001, shape[1] / small[1] * 1.0001), order=1)
        z = z[:shape[0], :shape[1]]
        if z.shape != shape:
            z = np.pad(z, ((0, shape[0] - z.shape[0]), (0, shape[1] - z.shape[1])), mode="edge")
    else:
        z = rng.standard_normal(shape).astype(np.float32)
        if sigma > 0.3:
            z = ndi.gaussian_filter(z, sigma)
    s = float(z.std())
    return z / (s if s > 0 else 1.0)


def _rotf(e, n, f):
    """Rotate the frame (e, n) by flexion angle f towards volar (-n)."""
    c, s = np.cos(f), np.sin(f)
    return c * e - s * n, s * e + c * n


# ----------------------------------------------------------------------------
# bone geometry
# ----------------------------------------------------------------------------
def _halfwidth(sg, u):
    L = sg["L"]
    t = np.clip(u / L, 0.0, 1.0)
    h = (sg["hs"] + (sg["hb"] - sg["hs"]) * np.exp(-(t / sg["wb"]) ** 2)
         + (sg["hh"] - sg["hs"]) * np.exp(-((1.0 - t) / sg["wh"]) ** 2))
    if sg["kind"] == "long":
        r = sg["r"]
        c = L - r
        hc = np.sqrt(np.clip(r * r - (u - c) ** 2, 0.0, None))
        h = np.where(u > c, np.minimum(h, hc), h)
    else:  # distal phalanx: tuft end at Le
        Le, rt = sg["Le"], sg["rt"]
        x = np.clip((u - (Le - rt)) / rt, 0.0, 1.0)
        h = h * np.sqrt(1.0 - x ** 2)
        if sg["ao"]:
            ph = sg["ao_phase"]
            h = h * (1.0 + 0.18 * np.sin(u * 2.7 + ph) * np.clip((u - 0.55 * Le) / (0.45 * Le), 0, 1))
    u0, rb = sg["u0"], sg["rb"]
    x = np.clip((u0 + rb - u) / rb, 0.0, 1.0)
    return h * np.sqrt(1.0 - x ** 2)


def _bone_center(sg, u):
    t = np.clip(u / sg["L"], 0.0, 1.0)
    return sg["bow"] * np.sin(np.pi * t)


# ----------------------------------------------------------------------------
# deposit shapes
# ----------------------------------------------------------------------------
def _blob(rng, shape, rc, a, b, d, irr, smooth=False):
    """Irregular ellipse in pixel units. rc=(row,col) centre, a/b semi-axes,
    d=(dx,dy) unit vector of the long axis in (col,row).  Returns slice, mask, rho."""
    H, W = shape
    R = max(a, b) * (1.0 + 1.6 * irr) + 2.0
    r0, r1 = int(np.floor(rc[0] - R)), int(np.ceil(rc[0] + R)) + 1
    c0, c1 = int(np.floor(rc[1] - R)), int(np.ceil(rc[1] + R)) + 1
    r0, c0 = max(r0, 0), max(c0, 0)
    r1, c1 = min(r1, H), min(c1, W)
    if r1 <= r0 or c1 <= c0:
        return None
    rr = np.arange(r0, r1, dtype=np.float32)[:, None] - rc[0]
    cc = np.arange(c0, c1, dtype=np.float32)[None, :] - rc[1]
    xu = cc * d[0] + rr * d[1]
    yv = -cc * d[1] + rr * d[0]
    th = np.arctan2(yv / b, xu / a)
    rad = np.sqrt((xu / a) ** 2 + (yv / b) ** 2)
    bound = np.ones_like(rad)
    if irr > 0 and not smooth:
        for k in range(2, 6):
            bound = bound + irr * rng.uniform(-1, 1) / (k - 1) ** 0.7 * np.cos(k * th + rng.uniform(0, 2 * np.pi))
    rho = rad / np.clip(bound, 0.35, None)
    m = rho <= 1.0
    ir, ic = int(round(rc[0])) - r0, int(round(rc[1])) - c0
    if 0 <= ir < m.shape[0] and 0 <= ic < m.shape[1]:
        m[ir, ic] = True
        rho[ir, ic] = min(rho[ir, ic], 0.999)
    return (slice(r0, r1), slice(c0, c1)), m, rho


def _dense_profile(rng, rho, core, rim, shape_px):
    gam = rng.uniform(0.5, 1.5)
    hu = rim + (core - rim) * (1.0 - np.clip(rho, 0, 1) ** 2) ** gam
    if shape_px > 25:
        tex = _smooth(rng, rho.shape, 1.2)
        hu = hu * (1.0 + rng.uniform(0.04, 0.15) * tex)
    return hu.astype(np.float32)


# ----------------------------------------------------------------------------
# main entry
# ----------------------------------------------------------------------------
def _make(seed):
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x4D2B]))

    # ---------------- scanner / grid ----------------
    fov = rng.uniform(30.0, 120.0) if rng.random() < 0.4 else rng.uniform(40.0, 85.0)
    sp_lo, sp_hi = max(0.1, fov / 800.0), min(0.6, fov / 200.0)
    sp = round(float(rng.uniform(sp_lo, sp_hi)), 4)
    n0 = fov / sp
    asp = rng.uniform(0.75, 1.33) if rng.random() < 0.5 else 1.0
    H = int(np.clip(round(n0 * np.sqrt(asp)), 200, 800))
    W = int(np.clip(round(n0 / np.sqrt(asp)), 200, 800))

    disease = "SSc" if rng.random() < 0.72 else "JDM"
    u_sev = rng.random()
    if u_sev < 0.08:
        sev, target = "none", 0
    elif u_sev < 0.38:
        sev, target = "mild", int(rng.integers(1, 5))
    elif u_sev < 0.60:
        sev, target = "moderate", int(rng.integers(5, 10))
    else:
        sev, target = "severe", int(rng.integers(10, 31))

    # ---------------- finger chain (finger frame, mm) ----------------
    s_f = rng.uniform(0.62, 0.88) if disease == "JDM" else rng.uniform(0.8, 1.15)
    ao = disease == "SSc" and sev != "none" and rng.random() < (0.45 if sev == "severe" else 0.25)
    osteo = rng.uniform(0.6, 1.0)
    hand = 1.0 if rng.random() < 0.5 else -1.0
    e = np.array([1.0, 0.0])
    n = hand * np.array([0.0, 1.0])
    jit = lambda: rng.uniform(0.9, 1.1)
    specs = [
        # name, kind, L, hb, hs, hh, D(dorsal soft), V(volar soft), ct_mid
        ("MC", "long", 62 * s_f * jit(), 4.3 * s_f, 3.7 * s_f * jit(), 4.9 * s_f * jit(), 3.6, 12.0, 1.3),
        ("P1", "long", 42 * s_f * jit(), 5.0 * s_f, 3.2 * s_f * jit(), 3.8 * s_f * jit(), 3.6, 8.5, 1.2),
        ("P2", "long", 25 * s_f * jit(), 4.2 * s_f, 2.6 * s_f * jit(), 3.0 * s_f * jit(), 3.2, 7.5, 1.0),
        ("P3", "distal", 18 * s_f * jit(), 3.6 * s_f, 1.7 * s_f * jit(), 2.4 * s_f * jit(), 2.9, 7.8, 0.7),
    ]
    flex = [rng.uniform(0, 0.35), rng.uniform(0, 0.45), rng.uniform(0, 0.3)]
    gaps = [1.5, 1.3, 1.1]
    segs = []
    start = np.array([0.0, 0.0])
    prev = None
    for i, (name, kind, L, hb, hs, hh, D, V, ctm) in enumerate(specs):
        sg = dict(name=name, kind=kind, L=L, hb=hb, hs=hs, hh=hh, wb=0.2, wh=0.2,
                  bow=rng.uniform(0.1, 0.45) * s_f, rb=0.9 * s_f, ao=False, ao_phase=0.0,
                  ct_mid=ctm * s_f * osteo, u0=0.0)
        if kind == "long":
            sg["r"] = hh
        if prev is not None:
            gap = gaps[i - 1] * s_f * rng.uniform(0.75, 1.25)
            e, n = _rotf(e, n, flex[i - 1])
            hc = prev["s"] + prev["e"] * (prev["L"] - prev["r"])
            start = hc + e * (prev["r"] + gap)
            Rc = prev["r"] + gap
            hbm = min(hb, 0.92 * Rc)
            sg["u0"] = -0.55 * (Rc - np.sqrt(Rc * Rc - hbm * hbm))
            sg["cup"] = (hc, Rc)
            sg["joint"] = hc + e * 0.0 + prev["e"] * (prev["r"] + 0.5 * gap)
        sg["s"], sg["e"], sg["n"] = start.copy(), e.copy(), n.copy()
        if kind == "distal":
            sg["wb"], sg["wh"] = 0.28, 0.13
            sg["tip_pad"] = rng.uniform(3.5, 5.5) * s_f
            if ao:
                frac = rng.uniform(0.15, 0.5)
                sg["Le"] = L * (1 - frac)
                sg["hh"] = hs * rng.uniform(0.6, 1.0)
                sg["ao"], sg["ao_phase"] = True, rng.uniform(0, 2 * np.pi)
                sg["ao_frac"] = frac
                sg["tip_pad"] *= rng.uniform(0.75, 1.0)
            else:
                sg["Le"] = L
            sg["rt"] = min(1.3 * s_f, 0.3 * sg["Le"])
        thick = rng.uniform(0.85, 1.2)
        sg["D"] = hs + D * s_f * thick * (1.25 if disease == "SSc" and rng.random() < 0.3 else 1.0)
        sg["V"] = hs + V * s_f * thick
        segs.append(sg)
        prev = sg

    # focus point along the finger axis (measured from fingertip)
    P3 = segs[3]
    tip = P3["s"] + P3["e"] * (P3["L"] + P3["tip_pad"])
    poly = [tip] + [sg["s"] for sg in segs[::-1]]
    seglen = [np.linalg.norm(poly[k + 1] - poly[k]) for k in range(len(poly) - 1)]
    finger_len = sum(seglen[:3])
    dfoc = rng.uniform(0.12, 0.7) * finger_len
    focus = poly[-1]
    acc = 0.0
    for k in range(len(seglen)):
        if acc + seglen[k] >= dfoc:
            f = (dfoc - acc) / seglen[k]
            focus = poly[k] + f * (poly[k + 1] - poly[k])
            break
        acc += seglen[k]
    # global rigid transform
    if rng.random() < 0.3:
        theta = rng.uniform(0, 2 * np.pi)
    else:
        theta = rng.integers(0, 4) * np.pi / 2 + rng.normal(0, 0.2)
    Rm = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    C = np.array([W * sp / 2, H * sp / 2]) * (1 + rng.uniform(-0.15, 0.15, 2))
    tr = lambda p: C + Rm @ (p - focus)
    for sg in segs:
        sg["s"] = tr(sg["s"])
        sg["e"] = Rm @ sg["e"]
        sg["n"] = Rm @ sg["n"]
        if "cup" in sg:
            sg["cup"] = (tr(sg["cup"][0]), sg["cup"][1])
            sg["joint"] = tr(sg["joint"])

    X = (np.arange(W, dtype=np.float32) * sp)[None, :]
    Y = (np.arange(H, dtype=np.float32) * sp)[:, None]
    for sg in segs:
        dx, dy = X - np.float32(sg["s"][0]), Y - np.float32(sg["s"][1])
        sg["u"] = dx * np.float32(sg["e"][0]) + dy * np.float32(sg["e"][1])
        sg["v"] = dx * np.float32(sg["n"][0]) + dy * np.float32(sg["n"][1])

    # ---------------- soft tissue ----------------
    soft = np.zeros((H, W), bool)
    for i, sg in enumerate(segs):
        if sg["name"] == "MC":
            ua, ub, pp, pd = -45.0, sg["L"] + 2.0, 8, 8
        elif sg["name"] == "P3":
            ua, ub, pp, pd = -2.0, sg["L"] + sg["tip_pad"], 6, rng.uniform(2.2, 3.0)
        else:
            ua, ub, pp, pd = -3.0, sg["L"] + 3.0, 6, 6
        uc, a = 0.5 * (ua + ub), 0.5 * (ub - ua)
        vc, b = 0.5 * (sg["D"] - sg["V"]), 0.5 * (sg["D"] + sg["V"])
        u, v = sg["u"], sg["v"]
        cand = (u > ua) & (u < ub) & (np.abs(v - vc) < b)
        idx = np.nonzero(cand)
        uu, vv = u[idx] - uc, v[idx] - vc
        p = np.where(uu < 0, pp, pd)
        inside = np.abs(uu / a) ** p + (vv / b) ** 2 <= 1.0
        soft[idx[0][inside], idx[1][inside]] = True

    # ---------------- bones ----------------
    bone = np.zeros((H, W), bool)
    ctmap = np.zeros((H, W), np.float32)
    for sg in segs:
        u, v = sg["u"], sg["v"]
        uend = sg["Le"] if sg["kind"] == "distal" else sg["L"]
        cand = (u >= sg["u0"]) & (u <= uend) & (np.abs(v) < max(sg["hb"], sg["hh"], sg["hs"]) * 1.4 + 1)
        idx = np.nonzero(cand)
        uu, vv = u[idx], v[idx]
        h = _halfwidth(sg, uu)
        ins = np.abs(vv - _bone_center(sg, uu)) <= h
        if "cup" in sg:
            hc, Rc = sg["cup"]
            px = X[0, idx[1]] - hc[0]
            py = Y[idx[0], 0] - hc[1]
            ins &= (px * px + py * py) > Rc * Rc
        rr, cc = idx[0][ins], idx[1][ins]
        bone[rr, cc] = True
        t = np.clip(uu[ins] / uend, 0, 1)
        ctmap[rr, cc] = 0.35 + (sg["ct_mid"] - 0.35) * np.sin(np.pi * t) ** 0.8
    extra_bones = []
    mc = segs[0]
    if rng.random() < 0.3:  # sesamoid volar to the metacarpal head
        hc = mc["s"] + mc["e"] * (mc["L"] - mc["r"])
        cs = hc - mc["n"] * (mc["r"] + 1.6 * s_f) - mc["e"] * 0.5 * s_f
        extra_bones.append(("sesamoid", cs, 1.9 * s_f, 1.2 * s_f, mc["e"]))
    if rng.random() < 0.08:  # small accessory ossicle dorsal to the DIP joint
        p3 = segs[3]
        cs = p3["joint"] + p3["n"] * (p3["hb"] + 1.0 * s_f)
        extra_bones.append(("ossicle", cs, 1.0 * s_f, 0.7 * s_f, p3["e"]))
    for nm, cs, a_, b_, ev in extra_bones:
        dx, dy = X - cs[0], Y - cs[1]
        xu = dx * ev[0] + dy * ev[1]
        yv = -dx * ev[1] + dy * ev[0]
        m = (xu / a_) ** 2 + (yv / b_) ** 2 <= 1.0
        m &= ~ndi.binary_dilation(bone, _C8, iterations=2)
        bone |= m
        ctmap[m] = 0.4
    soft |= bone
    extra_names = [x[0] for x in extra_bones]

    # ---------------- tissue HU ----------------
    depth_px = ndi.distance_transform_edt(soft).astype(np.float32)
    depth = depth_px * sp  # distance to air, mm
    dbone_px = ndi.distance_transform_edt(~bone).astype(np.float32)
    dbone = dbone_px * sp
    inb_px = ndi.distance_transform_edt(bone).astype(np.float32)

    hu = np.full((H, W), rng.uniform(-1010, -985), np.float32)
    fat = rng.uniform(-115, -70)
    fib = rng.uniform(15, 50)
    wbias = rng.uniform(-1.2, 0.0) + (0.6 if disease == "SSc" else 0.0)
    tex = _smooth(rng, (H, W), 0.8 / sp)
    w = 1.0 / (1.0 + np.exp(-(1.6 * tex + wbias)))
    hu = np.where(soft, fat + (fib - fat) * w, hu).astype(np.float32)
    skin_t = rng.uniform(0.8, 1.5) * (rng.uniform(1.2, 1.8) if disease == "SSc" else 1.0)
    skin_hu = rng.uniform(40, 80)
    skin = soft & (depth <= max(skin_t, sp))
    hu[skin] = skin_hu + 6 * tex[skin]
    # tendons
    tendon_hu = rng.uniform(80, 115)
    tend = np.zeros((H, W), bool)
    for sg in segs[1:]:
        u, v = sg["u"], sg["v"]
        L = sg["L"]
        hs = sg["hs"]
        if sg["name"] == "P3":
            tend |= (u > 0) & (u < 0.3 * L) & (v < -(hs + 0.6)) & (v > -(hs + 0.6 + 1.5 * s_f))
        else:
            tf = (3.0 if sg["name"] == "P1" else 2.0) * s_f
            tend |= (u > -1) & (u < L + 1) & (v < -(hs + 0.3)) & (v > -(hs + 0.3 + tf))
            tend |= (u > -1) & (u < L + 1) & (v > hs + 0.3) & (v < hs + 0.3 + 0.9 * s_f)
    tend &= soft & ~skin
    hu[tend] = tendon_hu + 4 * tex[tend]
    deep = soft & ~bone & (dbone <= max(0.7, sp)) & ~skin
    hu[deep] = rng.uniform(45, 75)
    # nail
    P3 = segs[3]
    u3, v3 = P3["u"], P3["v"]
    nail_t = rng.uniform(0.4, 0.75)
    nail_zone = (u3 > 0.4 * P3["L"]) & (u3 < P3["L"] + 0.8 * P3["tip_pad"]) & (v3 > 0.5)
    nail = soft & nail_zone & (depth <= max(nail_t, sp))
    nailbed = soft & nail_zone & ~nail & (depth <= nail_t + 1.2)
    hu[nailbed] = rng.uniform(40, 65)
    hu[nail] = rng.uniform(90, 170)
    # bone
    cort_hu = rng.uniform(900, 1900) * (0.85 + 0.15 * osteo)
    marrow_hu = rng.uniform(120, 380) * (0.7 + 0.3 * osteo)
    trab = _smooth(rng, (H, W), max(0.5, 0.25 / sp))
    cortex = bone & (inb_px <= np.maximum(ctmap / sp, 1.0))
    marrow = bone & ~cortex
    hu[marrow] = marrow_hu + rng.uniform(50, 120) * trab[marrow]
    hu[cortex] = cort_hu * (1 + 0.05 * trab[cortex])
    bg = hu

    # ---------------- deposits ----------------
    allowed = ndi.binary_erosion(soft, _C8, border_value=1) & ~bone & ~nail
    occ = np.zeros((H, W), bool)
    near = np.zeros((H, W), bool)
    deps = []
    zone_cache = {}

    def zone(name, si=None):
        key = (name, si)
        if key in zone_cache:
            return zone_cache[key]
        if name == "pulp":
            sg = segs[3]
            z = (sg["v"] < -0.3) & (sg["u"] > 0.15 * sg["L"]) & (sg["u"] < sg["L"] + sg["tip_pad"])
        elif name == "tip":
            sg = segs[3]
            z = (sg["u"] > sg["Le"] - 1.0) & (sg["u"] < sg["L"] + 0.6 * sg["tip_pad"]) & \
                (np.abs(sg["v"]) < sg["hs"] + 2.5)
        elif name == "dorsum":
            sg = segs[si]
            lim = 0.4 * sg["L"] if si == 3 else sg["L"]
            z = (sg["v"] > sg["hs"] * 0.5) & (sg["u"] > 0) & (sg["u"] < lim) & (dbone > 0.3)
        elif name == "volar":
            sg = segs[si]
            z = (sg["v"] < -sg["hs"] * 0.5) & (sg["u"] > 0) & (sg["u"] < sg["L"])
        elif name == "peri":
            J = segs[si]["joint"]
            r = segs[si - 1]["r"]
            z = ((X - J[0]) ** 2 + (Y - J[1]) ** 2 < (r + 4.0 * s_f) ** 2) & (dbone < 3.0)
        elif name == "cortical":
            z = dbone_px <= 1.5
        else:
            z = np.ones((H, W), bool)
        z = np.flatnonzero(z & allowed)
        zone_cache[key] = z
        return z

    def pick(name, si=None):
        z = zone(name, si)
        z = z[~near.ravel()[z]] if len(z) else z
        if len(z) == 0:
            return None
        k = int(z[rng.integers(len(z))])
        return (k // W + rng.uniform(-0.4, 0.4), k % W + rng.uniform(-0.4, 0.4))

    def finalize(sl, m, hucrop, typ, cap, min_frac=0.4):
        n0 = int(m.sum())
        m = m & allowed[sl] & ~near[sl]
        lab, k = ndi.label(m)
        if k == 0:
            return False
        if k > 1:
            sz = np.bincount(lab.ravel())[1:]
            m = lab == (int(np.argmax(sz)) + 1)
        if m.sum() < max(1, min_frac * n0, np.ceil(0.05 / sp ** 2 - 1e-9)):
            return False
        hucrop = np.minimum(hucrop, 3000.0)
        # tighten crop
        rows = np.flatnonzero(m.any(1))
        cols = np.flatnonzero(m.any(0))
        m = m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        hucrop = hucrop[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        sl = (slice(sl[0].start + rows[0], sl[0].start + rows[-1] + 1),
              slice(sl[1].start + cols[0], sl[1].start + cols[-1] + 1))
        occ[sl] |= m
        r0, r1 = max(sl[0].start - 1, 0), min(sl[0].stop + 1, H)
        c0, c1 = max(sl[1].start - 1, 0), min(sl[1].stop + 1, W)
        big = np.zeros((r1 - r0, c1 - c0), bool)
        big[sl[0].start - r0:sl[0].stop - r0, sl[1].start - c0:sl[1].stop - c0] = m
        near[r0:r1, c0:c1] |= ndi.binary_dilation(big, _C8)
        deps.append(dict(sl=sl, m=m, hu=hucrop[m].astype(np.float32), typ=typ, cap=cap))
        return True

    def seg_dir(si):
        ev = segs[si]["e"] if si is not None else rng.normal(size=2)
        ev = ev / np.linalg.norm(ev)
        return (float(ev[0]), float(ev[1]))

    def rand_dir():
        a = rng.uniform(0, 2 * np.pi)
        return (np.cos(a), np.sin(a))

    def add_blob(zname, si, area_mm2, core, rimf, irr, aspect, d, typ, cap, smooth=False):
        c = pick(zname, si)
        if c is None:
            return False
        A = max(area_mm2 / sp ** 2, 1.0, 0.06 / sp ** 2)
        a = np.sqrt(A / np.pi * aspect)
        b = np.sqrt(A / np.pi / aspect)
        res = _blob(rng, (H, W), c, max(a, 0.5), max(b, 0.5), d, irr, smooth)
        if res is None:
            return False
        sl, m, rho = res
        huc = _dense_profile(rng, rho, core, core * rimf, A)
        return finalize(sl, m, huc, typ, cap)

    def add_milk(zname, si):
        c = pick(zname, si)
        if c is None:
            return False
        A = _lu(rng, 3, 60) / sp ** 2
        aspect = rng.uniform(1.0, 2.2)
        a, b = np.sqrt(A / np.pi * aspect), np.sqrt(A / np.pi / aspect)
        res = _blob(rng, (H, W), c, max(a, 0.7), max(b, 0.7), rand_dir(), 0.0, True)
        if res is None:
            return False
        sl, m, rho = res
        base = rng.uniform(150, 450)
        huc = np.full(m.shape, base, np.float32)
        if rng.random() < 0.5:  # dependent denser layer (gravity along +row)
            rr = np.arange(sl[0].start, sl[0].stop, dtype=np.float32)[:, None] - c[0]
            level = rng.uniform(0.1, 0.6) * b
            huc = np.where(rr + 0 * huc > level, base + rng.uniform(300, 1000), huc).astype(np.float32)
        return finalize(sl, m, huc, "milk", 700.0)

    def add_sheet():
        opts = [(3, -1), (3, 1), (2, 1), (2, -1), (1, 1), (1, -1)]
        si, side = opts[int(rng.integers(len(opts)))]
        sg = segs[si]
        u, v = sg["u"], sg["v"]
        length = rng.uniform(5, 28) * s_f
        lo, hi = (0.1 * sg["L"], sg["L"] + 0.6 * sg["tip_pad"]) if si == 3 else (0.0, sg["L"])
        if side > 0 and si == 3:
            hi = 0.45 * sg["L"]
        length = min(length, hi - lo)
        ua = lo + rng.random() * max(hi - lo - length, 0.0)
        d0 = rng.uniform(0.2, 1.6)
        t0 = rng.uniform(0.4, 2.6)
        lam = rng.uniform(7, 18)
        ph = rng.uniform(0, 2 * np.pi)
        sel = (u > ua) & (u < ua + length) & ((v > 0) if side > 0 else (v < 0)) & (depth > d0) & (depth < d0 + 2 * t0 + 0.5)
        if not sel.any():
            return False
        rows = np.flatnonzero(sel.any(1))
        cols = np.flatnonzero(sel.any(0))
        sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        uu, dd = u[sl], depth[sl]
        tt = (uu - ua) / length
        thick = t0 * (1 + 0.22 * np.sin(2 * np.pi * uu / lam + ph)
                      + 0.1 * np.sin(2 * np.pi * uu / (0.43 * lam) + 2 * ph)) * np.clip(np.sin(np.pi * tt), 0, 1) ** 0.35
        m = sel[sl] & (dd < d0 + thick)
        if m.sum() < 2:
            return False
        core = rng.uniform(250, 1500)
        huc = (core * (1 + rng.uniform(0.05, 0.2) * _smooth(rng, m.shape, 1.5))).astype(np.float32)
        huc = np.maximum(huc, 0.5 * core)
        return finalize(sl, m, huc, "sheet", 2500.0, min_frac=0.3)

    def add_cluster(max_n):
        zn, si = [("pulp", 3), ("tip", 3), ("peri", int(rng.integers(1, 4))), ("dorsum", int(rng.integers(1, 4))),
                  ("volar", int(rng.integers(1, 3)))][int(rng.integers(5))]
        if zn == "tip" and not ao:
            zn = "pulp"
        c = pick(zn, si)
        if c is None:
            return 0
        k = min(int(rng.integers(3, 9)), max(2, max_n))
        base = _lu(rng, 400, 2500)
        d = np.array(rand_dir())
        pos = np.array(c, float)
        rad_prev = None
        added = 0
        for j in range(k):
            A = max(_lu(rng, 0.06, 1.5) / sp ** 2, 1.0, 0.06 / sp ** 2)
            r = np.sqrt(A / np.pi)
            if rad_prev is not None:
                ang = rng.uniform(-1.1, 1.1)
                d = np.array([d[0] * np.cos(ang) - d[1] * np.sin(ang), d[0] * np.sin(ang) + d[1] * np.cos(ang)])
                gap = int(rng.integers(1, 4)) + 0.6
                pos = pos + d * (rad_prev + r + gap)
            rad_prev = r
            if not (0 <= pos[0] < H and 0 <= pos[1] < W):
                break
            ip = int(round(pos[0])) * W + int(round(pos[1]))
            if not allowed.ravel()[min(max(ip, 0), H * W - 1)]:
                continue
            asp_ = rng.uniform(1.0, 1.8)
            res = _blob(rng, (H, W), (pos[0], pos[1]), max(r * np.sqrt(asp_), 0.5), max(r / np.sqrt(asp_), 0.5),
                        rand_dir(), rng.uniform(0.0, 0.15))
            if res is None:
                continue
            sl, m, rho = res
            core = base * rng.uniform(0.8, 1.2)
            huc = _dense_profile(rng, rho, core, core * rng.uniform(0.6, 0.9), A)
            if finalize(sl, m, huc, "cluster", 3000.0, min_frac=0.5):
                added += 1
        return added

    def add_peri():
        si = int(rng.choice([1, 2, 3], p=[0.2, 0.4, 0.4]))
        c = pick("peri", si)
        if c is None:
            return False
        A_tot = _lu(rng, 1, 60) / sp ** 2
        nl = int(rng.integers(2, 5))
        r0 = np.sqrt(A_tot / nl / np.pi)
        m_all, hu_all = None, None
        R = 2.5 * r0 + 3
        rs, cs_ = int(max(c[0] - R, 0)), int(max(c[1] - R, 0))
        re, ce = int(min(c[0] + R + 1, H)), int(min(c[1] + R + 1, W))
        if re <= rs or ce <= cs_:
            return False
        sl = (slice(rs, re), slice(cs_, ce))
        m_all = np.zeros((re - rs, ce - cs_), bool)
        hu_all = np.zeros(m_all.shape, np.float32)
        core = _lu(rng, 400, 2500)
        for j in range(nl):
            off = rng.normal(0, 0.7 * r0, 2) if j else np.zeros(2)
            res = _blob(rng, (H, W), (c[0] + off[0], c[1] + off[1]), max(r0 * rng.uniform(0.8, 1.4), 0.6),
                        max(r0 * rng.uniform(0.6, 1.0), 0.6), rand_dir(), rng.uniform(0.05, 0.25))
            if res is None:
                continue
            bsl, bm, brho = res
            hub = _dense_profile(rng, brho, core * rng.uniform(0.8, 1.2), core * 0.6, bm.sum())
            # paste into sl frame (intersection)
            r_a, r_b = max(bsl[0].start, rs), min(bsl[0].stop, re)
            c_a, c_b = max(bsl[1].start, cs_), min(bsl[1].stop, ce)
            if r_b <= r_a or c_b <= c_a:
                continue
            sub_m = bm[r_a - bsl[0].start:r_b - bsl[0].start, c_a - bsl[1].start:c_b - bsl[1].start]
            sub_h = hub[r_a - bsl[0].start:r_b - bsl[0].start, c_a - bsl[1].start:c_b - bsl[1].start]
            tgt_m = m_all[r_a - rs:r_b - rs, c_a - cs_:c_b - cs_]
            tgt_h = hu_all[r_a - rs:r_b - rs, c_a - cs_:c_b - cs_]
            np.maximum(tgt_h, np.where(sub_m, sub_h, 0), out=tgt_h)
            tgt_m |= sub_m
        if not m_all.any():
            return False
        return finalize(sl, m_all, hu_all, "periarticular", 3000.0, min_frac=0.3)

    # type weights
    if disease == "SSc":
        types = ["nodule", "cluster", "sheet", "plaque", "peri", "cortical", "tip", "milk"]
        wts = np.array([0.26, 0.16, 0.09, 0.08, 0.14, 0.11, 0.10 if ao else 0.0, 0.06])
    else:
        types = ["nodule", "cluster", "sheet", "plaque", "peri", "cortical", "tip", "milk"]
        wts = np.array([0.22, 0.14, 0.18, 0.14, 0.10, 0.08, 0.0, 0.14])
    if sev == "mild":
        wts = wts * np.array([1.5, 0.3, 0.3, 0.6, 1.0, 1.0, 1.0, 0.8])
    wts = wts / wts.sum()
    forced = []
    if sev == "severe":
        if rng.random() < 0.8:
            forced.append("cluster")
        if rng.random() < 0.75:
            forced.append("sheet")
        if ao:
            forced.append("tip")
    attempts = 0
    while len(deps) < target and attempts < 8 * target + 20:
        attempts += 1
        typ = forced.pop(0) if forced else types[int(rng.choice(len(types), p=wts))]
        if typ == "nodule":
            zn = [("pulp", 3), ("dorsum", int(rng.integers(1, 4))), ("volar", int(rng.integers(1, 3))),
                  ("any", None)][int(rng.integers(4))]
            add_blob(zn[0], zn[1], _lu(rng, 0.05, 6.0), _lu(rng, 250, 3000), rng.uniform(0.5, 0.9),
                     rng.uniform(0.05, 0.3), rng.uniform(1.0, 2.2), rand_dir(), "nodule", 3000.0)
        elif typ == "cluster":
            add_cluster(target - len(deps))
        elif typ == "sheet":
            add_sheet()
        elif typ == "plaque":
            zn = [("pulp", 3), ("dorsum", int(rng.integers(1, 4))), ("volar", int(rng.integers(1, 3)))][int(rng.integers(3))]
            add_blob(zn[0], zn[1], _lu(rng, 3, 100) * s_f, _lu(rng, 300, 2000), rng.uniform(0.6, 0.9),
                     rng.uniform(0.1, 0.25), rng.uniform(2.5, 6.0), seg_dir(zn[1]), "plaque", 3000.0)
        elif typ == "peri":
            add_peri()
        elif typ == "cortical":
            add_blob("cortical", None, _lu(rng, 0.3, 12), _lu(rng, 400, 2500), rng.uniform(0.6, 0.9),
                     rng.uniform(0.05, 0.25), rng.uniform(1.0, 2.5), rand_dir(), "cortical", 3000.0)
        elif typ == "tip":
            add_blob("tip", 3, _lu(rng, 1, 30) * s_f, _lu(rng, 500, 2800), rng.uniform(0.55, 0.9),
                     rng.uniform(0.1, 0.3), rng.uniform(1.0, 2.0), rand_dir(), "tip", 3000.0)
        elif typ == "milk":
            zn = [("pulp", 3), ("any", None), ("peri", int(rng.integers(1, 4)))][int(rng.integers(3))]
            add_milk(*zn)

    # ---------------- scanner: PSF, noise, visibility ----------------
    sharp = rng.random() < 0.4
    if sharp:
        sig_mm = rng.uniform(0.15, 0.3)
        over = rng.uniform(0.15, 0.45)
    else:
        sig_mm = rng.uniform(0.28, 0.55)
        over = 0.0
    sig = float(np.clip(sig_mm / sp, 0.7, 4.0))

    def psf(img):
        g = ndi.gaussian_filter(img, sig, mode="nearest")
        if over > 0:
            g = g + over * (g - ndi.gaussian_filter(g, 2.0 * sig, mode="nearest"))
        return g

    noise_sd = _lu(rng, 10, 80)
    ntype = str(rng.choice(["white", "corr", "nps"], p=[0.3, 0.45, 0.25]) if not sharp
                else rng.choice(["white", "corr", "nps"], p=[0.45, 0.2, 0.35]))
    export8 = rng.random() < 0.15
    thr = max(150.0, 2.5 * noise_sd)

    dropped = 0
    brightened = 0
    def compose(deps):
        """The image with the deposits drawn, blurred, and each deposit's own blurred contrast."""
        img = bg.copy()
        dimg = np.zeros((H, W), np.float32)
        for d in deps:
            img[d["sl"]][d["m"]] = d["hu"]
            dimg[d["sl"]][d["m"]] = d["hu"] - bg[d["sl"]][d["m"]]
        return img, psf(img), psf(dimg)

    for it in range(5):
        img, bl, own = compose(deps)
        blc = np.clip(bl, -300, 1200) if export8 else bl
        occ_all = np.zeros((H, W), bool)
        for d in deps:
            occ_all[d["sl"]] |= d["m"]
        fails = []
        for k, d in enumerate(deps):
            sl, m = d["sl"], d["m"]
            Rg = int(np.ceil(2 * sig)) + 3
            r0, r1 = max(sl[0].start - Rg, 0), min(sl[0].stop + Rg, H)
            c0, c1 = max(sl[1].start - Rg, 0), min(sl[1].stop + Rg, W)
            big = np.zeros((r1 - r0, c1 - c0), bool)
            big[sl[0].start - r0:sl[0].stop - r0, sl[1].start - c0:sl[1].stop - c0] = m
            d1 = ndi.binary_dilation(big, _C8, iterations=1)
            d2 = ndi.binary_dilation(big, _C8, iterations=Rg)
            ring = d2 & ~d1
            ringt = ring & soft[r0:r1, c0:c1] & ~bone[r0:r1, c0:c1] & ~occ_all[r0:r1, c0:c1]
            if ringt.sum() < 3:
                ringt = ring & ~occ_all[r0:r1, c0:c1]
            bsub = blc[r0:r1, c0:c1]
            peak = float(bsub[big].max())
            sur = float(np.median(bsub[ringt])) if ringt.any() else float(np.median(bsub[ring]))
            ownpk = float(own[sl][m].max())
            con = min(peak - sur, ownpk)
            d["contrast"] = con
            if con < thr:
                fails.append((k, con))
        if not fails:
            break
        drop = set()
        for k, con in fails:
            d = deps[k]
            if it == 4 or d["hu"].max() >= d["cap"] * 0.999:
                drop.add(k)
                continue
            bgv = bg[d["sl"]][d["m"]]
            f = min(3.0, 1.3 * thr / max(con, 5.0))
            newhu = bgv + (d["hu"] - bgv) * f
            mx = float(newhu.max())
            if mx > d["cap"]:
                newhu = bgv + (newhu - bgv) * ((d["cap"] - bgv.max()) / max(mx - bgv.max(), 1.0))
            d["hu"] = newhu.astype(np.float32)
            brightened += 1
        if drop:
            dropped += len(drop)
            deps = [d for k, d in enumerate(deps) if k not in drop]

    # final compose (also after a possible last drop)
    img, bl, own = compose(deps)

    # noise
    wn = rng.standard_normal((H, W)).astype(np.float32)
    if ntype == "corr":
        nz = ndi.gaussian_filter(wn, rng.uniform(0.6, 1.2) * max(sig, 0.7))
    elif ntype == "nps":
        s1 = rng.uniform(0.5, 1.0) * max(sig, 0.6)
        nz = ndi.gaussian_filter(wn, s1) - 0.7 * ndi.gaussian_filter(wn, 3 * s1)
    else:
        nz = wn
    nz = nz / float(nz.std())
    out = bl + noise_sd * nz
    if export8:
        q = np.clip(np.round((out + 300.0) / 1500.0 * 255.0), 0, 255)
        out = q * (1500.0 / 255.0) - 300.0
    out = np.clip(out, -1024, 3071).astype(np.float32)

    labels = np.zeros((H, W), np.int32)
    areas, seeds, typs, dens = [], [], [], []
    for k, d in enumerate(deps, start=1):
        labels[d["sl"]][d["m"]] = k
        areas.append(float(d["m"].sum()) * sp * sp)
        osub = np.where(d["m"], own[d["sl"]], -np.inf)
        r, c = np.unravel_index(int(np.argmax(osub)), osub.shape)
        seeds.append((int(d["sl"][0].start + r), int(d["sl"][1].start + c)))
        typs.append(d["typ"])
        dens.append(float(d["hu"].max()))

    from collections import Counter
    tc = Counter(typs)
    notes = (
        f"Sagittal DECT finger, {disease}, severity {sev} ({len(deps)} deposits"
        + (": " + ", ".join(f"{v} {k}" for k, v in sorted(tc.items())) if deps else "")
        + f"); finger scale {s_f:.2f}, flexion MCP/PIP/DIP {np.degrees(flex[0]):.0f}/{np.degrees(flex[1]):.0f}/"
        f"{np.degrees(flex[2]):.0f} deg, rotation {np.degrees(theta) % 360:.0f} deg"
        + (f", acro-osteolysis ({100 * segs[3]['ao_frac']:.0f}% tuft resorbed)" if ao else "")
        + (", " + "+".join(extra_names) if extra_names else "")
        + f"; pixel {sp:.3f} mm, {H}x{W}; {'sharp' if sharp else 'smooth'} kernel sigma {sig_mm:.2f} mm"
        + (f" overshoot {over:.2f}" if sharp else "")
        + f"; noise {noise_sd:.0f} HU SD ({ntype})"
        + ("; 8-bit export WW1500/WL450" if export8 else "")
        + (f"; {brightened} brightened, {dropped} invisible deposits removed" if (brightened or dropped) else "")
    )
    return dict(hu=out, spacing_mm=float(sp), bone=bone.copy(), deposits=labels, areas_mm2=areas,
                seeds=seeds, notes=notes, deposit_types=typs, deposit_peak_hu=dens,
                noise_sd=float(noise_sd), export8=bool(export8))


_KEYS = ("hu", "spacing_mm", "bone", "deposits", "areas_mm2", "seeds", "notes")


def make_case(seed: int) -> dict:
    """Deterministic synthetic case for ``seed`` (see module docstring)."""
    full = _make(seed)
    return {k: full[k] for k in _KEYS}


def make_case_debug(seed: int) -> dict:
    """As make_case, plus deposit_types, deposit_peak_hu, noise_sd, export8."""
    return _make(seed)
