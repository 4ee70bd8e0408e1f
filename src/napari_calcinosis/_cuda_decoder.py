"""The U-Net decoder's upsampling in the autocast dtype on CUDA.

CUDA autocast runs ``upsample_nearest2d`` in float32: each decoder block casts its input up,
writes the upsampled map in float32 (at 512² and batch 60 the last block's is 2 GB), joins the
skip connection in float32, and the next convolution casts it all back down; the backward pass
does it again. Nearest-neighbour upsampling only copies values, so doing it in the input's own
dtype changes no number: :func:`upsample_in_input_dtype` makes each nearest-mode decoder block
of a segmentation-models-pytorch U-Net do that. Like :mod:`napari_calcinosis._cuda_convs`, it
changes the blocks' class, not their weights, and :func:`restore_decoder` undoes it.

With ``join=True`` (default :data:`JOIN_UPSAMPLED`) a block also writes the upsampled map
straight into its join with the skip connection (:class:`_UpsampleIntoJoin`): PyTorch's
channels-last nearest kernels run far below the memory bandwidth on an H200 (4.9 ms forward
and 2.6 ms backward of a 76 ms step), the join copies everything once more, and the backward
pass copies the joined gradient's upsampled part before reducing it. One broadcast copy out
and one strided sum back replace all of that: on an H200 (2026-11-27,
``benchmarks/gpu_throughput_probe.py``) a float16 512² training step at batch 60 went from 800
to 857 images/s, so it is on by default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _block_class():
    from .segment import _import_smp

    _import_smp()  # with triton kept out of a Qt process
    try:
        from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoderBlock
    except ImportError:  # another layout of the library: nothing to route
        return None
    return UnetDecoderBlock


_BLOCK = _block_class()
# The decoder blocks write their upsampled maps straight into the join on CUDA (see above).
JOIN_UPSAMPLED = True
# What the forward below uses of smp's block; a version without them keeps its own forward.
_BLOCK_PARTS = ("interpolation_mode", "attention1", "conv1", "conv2", "attention2")

if _BLOCK is not None:

    class _UpsampleInInputDtype(_BLOCK):
        """smp's ``UnetDecoderBlock.forward``, with the nearest upsampling outside autocast."""

        def _upsample_and_join(self, feature_map, target_height, target_width, skip_connection):
            with torch.autocast(feature_map.device.type, enabled=False):
                feature_map = F.interpolate(feature_map, size=(target_height, target_width), mode="nearest")
            return feature_map if skip_connection is None else torch.cat([feature_map, skip_connection], dim=1)

        def forward(self, feature_map, target_height, target_width, skip_connection=None):
            feature_map = self._upsample_and_join(feature_map, target_height, target_width, skip_connection)
            if skip_connection is not None:
                feature_map = self.attention1(feature_map)
            feature_map = self.conv1(feature_map)
            feature_map = self.conv2(feature_map)
            return self.attention2(feature_map)

    class _UpsampleIntoJoin(_UpsampleInInputDtype):
        """The same block, its 2 x nearest upsampling written straight into the join."""

        def _upsample_and_join(self, feature_map, target_height, target_width, skip_connection):
            if not _joinable(feature_map, target_height, target_width, skip_connection):
                return super()._upsample_and_join(feature_map, target_height, target_width, skip_connection)
            return _UpsampleJoin.apply(feature_map, skip_connection)

    _CHANGED = (_UpsampleInInputDtype, _UpsampleIntoJoin)


def _joinable(feature_map, target_height, target_width, skip_connection) -> bool:
    """Whether the join can be written directly: an exact 2 x upsampling of a channels-last map.

    Anything else (odd sizes, another layout, a skip connection of another dtype, which
    ``torch.cat`` would promote) takes smp's own route.
    """
    if feature_map.dim() != 4 or not feature_map.is_contiguous(memory_format=torch.channels_last):
        return False
    n, _, h, w = feature_map.shape
    if (target_height, target_width) != (2 * h, 2 * w):
        return False
    if skip_connection is None:
        return True
    return (skip_connection.dtype == feature_map.dtype and skip_connection.device == feature_map.device
            and skip_connection.dim() == 4 and skip_connection.shape[0] == n
            and tuple(skip_connection.shape[2:]) == (2 * h, 2 * w))


class _UpsampleJoin(torch.autograd.Function):
    """``cat([interpolate(x, scale 2, nearest), skip], dim=1)``, written once, channels-last.

    The forward pass broadcasts each of ``x``'s pixels into its 2 x 2 block of the joined
    map and copies ``skip`` beside it; the backward pass sums each 2 x 2 block of the
    gradient's first channels (in float, as PyTorch's upsampling backward does) and hands
    ``skip`` the rest as a view. The same numbers as upsampling and joining; the gradient of
    ``x`` in float32 may differ in the last bit (four values summed in another order).
    """

    @staticmethod
    def forward(ctx, x, skip):
        n, cx, h, w = x.shape
        cs = 0 if skip is None else skip.shape[1]
        with torch.autocast(x.device.type, enabled=False):
            joined = torch.empty((n, 2 * h, 2 * w, cx + cs), dtype=x.dtype, device=x.device)
            joined.view(n, h, 2, w, 2, cx + cs)[..., :cx].copy_(x.permute(0, 2, 3, 1)[:, :, None, :, None, :])
            if skip is not None:
                joined[..., cx:].copy_(skip.permute(0, 2, 3, 1))
        ctx.cx, ctx.has_skip = cx, skip is not None
        return joined.permute(0, 3, 1, 2)  # NCHW shape, channels-last memory

    @staticmethod
    def backward(ctx, grad):
        n, c, hh, ww = grad.shape
        cx = ctx.cx
        with torch.autocast(grad.device.type, enabled=False):
            g = grad.permute(0, 2, 3, 1)
            if not g.is_contiguous():
                g = g.contiguous()
            grad_x = grad_skip = None
            if ctx.needs_input_grad[0]:
                grad_x = g.view(n, hh // 2, 2, ww // 2, 2, c)[..., :cx].sum(dim=(2, 4)).permute(0, 3, 1, 2)
            if ctx.has_skip and ctx.needs_input_grad[1]:
                grad_skip = g[..., cx:].permute(0, 3, 1, 2)
        return grad_x, grad_skip


def upsample_in_input_dtype(network: torch.nn.Module, join: bool | None = None) -> int:
    """Make ``network``'s nearest-mode U-Net decoder blocks upsample in their input's dtype.

    ``join`` (default :data:`JOIN_UPSAMPLED`): also write the upsampled map straight into the
    join with the skip connection. Returns how many blocks were changed (0 for a network
    without smp's blocks, or one already changed the same way).
    """
    if _BLOCK is None:
        return 0
    target = _UpsampleIntoJoin if (JOIN_UPSAMPLED if join is None else join) else _UpsampleInInputDtype
    n = 0
    for m in network.modules():
        if (type(m) is _BLOCK or (type(m) in _CHANGED and type(m) is not target)) and getattr(
            m, "interpolation_mode", None
        ) == "nearest" and all(hasattr(m, part) for part in _BLOCK_PARTS):
            m.__class__ = target
            n += 1
    return n


def restore_decoder(network: torch.nn.Module) -> None:
    """Undo :func:`upsample_in_input_dtype`."""
    if _BLOCK is None:
        return
    for m in network.modules():
        if type(m) in _CHANGED:
            m.__class__ = _BLOCK
