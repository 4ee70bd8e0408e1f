"""Convolutions that start fast on a GPU: no cuDNN plan for the 1 x 1 and depthwise layers.

cuDNN builds an execution plan the first time it sees each layer shape, forward and backward,
and on an H200 that costs tens of milliseconds per plan: about 8 s before the first training
step of the mobilenet_v2 U-Net, whose 51 1 x 1 and depthwise layers are most of its 61
convolutions. A 1 x 1 convolution is a matrix product over the channels, which cuBLAS runs
without a plan; a depthwise 3 x 3 has its own PyTorch kernel. :func:`plan_free_convs` routes
those layers there and leaves the dense 3 x 3 layers to cuDNN. The weights are the same
tensors, so the model saves and loads as before; :func:`restore_convs` undoes it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_PATCHED = "_napari_calcinosis_plan_free"


class _DepthwiseNoCudnn(torch.autograd.Function):
    """A depthwise convolution on PyTorch's own CUDA kernel, forward and backward."""

    @staticmethod
    def forward(ctx, x, w, stride, padding, dilation, groups):
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, dilation, groups)
        with torch.backends.cudnn.flags(enabled=False):
            y = F.conv2d(x, w, None, stride, padding, dilation, groups)
        # keep the layout the next layers expect (the kernel itself writes NCHW)
        return y.contiguous(memory_format=torch.channels_last) if x.is_contiguous(memory_format=torch.channels_last) else y

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False]
        with torch.backends.cudnn.flags(enabled=False):
            gx, gw, _ = torch.ops.aten.convolution_backward(
                grad, x, w, None, stride, padding, dilation, False, [0, 0], groups, mask
            )
        return gx, gw, None, None, None, None


def _autocast_dtype(t: torch.Tensor):
    kind = t.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None


def _pointwise_forward(conv):
    def forward(x):
        w = conv.weight.view(conv.out_channels, conv.in_channels)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # channels-last (N, C, H, W) is (N, H, W, C) in memory: the permutes are free views
            return F.linear(x.permute(0, 2, 3, 1), w, conv.bias).permute(0, 3, 1, 2)
        n, c, h, wd = x.shape
        y = torch.matmul(w, x.reshape(n, c, h * wd)).view(n, conv.out_channels, h, wd)
        if conv.bias is not None:
            y = y + conv.bias.to(y.dtype).view(1, -1, 1, 1)
        return y

    return forward


def _depthwise_forward(conv):
    def forward(x):
        w = conv.weight
        dtype = _autocast_dtype(x)
        if dtype is not None:
            x, w = x.to(dtype), w.to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            y = _DepthwiseNoCudnn.apply(x, w, conv.stride, conv.padding, conv.dilation, conv.groups)
        if conv.bias is not None:
            y = y + conv.bias.to(y.dtype).view(1, -1, 1, 1)
        return y

    return forward


def plan_free_convs(network: torch.nn.Module) -> int:
    """Route ``network``'s 1 x 1 and depthwise convolutions around cuDNN; returns how many."""
    n = 0
    for m in network.modules():
        if not isinstance(m, torch.nn.Conv2d) or getattr(m, _PATCHED, False) or m.padding_mode != "zeros":
            continue
        if m.kernel_size == (1, 1) and m.stride == (1, 1) and m.groups == 1 and m.padding == (0, 0):
            m.forward = _pointwise_forward(m)
        elif m.groups == m.in_channels == m.out_channels and m.groups > 1:
            m.forward = _depthwise_forward(m)
        else:
            continue
        setattr(m, _PATCHED, True)
        n += 1
    return n


def restore_convs(network: torch.nn.Module) -> None:
    """Undo :func:`plan_free_convs`."""
    for m in network.modules():
        if getattr(m, _PATCHED, False):
            del m.forward
            delattr(m, _PATCHED)
