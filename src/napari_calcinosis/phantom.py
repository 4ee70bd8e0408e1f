"""Synthetic sagittal finger phantoms with exact ground truth.

A phantom is a 2-D sagittal CT slice of one finger rendered in Hounsfield units: metacarpal
head, three phalanges (cortex, medulla, flared bases, rounded heads, joint gaps), soft tissue
with a subcutaneous fat band, skin, nail, a flexor tendon, and calcinosis deposits of
0.4-50 mm^2 (the range measured in Chandrasekaran et al. 2021) in the fingertip pulp, around
joints, along shafts and touching bone.

Every structure is an analytic function of physical coordinates, so the truth does not depend
on the pixel grid: the image is rendered on a supersampled grid and averaged down (partial
volume), blurred by a Gaussian point-spread function and given noise; each deposit's true area
is integrated on a fine grid of its own. Orientation, size, pixel spacing (0.15-0.35 mm),
densities, noise and blur are all drawn at random from ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Phantom", "make_phantom", "LESION_SITES"]

LESION_SITES = ("pulp", "joint", "shaft", "touching_bone")

# Supersampling for partial volume: 3x3 sub-pixels per pixel is enough for the blur that
# follows to hide the remaining aliasing; each deposit's *area* is integrated much finer.
_SUPERSAMPLE = 3
_AREA_SUPERSAMPLE = 12


@dataclass
class Phantom:
    """One synthetic finger image and its exact ground truth.

    Attributes
    ----------
    image_hu : ndarray of float32, (rows, cols)
        The CT slice in Hounsfield units.
    spacing_mm : tuple of float
        (row, col) pixel spacing in mm.
    bone_mask : ndarray of bool
        Pixels more than half covered by bone (phalanges and the metacarpal head).
    lesion_labels : ndarray of int32
        0 = no deposit, i = deposit i (pixels more than half covered by it, bone excluded).
    lesion_areas_mm2 : ndarray of float
        True area of deposit i at index i - 1, in mm^2, bone overlap excluded.
    seeds : ndarray of int, (n_lesions, 2)
        One (row, col) pixel inside each deposit, in label order.
    lesion_sites : list of str
        Where each deposit lies: one of ``LESION_SITES``.
    lesion_peak_hu : ndarray of float
        Each deposit's density before blur and noise, in HU.
    cut_off : bool
        True when the image border cuts through a phalanx (the case where the paper's U-Net
        failed).
    seed : int
        The random seed that made this phantom.
    params : dict
        The drawn acquisition parameters (noise, blur, orientation...).
    """

    image_hu: np.ndarray
    spacing_mm: tuple[float, float]
    bone_mask: np.ndarray
    lesion_labels: np.ndarray
    lesion_areas_mm2: np.ndarray
    seeds: np.ndarray
    lesion_sites: list[str]
    lesion_peak_hu: np.ndarray
    cut_off: bool
    seed: int
    params: dict = field(default_factory=dict)

    @property
    def n_lesions(self) -> int:
        return len(self.lesion_areas_mm2)

    def to_image(self, source: str | None = None):
        """The phantom as a :class:`~napari_calcinosis.io.CalcinosisImage` (HU, spacing in mm)."""
        from .io import CalcinosisImage

        return CalcinosisImage(
            pixels_hu=self.image_hu,
            spacing_mm=self.spacing_mm,
            source=source or f"phantom-{self.seed}",
            value_origin="synthetic phantom in HU",
            spacing_origin="phantom",
        )


# --------------------------------------------------------------------------------------------
# Geometry: a finger is a chain of bones, each with its own local frame (a along the bone,
# b across it, b > 0 dorsal).


@dataclass
class _Bone:
    origin: np.ndarray  # (x, y) mm of the proximal end's centre, in finger frame
    angle: float  # direction of the bone's long axis, radians, in finger frame
    length_mm: float
    base_half_mm: float
    shaft_half_mm: float
    head_half_mm: float
    bow_mm: float  # palmar concavity of the shaft
    cortex_mm: float
    flare_mm: float  # length over which base and head flare
    tuft: bool = False  # distal phalanx: tuft instead of a head
    cup_mm: float = 0.0  # depth of a concave (cupped) articular surface at the base

    def local(self, u, v):
        dx, dy = u - self.origin[0], v - self.origin[1]
        c, s = np.cos(self.angle), np.sin(self.angle)
        return dx * c + dy * s, -dx * s + dy * c

    def half_width(self, a):
        t_base = np.exp(-((a / self.flare_mm) ** 2))
        t_head = np.exp(-(((self.length_mm - a) / self.flare_mm) ** 2))
        return (
            self.shaft_half_mm
            + (self.base_half_mm - self.shaft_half_mm) * t_base
            + (self.head_half_mm - self.shaft_half_mm) * t_head
        )

    def centre_offset(self, a):
        x = np.clip(a / self.length_mm, 0.0, 1.0)
        return -self.bow_mm * 4.0 * x * (1.0 - x) + 0.0

    def inside(self, u, v):
        a, b = self.local(u, v)
        w = self.half_width(a)
        db = np.abs(b - self.centre_offset(a))
        # Rounded ends: the head is convex over its half-width; the base nearly flat.
        head_r = self.head_half_mm * (0.6 if self.tuft else 0.9)
        base_r = self.base_half_mm * 0.35
        end_head = np.where(
            a > self.length_mm - head_r,
            w * np.sqrt(np.clip(1.0 - ((a - (self.length_mm - head_r)) / head_r) ** 2, 0, 1)),
            w,
        )
        end = np.where(
            a < base_r,
            end_head * np.sqrt(np.clip(1.0 - ((base_r - a) / base_r) ** 2, 0, 1)) ** 0.5,
            end_head,
        )
        inside = (a >= 0) & (a <= self.length_mm) & (db <= end)
        if self.cup_mm > 0:
            # The base is hollowed where it receives the head of the bone before it.
            inside &= a >= self.cup_mm * np.clip(1.0 - (db / np.maximum(w, 1e-6)) ** 2, 0.0, 1.0)
        return inside


@dataclass
class _Finger:
    bones: list  # metacarpal, P1, P2, P3
    dorsal_mm: list  # soft tissue above each bone
    palmar_mm: list
    tip_mm: float
    skin_mm: float
    fat_mm: float
    nail_mm: float
    tendon_mm: float
    erosions: list = field(default_factory=list)  # ((u, v) mm, radius mm): bone removed there

    def soft_tissue(self, u, v):
        inside = np.zeros(np.broadcast(u, v).shape, dtype=bool)
        n = len(self.bones)
        for i, bone in enumerate(self.bones):
            a, b = bone.local(u, v)
            top = bone.head_half_mm * 0.9 + self.dorsal_mm[i]
            bottom = -(bone.head_half_mm * 0.9 + self.palmar_mm[i])
            a_lo = -3.0 if i else -1e3
            a_hi = bone.length_mm + (self.tip_mm if i == n - 1 else 3.0)
            seg = (a >= a_lo) & (a <= a_hi) & (b <= top) & (b >= bottom)
            if i == n - 1:
                # The fingertip is a rounded pulp, not a square end.
                centre = 0.5 * (top + bottom)
                half = 0.5 * (top - bottom)
                beyond = a > bone.length_mm - half
                ell = ((a - (bone.length_mm - half)) / (self.tip_mm + half)) ** 2 + (
                    (b - centre) / half
                ) ** 2
                seg &= ~beyond | (ell <= 1.0)
            inside |= seg
        return inside

    def bone_index(self, u, v):
        index = np.zeros(np.broadcast(u, v).shape, dtype=np.int8)
        for i, bone in enumerate(self.bones):
            index[bone.inside(u, v) & (index == 0)] = i + 1
        for (eu, ev), r in self.erosions:
            index[(u - eu) ** 2 + (v - ev) ** 2 <= r * r] = 0
        return index

    def nail(self, u, v):
        p3 = self.bones[-1]
        a, b = p3.local(u, v)
        top = p3.head_half_mm * 0.9 + self.dorsal_mm[-1]
        return (
            (a > 0.35 * p3.length_mm)
            & (a < p3.length_mm + 0.5 * self.tip_mm)
            & (b <= top - self.skin_mm * 0.3)
            & (b >= top - self.skin_mm * 0.3 - self.nail_mm)
        )

    def tendon(self, u, v):
        """Flexor tendon: a band palmar to the shafts of the proximal and middle phalanges."""
        out = np.zeros(np.broadcast(u, v).shape, dtype=bool)
        for bone in self.bones[1:3]:
            a, b = bone.local(u, v)
            floor = -(bone.shaft_half_mm + 0.6)
            out |= (a > 0) & (a < bone.length_mm) & (b < floor) & (b > floor - self.tendon_mm)
        return out


def _direction(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def _draw_finger(rng: np.random.Generator) -> _Finger:
    f = rng.uniform(0.72, 1.1)  # little finger to a large index finger
    lengths = np.array([55.0, 40.0, 24.0, 17.0]) * f * rng.uniform(0.9, 1.1, 4)
    base = np.array([5.0, 5.0, 4.2, 3.4]) * f * rng.uniform(0.88, 1.12, 4)
    shaft = np.array([3.6, 3.2, 2.7, 1.7]) * f * rng.uniform(0.85, 1.15, 4)
    head = np.array([5.6, 4.0, 3.3, 2.5]) * f * rng.uniform(0.88, 1.12, 4)
    shaft = np.minimum(shaft, 0.85 * np.minimum(base, head))
    gaps = rng.uniform(0.8, 2.0, 3) * f
    flexion = np.concatenate([[0.0], np.deg2rad(rng.uniform(-4, 22, 3))])  # palmar flexion
    bones = []
    origin = np.array([-lengths[0] - gaps[0], 0.0])
    angle = 0.0
    for i in range(4):
        angle = angle - flexion[i] if i else 0.0
        bone = _Bone(
            origin=origin.copy(),
            angle=angle,
            length_mm=lengths[i],
            base_half_mm=base[i],
            shaft_half_mm=shaft[i],
            head_half_mm=head[i],
            bow_mm=rng.uniform(0.0, 0.8) * f,
            cortex_mm=rng.uniform(0.5, 1.4),
            flare_mm=lengths[i] * rng.uniform(0.12, 0.22),
            tuft=(i == 3),
        )
        bones.append(bone)
        if i < 3:
            end = origin + lengths[i] * _direction(angle)
            next_angle = angle - flexion[i + 1]
            origin = end + gaps[i] * _direction(next_angle)
    return _Finger(
        bones=bones,
        dorsal_mm=list(rng.uniform(1.8, 3.5, 4) * f),
        palmar_mm=list(rng.uniform(3.0, 6.5, 4) * f),
        tip_mm=rng.uniform(3.0, 7.0) * f,
        skin_mm=rng.uniform(0.8, 1.8),
        fat_mm=rng.uniform(0.3, 1.5),
        nail_mm=rng.uniform(0.4, 0.8),
        tendon_mm=rng.uniform(0.8, 2.0),
    )


# --------------------------------------------------------------------------------------------
# The wider training distribution, ``make_phantom(varied=True)``: what finger CT in systemic
# sclerosis shows and the basic phantom lacks, taken from the clinical picture (flexion
# contractures, acro-osteolysis, erosions, osteopenia, neighbouring fingers, vessel
# calcification, splints, sharp kernels and streaks), not fitted to any test set.


def _bone_end(bone: _Bone) -> np.ndarray:
    return bone.origin + bone.length_mm * _direction(bone.angle)


def _vary_finger(finger: _Finger, rng: np.random.Generator) -> list[str]:
    """Contracture, cupped joint bases, acro-osteolysis and erosions, in place; returns what was drawn."""
    bones = finger.bones
    notes = []
    gaps = [float(np.linalg.norm(bones[i + 1].origin - _bone_end(bones[i]))) for i in range(3)]
    extra = np.zeros(4)
    if rng.random() < 0.3:
        # Flexion contractures are the rule in advanced disease, worst at the PIP joint.
        extra[1:] = np.deg2rad([rng.uniform(-5, 25), rng.uniform(25, 80), rng.uniform(0, 30)])
        notes.append("contracture")
    if rng.random() < 0.3:
        # Acro-osteolysis: the distal tuft resorbed to a shorter, pencilled end; the pulp stays.
        removed = bones[3].length_mm * rng.uniform(0.15, 0.5)
        bones[3].length_mm -= removed
        bones[3].head_half_mm = min(bones[3].head_half_mm, bones[3].shaft_half_mm * rng.uniform(0.9, 1.3))
        finger.tip_mm += 0.5 * removed
        notes.append("acro-osteolysis")
    for i in range(1, 4):
        bones[i].cup_mm = rng.uniform(0.0, 0.9) * bones[i].base_half_mm / 5.0
        bones[i].angle -= extra[1 : i + 1].sum()
        # A joint turns about the centre of the head's curvature, so the joint space stays
        # open however far it flexes (turning about the head's tip would close it).
        prev = bones[i - 1]
        head_r = prev.head_half_mm * 0.9
        pivot = prev.origin + (prev.length_mm - head_r) * _direction(prev.angle)
        bones[i].origin = pivot + (head_r + gaps[i - 1]) * _direction(bones[i].angle)
    if rng.random() < 0.3:
        # Erosions: bites out of the bone surface near the joints.
        for _ in range(int(rng.integers(1, 4))):
            bone = bones[int(rng.integers(0, 4))]
            a = bone.length_mm * (rng.uniform(0.0, 0.2) if rng.random() < 0.5 else rng.uniform(0.8, 1.0))
            b = bone.centre_offset(a) + rng.choice([-1.0, 1.0]) * bone.half_width(a) * rng.uniform(0.8, 1.0)
            c, sn = np.cos(bone.angle), np.sin(bone.angle)
            centre = bone.origin + np.array([a * c - b * sn, a * sn + b * c])
            finger.erosions.append((tuple(centre), float(rng.uniform(0.4, 1.3))))
        notes.append("erosions")
    return notes


def _half_thickness_mm(finger: _Finger, side: int) -> float:
    """How far the finger's soft tissue reaches dorsally (side +1) or palmarly (-1) of its axis."""
    extra = finger.dorsal_mm if side > 0 else finger.palmar_mm
    return float(max(b.head_half_mm * 0.9 + e for b, e in zip(finger.bones, extra)))


