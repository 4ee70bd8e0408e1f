"""The candidate rule: take back, at a seed whose deposit touches the bone mask, the bulge of the
mask that a morphological opening removes (see README.md here)."""
import numpy as np
from scipy import ndimage as ndi

from napari_calcinosis.grow import grow_lesions, _disk_offsets, _within_reach, SEARCH_RADIUS_MM
from napari_calcinosis.subtract import label_bone_pieces


def _disk(radius_mm, spacing):
    rr = [max(1, int(np.floor(radius_mm / s))) for s in spacing]
    r, c = np.ogrid[-rr[0]: rr[0] + 1, -rr[1]: rr[1] + 1]
    return (r * spacing[0]) ** 2 + (c * spacing[1]) ** 2 <= radius_mm ** 2 + 1e-9


def bulges(bone_mask, spacing, radius_mm):
    """The pieces of the mask an opening with a disk of radius_mm removes (labelled, 8-connected)."""
    opened = ndi.binary_opening(np.pad(bone_mask, 1, mode="edge"), structure=_disk(radius_mm, spacing))[1:-1, 1:-1]
    return label_bone_pieces(bone_mask & ~opened)


def take_back(image_hu, bone_mask, bone_probability, spacing, seeds, *, radius_mm=1.25, max_mm2=10.0,
              min_bright_share=0.5, level_share=1.0, reach_px=2, rescue_click_inside=True, rescue_on_bone=False,
              keep_pieces=False, within_mm=None, base=None):
    """Grow with seeds as quantify does; then, at each seed whose lesion borders the bone mask (or is
    on_bone), take out of the mask the opening's bulges next to it (at most max_mm2, with at least
    min_bright_share of their pixels at or above the deposit's level * level_share above background),
    grow again, and put back bulges no deposit reached.  Returns (GrowResult, taken mask, base)."""
    spacing = (float(spacing[0]), float(spacing[1]))
    if base is None:
        base = grow_lesions(image_hu, bone_mask, spacing, seeds, bone_probability=bone_probability)
    mask = base.bone_mask  # less the pieces/blobs seeds already took back
    lab, n = bulges(mask, spacing, radius_mm)
    if n == 0:
        return base, np.zeros_like(mask), base
    px = spacing[0] * spacing[1]
    size = np.bincount(lab.ravel(), minlength=n + 1) * px
    smooth = ndi.median_filter(np.asarray(image_hu, np.float32), size=3)
    search = _disk_offsets(max(SEARCH_RADIUS_MM, 2.05 * max(spacing)), spacing)
    near = np.ones((2 * reach_px + 1, 2 * reach_px + 1), bool)
    chosen = np.zeros(n + 1, bool)
    limit = np.zeros(mask.shape, bool)  # v2 (within_mm): the pixels of chosen bulges that may be taken
    t = base.seeds
    for i in range(len(t)):
        status = t["status"].iat[i]
        r, c = int(round(t["seed_row"].iat[i])), int(round(t["seed_col"].iat[i]))
        if status == "ok":
            own = base.lesion_labels == t["lesion_id"].iat[i]
            ring = ndi.binary_dilation(own, structure=near) & ~own
            ids = np.unique(lab[ring & (lab > 0)])
            level = t["level_hu"].iat[i]
            bg = t["background_hu"].iat[i]
        elif status == "on_bone" and rescue_on_bone:
            pts = _within_reach(search, (r, c), lab > 0)
            ids = np.unique(lab[pts[:, 0], pts[:, 1]]) if len(pts) else np.array([], int)
            bg = t["background_hu"].iat[i]
            if not np.isfinite(bg):
                bg = 40.0
            level = np.nan  # judged below from the bulge itself
        else:
            continue
        for k in ids:
            if k == 0 or size[k] > max_mm2:
                continue
            vals = smooth[lab == k]
            lv = level if np.isfinite(level) else bg + 0.5 * (np.percentile(vals, 90) - bg)
            lv = bg + level_share * (lv - bg)
            if np.mean(vals >= lv) >= min_bright_share:
                if keep_pieces and _splits(mask, lab == k):
                    continue  # v2: a bulge whose removal cuts a bone in two is a thin bone, not a bulge
                chosen[k] = True
                if within_mm is not None and status == "ok":
                    # v2: only the bulge's pixels within within_mm of this seed's lesion are taken
                    near_own = ndi.distance_transform_edt(~own, sampling=spacing) <= within_mm
                    limit[lab == k] |= near_own[lab == k]
    if not chosen.any():
        return base, np.zeros_like(mask), base
    base_ids = base.seeds["lesion_id"].to_numpy()
    lab_all = lab
    if within_mm is not None:
        lab = np.where(limit | ~chosen[lab_all], lab_all, 0)
    for _ in range(4):
        taken = chosen[lab]
        res = grow_lesions(image_hu, mask & ~taken, spacing, seeds, bone_probability=bone_probability)
        reached = np.zeros(n + 1, bool)
        reached[np.unique(lab[(res.lesion_labels > 0) & (lab > 0)])] = True
        # A lesion that took a bulge and now holds the seeds of two lesions that were apart has
        # joined them through the bulge: its bulges go back.
        ids = res.seeds["lesion_id"].to_numpy()
        for L in np.unique(ids[ids > 0]):
            own = res.lesion_labels == L
            if not (own & taken).any():
                continue
            before = set(base_ids[(ids == L) & (base_ids > 0)])
            if len(before) > 1:
                reached[np.unique(lab[own & (lab > 0)])] = False
        if rescue_click_inside:
            # An on_bone seed is rescued only when its click ends up inside its new lesion (or a
            # taken bulge): a lesion grown beside the click from a corner of a deposit still
            # mostly inside the mask is no measurement of it.
            for i in np.flatnonzero(base.seeds["status"].to_numpy() == "on_bone"):
                r, c = int(round(base.seeds["seed_row"].iat[i])), int(round(base.seeds["seed_col"].iat[i]))
                L = ids[i]
                if L > 0 and not (res.lesion_labels[r, c] == L or taken[r, c]):
                    reached[np.unique(lab[(res.lesion_labels == L) & (lab > 0)])] = False
        if not (chosen & ~reached).any():
            break
        chosen &= reached
        if not chosen.any():
            return base, np.zeros_like(mask), base
    return compose(base, res, chosen[lab]), chosen[lab], base


