"""The U-Net decoder's upsampling in the autocast dtype on CUDA.

CUDA autocast runs ``upsample_nearest2d`` in float32: each decoder block casts its input up,
writes the upsampled map in float32 (at 512² and batch 60 the last block's is 2 GB), joins the
skip connection in float32, and the next convolution casts it all back down; the backward pass
does it again. Nearest-neighbour upsampling only copies values, so doing it in the input's own
dtype changes no number: :func:`upsample_in_input_dtype` makes each nearest-mode decoder block
of a segmentation-models-pytorch U-Net do that. Like :mod:`napari_calcinosis._cuda_convs`, it
changes the blocks' class, not their weights, and :func:`restore_decoder` undoes it.
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
# What the forward below uses of smp's block; a version without them keeps its own forward.
_BLOCK_PARTS = ("interpolation_mode", "attention1", "conv1", "conv2", "attention2")

if _BLOCK is not None:

    class _UpsampleInInputDtype(_BLOCK):
        """smp's ``UnetDecoderBlock.forward``, with the nearest upsampling outside autocast."""

        def forward(self, feature_map, target_height, target_width, skip_connection=None):
            with torch.autocast(feature_map.device.type, enabled=False):
                feature_map = F.interpolate(feature_map, size=(target_height, target_width), mode="nearest")
            if skip_connection is not None:
                feature_map = torch.cat([feature_map, skip_connection], dim=1)
                feature_map = self.attention1(feature_map)
            feature_map = self.conv1(feature_map)
            feature_map = self.conv2(feature_map)
            return self.attention2(feature_map)


def upsample_in_input_dtype(network: torch.nn.Module) -> int:
    """Make ``network``'s nearest-mode U-Net decoder blocks upsample in their input's dtype.

    Returns how many blocks were changed (0 for a network without smp's blocks, or one
    already changed).
    """
    if _BLOCK is None:
        return 0
    n = 0
    for m in network.modules():
        if type(m) is _BLOCK and getattr(m, "interpolation_mode", None) == "nearest" and all(
            hasattr(m, part) for part in _BLOCK_PARTS
        ):
            m.__class__ = _UpsampleInInputDtype
            n += 1
    return n


def restore_decoder(network: torch.nn.Module) -> None:
    """Undo :func:`upsample_in_input_dtype`."""
    if _BLOCK is None:
        return
    for m in network.modules():
        if type(m) is _UpsampleInInputDtype:
            m.__class__ = _BLOCK
