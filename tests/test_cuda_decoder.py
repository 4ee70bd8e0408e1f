"""The decoder's upsampling in autocast's dtype: the same network, the same numbers."""

import copy
import pickle

import numpy as np
import pytest
import torch

from napari_calcinosis import load_model, save_model
from napari_calcinosis._cuda_decoder import _UpsampleInInputDtype, restore_decoder, upsample_in_input_dtype
from napari_calcinosis.segment import PhalanxModel, new_model


def _changed(net):
    return sum(type(m) is _UpsampleInInputDtype for m in net.modules())


def _pair(device="cpu"):
    torch.manual_seed(0)
    ref = new_model().network.to(device).train()
    net = copy.deepcopy(ref)
    assert upsample_in_input_dtype(net) == 4  # the four decoder blocks of the depth-4 U-Net
    assert upsample_in_input_dtype(net) == 0  # already done: nothing changed twice
    return ref, net


@pytest.mark.parametrize("autocast", [None, torch.bfloat16, torch.float16])
def test_changed_blocks_give_the_same_outputs_and_gradients(autocast):
    # smp's own forward against ours, in train mode (batch norm on batch statistics), with and
    # without autocast: identical outputs and gradients, so the copied forward is smp's.
    ref, net = _pair()
    x = torch.randn(2, 1, 64, 96)
    outs = []
    for n in (ref, net):
        with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            out = n(x)
        out.float().square().mean().backward()
        outs.append(out)
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
    outs = []
    for n in (ref, net):
        with torch.autocast("cpu", dtype=dtype):
            out = n(x)
        out.float().square().mean().backward()
        outs.append(out)
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