@dataclass
class _Section:
    """A neighbouring finger crossed obliquely by the slice: an oval of bone (cortex round
    marrow) in an oval of soft tissue, centred on its own origin."""

    bone_a_mm: float
    bone_b_mm: float
    tissue_a_mm: float
    tissue_b_mm: float
    cortex_mm: float

    @property
    def bones(self) -> list:
        return [self]

    def bone_index(self, u, v):
        return ((u / self.bone_a_mm) ** 2 + (v / self.bone_b_mm) ** 2 <= 1.0).astype(np.int8)

    def soft_tissue(self, u, v):
        return (u / self.tissue_a_mm) ** 2 + (v / self.tissue_b_mm) ** 2 <= 1.0


def _neighbour_finger(finger: _Finger, rng: np.random.Generator, side: int):
    """A second finger beside the first: cut along its length off-centre (so narrower), or
    crossed obliquely (an oval section). Returns it, the map from the first finger's frame to
    its own, how far the view must widen (mm), and which kind it is."""
    if rng.random() < 0.35:
        bone_b = rng.uniform(1.5, 4.0)
        bone_a = bone_b * rng.uniform(1.0, 2.5)
        pad = rng.uniform(2.0, 6.0)
        other = _Section(bone_a, bone_b, bone_a + pad * rng.uniform(0.8, 1.3), bone_b + pad, rng.uniform(0.5, 1.3))
        near = far = max(other.tissue_a_mm, other.tissue_b_mm)
        kind, phi = "neighbour-section", rng.uniform(0, np.pi)
    else:
        other = _draw_finger(rng)
        squeeze = rng.uniform(0.35, 1.0)
        for b in other.bones:
            b.base_half_mm *= squeeze
            b.shaft_half_mm *= squeeze
            b.head_half_mm *= squeeze
        other.dorsal_mm = [d * squeeze for d in other.dorsal_mm]
        other.palmar_mm = [d * squeeze for d in other.palmar_mm]
        near, far = _half_thickness_mm(other, -side), _half_thickness_mm(other, side)
        kind, phi = "neighbour-finger", np.deg2rad(rng.uniform(-15, 15))
    along = rng.uniform(-25.0, 15.0)
    gap = rng.uniform(-1.0, 5.0)  # between the two fingers' soft tissue; below 0 they press together
    shift = np.array([along, side * (_half_thickness_mm(finger, side) + near + gap)])
    c, s = np.cos(phi), np.sin(phi)

    def to_other(u, v):
        du, dv = u - shift[0], v - shift[1]
        return du * c + dv * s, -du * s + dv * c

    widen = rng.uniform(0.3, 1.1) * (near + far) + max(0.0, gap)
    return other, to_other, float(widen), kind


