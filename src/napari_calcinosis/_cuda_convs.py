"""Convolutions that start fast on a GPU: no cuDNN plan for the 1 x 1 and depthwise layers.

cuDNN builds an execution plan the first time it sees each layer shape, forward and backward,
and on an H200 that costs tens of milliseconds per plan: about 10 s before the first training
step of the mobilenet_v2 U-Net, whose 51 1 x 1 and depthwise layers are most of its 61
convolutions. A 1 x 1 convolution is a matrix product over the channels, which cuBLAS runs
without a plan; a depthwise 3 x 3 has its own PyTorch kernel. :func:`plan_free_convs` routes
those layers there and leaves the dense 3 x 3 layers to cuDNN. It changes the layers' class,
not their weights: the network's ``state_dict`` is unchanged, and it copies and pickles as
before. :func:`restore_convs` undoes it.

:func:`autotune_dense_convs` does the opposite for a long run: only its dense k x k layers
(ten in the U-Net) get cuDNN's autotuner, which times each candidate kernel once per shape. At
512² those layers are the ones the heuristics serve worst (full resolution, 16-32 channels), and
timing ten layers stalls the start far less than timing all 61.

:func:`pad_thin_convs` pads the channels of the dense layers with one input or one output
channel (the first and the last) to 8 with zeros, so that cuDNN runs them on its aligned
tensor-core kernels rather than its slow unaligned ones.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch
import torch.nn.functional as F

# cuDNN's on/off switch is one flag for the whole process. The depthwise layers turn it off
# around their kernel (and the autotuned dense layers turn the autotuner on); the lock keeps two
# threads (training's backward, inference in napari's main thread) from interleaving so that the
# flag is always put back. While it is off, a dense convolution in another thread runs on
# PyTorch's slower kernel: the same result, once.
_CUDNN_FLAG_LOCK = threading.RLock()


@contextmanager
def _cudnn_flag(name: str, value: bool):
    """``torch.backends.cudnn.<name>`` set to ``value`` for the block, then put back."""
    with _CUDNN_FLAG_LOCK:
        was = getattr(torch.backends.cudnn, name)
        setattr(torch.backends.cudnn, name, value)
        try:
            yield
        finally:
            setattr(torch.backends.cudnn, name, was)


class _ConvUnderCudnnFlag(torch.autograd.Function):
    """A convolution, forward and backward, with one of cuDNN's flags set for it alone:
    ``("enabled", False)`` runs a depthwise layer on PyTorch's own kernel, ``("benchmark", True)``
    has the autotuner time a dense layer."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups, flag):
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, dilation, groups, None if b is None else [b.shape[0]], flag)
        with _cudnn_flag(*flag):
            y = F.conv2d(x, w, b, stride, padding, dilation, groups)
        # keep the layout the next layers expect (PyTorch's depthwise CUDA kernel writes NCHW)
        return y.contiguous(memory_format=torch.channels_last) if x.is_contiguous(memory_format=torch.channels_last) else y

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        stride, padding, dilation, groups, bias_sizes, flag = ctx.conf
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], bias_sizes is not None and ctx.needs_input_grad[2]]
        with _cudnn_flag(*flag):
            gx, gw, gb = torch.ops.aten.convolution_backward(
                grad, x, w, bias_sizes, stride, padding, dilation, False, [0, 0], groups, mask
            )
        return gx, gw, gb, None, None, None, None, None


def _autocast_dtype(t: torch.Tensor):
    """The autocast dtype in force for ``t``'s device, or None."""
    kind = t.device.type
    try:
        return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
    except (AttributeError, TypeError):  # torch < 2.4: one function per device kind
        if kind == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
        if kind == "cpu" and torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
        return None


def _as_autocast_would(x, *params):
    """``x`` and a layer's parameters (None stays None) cast to the autocast dtype in force, as
    autocast casts a convolution's inputs: it does not reach inside an autograd Function."""
    dtype = _autocast_dtype(x)
    if dtype is None:
        return (x, *params)
    return tuple(None if t is None else t.to(dtype) for t in (x, *params))


