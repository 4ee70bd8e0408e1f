"""Round 2: the bulge take-back with a bone-shape prior (see README.md here, "Round 2").

Same steps as rule.take_back (opening bulges next to an ok seed's lesion, bright enough, regrow,
put back unreached or merging bulges, compose), with these changes:
  * coarse pixels: nothing is taken when the pixel is larger than max_pixel_mm (0.4 mm);
  * outline: of a bulge attached to the opened bone, only the pixels outside the bone's outline
    continued across it may be taken (outside_outline: one straight line fitted on each side, to the
    mask's outline 1 px to fit_mm from the bulge; a pixel on the bone side of both lines is bone).
    The bulge is refused when the outline cannot be continued: a bone end (too few outline points
    on one side) or thin bone (background on two sides of the bulge, the smaller stretch at least
    thin_ratio of the larger). A bulge the opening removes whole (a separate piece) is taken whole;
  * at least min_mm2 (0.15 mm²) of a bulge must be outside the outline;
  * growth cap: a seed's new lesion may gain over its base lesion at most max_gain (2) x the taken
    pixels it holds; otherwise its bulges go back (and it keeps its base result).
"""
import numpy as np
from scipy import ndimage as ndi

from napari_calcinosis.grow import grow_lesions
from rule import bulges, compose, _disk

FEATURES = []  # filled when record=True (development only)


def outside_outline(mask, opened, b, spacing, fit_mm=2.0, tol_px=0.5, thin_ratio=0.6):
    """The pixels of bulge b that lie outside the bone's outline continued across it, or None when
    the outline cannot be continued (thin bone: background on two sides of the bulge; too few
    outline points on either side).

    The outline on each side of the bulge is the mask's outer boundary between 1 px and fit_mm from
    the bulge; a straight line is fitted to each side.  A bulge pixel is bone (inside the outline)
    when it lies on the bone side of both lines: at a corner or tip the two lines meet at the corner
    the opening shaved, on a straight or round cortex they run along it."""
    s = np.asarray(spacing, float)
    rows, cols = np.nonzero(b)
    pad = int(np.ceil(fit_mm / s.min())) + 3
    R0, R1 = max(rows.min() - pad, 0), min(rows.max() + 1 + pad, mask.shape[0])
    C0, C1 = max(cols.min() - pad, 0), min(cols.max() + 1 + pad, mask.shape[1])
    m = mask[R0:R1, C0:C1]; bb = b[R0:R1, C0:C1]
    k8 = np.ones((3, 3), bool)
    # thin bone: the background next to the bulge falls in two or more stretches
    side_bg = ndi.binary_dilation(bb, structure=k8) & ~m
    sl, ns = ndi.label(side_bg, structure=k8)
    if ns == 0:
        return None
    sizes = np.sort(np.bincount(sl.ravel())[1:])[::-1]
    if thin_ratio is not None and ns > 1 and sizes[1] >= thin_ratio * sizes[0]:
        return None
    rest = m & ~bb
    edge = rest & ndi.binary_dilation(~m, structure=k8)  # outer outline of the bone, bulge excluded
    d = ndi.distance_transform_edt(~bb, sampling=s)
    # only the outline that runs on from the bulge's own ends (not another bone's nearby)
    el, _ = ndi.label(edge & (d <= fit_mm), structure=k8)
    keep = np.unique(el[ndi.binary_dilation(bb, structure=k8, iterations=2) & (el > 0)])
    pts = np.argwhere(np.isin(el, keep[keep > 0]) & (d > 1.01 * s.max())) * s
    if len(pts) < 6:
        return None
    bpts = np.argwhere(bb) * s
    c = pts.mean(axis=0)
    u = np.linalg.svd(pts - c, full_matrices=False)[2][0]
    xb = (bpts - c) @ u
    x = (pts - c) @ u
    xc = xb.mean()
    bg = np.argwhere(~m) * s
    inside = np.ones(len(bpts), bool)
    for side in (x < xc, x >= xc):
        q = pts[side]
        if len(q) < 3:
            return None
        qc = q.mean(axis=0)
        n = np.linalg.svd(q - qc, full_matrices=False)[2][1]  # normal of the fitted line
        # orient the normal toward the background near this side's outline points
        near_bg = bg[np.abs((bg - qc) @ np.linalg.svd(q - qc, full_matrices=False)[2][0]) <= fit_mm]
        near_bg = near_bg[np.linalg.norm(near_bg - qc, axis=1) <= fit_mm + s.max()]
        if len(near_bg) == 0:
            return None
        if (near_bg.mean(axis=0) - qc) @ n < 0:
            n = -n
        inside &= (bpts - qc) @ n <= tol_px * s.max()
    out = np.zeros_like(b)
    rr, cc = np.nonzero(bb)
    out[rr[~inside] + R0, cc[~inside] + C0] = True
    return out