# --------------------------------------------------------------------------------------------
# Deposits: analytic shapes in image-physical coordinates (x = col * spacing, y = row * spacing).


@dataclass
class _Deposit:
    kind: str  # shape: ellipse | lobulated | irregular | sheet
    centre: np.ndarray  # (x, y) mm
    radius_mm: float
    params: dict

    def inside(self, x, y):
        dx, dy = x - self.centre[0], y - self.centre[1]
        p = self.params
        if self.kind == "ellipse":
            c, s = np.cos(p["angle"]), np.sin(p["angle"])
            a, b = dx * c + dy * s, -dx * s + dy * c
            return (a / p["ra"]) ** 2 + (b / p["rb"]) ** 2 <= 1.0
        if self.kind == "lobulated":
            out = np.zeros(np.broadcast(x, y).shape, dtype=bool)
            for (ox, oy), r in zip(p["offsets"], p["radii"]):
                out |= (dx - ox) ** 2 + (dy - oy) ** 2 <= r * r
            return out
        if self.kind == "sheet":
            # A curved plaque with tapered ends, as calcinosis spreads along tissue planes.
            c, s = np.cos(p["angle"]), np.sin(p["angle"])
            a, b = dx * c + dy * s, -dx * s + dy * c
            half = 0.5 * p["width"] * np.sqrt(np.clip(1.0 - (2.0 * a / p["length"]) ** 4, 0.0, 1.0))
            return (np.abs(a) <= p["length"] / 2) & (np.abs(b - p["bend"] * a * a) <= half)
        theta = np.arctan2(dy, dx)
        r = self.radius_mm * np.ones_like(theta)
        for k, amp, phase in zip(p["k"], p["amp"], p["phase"]):
            r = r + self.radius_mm * amp * np.cos(k * theta + phase)
        return dx * dx + dy * dy <= r * r

    def extent_mm(self) -> float:
        """A radius that surely contains the shape."""
        p = self.params
        if self.kind == "ellipse":
            return max(p["ra"], p["rb"])
        if self.kind == "lobulated":
            return max(np.hypot(ox, oy) + r for (ox, oy), r in zip(p["offsets"], p["radii"]))
        if self.kind == "sheet":
            return p["length"] / 2 + p["width"] + abs(p["bend"]) * (p["length"] / 2) ** 2
        return self.radius_mm * (1.0 + sum(p["amp"]))