class _PointwiseConv2d(torch.nn.Conv2d):
    """A 1 x 1 convolution as a matrix product over the channels (cuBLAS, no cuDNN plan)."""

    def forward(self, x):
        w = self.weight.view(self.out_channels, self.in_channels)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # channels-last (N, C, H, W) is (N, H, W, C) in memory: the permutes are free views
            return F.linear(x.permute(0, 2, 3, 1), w, self.bias).permute(0, 3, 1, 2)
        n, c, h, wd = x.shape
        y = torch.matmul(w, x.reshape(n, c, h * wd)).view(n, self.out_channels, h, wd)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype).view(1, -1, 1, 1)
        return y


class _DepthwiseConv2d(torch.nn.Conv2d):
    """A depthwise convolution on PyTorch's own kernel (no cuDNN plan)."""

    def forward(self, x):
        x, w = _as_autocast_would(x, self.weight)
        with torch.autocast(x.device.type, enabled=False):
            y = _ConvUnderCudnnFlag.apply(x, w, None, self.stride, self.padding, self.dilation, self.groups,
                                          ("enabled", False))
        if self.bias is not None:
            y = y + self.bias.to(y.dtype).view(1, -1, 1, 1)
        return y


class _AutotunedConv2d(torch.nn.Conv2d):
    """A dense convolution that cuDNN's autotuner times, whatever the global flag says."""

    def forward(self, x):
        x, w, b = _as_autocast_would(x, self.weight, self.bias)
        with torch.autocast(x.device.type, enabled=False):
            return _ConvUnderCudnnFlag.apply(x, w, b, self.stride, self.padding, self.dilation, self.groups,
                                             ("benchmark", True))


# Tensor-core convolution kernels read channels in groups of 8 float16 values (16 bytes).
_CHANNEL_ALIGN = 8


