"""The Triton kernels of :mod:`napari_calcinosis._cuda_batchnorm`, in a module of their own so
that triton is imported only when they are first wanted (a napari process must not load it).

A layer's activations are a (pixels, channels) matrix: channels-last (N, C, H, W) is
(N * H * W, C) in memory. Each reduction program sums a run of rows for a block of channels into
partial sums; a finishing kernel adds the partial sums and computes the per-channel constants;
an element-wise kernel applies them.
"""

import triton
import triton.language as tl


@triton.jit
def channels(C8, pid, BLOCK_C: tl.constexpr):
    """The channel count, this program's block of channels and which of them exist."""
    C = C8 * 8
    cols = pid * BLOCK_C + tl.arange(0, BLOCK_C)
    return C, cols, cols < C


@triton.jit
def tile(rows, M, C, cols, cmask):
    """Offsets of a block of rows x channels in a (rows, channels) matrix, and its mask."""
    return rows[:, None] * C + cols[None, :], (rows < M)[:, None] & cmask[None, :]


@triton.jit
def per_channel(ptr, row, C, cols, cmask):
    """Row ``row`` of a (k, C) float32 table of per-channel values."""
    return tl.load(ptr + row * C + cols, mask=cmask, other=0.0)


@triton.jit
def normalised(v, mean, scale, bias):
    return (v - mean[None, :]) * scale[None, :] + bias[None, :]


@triton.jit
def passes(z, lo, hi, has_act):
    """Where the activation passes its input's gradient: lo < z < hi (everywhere without one)."""
    return ((z > lo) & (z < hi)) | (has_act == 0)


@triton.jit
def store_parts(part_ptr, C, cols, cmask, a, b):
    """This program's two partial sums per channel: rows 2 p and 2 p + 1 of a (2 n, C) table."""
    base = part_ptr + tl.program_id(0).to(tl.int64) * 2 * C
    tl.store(base + cols, tl.sum(a, axis=0), mask=cmask)
    tl.store(base + C + cols, tl.sum(b, axis=0), mask=cmask)


