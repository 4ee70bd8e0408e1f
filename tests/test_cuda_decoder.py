"""The decoder's upsampling in autocast's dtype: the same network, the same numbers."""

import copy
import pickle

import numpy as np
import pytest
import torch

from napari_calcinosis import load_model, save_model
from napari_calcinosis import _cuda_decoder
from napari_calcinosis._cuda_decoder import (
    _UpsampleInInputDtype,
    _UpsampleIntoJoin,
    restore_decoder,
    upsample_in_input_dtype,
)
from napari_calcinosis.segment import PhalanxModel, new_model


def _changed(net, cls=_UpsampleInInputDtype):
    return sum(type(m) is cls for m in net.modules())


def _pair(device="cpu"):
    torch.manual_seed(0)
    ref = new_model().network.to(device).train()
    net = copy.deepcopy(ref)
    assert upsample_in_input_dtype(net, join=False) == 4  # the four decoder blocks of the depth-4 U-Net
    assert upsample_in_input_dtype(net, join=False) == 0  # already done: nothing changed twice
    return ref, net


def _forward_backward(nets, x, dtype=None, device="cpu"):
    """Each network's output on ``x`` (in autocast's ``dtype`` when given), after its backward pass."""
    outs = []
    for n in nets:
        with torch.autocast(device, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = n(x)
        out.float().square().mean().backward()
        outs.append(out)
    return outs


@pytest.mark.parametrize("autocast", [None, torch.bfloat16, torch.float16])
def test_changed_blocks_give_the_same_outputs_and_gradients(autocast):
    # smp's own forward against ours, in train mode (batch norm on batch statistics), with and
    # without autocast: identical outputs and gradients, so the copied forward is smp's.
    ref, net = _pair()
    x = torch.randn(2, 1, 64, 96)
    outs = _forward_backward((ref, net), x, autocast)
    assert outs[0].dtype == outs[1].dtype == (autocast or torch.float32)
    assert float(outs[0].detach().float().abs().max()) > 0.1
    assert torch.equal(outs[0], outs[1])
    compared = 0
    for (name, p), q in zip(ref.named_parameters(), net.parameters()):
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), name
            compared += 1
    assert compared > 100


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_same_numbers_as_upsampling_in_float32(dtype):
    # What CUDA autocast does by itself (upsampling in float32, the skip joined in float32, the
    # next convolution casting back down), written out so that the CPU runs it: outputs and
    # gradients are bit-identical to the changed blocks', which upsample in the autocast dtype.
    import torch.nn.functional as F

    from napari_calcinosis._cuda_decoder import _BLOCK

    class AsCudaAutocast(_BLOCK):
        def forward(self, feature_map, target_height, target_width, skip_connection=None):
            feature_map = F.interpolate(feature_map.float(), size=(target_height, target_width), mode="nearest")
            if skip_connection is not None:
                feature_map = self.attention1(torch.cat([feature_map, skip_connection], dim=1))
            return self.attention2(self.conv2(self.conv1(feature_map)))

    ref, net = _pair()
    for m in ref.modules():
        if type(m) is _BLOCK:
            m.__class__ = AsCudaAutocast
    x = torch.randn(2, 1, 64, 96)
    outs = _forward_backward((ref, net), x, dtype)
    assert torch.equal(outs[0], outs[1])
    grads = [(p.grad, q.grad) for p, q in zip(ref.parameters(), net.parameters()) if p.grad is not None]
    assert len(grads) > 100 and all(torch.equal(a, b) for a, b in grads)


def test_changed_network_saves_copies_pickles_and_restores(tmp_path):
    ref, net = _pair()
    assert list(net.state_dict()) == list(ref.state_dict())  # the same weights under the same names
    assert _changed(pickle.loads(pickle.dumps(net))) == 4
    model = PhalanxModel(net, new_model().card)
    loaded = load_model(save_model(model, tmp_path / "m.safetensors"))  # on the CPU: smp's blocks
    assert _changed(loaded.network) == 0
    x = torch.randn(1, 1, 48, 64)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.network.eval()(x).numpy(), net.eval()(x).numpy())
    model.to("cpu")  # the CPU needs no change: moving there undoes it
    assert _changed(net) == 0
    restore_decoder(net)  # restoring twice is harmless


def test_other_interpolation_is_left_alone():
    # Bilinear upsampling computes new values: in float16 it would round them, so it keeps
    # autocast's float32.
    import segmentation_models_pytorch as smp

    net = smp.Unet("mobilenet_v2", encoder_weights=None, encoder_depth=4, decoder_channels=[64, 48, 32, 16],
                   in_channels=1, classes=1, decoder_interpolation="bilinear")
    assert upsample_in_input_dtype(net) == 0


def _counting_joins(monkeypatch):
    """Count the decoder blocks that took the direct join (not smp's route)."""
    calls = []
    join = _cuda_decoder._UpsampleJoin

    class Counting:
        @staticmethod
        def apply(*args):
            calls.append(args[1] is not None)
            return join.apply(*args)

    monkeypatch.setattr(_cuda_decoder, "_UpsampleJoin", Counting)
    return calls


