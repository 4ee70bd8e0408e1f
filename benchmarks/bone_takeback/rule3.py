"""Round 3: round 2's frozen rule (rule2.take_back2 with its defaults) and two more guards (see
README.md here, "Round 3"):
  * keep_not_ok: a seed whose base status was not ``ok`` keeps its base result. A regrown lesion
    that holds taken bulge pixels gives its bulges back when it holds such a seed (an ``on_bone``
    seed freed by a neighbour's bulge; a ``duplicate_seed`` of another deposit), or when a duplicate
    of its own deposit ended up outside it (a deposit split in two by the regrowth). A duplicate that
    stays on its deposit keeps its status and follows that deposit's lesion;
  * min_keep: loss cap beside round 2's gain cap. A seed's new lesion may not fall below min_keep x
    its base lesion's area; otherwise its bulges go back, and it keeps its base result.
"""
import dataclasses

import numpy as np

from rule2 import take_back2


def _guard(keep_not_ok, min_keep):
    """The check rule2.take_back2 asks about each regrown lesion L that holds taken pixels."""
    def refuse(base, res, L, own):
        ids0 = base.seeds["lesion_id"].to_numpy()
        ids1 = res.seeds["lesion_id"].to_numpy()
        ok0 = base.seeds["status"].to_numpy() == "ok"
        inside = ids1 == L
        if keep_not_ok:
            owners = set(ids0[inside & ok0])
            for i in np.flatnonzero(~ok0):
                # a duplicate of L's own base deposit belongs inside L; every other seed that was
                # not ok belongs outside it
                if inside[i] != (ids0[i] > 0 and ids0[i] in owners):
                    return True
        if min_keep is not None:
            before = ids0[inside & (ids0 > 0)]
            if own.sum() < min_keep * np.isin(base.lesion_labels, before).sum():
                return True
        return False
    return refuse


def take_back3(image_hu, bone_mask, bone_probability, spacing, seeds, *, keep_not_ok=True, min_keep=0.8,
               **round2):
    """Returns (GrowResult, taken mask, base) as rule.take_back. ``round2``: rule2.take_back2's options
    (its frozen defaults when none are given)."""
    res, taken, base = take_back2(image_hu, bone_mask, bone_probability, spacing, seeds,
                                  guard=_guard(keep_not_ok, min_keep), **round2)
    if not keep_not_ok or res is base:
        return res, taken, base
    # the guard leaves a seed that was not ok either untouched or a duplicate inside its deposit's
    # new lesion: it keeps its base row, with that lesion's id
    table = res.seeds.copy()
    for i in np.flatnonzero(base.seeds["status"].to_numpy() != "ok"):
        lesion_id = table["lesion_id"].iat[i]
        table.iloc[i] = base.seeds.iloc[i]
        table.iat[i, table.columns.get_loc("lesion_id")] = lesion_id
    return dataclasses.replace(res, seeds=table), taken, base