@triton.jit
def sum_parts(part_ptr, C, cols, cmask, n_parts, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """The two sums per channel over all programs' partial sums."""
    s = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    s2 = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for p0 in range(0, n_parts, BLOCK_P):
        at, mask = tile((p0 + tl.arange(0, BLOCK_P)).to(tl.int64), n_parts, 2 * C, cols, cmask)
        s += tl.load(part_ptr + at, mask=mask, other=0.0)
        s2 += tl.load(part_ptr + C + at, mask=mask, other=0.0)
    return tl.sum(s, axis=0), tl.sum(s2, axis=0)


# The kernels. Integer arguments are not specialised on their values, so each compiles once
# per BLOCK_C (16, 32 or 64; the finishing kernels only 64) and input dtype, not once per
# layer shape: 14 compilations for the U-Net in float16, kept in Triton's cache for later
# runs. C8 is the channel count over 8: C = C8 * 8 tells the compiler that rows start on
# 16-byte boundaries (vector loads).


@triton.jit(do_not_specialize=["M", "C8", "rows_per_prog"])
def forward_sums(x_ptr, part_ptr, M, C8, rows_per_prog, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    # sums of (x - shift) and its square, shift = the channel's value at the first pixel
    C, cols, cmask = channels(C8, tl.program_id(1), BLOCK_C)
    shift = tl.load(x_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    row0 = tl.program_id(0).to(tl.int64) * rows_per_prog
    for start in range(0, rows_per_prog, BLOCK_M):
        at, mask = tile(row0 + start + tl.arange(0, BLOCK_M), M, C, cols, cmask)
        d = tl.where(mask, tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32) - shift[None, :], 0.0)
        acc += d
        acc2 += d * d
    store_parts(part_ptr, C, cols, cmask, acc, acc2)


@triton.jit(do_not_specialize=["M", "C8", "n_parts"])
def forward_finish(part_ptr, x_ptr, w_ptr, b_ptr, rmean_ptr, rvar_ptr, stats_ptr, M, C8, n_parts,
                   eps, momentum, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    # stats: mean, invstd, scale (w * invstd), bias, each C float32; y = (x - mean) * scale + bias
    C, cols, cmask = channels(C8, tl.program_id(0), BLOCK_C)
    s, s2 = sum_parts(part_ptr, C, cols, cmask, n_parts, BLOCK_P, BLOCK_C)
    mean_d = s / M
    var = s2 / M - mean_d * mean_d
    var = tl.where(var < 0.0, 0.0, var)  # rounding below zero; NaN stays NaN, as in PyTorch
    mean = tl.load(x_ptr + cols, mask=cmask, other=0.0).to(tl.float32) + mean_d
    invstd = tl.math.div_rn(1.0, tl.sqrt_rn(var + eps))
    tl.store(stats_ptr + cols, mean, mask=cmask)
    tl.store(stats_ptr + C + cols, invstd, mask=cmask)
    tl.store(stats_ptr + 2 * C + cols, per_channel(w_ptr, 0, C, cols, cmask) * invstd, mask=cmask)
    tl.store(stats_ptr + 3 * C + cols, per_channel(b_ptr, 0, C, cols, cmask), mask=cmask)
    rmean = per_channel(rmean_ptr, 0, C, cols, cmask)
    rvar = per_channel(rvar_ptr, 0, C, cols, cmask)
    tl.store(rmean_ptr + cols, rmean + momentum * (mean - rmean), mask=cmask)
    tl.store(rvar_ptr + cols, rvar + momentum * (var * (M / (M - 1.0)) - rvar), mask=cmask)


@triton.jit(do_not_specialize=["M", "C8", "has_act"])
def forward_apply(x_ptr, stats_ptr, y_ptr, M, C8, lo, hi, has_act, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    C, cols, cmask = channels(C8, tl.program_id(1), BLOCK_C)
    at, mask = tile(tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M), M, C, cols, cmask)
    z = normalised(tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32), per_channel(stats_ptr, 0, C, cols, cmask),
                   per_channel(stats_ptr, 2, C, cols, cmask), per_channel(stats_ptr, 3, C, cols, cmask))
    if has_act != 0:
        z = tl.where(z != z, z, tl.minimum(tl.maximum(z, lo), hi))  # NaN stays NaN, as in PyTorch
    tl.store(y_ptr + at, z.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["M", "C8", "rows_per_prog", "has_act"])
def backward_sums(dy_ptr, x_ptr, stats_ptr, part_ptr, M, C8, rows_per_prog, lo, hi, has_act,
                  BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    # sums of g and g * (x - mean), g = the output's gradient where the activation passes it
    C, cols, cmask = channels(C8, tl.program_id(1), BLOCK_C)
    mean = per_channel(stats_ptr, 0, C, cols, cmask)
    scale = per_channel(stats_ptr, 2, C, cols, cmask)
    bias = per_channel(stats_ptr, 3, C, cols, cmask)
    acc_g = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    acc_gx = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    row0 = tl.program_id(0).to(tl.int64) * rows_per_prog
    for start in range(0, rows_per_prog, BLOCK_M):
        at, mask = tile(row0 + start + tl.arange(0, BLOCK_M), M, C, cols, cmask)
        v = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(dy_ptr + at, mask=mask, other=0.0).to(tl.float32)
        # z as forward_apply wrote it (rounded to the output's dtype, which the gradient has):
        # the mask PyTorch's activation takes from its output
        z = normalised(v, mean, scale, bias).to(dy_ptr.dtype.element_ty).to(tl.float32)
        g = tl.where(mask & passes(z, lo, hi, has_act), g, 0.0)
        acc_g += g
        acc_gx += g * (v - mean[None, :])
    store_parts(part_ptr, C, cols, cmask, acc_g, acc_gx)


@triton.jit(do_not_specialize=["M", "C8", "n_parts"])
def backward_finish(part_ptr, w_ptr, stats_ptr, grads_ptr, M, C8, n_parts, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    # grads: dweight, dbias, then dx = g * k1 + (x - mean) * k2 + k3, each C float32
    C, cols, cmask = channels(C8, tl.program_id(0), BLOCK_C)
    sum_g, sum_gx = sum_parts(part_ptr, C, cols, cmask, n_parts, BLOCK_P, BLOCK_C)
    invstd = per_channel(stats_ptr, 1, C, cols, cmask)
    k1 = per_channel(w_ptr, 0, C, cols, cmask) * invstd
    tl.store(grads_ptr + cols, sum_gx * invstd, mask=cmask)
    tl.store(grads_ptr + C + cols, sum_g, mask=cmask)
    tl.store(grads_ptr + 2 * C + cols, k1, mask=cmask)
    tl.store(grads_ptr + 3 * C + cols, -k1 * invstd * invstd * sum_gx / M, mask=cmask)
    tl.store(grads_ptr + 4 * C + cols, -k1 * sum_g / M, mask=cmask)


@triton.jit(do_not_specialize=["M", "C8", "has_act"])
def backward_apply(dy_ptr, x_ptr, stats_ptr, grads_ptr, dx_ptr, M, C8, lo, hi, has_act,
                   BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    C, cols, cmask = channels(C8, tl.program_id(1), BLOCK_C)
    mean = per_channel(stats_ptr, 0, C, cols, cmask)
    at, mask = tile(tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M), M, C, cols, cmask)
    v = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(dy_ptr + at, mask=mask, other=0.0).to(tl.float32)
    z = normalised(v, mean, per_channel(stats_ptr, 2, C, cols, cmask), per_channel(stats_ptr, 3, C, cols, cmask))
    g = tl.where(passes(z.to(dy_ptr.dtype.element_ty).to(tl.float32), lo, hi, has_act), g, 0.0)
    k1 = per_channel(grads_ptr, 2, C, cols, cmask)[None, :]
    k2 = per_channel(grads_ptr, 3, C, cols, cmask)[None, :]
    k3 = per_channel(grads_ptr, 4, C, cols, cmask)[None, :]
    tl.store(dx_ptr + at, (g * k1 + (v - mean[None, :]) * k2 + k3).to(dx_ptr.dtype.element_ty), mask=mask)


KERNELS = {"forward_sums": forward_sums, "forward_finish": forward_finish, "forward_apply": forward_apply,
           "backward_sums": backward_sums, "backward_finish": backward_finish, "backward_apply": backward_apply}
