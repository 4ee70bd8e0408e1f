"""Batch norm and the activation after it as one pass, for CUDA training (Triton kernels).

In a float16 training step of the U-Net at 512² on an H200, cuDNN's batch norm took 19.4 ms of
63.7 ms of GPU time and the ReLU6 and ReLU after it about 6 ms more: all of it reading and
writing activations, one pass over the tensor after another. Here one layer's training forward
is two passes over its input (its per-channel sums; then normalise, scale, shift and clamp in
one write) and its backward two more (the two per-channel sums of the gradient; then the input's
gradient in one write), the activation's gradient mask recomputed from the input rather than
read from a saved output.

:func:`fuse_batchnorm` changes the classes of a network's batch norms (and of the ReLU or
ReLU6 right after each, which then hands its input on unchanged), not their parameters: the
``state_dict`` is unchanged, and :func:`restore_batchnorm` undoes it. The kernels run only in
training mode, on a CUDA tensor in channels-last with channels in eights, where Triton can be
imported; everywhere else (evaluation, the CPU) the layers run PyTorch's batch norm and then
their activation, so a fused network computes what the plain one does.

The sums are shifted by each channel's value at the first pixel (a sample of the channel, so
the variance does not cancel against a large mean) and added in float32.
"""

from __future__ import annotations

import math
import threading
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

# Tests set this to run the kernels on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1).
_KERNELS_ON_ANY_DEVICE = False
# elements of one program's tile: rows x channels
_TILE = 4096
_NUM_WARPS = 8
# partial sums a finishing kernel adds per iteration
_BLOCK_P = 64

_KERNELS = {}


def _triton():
    """The triton module, or None where it cannot be imported (not installed, or hidden from a
    Qt process by segment._hide_triton_under_qt, which this asks first: importing triton into
    a process with Mesa's OpenGL loaded would crash it)."""
    from .segment import _hide_triton_under_qt

    _hide_triton_under_qt()
    try:
        import triton
        import triton.language  # noqa: F401
    except ImportError:
        return None
    return triton


def _kernels():
    """The six Triton kernels, imported on first use (importing triton only then)."""
    if not _KERNELS:
        if _triton() is None:
            raise RuntimeError("triton is not available")
        from ._cuda_batchnorm_kernels import KERNELS

        _KERNELS.update(KERNELS)
    return _KERNELS


_SM_COUNT = {}


def _programs_wanted(device: torch.device) -> int:
    """Programs for a reduction's grid: four per multiprocessor (32 on the CPU interpreter)."""
    if device.type != "cuda":
        return 32
    if device not in _SM_COUNT:
        _SM_COUNT[device] = torch.cuda.get_device_properties(device).multi_processor_count
    return 4 * _SM_COUNT[device]