def _draw_deposit(rng: np.random.Generator, centre, area_range_mm2=(0.4, 50.0), kinds=None) -> _Deposit:
    # Log-uniform nominal area, by default over the paper's measured range, 0.4-50 mm^2.
    area = float(np.exp(rng.uniform(np.log(area_range_mm2[0]), np.log(area_range_mm2[1]))))
    r0 = np.sqrt(area / np.pi)
    kinds = kinds or {"ellipse": 0.35, "lobulated": 0.35, "irregular": 0.3}
    kind = rng.choice(list(kinds), p=list(kinds.values()))
    if kind == "sheet":
        width = min(rng.uniform(0.5, 2.2), 1.2 * r0)
        length = min(area / (0.85 * width), 25.0)  # the tapered ends hold about 85 % of a band
        sagitta = rng.uniform(-0.25, 0.25) * length
        params = dict(length=length, width=width, bend=sagitta / (length / 2) ** 2, angle=rng.uniform(0, np.pi))
        return _Deposit(kind="sheet", centre=np.asarray(centre, float), radius_mm=width / 2, params=params)
    if kind == "ellipse":
        aspect = rng.uniform(1.0, 2.5)
        params = dict(ra=r0 * np.sqrt(aspect), rb=r0 / np.sqrt(aspect), angle=rng.uniform(0, np.pi))
    elif kind == "lobulated":
        n = int(rng.integers(2, 6))
        radii = r0 * rng.uniform(0.45, 0.8, n)
        ang = rng.uniform(0, 2 * np.pi, n)
        dist = r0 * rng.uniform(0.0, 0.7, n)
        offsets = [(d * np.cos(t), d * np.sin(t)) for d, t in zip(dist, ang)]
        params = dict(radii=list(radii), offsets=offsets)
    else:
        n = int(rng.integers(2, 5))
        ks = rng.choice(np.arange(2, 8), n, replace=False)
        amps = rng.uniform(0.04, 0.32 / n * 2, n)
        params = dict(k=list(ks), amp=list(amps), phase=list(rng.uniform(0, 2 * np.pi, n)))
    return _Deposit(kind=str(kind), centre=np.asarray(centre, float), radius_mm=r0, params=params)


# --------------------------------------------------------------------------------------------