def take_back2(image_hu, bone_mask, bone_probability, spacing, seeds, *, radius_mm=1.25, max_mm2=10.0,
               min_bright_share=0.5, reach_px=2, max_pixel_mm=0.4, outline=True, fit_mm=2.0, tol_px=0.5, thin_ratio=0.6,
               max_gain=2.0, min_mm2=0.15, base=None, record=False, truth=None, guard=None):
    """Returns (GrowResult, taken mask, base) as rule.take_back.

    ``guard(base, res, L, own)``, when given, is asked about each regrown lesion L that holds taken
    pixels and joined no two base lesions (``own``: its pixels); True puts its bulges back.
    Round 3 (rule3.py) uses it; round 2 has none."""
    spacing = (float(spacing[0]), float(spacing[1]))
    if base is None:
        base = grow_lesions(image_hu, bone_mask, spacing, seeds, bone_probability=bone_probability)
    none = (base, np.zeros_like(base.bone_mask), base)
    if max(spacing) > max_pixel_mm:
        return none
    mask = base.bone_mask
    opened = ndi.binary_opening(np.pad(mask, 1, mode="edge"), structure=_disk(radius_mm, spacing))[1:-1, 1:-1]
    lab, n = bulges(mask, spacing, radius_mm)
    if n == 0:
        return none
    px = spacing[0] * spacing[1]
    size = np.bincount(lab.ravel(), minlength=n + 1) * px
    smooth = ndi.median_filter(np.asarray(image_hu, np.float32), size=3)
    near = np.ones((2 * reach_px + 1, 2 * reach_px + 1), bool)
    k8 = np.ones((3, 3), bool)
    chosen = np.zeros(n + 1, bool)
    part = np.zeros_like(lab)  # the pixels of each bulge that may be taken (outside the outline)
    t = base.seeds
    judged = {}
    for i in range(len(t)):
        if t["status"].iat[i] != "ok":
            continue
        own = base.lesion_labels == t["lesion_id"].iat[i]
        ring = ndi.binary_dilation(own, structure=near) & ~own
        level = t["level_hu"].iat[i]
        for k in np.unique(lab[ring & (lab > 0)]):
            if k == 0 or size[k] > max_mm2:
                continue
            if np.mean(smooth[lab == k] >= level) < min_bright_share:
                continue
            if k not in judged:
                b = lab == k
                attached = (ndi.binary_dilation(b, structure=k8) & opened).any()
                if outline and attached:
                    out = outside_outline(mask, opened, b, spacing, fit_mm, tol_px, thin_ratio)
                else:
                    out = b
                judged[k] = out is not None and out.any() and out.sum() * px >= min_mm2
                if judged[k]:
                    part[out] = k
                if record:
                    FEATURES.append(dict(area=size[k], attached=bool(attached),
                                         out_share=float(out.sum() / b.sum()) if out is not None else -1,
                                         true_bone=float((b & truth["bone"]).mean() / b.mean()),
                                         deposit=float((b & (truth["deposits"] > 0)).mean() / b.mean()),
                                         out_true_bone=float((out & truth["bone"]).sum() * px) if out is not None else 0.0,
                                         out_deposit=float((out & (truth["deposits"] > 0)).sum() * px) if out is not None else 0.0,
                                         seed_index=i, **truth.get("tag", {})))
            if judged[k]:
                chosen[k] = True
    if not chosen.any():
        return none
    lab = part
    base_ids = base.seeds["lesion_id"].to_numpy()
    for _ in range(4):
        taken = chosen[lab]
        res = grow_lesions(image_hu, mask & ~taken, spacing, seeds, bone_probability=bone_probability)
        reached = np.zeros(n + 1, bool)
        reached[np.unique(lab[(res.lesion_labels > 0) & (lab > 0)])] = True
        ids = res.seeds["lesion_id"].to_numpy()
        for L in np.unique(ids[ids > 0]):
            own = res.lesion_labels == L
            hit = np.unique(lab[own & taken])
            if hit.size == 0:
                continue
            before = set(base_ids[(ids == L) & (base_ids > 0)])
            if len(before) > 1:
                reached[hit] = False  # a merge through the bulge
                continue
            if max_gain is not None:
                # growth cap: the new lesion may gain at most max_gain x the taken pixels it holds
                gain = own.sum() - np.isin(base.lesion_labels, list(before)).sum()
                if gain > max_gain * (own & taken).sum():
                    reached[hit] = False
            if guard is not None and guard(base, res, L, own):
                reached[hit] = False
        if not (chosen & ~reached).any():
            break
        chosen &= reached
        if not chosen.any():
            return none
    return compose(base, res, chosen[lab]), chosen[lab], base