def _splits(mask, piece):
    """Whether taking ``piece`` out of ``mask`` parts a piece of the mask in two."""
    _, before = label_bone_pieces(mask)
    _, after = label_bone_pieces(mask & ~piece)
    return after > before


def compose(base, res, taken):
    """The base result, with only the seeds whose new lesion took bulge pixels replaced by the new
    growth: every other seed keeps its lesion, status and area exactly."""
    from napari_calcinosis.grow import GrowResult
    ids1 = res.seeds["lesion_id"].to_numpy()
    ids0 = base.seeds["lesion_id"].to_numpy()
    hit = np.unique(res.lesion_labels[taken & (res.lesion_labels > 0)])
    if hit.size == 0:
        return base
    affected = np.isin(ids1, hit)
    labels = base.lesion_labels.copy()
    next_id = int(labels.max()) + 1
    erase = np.unique(ids0[affected & (ids0 > 0)])
    # a base lesion shared with an unaffected seed is kept (cannot happen after the merge guard)
    erase = [k for k in erase if not np.any((ids0 == k) & ~affected)]
    labels[np.isin(labels, erase)] = 0
    table = base.seeds.copy()
    new_id = {}
    for L in hit:
        seeds_on = np.flatnonzero(ids1 == L)
        reuse = [ids0[i] for i in seeds_on if ids0[i] in erase]
        new_id[L] = reuse[0] if reuse else next_id
        if not reuse:
            next_id += 1
        labels[(res.lesion_labels == L) & (labels == 0)] = new_id[L]
    for i in np.flatnonzero(affected):
        table.iloc[i] = res.seeds.iloc[i]
        table.iat[i, table.columns.get_loc("lesion_id")] = new_id[ids1[i]]
    bone = base.bone_mask & ~taken
    return GrowResult(lesion_labels=labels, seeds=table, bone_mask=bone)