def make_phantom(
    seed: int = 0,
    *,
    n_lesions: int | None = None,
    cut_off: bool | None = None,
    spacing_mm: float | None = None,
    noise_hu: float | None = None,
    max_size_px: int = 720,
    varied: bool = False,
) -> Phantom:
    """Render one synthetic sagittal finger phantom with exact ground truth.

    Parameters
    ----------
    seed : int
        Random seed; the same seed always gives the same phantom.
    n_lesions : int, optional
        Number of calcinosis deposits (default: 1-6 at random).
    cut_off : bool, optional
        Force (True) or forbid (False) a phalanx cut by the image border; default: 30 % of
        phantoms are cut off.
    spacing_mm : float, optional
        Isotropic pixel spacing in mm (default: uniform in 0.15-0.35 mm).
    noise_hu : float, optional
        Standard deviation of the image noise in HU (default: uniform in 6-35 HU).
    max_size_px : int
        The field of view is narrowed so that neither side exceeds this many pixels, by coarser
        pixels (up to 0.35 mm) and then a view narrowed towards the fingertip; with
        ``spacing_mm`` given and no phalanx to cut, a side can exceed it.
    varied : bool
        Draw from the wider distribution the bundled model is trained on: on top of the
        above, flexion contractures, cupped joint bases, acro-osteolysis, erosions and
        osteopenia, a neighbouring finger in view, cut along its length or crossed obliquely
        (its bones are bone in ``bone_mask``), vessel calcification and splints (not
        deposits), sharp-kernel edges and streaks, noise up to 60 HU, and 1-8 deposits of
        0.3-80 mm^2 up to 1900 HU, 45 % touching bone, including curved sheets and deposits
        with a dense rim round a fainter centre. Off by default, so that a seed gives the same
        phantom as before (sample data, tests).

    Returns
    -------
    Phantom
    """
    import numbers

    from ._errors import CalcinosisError

    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise CalcinosisError(f"the phantom's seed must be a whole number, 0 or more, got {seed!r}")
    if spacing_mm is not None and (isinstance(spacing_mm, bool) or not isinstance(spacing_mm, numbers.Real)
                                   or not 0.01 <= spacing_mm <= 5.0):
        raise CalcinosisError(f"spacing_mm is one pixel size in mm (square pixels), 0.01 to 5; got {spacing_mm!r}")
    if n_lesions is not None and (isinstance(n_lesions, bool) or not isinstance(n_lesions, numbers.Integral)
                                  or n_lesions < 0):
        raise CalcinosisError(f"n_lesions is a number of deposits, 0 or more; got {n_lesions!r}")
    if noise_hu is not None and (not isinstance(noise_hu, numbers.Real) or not 0.0 <= noise_hu < 1000.0):
        raise CalcinosisError(f"noise_hu is the noise's standard deviation in HU, 0 or more; got {noise_hu!r}")
    # The varied phantoms draw from their own stream, so the basic ones stay as they were.
    rng = np.random.default_rng([seed, 7919] if varied else seed)
    finger = _draw_finger(rng)
    notes: list[str] = []
    other = to_other = None
    if varied:
        notes += _vary_finger(finger, rng)
        if rng.random() < 0.35:
            side = 1 if "contracture" in notes else int(rng.choice([-1, 1]))
            other, to_other, widen_mm, kind = _neighbour_finger(finger, rng, side)
            notes.append(kind)
    if cut_off is None:
        cut_off = bool(rng.random() < 0.3)
    if spacing_mm is None:
        spacing_mm = float(rng.uniform(0.15, 0.35))
    if noise_hu is None:
        noise_hu = float(rng.uniform(6.0, 60.0 if varied else 35.0))
    spacing = float(spacing_mm)

    # Field of view in the finger frame: from the metacarpal head (or, cut off, from inside the
    # proximal or middle phalanx) to just beyond the fingertip.
    p1, p2, p3 = finger.bones[1], finger.bones[2], finger.bones[3]
    tip_end = p3.origin + (p3.length_mm + finger.tip_mm) * _direction(p3.angle)
    if cut_off:
        cut_bone = p1 if rng.random() < 0.6 else p2
        if "contracture" in notes:
            cut_bone = p1  # a flexed middle phalanx runs across the finger's axis: cut before it
        a_cut = rng.uniform(0.2, 0.75) * cut_bone.length_mm
        u_start = cut_bone.origin[0] + a_cut * np.cos(cut_bone.angle)
    else:
        u_start = p1.origin[0] - rng.uniform(4.0, 16.0)
    u_end = tip_end[0] + rng.uniform(1.5, 8.0)
    v_pad = rng.uniform(2.0, 9.0, 2)
    v_lo = min(tip_end[1], -12.0) - v_pad[0] - 4.0
    v_hi = 10.0 + v_pad[1]
    if varied:
        # A contracture can curl the finger back under itself: frame every joint, not the tip only.
        joints = np.array([b.origin for b in finger.bones[1:]] + [_bone_end(b) for b in finger.bones[1:]] + [tip_end])
        u_end = max(u_end, joints[:, 0].max() + v_pad.mean())
        v_lo = min(v_lo, joints[:, 1].min() - _half_thickness_mm(finger, -1) - v_pad[0])
        v_hi = max(v_hi, joints[:, 1].max() + _half_thickness_mm(finger, 1) + v_pad[1])
    if other is not None:
        if side > 0:
            v_hi = max(v_hi, _half_thickness_mm(finger, 1)) + widen_mm
        else:
            v_lo = min(v_lo, -_half_thickness_mm(finger, -1)) - widen_mm

    # Orientation: mostly along an image axis, as sagittal reformats are displayed, with jitter.
    theta = rng.choice([0.0, 0.5, 1.0, 1.5]) * np.pi + np.deg2rad(rng.uniform(-25, 25))
    mirror = bool(rng.random() < 0.5)
    c, s = np.cos(theta), np.sin(theta)
    want_cut = bool(cut_off)
    spacing_fixed = spacing_mm is not None

    def field_of_view(u0):
        w_lo, w_hi = (-v_hi, -v_lo) if mirror else (v_lo, v_hi)
        corners = np.array([[u0, w_lo], [u0, w_hi], [u_end, w_lo], [u_end, w_hi]])
        xy = corners @ np.array([[c, s], [-s, c]])
        return xy.min(0), xy.max(0) - xy.min(0)

    def make_to_finger(offset):
        def to_finger(x, y):
            # image-physical (x, y) -> finger frame (u, v); the inverse of the rotation above.
            x0, y0 = x + offset[0], y + offset[1]
            u = x0 * c + y0 * s
            w = -x0 * s + y0 * c
            return u, (-w if mirror else w)

        return to_finger

    def phalanx_on_border(to_finger, rows, cols):
        # Cut off means a phalanx (not the metacarpal, which always runs out of view) reaches
        # the image border; checked on the border pixels of the image as it will be rendered.
        r = np.concatenate([np.zeros(cols), np.full(cols, rows - 1), np.arange(rows), np.arange(rows)])
        q = np.concatenate([np.arange(cols), np.arange(cols), np.zeros(rows), np.full(rows, cols - 1)])
        u, v = to_finger(q * spacing, r * spacing)
        return bool(np.isin(finger.bone_index(u, v), (2, 3, 4)).any())

    for _ in range(60):
        offset, span = field_of_view(u_start)
        cols = int(np.ceil(span[0] / spacing))
        rows = int(np.ceil(span[1] / spacing))
        if max(rows, cols) > max_size_px:
            # Too many pixels: coarser pixels first (within the 0.35 mm range), then a view
            # narrowed towards the fingertip, but never by cutting a phalanx not meant to be.
            if not spacing_fixed and spacing < 0.35:
                spacing = min(0.35, spacing * 1.06)
                continue
            if want_cut and u_start < p3.origin[0]:
                u_start += 0.05 * (u_end - u_start)
                continue
        to_finger = make_to_finger(offset)
        is_cut = phalanx_on_border(to_finger, rows, cols)
        if is_cut == want_cut:
            break
        if want_cut and u_start < p3.origin[0] and (not varied or u_end - u_start > 30.0):
            u_start += 1.5  # the rotated view still shows the whole phalanx: cut deeper
        elif not want_cut and u_start > p1.origin[0] - 40.0:
            u_start -= 1.5  # show more of the hand
        else:
            break
    cut_off = is_cut

    k = _SUPERSAMPLE
    sub = (np.arange(k) + 0.5) / k - 0.5
    ys = ((np.arange(rows)[:, None] + sub[None, :]).ravel()) * spacing
    xs = ((np.arange(cols)[:, None] + sub[None, :]).ravel()) * spacing
    X, Y = np.meshgrid(xs, ys)
    U, V = to_finger(X, Y)

    bone_index = finger.bone_index(U, V)
    bone = bone_index > 0
    tissue = finger.soft_tissue(U, V) | bone
    other_index = None
    if other is not None:
        Uo, Vo = to_other(U, V)
        other_index = other.bone_index(Uo, Vo)
        bone = bone | (other_index > 0)
        tissue |= other.soft_tissue(Uo, Vo) | bone

    def bone_at(x, y):
        u, v = to_finger(x, y)
        inside = finger.bone_index(u, v) > 0
        if other is not None:
            inside |= other.bone_index(*to_other(u, v)) > 0
        return inside
    step = spacing / k

    def block_mean(a):
        return a.reshape(rows, k, cols, k).mean(axis=(1, 3))

    def stamp(deposit):
        """The deposit's sub-pixel mask, evaluated only on its bounding box."""
        ext = deposit.extent_mm() + step
        r0, r1 = np.searchsorted(ys, [deposit.centre[1] - ext, deposit.centre[1] + ext])
        c0, c1 = np.searchsorted(xs, [deposit.centre[0] - ext, deposit.centre[0] + ext])
        out = np.zeros(bone.shape, dtype=bool)
        out[r0:r1, c0:c1] = deposit.inside(X[r0:r1, c0:c1], Y[r0:r1, c0:c1])
        return out

    # Deposits: placed in soft tissue, at least 1 mm from each other and 1.5 mm from the border.
    if n_lesions is None:
        n_lesions = int(rng.integers(1, 9 if varied else 7))
    dist_bone = ndi.distance_transform_edt(~bone) * step
    dist_air = ndi.distance_transform_edt(tissue) * step
    finger_u = U
    joints_u = [b.origin[0] for b in finger.bones[1:]]
    deposits: list[_Deposit] = []
    shapes: list[np.ndarray] = []
    sites: list[str] = []
    occupied = np.zeros_like(bone)
    border = 1.5 / step
    rr, cc = np.mgrid[0 : bone.shape[0], 0 : bone.shape[1]]
    in_border = (rr > border) & (rr < bone.shape[0] - border) & (cc > border) & (cc < bone.shape[1] - border)
    attempts = 0
    while len(deposits) < n_lesions and attempts < 60 * max(1, n_lesions):
        attempts += 1
        site = str(rng.choice(LESION_SITES, p=[0.2, 0.2, 0.15, 0.45] if varied else [0.25, 0.25, 0.2, 0.3]))
        deposit = (
            _draw_deposit(rng, (0.0, 0.0), (0.3, 80.0), {"ellipse": 0.25, "lobulated": 0.25, "irregular": 0.2, "sheet": 0.3})
            if varied
            else _draw_deposit(rng, (0.0, 0.0))
        )
        r = deposit.radius_mm
        if site == "touching_bone":
            allowed = (dist_bone > 0.25 * r) & (dist_bone < 0.75 * r) & (dist_air > r + 0.3)
        else:
            allowed = (dist_bone > r + 0.6) & (dist_air > r + 0.3)
            if site == "pulp":
                allowed &= finger_u > p3.origin[0] + 0.4 * p3.length_mm
            elif site == "joint":
                near = np.zeros_like(allowed)
                for ju in joints_u:
                    near |= np.abs(finger_u - ju) < 4.0 + r
                allowed &= near
            else:
                shaft = np.zeros_like(allowed)
                for b in finger.bones[1:3]:
                    shaft |= (finger_u > b.origin[0] + 0.25 * b.length_mm) & (
                        finger_u < b.origin[0] + 0.75 * b.length_mm
                    )
                allowed &= shaft
        allowed &= in_border & ~occupied
        candidates = np.flatnonzero(allowed)
        if candidates.size == 0:
            continue
        pick = candidates[rng.integers(candidates.size)]
        deposit.centre = np.array([xs[pick % bone.shape[1]], ys[pick // bone.shape[1]]])
        shape = stamp(deposit)
        if shape.sum() == 0 or (shape & occupied).any():
            continue
        if (shape & ~tissue).any() or not (shape & in_border).sum() == shape.sum():
            continue
        if site != "touching_bone" and (shape & (dist_bone < 0.4)).any():
            continue
        if site == "touching_bone" and not (shape & bone).any():
            continue
        deposits.append(deposit)
        sites.append(site)
        shapes.append(shape & ~bone)
        # Deposits stay 1 mm apart so that each one is a separate lesion.
        occupied |= ndi.distance_transform_edt(~shape) * step < 1.0

    # ---- intensities (HU) on the supersampled grid
    def texture(sigma_mm, amp):
        # Drawn on the pixel grid and repeated onto the sub-pixels: every texture is coarser
        # than a pixel, and filtering the supersampled grid would cost k^2 times more.
        field = rng.standard_normal((rows, cols)).astype(np.float32)
        field = ndi.gaussian_filter(field, sigma_mm / spacing)
        field /= field.std() + 1e-6
        return amp * np.repeat(np.repeat(field, k, axis=0), k, axis=1)

    air_hu = rng.uniform(-1000.0, -920.0)
    soft_hu = rng.uniform(25.0, 65.0)
    fat_hu = rng.uniform(-110.0, -50.0)
    skin_hu = soft_hu + rng.uniform(5.0, 40.0)
    nail_hu = rng.uniform(90.0, 190.0)
    tendon_hu = soft_hu + rng.uniform(15.0, 45.0)
    cortex_hu = rng.uniform(900.0, 1800.0)
    medulla_hu = rng.uniform(150.0, 450.0)
    if varied and rng.random() < 0.25:
        # Osteopenia: thin, less dense cortex, fatty marrow.
        cortex_hu, medulla_hu = rng.uniform(550.0, 950.0), rng.uniform(30.0, 180.0)
        for b in finger.bones + (other.bones if other is not None else []):
            b.cortex_mm *= rng.uniform(0.4, 0.7)
        notes.append("osteopenia")

    img = np.full(bone.shape, air_hu, dtype=np.float32)
    img[tissue] = soft_hu + texture(1.5, 8.0)[tissue]
    fat = tissue & (dist_air > finger.skin_mm) & (dist_air <= finger.skin_mm + finger.fat_mm)
    img[fat] = fat_hu
    img[tissue & (dist_air <= finger.skin_mm)] = skin_hu
    tendon = finger.tendon(U, V) & tissue & ~bone
    img[tendon] = tendon_hu
    nail = finger.nail(U, V) & tissue & ~bone
    img[nail] = nail_hu
    depth = ndi.distance_transform_edt(bone) * step
    cortex_mm = np.zeros_like(depth)
    for i, b in enumerate(finger.bones):
        cortex_mm[bone_index == i + 1] = b.cortex_mm
    if other_index is not None:
        for i, b in enumerate(other.bones):
            cortex_mm[(other_index == i + 1) & (bone_index == 0)] = b.cortex_mm
    medulla = bone & (depth > cortex_mm)
    img[bone] = cortex_hu + texture(0.8, 60.0)[bone]
    img[medulla] = medulla_hu + texture(1.0, 70.0)[medulla]
    if varied:
        notes += _draw_extras(img, rng, finger, U, V, tissue, bone, soft_hu)

    peaks = []
    rims: set[int] = set()
    for d, shape in zip(deposits, shapes):
        # Deposits range from faint, chalky ones to dense plaques; some are denser at the core.
        peak = float(np.exp(rng.uniform(np.log(300.0), np.log(1900.0 if varied else 1700.0))))
        core = rng.uniform(0.0, 0.6 if varied else 0.25)
        dd = ndi.distance_transform_edt(shape) * step
        rel = np.clip(dd / max(d.radius_mm, step), 0, 1)
        profile = 1.0 - core + core * rel[shape]
        if varied and d.radius_mm > 0.8 and rng.random() < 0.2:
            # A dense rim round a fainter centre (a calcified wall round softer matter): looks
            # like a bone's cortex and marrow in cross-section, and is not bone.
            profile = 1.0 - rng.uniform(0.3, 0.7) * rel[shape]
            rims.add(len(peaks))
        img[shape] = peak * profile + texture(0.6, 0.06 * peak)[shape]
        peaks.append(peak)

    # ---- down to pixels: partial volume, point-spread blur, noise

    image = block_mean(img)
    psf_mm = rng.uniform(0.15, 0.4)
    image = ndi.gaussian_filter(image, psf_mm / spacing)
    if varied:
        notes += _scanner_effects(image, rng, block_mean(bone.astype(np.float32)) > 0.5)
    noise = rng.standard_normal(image.shape).astype(np.float32)
    noise_corr = rng.uniform(0.0, 1.5 if varied else 0.8)
    if noise_corr > 0:
        noise = ndi.gaussian_filter(noise, noise_corr)
        noise /= noise.std() + 1e-6
    image = (image + noise_hu * noise + rng.uniform(-15, 15)).astype(np.float32)

    bone_mask = block_mean(bone.astype(np.float32)) > 0.5
    lesion_labels = np.zeros((rows, cols), dtype=np.int32)
    best = np.zeros((rows, cols), dtype=np.float32)
    areas, seeds = [], []
    covers = [block_mean(shape.astype(np.float32)) for shape in shapes]
    for i, (d, cover) in enumerate(zip(deposits, covers)):
        win = (cover > 0.5) & (cover > best)
        lesion_labels[win] = i + 1
        best = np.maximum(best, cover)
        areas.append(_fine_area_mm2(d, bone_at, spacing))
    for i in range(len(deposits)):
        region = lesion_labels == i + 1
        if region.any():
            depth_px = ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
            seeds.append(np.unravel_index(np.argmax(depth_px), region.shape))
        else:
            seeds.append(np.unravel_index(np.argmax(covers[i]), covers[i].shape))

    return Phantom(
        image_hu=image,
        spacing_mm=(spacing, spacing),
        bone_mask=bone_mask,
        lesion_labels=lesion_labels,
        lesion_areas_mm2=np.asarray(areas, dtype=float),
        seeds=np.asarray(seeds, dtype=int).reshape(-1, 2),
        lesion_sites=sites,
        lesion_peak_hu=np.asarray(peaks, dtype=float),
        cut_off=bool(cut_off),
        seed=int(seed),
        params=dict(
            theta_deg=float(np.rad2deg(theta)),
            mirror=mirror,
            noise_hu=noise_hu,
            psf_sigma_mm=float(psf_mm),
            cortex_hu=float(cortex_hu),
            medulla_hu=float(medulla_hu),
            soft_tissue_hu=float(soft_hu),
            shapes=[d.kind + ("+rim" if i in rims else "") for i, d in enumerate(deposits)],
            **({"varied": notes} if varied else {}),
        ),
    )


def _fine_area_mm2(deposit: _Deposit, bone_at, spacing: float) -> float:
    """Area of a deposit outside bone, integrated on a grid much finer than the pixels."""
    ext = deposit.extent_mm() + spacing
    step = spacing / _AREA_SUPERSAMPLE
    g = np.arange(-ext, ext + step, step)
    X, Y = np.meshgrid(deposit.centre[0] + g, deposit.centre[1] + g)
    shape = deposit.inside(X, Y)
    if shape.any():
        shape &= ~bone_at(X, Y)
    return float(shape.sum() * step * step)


def _draw_extras(img, rng, finger: _Finger, U, V, tissue, bone, soft_hu: float) -> list[str]:
    """Bright things that are neither bone nor deposit, drawn into ``img`` (HU) in place."""
    notes = []
    if rng.random() < 0.2:
        # Calcified digital artery: a thin track in the palmar soft tissue, often broken.
        width = rng.uniform(0.25, 0.7)
        hu = rng.uniform(250.0, 900.0)
        broken = rng.random() < 0.5
        for phalanx in finger.bones[1:3]:
            a, b = phalanx.local(U, V)
            b0 = -(phalanx.shaft_half_mm + rng.uniform(1.0, 3.0))
            wave = rng.uniform(0.0, 0.8) * np.sin(a * rng.uniform(0.1, 0.5) + rng.uniform(0, 6.3))
            track = (np.abs(b - b0 - wave) < width / 2) & (a > 0) & (a < phalanx.length_mm) & tissue & ~bone
            if broken:
                track &= np.sin(a * rng.uniform(0.8, 2.0)) > -0.2
            img[track] = hu
        notes.append("vessel-calcification")
    if rng.random() < 0.25:
        # A splint, cushion or the table: a band beside the finger, not touching it.
        side = rng.choice([-1.0, 1.0])
        edge = _half_thickness_mm(finger, int(side)) + rng.uniform(0.5, 6.0)
        band = (side * V > edge) & (side * V < edge + rng.uniform(1.0, 5.0)) & ~tissue
        img[band] = rng.uniform(-150.0, 400.0)
        notes.append("support")
    return notes


def _scanner_effects(image, rng, bone_px) -> list[str]:
    """Sharp reconstruction kernel (edge overshoot) and beam-hardening streaks, in place."""
    notes = []
    if rng.random() < 0.4:
        sharp = rng.uniform(0.3, 1.0)
        image += sharp * (image - ndi.gaussian_filter(image, rng.uniform(0.7, 2.0)))
        notes.append("sharp-kernel")
    if rng.random() < 0.3 and bone_px.any():
        # Dark streaks along lines through dense bone.
        rows, cols = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
        idx = np.flatnonzero(bone_px)
        for _ in range(int(rng.integers(1, 4))):
            r0, c0 = np.unravel_index(idx[rng.integers(idx.size)], image.shape)
            t = rng.uniform(0, np.pi)
            dist = np.abs((rows - r0) * np.cos(t) - (cols - c0) * np.sin(t))
            image -= rng.uniform(40.0, 160.0) * np.exp(-((dist / rng.uniform(0.7, 2.5)) ** 2))
        notes.append("streaks")
    return notes