class _Grid:
    """How a layer's (pixels, channels) matrix is cut into programs, and the partial sums' table."""

    def __init__(self, x: torch.Tensor):
        n, c, h, w = x.shape
        self.m, self.c8 = n * h * w, c // 8
        self.block_c = 16 if c <= 16 else 32 if c <= 32 else 64
        self.block_m = _TILE // self.block_c
        self.n_cblocks = -(-c // self.block_c)
        # the reductions: about _programs_wanted programs, each a run of whole row blocks
        want = max(1, _programs_wanted(x.device) // self.n_cblocks)
        self.rows_per_prog = -(-max(1, -(-self.m // want)) // self.block_m) * self.block_m
        self.n_parts = -(-self.m // self.rows_per_prog)
        self.parts = torch.empty((self.n_parts, 2, c), dtype=torch.float32, device=x.device)
        self.reduce = (self.n_parts, self.n_cblocks)  # the reductions' grid
        self.finish = (-(-c // 64),)  # the finishing kernels': 64 channels a program
        self.apply = (-(-self.m // self.block_m), self.n_cblocks)  # the element-wise kernels'
        self.tiles = dict(BLOCK_M=self.block_m, BLOCK_C=self.block_c, num_warps=_NUM_WARPS)


def _on(device: torch.device):
    """Triton launches on the current CUDA device and its stream: make it the tensor's."""
    return torch.cuda.device(device) if device.type == "cuda" else nullcontext()


class _BatchNormActFunction(torch.autograd.Function):
    """Training-mode batch norm then ``clamp(lo, hi)`` (when ``has_act``) on a channels-last
    tensor; updates the running statistics in place, as ``F.batch_norm`` does."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float,
                lo: float, hi: float, has_act: bool):
        k, g = _kernels(), _Grid(x)
        stats = torch.empty((4, x.shape[1]), dtype=torch.float32, device=x.device)
        y = torch.empty_like(x, memory_format=torch.channels_last)
        with _on(x.device):
            k["forward_sums"][g.reduce](x, g.parts, g.m, g.c8, g.rows_per_prog, **g.tiles)
            k["forward_finish"][g.finish](g.parts, x, weight, bias, running_mean, running_var, stats, g.m, g.c8,
                                          g.n_parts, float(eps), float(momentum), BLOCK_P=_BLOCK_P, BLOCK_C=64, num_warps=4)
            k["forward_apply"][g.apply](x, stats, y, g.m, g.c8, float(lo), float(hi), int(has_act), **g.tiles)
        ctx.save_for_backward(x, weight, stats)
        ctx.conf = (float(lo), float(hi), int(has_act))
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, weight, stats = ctx.saved_tensors
        lo, hi, has_act = ctx.conf
        dy = dy.contiguous(memory_format=torch.channels_last)
        k, g = _kernels(), _Grid(x)
        grads = torch.empty((5, x.shape[1]), dtype=torch.float32, device=x.device)
        dx = torch.empty_like(x, memory_format=torch.channels_last) if ctx.needs_input_grad[0] else None
        with _on(x.device):
            k["backward_sums"][g.reduce](dy, x, stats, g.parts, g.m, g.c8, g.rows_per_prog, lo, hi, has_act, **g.tiles)
            k["backward_finish"][g.finish](g.parts, weight, stats, grads, g.m, g.c8, g.n_parts, BLOCK_P=_BLOCK_P,
                                           BLOCK_C=64, num_warps=4)
            if dx is not None:
                k["backward_apply"][g.apply](dy, x, stats, grads, dx, g.m, g.c8, lo, hi, has_act, **g.tiles)
        dw = grads[0].to(weight.dtype) if ctx.needs_input_grad[1] else None
        db = grads[1].to(weight.dtype) if ctx.needs_input_grad[2] else None
        return dx, dw, db, None, None, None, None, None, None, None


def _kernels_can_run(x: torch.Tensor) -> bool:
    if x.dim() != 4 or x.shape[1] % 8 or x.numel() // x.shape[1] < 2:
        return False  # channels not in eights, or one value per channel (batch norm's own error)
    if not x.is_contiguous(memory_format=torch.channels_last) or x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return False
    if x.is_cuda:
        return torch.cuda.get_device_capability(x.device) >= (8, 0) and _triton() is not None
    return _KERNELS_ON_ANY_DEVICE and _triton() is not None


class _FusedBatchNorm2d(torch.nn.BatchNorm2d):
    """A batch norm followed by ``clamp(lo, hi)``: ReLU (0, inf), ReLU6 (0, 6) or nothing."""

    lo, hi, has_act = -math.inf, math.inf, False

    @staticmethod
    def activate(y):
        return y

    def forward(self, x):
        if not (self.training and self.track_running_stats and self.affine and self.running_mean is not None
                and _kernels_can_run(x)):
            return self.activate(super().forward(x))
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        # as torch.nn.BatchNorm2d: no momentum means a cumulative average
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        with torch.autocast(x.device.type, enabled=False):
            return _BatchNormActFunction.apply(x, self.weight, self.bias, self.running_mean, self.running_var, momentum,
                                               self.eps, self.lo, self.hi, self.has_act)


class _BatchNormReLU2d(_FusedBatchNorm2d):
    lo, hi, has_act = 0.0, math.inf, True

    @staticmethod
    def activate(y):
        return F.relu(y, inplace=True)  # as smp's ReLU(inplace=True): y is batch norm's own output


class _BatchNormReLU62d(_FusedBatchNorm2d):
    lo, hi, has_act = 0.0, 6.0, True

    @staticmethod
    def activate(y):
        return F.relu6(y, inplace=True)  # as torchvision's ReLU6(inplace=True)


class _ReLUInBatchNorm(torch.nn.ReLU):
    """A ReLU whose batch norm before it applies it: hands its input on."""

    def forward(self, x):
        return x


class _ReLU6InBatchNorm(torch.nn.ReLU6):
    """A ReLU6 whose batch norm before it applies it: hands its input on."""

    def forward(self, x):
        return x


_FUSED_WITH = {torch.nn.ReLU: (_BatchNormReLU2d, _ReLUInBatchNorm), torch.nn.ReLU6: (_BatchNormReLU62d, _ReLU6InBatchNorm)}
_BN_CLASSES = (_FusedBatchNorm2d, _BatchNormReLU2d, _BatchNormReLU62d)
_ACT_CLASSES = {_ReLUInBatchNorm: torch.nn.ReLU, _ReLU6InBatchNorm: torch.nn.ReLU6}


def fuse_batchnorm(network: torch.nn.Module, alone: bool = True) -> int:
    """Fuse each ``BatchNorm2d`` of ``network`` with the ``ReLU`` or ``ReLU6`` right after it in
    the same ``nn.Sequential``; with ``alone``, batch norms without one run on the kernels too.
    Returns how many batch norms were changed."""
    n = 0
    for parent in network.modules():
        if not isinstance(parent, torch.nn.Sequential):
            continue
        children = list(parent.children())
        for i, m in enumerate(children):
            if type(m) is not torch.nn.BatchNorm2d:
                continue
            after = children[i + 1] if i + 1 < len(children) else None
            if type(after) in _FUSED_WITH:
                m.__class__, after.__class__ = _FUSED_WITH[type(after)]
            elif alone:
                m.__class__ = _FusedBatchNorm2d
            else:
                continue
            n += 1
    return n


def restore_batchnorm(network: torch.nn.Module) -> None:
    """Undo :func:`fuse_batchnorm`: plain batch norms and activations again."""
    for m in network.modules():
        if type(m) in _BN_CLASSES:
            m.__class__ = torch.nn.BatchNorm2d
        elif type(m) in _ACT_CLASSES:
            m.__class__ = _ACT_CLASSES[type(m)]


_CHECKED = {}
_CHECK_LOCK = threading.Lock()
# The check's tensors (N, H, W): 147,456 pixels, so that every loop of the kernels runs several
# passes, as in training (tests make it small: the interpreter is slow).
_CHECK_SHAPE = (4, 192, 192)


def kernels_work(device, dtype) -> str | None:
    """None when the kernels compile and compute what PyTorch's batch norm and activation do
    (ReLU6, ReLU and none; 16, 24 and 64 channels, one of each of the kernels' channel blocks)
    on ``dtype`` tensors on ``device``, once per device and dtype. The check compiles the
    kernels the U-Net's layers use, so they are ready before the first step. Otherwise why not,
    in a sentence: the caller then keeps PyTorch's layers. (A kernel that faults on the GPU
    would leave the CUDA context unusable: none is expected, but this check cannot undo one.)"""
    with _CHECK_LOCK:  # the Train widget's warm-up may be checking in another thread: check once
        return _kernels_work(torch.device(device), dtype)


def _kernels_work(device, dtype) -> str | None:
    key = (str(device), dtype)
    if key in _CHECKED:
        return _CHECKED[key]
    if _triton() is None:
        return "triton cannot be imported in this process"
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 0):
        return "the GPU is older than Ampere"
    cl = torch.channels_last
    try:
        gen = torch.Generator().manual_seed(0)
        for c in (16, 24, 64):
            for layer in (_BatchNormReLU62d, _BatchNormReLU2d, _FusedBatchNorm2d):
                x = torch.randn(_CHECK_SHAPE[0], c, *_CHECK_SHAPE[1:], generator=gen).mul(2).add(1)
                x, dy = x.to(device, dtype).contiguous(memory_format=cl), torch.randn(x.shape, generator=gen).to(device, dtype)
                if not _kernels_can_run(x):
                    return f"the kernels cannot take a {dtype} tensor on {device}"
                results = []
                for fused in (True, False):  # the same layer on the kernels, then as PyTorch runs it
                    bn = torch.nn.BatchNorm2d(c).to(device)
                    with torch.no_grad():
                        bn.weight.copy_(torch.linspace(1.5, 2.5, c))
                        bn.bias.copy_(torch.linspace(-1, 1, c))
                    xi = x.detach().requires_grad_()
                    y = (_BatchNormActFunction.apply(xi, bn.weight, bn.bias, bn.running_mean, bn.running_var, 0.1, bn.eps,
                                                     layer.lo, layer.hi, layer.has_act) if fused else
                         layer.activate(F.batch_norm(xi, bn.running_mean, bn.running_var, bn.weight, bn.bias, True, 0.1,
                                                     bn.eps)))
                    y.backward(dy)
                    results.append([t.detach().float() for t in (y, xi.grad, bn.weight.grad, bn.bias.grad, bn.running_var)])
                for name, a, b in zip(("output", "input gradient", "weight gradient", "bias gradient", "running variance"),
                                      *results):
                    # the output to its rounding; gradients as a whole (a value on the activation's
                    # edge may round to the other side in one of the two)
                    off = (float((a - b).abs().max() / b.abs().max()) if name in ("output", "running variance")
                           else float((a - b).norm() / b.norm()))
                    if not bool(torch.isfinite(a).all()) or not off < 1e-2:
                        return f"the kernels' {name} differs from PyTorch's ({c} channels, {layer.__name__}, {dtype})"
    except Exception as exc:  # no compiler, an unsupported GPU, a Triton bug: PyTorch's layers then
        said = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        reason = f"the kernels failed: {type(exc).__name__}: {said}"
        _CHECKED[key] = reason
        return reason
    _CHECKED[key] = None
    return None