@pytest.mark.parametrize("autocast", [None, torch.bfloat16, torch.float16])
def test_join_written_directly_gives_the_same_outputs_and_gradients(autocast, monkeypatch):
    # The upsampled map written straight into the channels-last join against smp's
    # interpolate + cat, in train mode: identical outputs; in bfloat16 and float16 identical
    # gradients (four half-precision values sum exactly in float); in float32 the four values
    # may sum in another order, so the gradients agree to float32's rounding, checked against
    # a float64 run of smp's network.
    calls = _counting_joins(monkeypatch)
    torch.manual_seed(0)
    ref = new_model().network.train().to(memory_format=torch.channels_last)
    net = copy.deepcopy(ref)
    assert upsample_in_input_dtype(net, join=True) == 4
    assert _changed(net, _UpsampleIntoJoin) == 4 and upsample_in_input_dtype(net, join=True) == 0
    x = torch.randn(2, 1, 64, 96).contiguous(memory_format=torch.channels_last)
    outs = _forward_backward((ref, net), x, autocast)
    assert calls == [True, True, True, False]  # three joins with a skip connection, then the last upsampling
    assert outs[1].is_contiguous(memory_format=torch.channels_last)
    assert float(outs[0].detach().float().abs().max()) > 0.1
    assert torch.equal(outs[0], outs[1])
    pairs = [(name, p.grad, q.grad) for (name, p), q in zip(ref.named_parameters(), net.parameters())
             if p.grad is not None]
    assert len(pairs) > 100
    if autocast is not None:
        assert all(torch.equal(a, b) for _, a, b in pairs)
        return
    exact = copy.deepcopy(ref).double()
    exact.zero_grad()
    exact(x.double()).square().mean().backward()
    exact_grads = dict((name, p.grad) for name, p in exact.named_parameters())
    largest = max(float(a.norm()) for _, a, _ in pairs)
    for name, a, b in pairs:
        e = exact_grads[name].float()
        # ours is as near the float64 gradient as smp's float32 one is, to float32's rounding
        assert float((b - e).norm()) <= 1.05 * float((a - e).norm()) + 1e-6 * largest, name


def test_join_falls_back_where_it_cannot_write_directly(monkeypatch):
    # An image whose sides do not halve evenly (the decoder upsamples 25 to 50 but 13 to 25),
    # and a network left in NCHW: smp's own route, the same numbers.
    calls = _counting_joins(monkeypatch)
    torch.manual_seed(0)
    ref = new_model().network.eval()
    net = copy.deepcopy(ref)
    upsample_in_input_dtype(net, join=True)
    with torch.no_grad():
        x = torch.randn(1, 1, 100, 72)
        assert torch.equal(ref(x), net(x))  # NCHW: never joined directly
        assert calls == []
        ref, net = ref.to(memory_format=torch.channels_last), net.to(memory_format=torch.channels_last)
        x = torch.randn(1, 1, 200, 104).contiguous(memory_format=torch.channels_last)  # 13 -> 25 -> 50 -> 100 -> 200
        assert torch.equal(ref(x), net(x))
    assert calls == [True, True, False]  # the 13 -> 25 block took smp's route


def test_join_is_a_switch_on_the_changed_blocks():
    # On by default since a GPU measured it (2026-11-27): a fresh network's blocks join directly
    fresh = new_model().network
    assert upsample_in_input_dtype(fresh) == 4 and _changed(fresh, _UpsampleIntoJoin) == 4
    ref, net = _pair()
    assert upsample_in_input_dtype(net, join=True) == 4
    assert _changed(net) == 0 and _changed(net, _UpsampleIntoJoin) == 4
    assert upsample_in_input_dtype(net, join=False) == 4  # back to upsampling in the input dtype only
    assert _changed(net) == 4
    restore_decoder(net)
    assert _changed(net) == 0 and _changed(net, _UpsampleIntoJoin) == 0
    assert list(net.state_dict()) == list(ref.state_dict())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_on_cuda_the_join_gives_the_same_training_step(dtype):
    # On CUDA, against the route the network takes now: the same outputs, and the same
    # gradients to the last bit of the half-precision sums.
    torch.manual_seed(0)
    ref = new_model().network.to("cuda").train().to(memory_format=torch.channels_last)
    net = copy.deepcopy(ref)
    upsample_in_input_dtype(ref, join=False)
    upsample_in_input_dtype(net, join=True)
    x = torch.randn(4, 1, 128, 160, device="cuda").contiguous(memory_format=torch.channels_last)
    outs = _forward_backward((ref, net), x, dtype, "cuda")
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-2, atol=1e-2)
    for (name, p), q in zip(ref.named_parameters(), net.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=2e-2, atol=1e-3 * float(p.grad.abs().max()) + 1e-6,
                                       msg=name)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_on_cuda_the_decoder_convolutions_get_autocast_dtype(dtype):
    # The premise: CUDA autocast upsamples in float32, so each decoder block's first
    # convolution is fed float32; changed, it is fed the autocast dtype, and the output is the same.
    ref, net = _pair("cuda")
    seen = {"ref": [], "net": []}
    for key, n in (("ref", ref), ("net", net)):
        for block in n.decoder.blocks:
            block.conv1.register_forward_pre_hook(lambda m, args, key=key: seen[key].append(args[0].dtype))
    x = torch.randn(2, 1, 64, 96, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=dtype):
        a, b = ref.to(memory_format=torch.channels_last)(x), net.to(memory_format=torch.channels_last)(x)
    assert set(seen["ref"]) == {torch.float32}
    assert set(seen["net"]) == {dtype}
    torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)  # cuDNN may pick other kernels for other inputs