def _aligned(n: int) -> int:
    return -(-n // _CHANNEL_ALIGN) * _CHANNEL_ALIGN


def _layout(x: torch.Tensor, weight: torch.Tensor):
    """The memory layout ``x`` is in: channels-last or not. A one-channel image is both, so
    then the layer's weight says which layout the network was put in (``.to(memory_format=
    torch.channels_last)`` gives its channel dimension stride 1)."""
    cl = torch.channels_last
    is_cl, is_plain = x.is_contiguous(memory_format=cl), x.is_contiguous()
    if is_cl != is_plain:
        return cl if is_cl else torch.contiguous_format
    return cl if weight.is_contiguous(memory_format=cl) and weight.stride(1) == 1 else torch.contiguous_format


class _ChannelPaddedConv2d(torch.nn.Conv2d):
    """A dense convolution run with its channels padded with zeros to multiples of 8.

    The U-Net's first layer reads one channel (the CT image) and its last writes one (the
    logits), both at full resolution; with a single channel cuDNN falls back to unaligned
    kernels without shared memory, which took about 8 ms of a 76 ms training step at 512² on
    an H200. Padded, the same sums run on the aligned tensor-core kernels: the extra input
    channels are zeros and multiply zero weights, the extra output channels are sliced off.
    The parameters keep their shapes (zeros are padded onto a copy each step, and the
    gradient flows back through the padding), so the ``state_dict`` is unchanged.
    """

    autotune = False

    def forward(self, x):
        x, w, b = _as_autocast_would(x, self.weight, self.bias)
        c, k = self.in_channels, self.out_channels
        cp, kp = _aligned(c), _aligned(k)
        with torch.autocast(x.device.type, enabled=False):
            layout = _layout(x, self.weight)
            if cp != c:
                padded = torch.empty((x.shape[0], cp, *x.shape[2:]), dtype=x.dtype, device=x.device,
                                     memory_format=layout)
                padded[:, c:] = 0
                padded[:, :c] = x  # the gradient flows back through the copy when x needs one
                x = padded
            w = F.pad(w, (0, 0, 0, 0, 0, cp - c, 0, kp - k)).contiguous(memory_format=layout)
            b = None if b is None else F.pad(b, (0, kp - k))
            if self.autotune:
                y = _ConvUnderCudnnFlag.apply(x, w, b, self.stride, self.padding, self.dilation, 1, ("benchmark", True))
            else:
                y = F.conv2d(x, w, b, self.stride, self.padding, self.dilation, 1)
        return y[:, :k] if kp != k else y


class _AutotunedChannelPaddedConv2d(_ChannelPaddedConv2d):
    """:class:`_ChannelPaddedConv2d` that cuDNN's autotuner times, as :class:`_AutotunedConv2d`."""

    autotune = True


_PLAN_FREE_CLASSES = (_PointwiseConv2d, _DepthwiseConv2d)
_CHANGED_CLASSES = (*_PLAN_FREE_CLASSES, _AutotunedConv2d, _ChannelPaddedConv2d, _AutotunedChannelPaddedConv2d)


def _plain_dense(m) -> bool:
    """A dense (ungrouped) 2-D convolution whose padding convolution_backward can take."""
    return (m.padding_mode == "zeros" and m.groups == 1 and not m.transposed
            and not isinstance(m.padding, str))  # convolution_backward takes numbers, not "same"


def pad_thin_convs(network: torch.nn.Module) -> int:
    """Run ``network``'s dense convolutions whose channel counts are not multiples of 8 (the
    U-Net's one-channel first and last layers) with zero-padded channels; returns how many.
    For CUDA training, where the unaligned kernels are slow; the same outputs and gradients."""
    n = 0
    for m in network.modules():
        if type(m) in (torch.nn.Conv2d, _AutotunedConv2d) and _plain_dense(m) and (
                m.in_channels % _CHANNEL_ALIGN or m.out_channels % _CHANNEL_ALIGN):
            m.__class__ = _AutotunedChannelPaddedConv2d if type(m) is _AutotunedConv2d else _ChannelPaddedConv2d
            n += 1
    return n


def plan_free_convs(network: torch.nn.Module) -> int:
    """Route ``network``'s 1 x 1 and depthwise convolutions around cuDNN; returns how many."""
    n = 0
    for m in network.modules():
        if type(m) is not torch.nn.Conv2d or m.padding_mode != "zeros":
            continue  # already routed, a subclass we do not know, or padding we do not handle
        if m.kernel_size == (1, 1) and m.stride == (1, 1) and m.groups == 1 and m.padding == (0, 0):
            m.__class__ = _PointwiseConv2d
        elif m.groups == m.in_channels == m.out_channels and m.groups > 1:
            m.__class__ = _DepthwiseConv2d
        else:
            continue
        n += 1
    return n


@contextmanager
def plan_free_for_a_while(network: torch.nn.Module):
    """Within the block, ``network``'s 1 x 1 and depthwise layers run as :func:`plan_free_convs`
    routes them; after it, exactly those layers are plain ``torch.nn.Conv2d`` again (padded,
    autotuned and batch-norm layers are left as they were). Yields how many were routed.

    For a forward pass at a shape the network rarely meets, in a run whose layers are all on
    cuDNN: validation during a long training run. cuDNN would build a plan for each of the 61
    layers at that new shape (in the paper's workload on an H200 the first validation took
    1.2-2.5 s longer than the later ones); routed, only the ten dense layers need one.
    """
    plain = [m for m in network.modules() if type(m) is torch.nn.Conv2d]
    n = plan_free_convs(network)
    try:
        yield n
    finally:
        for m in plain:
            m.__class__ = torch.nn.Conv2d


def autotune_dense_convs(network: torch.nn.Module) -> int:
    """Give ``network``'s dense k x k convolutions (k > 1) cuDNN's autotuner; returns how many."""
    n = 0
    for m in network.modules():
        if type(m) in (torch.nn.Conv2d, _ChannelPaddedConv2d) and _plain_dense(m) and m.kernel_size != (1, 1):
            m.__class__ = _AutotunedConv2d if type(m) is torch.nn.Conv2d else _AutotunedChannelPaddedConv2d
            n += 1
    return n


def restore_convs(network: torch.nn.Module) -> None:
    """Undo :func:`plan_free_convs`, :func:`autotune_dense_convs` and :func:`pad_thin_convs`: every layer back on
    ``torch.nn.Conv2d`` (cuDNN on a GPU, the autotuner as the global flag says)."""
    for m in network.modules():
        if type(m) in _CHANGED_CLASSES:
            m.__class__ = torch.nn.Conv2d
