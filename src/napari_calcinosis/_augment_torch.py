"""Batched training augmentation in torch, for data kept on the GPU.

The same augmentation as :func:`napari_calcinosis.train.augment` (any rotation, flips, scale
0.8-1.25 around the working spacing, HU gain and offset, blur, noise, gamma, 8-bit steps), done
for a whole batch at once with ``grid_sample`` on tensors that stay on the device. On a GPU the
NumPy/SciPy path spends more time making crops on the CPU and copying them over than the
network spends learning from them; here nothing leaves the GPU after the first copy.

It runs on any torch device, so the CPU test suite checks it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Bone pixels kept per image to centre crops on; a random subset is as good as all of them.
_CENTRES_PER_IMAGE = 4096
# Blur kernels span +-3 px, three sigma of the widest blur drawn (1 px).
_BLUR_RADIUS_PX = 3


@dataclass
class DeviceDataset:
    """Training images padded to one shape and resident on one device.

    ``pixels_hu`` (N, 1, H, W) float32 and ``bone`` (N, 1, H, W) float32, edge-padded so that
    sampling past an image's own border repeats its edge, as ``mode="reflect"`` nearly does on
    the CPU path; ``spacing_mm`` (N, 2), ``shape_px`` (N, 2) and ``centres_px`` (N, K, 2) bone
    pixel positions (or anywhere in the image when it has no bone).
    """

    pixels_hu: object
    bone: object
    spacing_mm: object
    shape_px: object
    centres_px: object

    def __len__(self) -> int:
        return int(self.pixels_hu.shape[0])


def to_device_dataset(samples, device, seed: int = 0) -> DeviceDataset:
    """Pad ``samples`` (TrainingSample) to one shape and copy them to ``device`` once."""
    import torch

    rng = np.random.default_rng(seed)
    h = max(s.pixels_hu.shape[0] for s in samples)
    w = max(s.pixels_hu.shape[1] for s in samples)
    n = len(samples)
    # Padded on the device: each image crosses as it is (a GPU run's 120 images, padded on the
    # host, were 2 x 190 MB of fresh host memory to fill and then copy).
    hu = torch.empty((n, 1, h, w), dtype=torch.float32, device=device)
    bone = torch.empty((n, 1, h, w), dtype=torch.float32, device=device)
    centres = np.empty((n, _CENTRES_PER_IMAGE, 2), np.float32)
    for i, s in enumerate(samples):
        sh, sw = s.pixels_hu.shape
        _fill_edge_padded(hu[i, 0], _host_tensor(s.pixels_hu, np.float32))
        _fill_edge_padded(bone[i, 0], _host_tensor(s.bone_mask, bool))
        idx = np.flatnonzero(s.bone_mask)
        if idx.size:
            pick = idx[rng.integers(idx.size, size=_CENTRES_PER_IMAGE)]
            centres[i] = np.stack(np.unravel_index(pick, s.bone_mask.shape), axis=1)
        else:
            centres[i] = rng.uniform([0, 0], [sh - 1, sw - 1], size=(_CENTRES_PER_IMAGE, 2))
    shapes = np.array([s.pixels_hu.shape for s in samples], np.float32)
    spacing = np.array([np.broadcast_to(np.asarray(s.spacing_mm, float), (2,)) for s in samples], np.float32)
    as_t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return DeviceDataset(hu, bone, as_t(spacing), as_t(shapes), as_t(centres))


def _host_tensor(array, dtype):
    """``array`` as a CPU tensor of ``dtype``, sharing its memory where it can (a read-only
    array, a napari layer's say, is copied: torch warns about writing through it otherwise)."""
    import torch

    a = np.ascontiguousarray(array, dtype)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def _fill_edge_padded(out, image) -> None:
    """``out`` (H, W) := ``image`` (h, w; any device, any dtype) at its top left, its last row
    and column repeated below and to the right, as ``np.pad(image, mode="edge")``."""
    sh, sw = image.shape
    out[:sh, :sw] = image.to(out.device)
    out[sh:, :sw] = out[sh - 1 : sh, :sw]
    out[:, sw:] = out[:, sw - 1 : sw]


def _uniform(gen, n, low, high, device):
    import torch

    return low + (high - low) * torch.rand(n, generator=gen, device=device)


def augment_batch(data: DeviceDataset, batch_size: int, crop_px: int, input_spec: dict, gen):
    """One random batch: (network input in [-1, 1], bone target), both (B, 1, crop, crop) float32.

    ``gen`` is a ``torch.Generator`` on the data's device; the draws match the CPU path's
    distributions (see :func:`napari_calcinosis.train.augment`).
    """
    import torch

    dev = data.pixels_hu.device
    b = int(batch_size)
    idx = torch.randint(len(data), (b,), generator=gen, device=dev)
    spacing = data.spacing_mm[idx]  # (B, 2)
    shape = data.shape_px[idx]
    out_px_mm = input_spec["working_spacing_mm"] * torch.exp(_uniform(gen, b, math.log(0.8), math.log(1.25), dev))
    theta = _uniform(gen, b, 0.0, 2 * math.pi, dev)
    flip = torch.where(torch.rand(b, generator=gen, device=dev) < 0.5, -1.0, 1.0)
    c, s = torch.cos(theta), torch.sin(theta)
    # matrix maps an output offset in pixels to an input offset in pixels, (row, col) order:
    # diag(1/spacing) @ rotation @ diag(flip, 1) * output pixel size
    m = torch.stack(
        [torch.stack([c * flip, -s], -1), torch.stack([s * flip, c], -1)], -2
    ) * (out_px_mm[:, None, None] / spacing[:, :, None])
    # Centre on bone most of the time, anywhere otherwise (backgrounds, fingertips).
    pick = torch.randint(data.centres_px.shape[1], (b,), generator=gen, device=dev)
    on_bone = data.centres_px[idx, pick]
    anywhere = torch.rand(b, 2, generator=gen, device=dev) * (shape - 1)
    centre = torch.where((torch.rand(b, generator=gen, device=dev) < 0.7)[:, None], on_bone, anywhere)
    centre = centre + 10.0 * torch.randn(b, 2, generator=gen, device=dev)

    x, y = sample_crops(data, idx, m, centre, crop_px)

    # Intensity, in HU before the window: gain and offset (calibration), blur, extra noise.
    gain = _uniform(gen, b, 0.85, 1.15, dev)[:, None, None, None]
    offset = _uniform(gen, b, -50.0, 50.0, dev)[:, None, None, None]
    x = x * gain + offset
    sigma = torch.where(torch.rand(b, generator=gen, device=dev) < 0.3, _uniform(gen, b, 0.3, 1.0, dev), 0.0)
    x = _blur(x, sigma)
    noise_hu = torch.where(torch.rand(b, generator=gen, device=dev) < 0.6, _uniform(gen, b, 5.0, 40.0, dev), 0.0)
    x = x + noise_hu[:, None, None, None] * torch.randn(x.shape, generator=gen, device=dev)
    low = input_spec["window_level_hu"] - input_spec["window_width_hu"] / 2.0
    unit = ((x - low) / input_spec["window_width_hu"]).clamp(0.0, 1.0)
    gamma = torch.where(
        torch.rand(b, generator=gen, device=dev) < 0.3, torch.exp(_uniform(gen, b, -0.25, 0.25, dev)), 1.0
    )[:, None, None, None]
    unit = unit**gamma
    quantise = (torch.rand(b, generator=gen, device=dev) < 0.3)[:, None, None, None]
    unit = torch.where(quantise, torch.round(unit * 255.0) / 255.0, unit)  # a JPEG/PNG export
    return unit * 2.0 - 1.0, (y > 0.5).float()


def sample_crops(data: DeviceDataset, idx, matrix, centre, crop_px: int):
    """Bilinear crops (HU, bone fraction) of images ``idx``: output pixel offset ``o`` from the
    crop's centre reads input pixel ``centre + matrix @ o`` (row, col), as
    ``scipy.ndimage.affine_transform(image, matrix, offset=centre - matrix @ crop_centre, order=1)``.
    """
    import torch
    import torch.nn.functional as F

    dev = data.pixels_hu.device
    r = torch.arange(crop_px, device=dev, dtype=torch.float32) - (crop_px - 1) / 2.0
    grid_rc = torch.stack(torch.meshgrid(r, r, indexing="ij"), -1)  # (crop, crop, 2) row, col
    src = torch.einsum("bij,hwj->bhwi", matrix, grid_rc) + centre[:, None, None, :]
    full = torch.tensor(data.pixels_hu.shape[-2:], device=dev, dtype=torch.float32)
    # grid_sample wants (x=col, y=row) in [-1, 1] of the padded tensor, pixel centres at
    # (2p + 1) / size - 1 (align_corners=False).
    grid = ((2.0 * src + 1.0) / full - 1.0).flip(-1)
    x = F.grid_sample(data.pixels_hu[idx], grid, mode="bilinear", padding_mode="border", align_corners=False)
    y = F.grid_sample(data.bone[idx], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return x, y


def _blur(x, sigma):
    """Gaussian blur of each image of ``x`` (B, 1, H, W) with its own ``sigma`` (B,) in pixels; 0 = none."""
    import torch
    import torch.nn.functional as F

    b = x.shape[0]
    t = torch.arange(-_BLUR_RADIUS_PX, _BLUR_RADIUS_PX + 1, device=x.device, dtype=x.dtype)
    safe = sigma.clamp_min(1e-3)[:, None]
    k = torch.exp(-0.5 * (t[None, :] / safe) ** 2)
    k = k / k.sum(dim=1, keepdim=True)
    delta = (t == 0).to(x.dtype)[None, :].expand(b, -1)
    k = torch.where((sigma > 0)[:, None], k, delta)
    p = _BLUR_RADIUS_PX
    xb = F.pad(x.transpose(0, 1), (p, p, p, p), mode="replicate")  # (1, B, H+2p, W+2p)
    xb = F.conv2d(xb, k[:, None, None, :], groups=b)
    xb = F.conv2d(xb, k[:, None, :, None], groups=b)
    return xb.transpose(0, 1)


class DeviceValidator:
    """Validation Dice computed on the device, all images in one padded batch shape.

    Each validation image is resampled once to the working spacing, put through the model's
    window and edge-padded to one common shape; its bone mask goes through the same
    resampling. Validating is then a few batched forward passes and a Dice on the working
    grid. One input shape matters on a GPU: cuDNN prepares its kernels for every new shape,
    which for a dozen validation images of different sizes costs more than the training.
    """

    def __init__(self, samples, input_spec: dict, device, pad_multiple: int = 32, chunk: int = 8):
        import torch

        from .segment import cuda_bf16, normalise, resample, working_shape

        xs, ys = [], []
        for s in samples:
            shape = working_shape(s.pixels_hu.shape, s.spacing_mm, input_spec)
            xs.append(resample(normalise(s.pixels_hu, input_spec), shape, order=1))
            ys.append(resample(np.asarray(s.bone_mask, np.float32), shape, order=1) > 0.5)
        h = -(-max(x.shape[0] for x in xs) // pad_multiple) * pad_multiple
        w = -(-max(x.shape[1] for x in xs) // pad_multiple) * pad_multiple
        x = np.stack([np.pad(a, ((0, h - a.shape[0]), (0, w - a.shape[1])), mode="edge") for a in xs])[:, None]
        y = np.stack([np.pad(a, ((0, h - a.shape[0]), (0, w - a.shape[1]))) for a in ys])
        valid = np.stack([np.pad(np.ones(a.shape, bool), ((0, h - a.shape[0]), (0, w - a.shape[1]))) for a in ys])
        self.device = torch.device(device)
        self.x = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
        if self.device.type == "cuda":
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = torch.from_numpy(y).to(self.device)
        self.valid = torch.from_numpy(valid).to(self.device)
        self.chunk = int(chunk)
        self.bf16 = cuda_bf16(self.device)

    def __call__(self, network) -> list[float]:
        """Per-image Dice of ``network``'s bone (probability > 0.5) at the working spacing."""
        import torch

        network.eval()
        preds = []
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            for i in range(0, self.x.shape[0], self.chunk):
                preds.append(network(self.x[i : i + self.chunk])[:, 0].float() > 0.0)
        pred = torch.cat(preds) & self.valid
        inter = (pred & self.y).sum(dim=(1, 2)).float()
        total = (pred.sum(dim=(1, 2)) + self.y.sum(dim=(1, 2))).float()
        dice = torch.where(total > 0, 2.0 * inter / total.clamp_min(1.0), torch.ones_like(total))
        return [float(v) for v in dice.cpu()]
