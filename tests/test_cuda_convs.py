"""The plan-free 1 x 1 and depthwise convolutions: the same network, the same weights, the same maths."""

import copy
import warnings

import numpy as np
import pytest
import torch

import napari_calcinosis.train as train_module
from napari_calcinosis import load_model, save_model
from napari_calcinosis import _cuda_convs
from napari_calcinosis._cuda_convs import (_PLAN_FREE_CLASSES, autotune_dense_convs, pad_thin_convs,
                                            plan_free_for_a_while, plan_free_convs, restore_convs)
from napari_calcinosis.segment import PhalanxModel, new_model


def _kinds(net):
    pointwise = depthwise = 0
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            pointwise += m.kernel_size == (1, 1)
            depthwise += m.groups > 1 and m.groups == m.in_channels
    return pointwise, depthwise


def _two_networks(channels_last, device="cpu", dtype=torch.float32, train=False):
    """The same fresh U-Net twice: as built (cuDNN's layers on a GPU) and with plan-free layers."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ref = new_model().network.to(device, dtype).train(train).to(memory_format=fmt)
    net = copy.deepcopy(ref)
    assert plan_free_convs(net) == 51
    return ref, net, fmt


def _grads_agree(ref, net, rel, floor=1e-14):
    """Compare every parameter's gradient of two twin networks, each to ``rel`` of its largest
    value (``floor`` for gradients that are zero but for rounding: a batch norm's bias before
    another batch norm); returns how many were compared."""
    compared = 0
    for (name, p), q in zip(ref.named_parameters(), net.parameters()):
        if p.grad is None:  # layers past encoder depth 4 take no part
            assert q.grad is None, name
            continue
        assert float((p.grad - q.grad).abs().max()) <= rel * float(p.grad.abs().max()) + floor, name
        compared += 1
    return compared


@pytest.mark.parametrize("channels_last", [False, True])
def test_plan_free_layers_give_the_same_outputs_and_gradients(channels_last):
    # float64 and eval mode: the two routes must agree to rounding, weights and input alike
    ref, net, fmt = _two_networks(channels_last, dtype=torch.float64)
    assert sum(_kinds(ref)) == 51  # every 1 x 1 and depthwise layer, none else
    assert plan_free_convs(net) == 0  # already done: nothing patched twice
    x = torch.randn(2, 1, 64, 96, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().contiguous(memory_format=fmt).requires_grad_()
    a, b = ref(x_ref), net(x.contiguous(memory_format=fmt))
    assert float(a.detach().abs().max()) > 0.1
    np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=0, atol=1e-10)
    (a.square().mean() + a.mean()).backward()
    (b.square().mean() + b.mean()).backward()
    np.testing.assert_allclose(x.grad.numpy(), x_ref.grad.numpy(), rtol=1e-8, atol=1e-14)
    assert _grads_agree(ref, net, 1e-8, floor=0.0) > 100


def _routed(net):
    return sum(type(m) in _PLAN_FREE_CLASSES for m in net.modules())


def test_patched_model_saves_loads_and_restores(tmp_path):
    torch.manual_seed(1)
    model = new_model()
    keys = list(model.network.state_dict())
    plan_free_convs(model.network)
    assert list(model.network.state_dict()) == keys  # the same weights under the same names
    path = save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(path)  # on the CPU: cuDNN's layers
    assert _routed(loaded.network) == 0
    x = torch.randn(1, 1, 48, 64)
    with torch.no_grad():
        np.testing.assert_allclose(loaded.network.eval()(x).numpy(), model.network.eval()(x).numpy(), atol=1e-5)
    PhalanxModel(model.network, model.card).to("cpu")
    assert _routed(model.network) == 0
    restore_convs(model.network)  # restoring twice is harmless


def test_a_copy_of_a_patched_network_computes_with_its_own_weights(tmp_path):
    # deepcopy and pickling (torch.save of the module) must give independent, working networks
    ref, net, _ = _two_networks(False, dtype=torch.float64)
    for copy_of in (copy.deepcopy, lambda n: _pickled(n, tmp_path)):
        twin = copy_of(net)
        assert _routed(twin) == 51
        with torch.no_grad():
            for p in twin.parameters():
                p.add_(0.01 * torch.randn_like(p))
        plain = copy.deepcopy(twin)
        restore_convs(plain)
        x = torch.randn(1, 1, 64, 64, dtype=torch.float64)
        np.testing.assert_allclose(twin.eval()(x).detach().numpy(), plain.eval()(x).detach().numpy(), atol=1e-10)
        twin(x).sum().backward()
        assert all(p.grad is None for p in net.parameters())  # the gradients went to the copy


def _pickled(net, tmp_path):
    torch.save(net, tmp_path / "net.pt")
    return torch.load(tmp_path / "net.pt", weights_only=False)


def test_depthwise_layers_put_back_every_cudnn_setting_even_from_two_threads():
    # cuDNN's switch is process-wide: after depthwise layers ran, in any interleaving of two
    # threads, every setting must be as it was.
    import threading

    _, net, _ = _two_networks(True)
    saved = (torch.backends.cudnn.enabled, torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, True
    try:
        x = torch.randn(2, 1, 64, 64).contiguous(memory_format=torch.channels_last)

        def work():
            for _ in range(3):
                net(x).mean().backward()

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert torch.backends.cudnn.enabled
        assert torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.enabled, torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def test_plan_free_layers_under_cpu_bf16_autocast():
    # The autocast branch of the depthwise layers: inputs cast to bf16 as autocast would cast them
    ref, net, _ = _two_networks(True)
    x = torch.rand(2, 1, 64, 64).mul(2).sub(1).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = ref(x), net(x)
        layer = next(m for m in net.modules() if type(m) is _PLAN_FREE_CLASSES[1])
        y = layer(torch.randn(1, layer.in_channels, 16, 16))
    assert y.dtype == a.dtype == b.dtype == torch.bfloat16
    assert float((a.float() - b.float()).norm() / a.float().norm()) < 0.05


@pytest.mark.parametrize("autocast", [None, torch.bfloat16])
def test_autotuned_dense_layers_give_the_same_outputs_and_gradients(autocast, monkeypatch):
    # The ten dense k x k layers on their own Function (the autotuner on around them alone)
    # against nn.Conv2d, in train mode, channels-last, with and without autocast: the same
    # convolution, so identical outputs and gradients. The flag is on inside those layers only.
    seen = []
    conv2d = _cuda_convs.F.conv2d

    def watching(*args, **kwargs):
        seen.append(torch.backends.cudnn.benchmark)
        return conv2d(*args, **kwargs)

    monkeypatch.setattr(_cuda_convs.F, "conv2d", watching)
    torch.manual_seed(0)
    ref = new_model().network.train().to(memory_format=torch.channels_last)
    net = copy.deepcopy(ref)
    assert autotune_dense_convs(net) == 10 and autotune_dense_convs(net) == 0
    assert sum(type(m) is _cuda_convs._AutotunedConv2d for m in net.modules()) == 10
    assert all(m.kernel_size == (3, 3) and m.groups == 1 for m in net.modules() if type(m) is _cuda_convs._AutotunedConv2d)
    x = torch.randn(2, 1, 64, 96).contiguous(memory_format=torch.channels_last)
    outs = []
    for n in (ref, net):
        with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            out = n(x)
        out.float().square().mean().backward()
        outs.append(out)
    # every convolution of both passes goes through F.conv2d; the ten dense ones of ours with the flag on
    assert len(seen) % 2 == 0 and seen[: len(seen) // 2].count(True) == 0 and seen.count(True) == 10
    assert torch.backends.cudnn.benchmark is False
    assert torch.equal(outs[0], outs[1]) and float(outs[0].detach().float().abs().max()) > 0.1
    pairs = [(name, p.grad, q.grad) for (name, p), q in zip(ref.named_parameters(), net.parameters()) if p.grad is not None]
    assert len(pairs) > 100 and all(torch.equal(a, b) for _, a, b in pairs)
    restore_convs(net)
    assert not any(type(m) is _cuda_convs._AutotunedConv2d for m in net.modules())
    assert list(net.state_dict()) == list(ref.state_dict())


@pytest.mark.parametrize("channels_last", [False, True])
def test_channel_padded_layers_give_the_same_outputs_and_gradients(channels_last):
    # The one-channel first layer and last layer, run with zero-padded channels, against
    # nn.Conv2d: float64, train mode, the same outputs and gradients to rounding, alone and with
    # the autotuned dense layers; the weights keep their names and shapes.
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ref = new_model().network.to(torch.float64).train().to(memory_format=fmt)
    net = copy.deepcopy(ref)
    assert pad_thin_convs(net) == 2 and pad_thin_convs(net) == 0
    padded = [name for name, m in net.named_modules() if type(m) is _cuda_convs._ChannelPaddedConv2d]
    assert padded == ["encoder.features.0.0", "segmentation_head.0"]
    x = torch.randn(2, 1, 64, 96, dtype=torch.float64).contiguous(memory_format=fmt)
    # the convolutions really run on 8 channels, in the network's layout (a one-channel image
    # is in both layouts: the padded input must follow the network, not flip it)
    seen = []
    conv2d = _cuda_convs.F.conv2d

    def watching(inp, weight, *args, **kwargs):
        seen.append((tuple(inp.shape[1:2]) + tuple(weight.shape[:2]),
                     inp.is_contiguous(memory_format=torch.channels_last) and not inp.is_contiguous()))
        return conv2d(inp, weight, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_cuda_convs.F, "conv2d", watching)
        with torch.no_grad():
            first = net(x)
    assert seen[0] == ((8, 32, 8), channels_last) and seen[-1] == ((16, 8, 16), channels_last)  # first, last layer
    assert {layout for _, layout in seen} == {channels_last}  # every layer in the network's layout
    assert first.is_contiguous(memory_format=torch.channels_last) == channels_last or first.shape[1] == 1
    assert autotune_dense_convs(net) == 10  # the padded two among them, still padded
    assert sum(type(m) is _cuda_convs._AutotunedChannelPaddedConv2d for m in net.modules()) == 2
    a, b = ref(x), net(x)
    assert a.shape == b.shape == (2, 1, 64, 96) and float(a.detach().abs().max()) > 0.1
    np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=0, atol=1e-10)
    (a.square().mean() + a.mean()).backward()
    (b.square().mean() + b.mean()).backward()
    assert _grads_agree(ref, net, 1e-8) > 100
    for name in padded:  # the padded layers' own weight gradients, not zero
        assert float(net.get_submodule(name).weight.grad.abs().max()) > 1e-6
    restore_convs(net)
    assert all(type(m) is torch.nn.Conv2d for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}


def test_channel_padded_layers_under_cpu_bf16_autocast():
    # Under autocast the padded layers cast as autocast would: bf16 out, close to nn.Conv2d's
    torch.manual_seed(0)
    ref = new_model().network.train().to(memory_format=torch.channels_last)
    net = copy.deepcopy(ref)
    pad_thin_convs(net)
    x = torch.rand(2, 1, 64, 64).mul(2).sub(1).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = ref(x), net(x)
    assert a.dtype == b.dtype == torch.bfloat16
    assert float((a.float() - b.float()).norm() / a.float().norm()) < 0.02


def test_the_encoder_stops_at_the_last_layer_the_decoder_uses():
    # smp 0.6's mobilenet_v2 encoder ran all 19 feature layers at depth 4; ours stops after
    # layer 13 (the decoder's deepest input) with the same output and the same weights.
    from napari_calcinosis.segment import _stop_encoder_at_its_depth

    torch.manual_seed(0)
    net = new_model().network.eval()
    smp_class = type(net.encoder).__mro__[1]
    assert type(net.encoder).__name__ == "MobileNetV2EncoderToDepth" and smp_class.__name__ == "MobileNetV2Encoder"
    ran = []
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: ran.append(k)) for k, m in enumerate(net.encoder.features)]
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        ours = net(x)
        assert ran == list(range(14))
        ran.clear()
        net.encoder.__class__ = smp_class  # smp's own forward
        theirs = net(x)
        assert ran[:14] == list(range(14))  # 0.6 runs all 19
    for h in hooks:
        h.remove()
    assert torch.equal(ours, theirs)
    assert _stop_encoder_at_its_depth(net.encoder) and not _stop_encoder_at_its_depth(net.encoder)
    assert type(net.encoder).__name__ == "MobileNetV2EncoderToDepth"
    with warnings.catch_warnings():  # TorchScript still compiles it (smp's forward is written for that too)
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(net)
    with torch.no_grad():
        assert torch.equal(scripted(x), ours)


def test_padding_only_for_long_half_precision_cuda_runs(monkeypatch):
    # The one-channel layers are padded where it was measured to pay: a long CUDA run in half
    # precision; not the short plan-free runs, not float32, not the CPU, not when switched off.
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert train_module._pads_thin_convs(cuda, False, torch.float16)
    assert train_module._pads_thin_convs(cuda, False, torch.bfloat16)
    assert not train_module._pads_thin_convs(cuda, True, torch.float16)
    assert not train_module._pads_thin_convs(cuda, False, None)
    assert not train_module._pads_thin_convs(cpu, False, torch.bfloat16)
    monkeypatch.setattr(train_module, "CUDA_PAD_THIN_CONVS", False)
    assert not train_module._pads_thin_convs(cuda, False, torch.float16)


def test_plan_free_only_for_short_runs(monkeypatch):
    # 200 steps of 64 crops of 256²: the 10-s target's run; the paper's 1,000 steps of 60 x 512²
    assert train_module._plan_free(200, 64, 256)
    assert not train_module._plan_free(1000, 60, 512)
    monkeypatch.setattr(train_module, "PLAN_FREE_CONVS", True)
    assert train_module._plan_free(1000, 60, 512)
    monkeypatch.setattr(train_module, "PLAN_FREE_CONVS", False)
    assert not train_module._plan_free(200, 64, 256)


def test_validation_routes_around_cudnn_for_a_while_and_puts_every_layer_back():
    # A long run's network (every layer on cuDNN, the one-channel layers padded, batch norm
    # fused) validates with its 1 x 1 and depthwise layers routed: the same Dice as without,
    # and afterwards each layer has the class it had, the padded and fused ones too; also
    # when validation fails inside the block.
    from napari_calcinosis._augment_torch import DeviceValidator
    from napari_calcinosis._cuda_batchnorm import fuse_batchnorm
    from napari_calcinosis.phantom import make_phantom
    from napari_calcinosis.train import TrainingSample

    model = load_model(device="cpu")
    net = model.network.to(memory_format=torch.channels_last).eval()
    assert pad_thin_convs(net) == 2 and fuse_batchnorm(net) == 60
    before = [type(m) for m in net.modules()]
    val = [TrainingSample(p.image_hu, p.bone_mask, p.spacing_mm)
           for p in (make_phantom(seed, max_size_px=256) for seed in (105, 106))]
    validate = DeviceValidator(val, model.input, "cpu")
    cudnn_route = validate(net)
    with plan_free_for_a_while(net) as n:
        assert n == 51 and sum(type(m) in _PLAN_FREE_CLASSES for m in net.modules()) == 51
        routed = validate(net)
    assert [type(m) for m in net.modules()] == before
    assert np.allclose(routed, cudnn_route, atol=1e-3) and min(routed) > 0.9
    with pytest.raises(RuntimeError, match="validation failed"):
        with plan_free_for_a_while(net):
            raise RuntimeError("validation failed")
    assert [type(m) for m in net.modules()] == before


def test_validation_off_cudnn_only_for_long_cuda_runs_that_validate_a_few_hundred_times_at_most():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert train_module._validates_plan_free(cuda, False, True, 500, 100)  # the paper's workload: 5 validations
    assert train_module._validates_plan_free(cuda, False, True, 200, 1)
    assert not train_module._validates_plan_free(cuda, False, True, 201, 1)  # each validation pays the slower layers
    assert train_module._validates_plan_free(cuda, False, True, 1000, 5)
    assert not train_module._validates_plan_free(cuda, True, True, 20, 1)  # a short run: plan-free throughout
    assert not train_module._validates_plan_free(cuda, False, False, 20, 1)  # validated through segment_phalanges
    assert not train_module._validates_plan_free(cpu, False, True, 20, 1)


@pytest.mark.gpu
@pytest.mark.parametrize("channels_last", [False, True])
def test_plan_free_layers_on_cuda(channels_last, no_tf32):
    # On the GPU in float32 (TF32 off, eval-mode batch norm): the same maths as cuDNN's layers,
    # outputs and every gradient, in both memory layouts.
    ref, net, fmt = _two_networks(channels_last, device="cuda")
    x = torch.rand(4, 1, 128, 160, device="cuda").mul(2).sub(1).contiguous(memory_format=fmt)
    a, b = ref(x), net(x)
    assert float((a - b).abs().max() / a.abs().max()) < 1e-4
    a.square().mean().backward()
    b.square().mean().backward()
    assert _grads_agree(ref, net, 1e-3, floor=1e-12) > 100


@pytest.mark.gpu
def test_channel_padded_layers_on_cuda(no_tf32):
    # On the GPU, channels-last: float32 (TF32 off) the same maths as cuDNN's layers, outputs
    # and gradients; float16 autocast, as training runs them, close and in float16. On an H200
    # the outputs agreed to 4e-7; the gradient furthest off was the first batch norm's weight,
    # 2.5e-3 of its largest value (sums that cancel, rounded in another order), and the batch
    # norm biases that are zero but for rounding differed by 5e-9.
    torch.manual_seed(0)
    ref = new_model().network.cuda().train().to(memory_format=torch.channels_last)
    net = copy.deepcopy(ref)
    assert pad_thin_convs(net) == 2
    x = torch.rand(4, 1, 128, 160, device="cuda").mul(2).sub(1).contiguous(memory_format=torch.channels_last)
    a, b = ref(x), net(x)
    assert float((a - b).detach().abs().max() / a.detach().abs().max()) < 1e-4
    a.square().mean().backward()
    b.square().mean().backward()
    assert _grads_agree(ref, net, 1e-2, floor=1e-7) > 100
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        a, b = ref(x), net(x)
    assert a.dtype == b.dtype == torch.float16
    assert float((a.float() - b.float()).norm() / a.float().norm()) < 0.03  # 0.011 on an H200


@pytest.mark.gpu
@pytest.mark.parametrize("channels_last", [False, True])
def test_plan_free_layers_on_cuda_in_bf16(channels_last):
    # As training runs them: bf16 autocast, train-mode batch norm; the output agrees with
    # cuDNN's layers to bf16 rounding (amplified by batch norm) and keeps its layout.
    ref, net, fmt = _two_networks(channels_last, device="cuda", train=True)
    x = torch.rand(8, 1, 128, 128, device="cuda").mul(2).sub(1).contiguous(memory_format=fmt)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        a, b = ref(x).float(), net(x).float()
    assert float((a - b).norm() / a.norm()) < 0.1
    with torch.autocast("cuda", dtype=torch.bfloat16):
        features = net.encoder(x)[-1]  # 96 channels after plan-free layers: the layout the weights have
    assert features.dtype == torch.bfloat16
    assert features.is_contiguous(memory_format=fmt)


def test_a_model_routed_for_cuda_trains_on_the_cpu_with_plain_layers(tmp_path):
    # A model loaded on CUDA carries the plan-free layers; fine-tuned on the CPU it trains with
    # torch's own Conv2d, on a copy: the caller's model is left as it was.
    from napari_calcinosis import make_phantom
    from napari_calcinosis.train import train_segmenter

    model = new_model()
    plan_free_convs(model.network)  # as load_model(device="cuda") leaves it
    routed = _routed(model.network)
    p = make_phantom(11, max_size_px=160)
    seen = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: seen.append(type(m)) if isinstance(m, torch.nn.Conv2d) else None
    )
    try:
        train_segmenter(tmp_path / "m.safetensors", samples=[(p.image_hu, p.bone_mask, p.spacing_mm)] * 2,
                        init_model=model, epochs=1, steps_per_epoch=1, batch_size=2, crop_px=64, device="cpu")
    finally:
        hook.remove()
    assert torch.nn.Conv2d in seen and not set(seen) & set(_PLAN_FREE_CLASSES)
    assert routed > 0 and _routed(model.network) == routed
