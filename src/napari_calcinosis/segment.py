"""Phalanx segmentation with a U-Net (segmentation-models-pytorch).

The network sees one channel: the image in HU put through the bone window (W1500/L450, the
window the paper's images were read in) and scaled to [-1, 1]. Images are resampled to the
model's working pixel spacing before inference, so one model serves scanners and exports of
any pixel spacing, and its probability map is resampled back onto the original pixel grid.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ._errors import AS_IMAGE, CalcinosisError, refuse_layer
from .grow import DEFAULT_MIN_AREA_MM2
from .io import (MAX_PIXEL_SIZE_MM, CalcinosisImage, _one_line, check_field_of_view, hu_to_window_unit,
                 refuse_non_finite)
from .subtract import (OUTSIDE_FINGER_AIR, _spacing_pair, air_around, label_bone_pieces, median3_at_least,
                       share_around)

__all__ = [
    "PhalanxModel",
    "BoneSegmentation",
    "build_network",
    "load_model",
    "save_model",
    "segment_phalanges",
    "select_device",
    "bundled_model_path",
    "dice",
]

_MODEL_DIR = Path(__file__).parent / "models"
BUNDLED_MODEL = "phalanx_unet"

DEFAULT_ARCHITECTURE = {
    "library": "segmentation-models-pytorch",
    "class": "Unet",
    "encoder_name": "mobilenet_v2",
    "encoder_depth": 4,
    "decoder_channels": [64, 48, 32, 16],
    "in_channels": 1,
    "classes": 1,
}
DEFAULT_INPUT = {
    "normalisation": "clip((HU - (level - width/2)) / width, 0, 1) * 2 - 1",
    "window_level_hu": 450.0,
    "window_width_hu": 1500.0,
    # 0.25 mm sits in the middle of the 0.15-0.35 mm range of finger DECT reformats: coarse
    # enough for fast CPU inference, fine enough for a 0.5 mm cortex to span two pixels.
    "working_spacing_mm": 0.25,
    "pad_multiple": 16,
    "pad_mode": "reflect",
}


def bundled_model_path() -> Path:
    """Path of the model shipped inside the package (safetensors; its card sits beside it)."""
    return _MODEL_DIR / f"{BUNDLED_MODEL}.safetensors"


# How many hex digits of a model file's SHA-256 results give: enough to tell two files apart
# (collisions at 48 bits need millions of models), short enough to read in a table.
SHA256_DIGITS = 12


def model_label(model) -> str:
    """How results name the network that segmented the bone: ``bundled <name>`` for the shipped
    model, else its file's absolute path; then the start of the file's SHA-256, so that a model
    retrained into the same file, or the bundled model of another release, reads as another
    model. A network never saved to a file says so."""
    path, sha256 = getattr(model, "path", None), getattr(model, "sha256", None)
    if path is None:
        return f"{getattr(model, 'card', {}).get('name') or 'a network'} in memory (not saved to a file)"
    name = (f"bundled {getattr(model, 'card', {}).get('name', BUNDLED_MODEL)}"
            if Path(path).resolve() == bundled_model_path().resolve() else str(Path(path).resolve()))
    return f"{name} (sha256 {sha256[:SHA256_DIGITS]})" if sha256 else name


def select_device(device: str = "auto"):
    """Resolve ``"auto"`` to CUDA, then Apple MPS, then CPU; check an explicit choice exists."""
    import torch

    given = device
    device = (device or "auto").lower()
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CalcinosisError("device 'cuda' was asked for but no CUDA GPU is available: use --device cpu or auto")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CalcinosisError("device 'mps' was asked for but Apple MPS is not available: use --device cpu or auto")
    if device not in ("cpu", "mps") and not re.fullmatch(r"cuda(:\d+)?", device):
        # 'cuda0', 'cuda:abc': torch's RuntimeError was a traceback on a GPU machine
        raise CalcinosisError(f"unknown device {given!r}: use auto, cpu, cuda, cuda:N (the GPU's number) or mps")
    count = torch.cuda.device_count() if ":" in device else 0
    if ":" in device and int(device.split(":")[1]) >= count:
        raise CalcinosisError(f"device {device!r} was asked for but this machine has {count} CUDA GPU(s), numbered "
                              f"from 0: use --device cuda, or cuda:0 to cuda:{count - 1}")
    return torch.device(device)


def warm_up(device: str = "auto") -> str:
    """Import the network library and start the device, so that pressing Train does not wait.

    Meant for a background thread (the Train widget calls it when it opens): importing
    segmentation-models-pytorch takes seconds, and so does starting CUDA, cuBLAS and cuDNN.
    Returns the device's name.
    """
    import torch

    _import_smp()
    dev = select_device(device)
    if dev.type == "cuda":
        a = torch.ones(64, 64, device=dev)
        (a @ a).sum().item()  # CUDA context and cuBLAS handle
        start_cudnn(dev)
    return str(dev)


def start_cudnn(device) -> None:
    """Load cuDNN on a CUDA ``device``: a small convolution and batch norm, forward and backward,
    channels-last in float16 and bfloat16 as training and inference run them (float32 on GPUs
    before Ampere, which train and infer in float32).

    cuDNN's libraries are hundreds of MB, loaded at the first convolution and the first batch
    norm of a process. Nothing shape-bound carries over from here: PyTorch keeps cuDNN's plans
    per thread and per shape, and no layer of the network has these shapes.
    """
    import torch

    dev = torch.device(device)
    if dev.type != "cuda" or not torch.backends.cudnn.is_available() or not torch.backends.cudnn.enabled:
        return
    for dtype in (torch.float16, torch.bfloat16) if cuda_bf16(dev) else (torch.float32,):
        x = torch.randn(2, 8, 16, 16, device=dev, dtype=dtype).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        conv = torch.nn.Conv2d(8, 8, 3, padding=1).to(dev, dtype).to(memory_format=torch.channels_last)
        norm = torch.nn.BatchNorm2d(8).to(dev)  # float32 weights, as under autocast
        norm(conv(x)).float().square().mean().backward()
    torch.cuda.synchronize(dev)


# The OpenGL drivers a process may have loaded, as /proc/self/maps names their libraries:
# Mesa's (llvmpipe under xvfb or without a GPU driver, and the hardware drivers) and NVIDIA's.
_MESA_GL_LIBRARIES = ("libGLX_mesa", "libLLVM", "libgallium", "_dri.so")
_NVIDIA_GL_LIBRARIES = ("libGLX_nvidia", "libnvidia-glcore")


def _gl_is_nvidias(maps: str | None = None) -> bool:
    """Whether this process draws with NVIDIA's OpenGL driver alone: one of its libraries is
    loaded and none of Mesa's (``maps``: the text of /proc/self/maps, read when not given;
    False where it cannot be read)."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return False
    lines = maps.splitlines()
    return (any(lib in line for line in lines for lib in _NVIDIA_GL_LIBRARIES)
            and not any(lib in line for line in lines for lib in _MESA_GL_LIBRARIES))


def _hide_triton_under_qt() -> None:
    """Keep triton out of a Qt (napari) process unless it draws with NVIDIA's OpenGL.

    torchvision imports triton, and importing triton after Mesa's software OpenGL (llvmpipe,
    as under xvfb or on machines without a GPU driver) has loaded its LLVM segfaults the
    process; napari loads it when it first draws. So in a Qt process where triton is not
    loaded yet, it is hidden (torch then treats it as absent, and batch norm is not fused:
    _cuda_batchnorm), unless NVIDIA's OpenGL driver is already drawing and Mesa's is not: then
    no Mesa LLVM is coming, and the Train widget gets triton. (Before anything has drawn,
    which driver will draw is not known: hidden.)
    """
    import sys

    qt_loaded = any(name in sys.modules for name in ("PyQt5.QtGui", "PyQt6.QtGui", "PySide2.QtGui", "PySide6.QtGui"))
    if qt_loaded and "triton" not in sys.modules and "torchvision" not in sys.modules and not _gl_is_nvidias():
        sys.modules["triton"] = None


def _import_smp():
    """segmentation-models-pytorch, imported with triton kept out of a Qt process."""
    _hide_triton_under_qt()
    import segmentation_models_pytorch as smp

    return smp


def build_network(architecture: dict | None = None):
    """A fresh smp U-Net; ``encoder_weights=None`` so nothing is ever downloaded."""
    smp = _import_smp()
    arch = dict(DEFAULT_ARCHITECTURE if architecture is None else architecture)
    if arch.get("class", "Unet") != "Unet":
        raise CalcinosisError(f"model architecture {arch.get('class')!r} is not supported (only Unet)")
    network = smp.Unet(
        encoder_name=arch["encoder_name"],
        encoder_depth=int(arch["encoder_depth"]),
        encoder_weights=None,
        decoder_channels=list(arch["decoder_channels"]),
        in_channels=int(arch["in_channels"]),
        classes=int(arch["classes"]),
    )
    _stop_encoder_at_its_depth(network.encoder)
    return network


_TO_DEPTH_CLASS = []


def _encoder_to_depth_class():
    """smp's ``MobileNetV2Encoder`` with a forward that stops at its depth (made once, on first
    use, since smp is imported lazily); None where smp has no such class."""
    if not _TO_DEPTH_CLASS:
        _import_smp()
        try:
            from segmentation_models_pytorch.encoders.mobilenet import MobileNetV2Encoder
        except ImportError:  # another layout of the library: nothing to change
            return None

        class MobileNetV2EncoderToDepth(MobileNetV2Encoder):
            def forward(self, x):
                features = [x]
                last = self._out_indexes[self._depth - 1]
                # no slice and no break: TorchScript can compile neither (smp's reason too)
                for i, module in enumerate(self.features):
                    if i <= last:
                        x = module(x)
                        if i in self._out_indexes:
                            features.append(x)
                return features

        # found by pickle, through __getattr__ below
        MobileNetV2EncoderToDepth.__module__, MobileNetV2EncoderToDepth.__qualname__ = __name__, "MobileNetV2EncoderToDepth"
        _TO_DEPTH_CLASS.append(MobileNetV2EncoderToDepth)
    return _TO_DEPTH_CLASS[0]


def __getattr__(name):
    if name == "MobileNetV2EncoderToDepth" and _encoder_to_depth_class() is not None:
        return _encoder_to_depth_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _stop_encoder_at_its_depth(encoder) -> bool:
    """Make a shallow mobilenet_v2 encoder stop after the last feature map the decoder uses.

    segmentation-models-pytorch 0.6's ``MobileNetV2Encoder.forward`` runs all 19 of its
    feature layers whatever ``encoder_depth`` says: at depth 4 the decoder's deepest input is
    layer 13's (1/16 of the image), yet layers 14-18 (up to 1,280 channels at 1/32) run on
    every image, in training and inference, and their output is thrown away. The class
    swapped in here stops at the last layer used: the same outputs, the same weights and
    ``state_dict`` keys (the unused layers stay, so every saved model still loads), less work.
    The unused layers' batch-norm statistics no longer change in training; they reach no output.
    Returns whether the encoder was changed (any other encoder is left as it is).
    """
    cls = _encoder_to_depth_class()
    if cls is None or type(encoder) is not cls.__mro__[1]:
        return False
    indexes, depth = getattr(encoder, "_out_indexes", None), getattr(encoder, "_depth", None)
    if indexes is None or not isinstance(depth, int) or not 1 <= depth < len(indexes):
        return False
    encoder.__class__ = cls
    return True


@dataclass
class PhalanxModel:
    """A U-Net with the card that says how to feed it.

    Attributes
    ----------
    network : torch.nn.Module
    card : dict
        The JSON model card: ``architecture``, ``input`` (normalisation, window, working spacing),
        ``training`` and ``validation``.
    path : Path or None
        Where the weights were loaded from.
    sha256 : str or None
        The SHA-256 of that file as it was loaded (``sha256sum`` gives the same), so that results
        name these weights, not whatever the file holds later.
    """

    network: object
    card: dict = field(default_factory=dict)
    path: Path | None = None
    sha256: str | None = None

    @property
    def input(self) -> dict:
        return {**DEFAULT_INPUT, **self.card.get("input", {})}

    @property
    def device(self):
        return next(self.network.parameters()).device

    def to(self, device):
        """Move the network to ``device``; on CUDA its 1 x 1 and depthwise layers skip cuDNN.

        cuDNN prepares kernels for every new image shape (about 1.5 s each on an H200); the
        plan-free layers (:mod:`napari_calcinosis._cuda_convs`) make that about 0.1 s. On CUDA
        the decoder also upsamples in autocast's dtype, not float32
        (:mod:`napari_calcinosis._cuda_decoder`): the same numbers, less memory traffic.
        """
        from ._cuda_convs import plan_free_convs, restore_convs
        from ._cuda_decoder import restore_decoder, upsample_in_input_dtype

        dev = select_device(device) if isinstance(device, str) else device
        self.network.to(dev)
        if dev.type == "cuda":
            plan_free_convs(self.network)
            upsample_in_input_dtype(self.network)
        else:
            restore_convs(self.network)
            restore_decoder(self.network)
        return self


def new_model(architecture: dict | None = None, input_spec: dict | None = None) -> PhalanxModel:
    arch = dict(DEFAULT_ARCHITECTURE if architecture is None else architecture)
    card = {"architecture": arch, "input": {**DEFAULT_INPUT, **(input_spec or {})}}
    return PhalanxModel(network=build_network(arch), card=card)


# Suffixes a model's file name may carry in place of .safetensors; any other dot in the name
# ("model.v1") is part of the name and .safetensors goes after it.
_MODEL_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin", ".json", ".onnx")


def model_file(path) -> Path:
    """Where a model named ``path`` is written: ``path`` itself when it ends in .safetensors,
    else with .safetensors in place of a model suffix (.pt, .json, ...) or after the name. The
    CLI, the Train widget and :func:`save_model` name a file alike (``model.v1`` and ``model.v2``
    are two models, not both ``model.safetensors``)."""
    path = Path(path)
    if path.suffix == ".safetensors" or path.name in ("", ".", ".."):  # a folder ("."): said by its user
        return path
    if path.suffix.lower() in _MODEL_SUFFIXES:
        return path.with_suffix(".safetensors")
    return path.with_name(path.name + ".safetensors")


def save_model(model: PhalanxModel, path, extra_card: dict | None = None) -> Path:
    """Write the weights as safetensors (float32) and the card as JSON beside them.

    The safetensors file carries the card in its metadata too, and :func:`load_model` reads
    that one: weights and card are one file, written atomically, so a run killed while saving
    leaves the previous model or the new one, never half a file nor new weights under an old
    card. The ``.json`` beside it, written second, is for people to read.
    """
    from safetensors.torch import save

    from ._atomic import atomic_write

    path = model_file(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.network.state_dict().items()}
    card = {**model.card, **(extra_card or {})}
    model.card = card
    text = json.dumps(card, indent=2, default=float) + "\n"
    # bytes, so the file gets the usual permissions (save_file makes it owner-only)
    data = save(state, metadata={_CARD_KEY: text})
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(text))
    model.path, model.sha256 = path, hashlib.sha256(data).hexdigest()  # results now name the file
    return path


_CARD_KEY = "napari_calcinosis_card"


def _raw_header(path: Path) -> tuple[int, bytes]:
    """A safetensors file's declared header length (-1 if implausible) and the header bytes read.

    The format is an 8-byte little-endian header length, a JSON header giving each tensor's
    byte range (and ``__metadata__``), then the data.
    """
    with open(path, "rb") as handle:
        head = handle.read(8)
        n_header = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < n_header < 100 * 1024 * 1024:
            return -1, b""
        return n_header, handle.read(n_header)


def _embedded_card(path: Path) -> dict | None:
    """The card stored in a safetensors file's metadata by :func:`save_model`, or None."""
    try:
        header = json.loads(_raw_header(path)[1].decode("utf-8"))
        card = json.loads(header["__metadata__"][_CARD_KEY])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None  # none stored (older models, the bundled one), or a damaged file: checked later
    return card if isinstance(card, dict) else None


_RETRAIN = "download it again, or train one with 'napari-calcinosis train'"


def _read_card(card_path: Path, weights_name: str) -> dict:
    """The JSON model card, or a CalcinosisError saying why it is unusable."""
    if not card_path.is_file():
        raise CalcinosisError(
            f"model card not found beside {weights_name}: expected {card_path.name} (written by 'napari-calcinosis "
            "train'); copy the .json that came with the model next to it"
        )
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CalcinosisError(f"model card {card_path} is unreadable or not JSON ({_one_line(exc)}): {_RETRAIN}") from exc
    if not isinstance(card, dict):
        raise CalcinosisError(f"model card {card_path} is not a napari-calcinosis model card (not a JSON object): {_RETRAIN}")
    return card


def _checked_architecture(card: dict, card_path: Path) -> dict:
    """The card's architecture, if it is one this package can build and feed."""
    arch = card.get("architecture")
    if arch is None:
        return dict(DEFAULT_ARCHITECTURE)
    if not isinstance(arch, dict) or arch.get("library", "segmentation-models-pytorch") != "segmentation-models-pytorch" \
            or arch.get("class", "Unet") != "Unet":
        what = f"{arch.get('library', '')} {arch.get('class', '')}".strip() if isinstance(arch, dict) else repr(arch)
        raise CalcinosisError(
            f"model card {card_path} describes a {what} network; napari-calcinosis runs only "
            f"segmentation-models-pytorch Unets: {_RETRAIN}"
        )
    missing = [k for k in ("encoder_name", "encoder_depth", "decoder_channels", "in_channels", "classes") if k not in arch]
    if missing:
        raise CalcinosisError(f"model card {card_path} lacks the architecture's {', '.join(missing)}: {_RETRAIN}")
    if arch["in_channels"] != 1 or arch["classes"] != 1:
        raise CalcinosisError(
            f"model card {card_path} describes a Unet with {arch['in_channels']} input channel(s) and {arch['classes']} "
            "class(es); the phalanx model takes one (HU through the bone window) and gives one (bone)"
        )
    return arch


# The ways np.pad may pad a model's input to its pad_multiple.
_PAD_MODES = ("reflect", "symmetric", "edge", "constant", "wrap", "mean", "median", "minimum", "maximum", "linear_ramp")


def _checked_input(card: dict, card_path: Path, arch: dict) -> None:
    """Refuse a card whose ``input`` (window, working spacing, padding) cannot feed the network:
    a hand-edited card broke every image of a batch with a traceback, or gave empty bone masks."""
    given = card.get("input", {})
    if not isinstance(given, dict):
        raise CalcinosisError(f"model card {card_path}: its 'input' is {given!r:.40}, not a table of the window, working "
                              f"spacing and padding: {_RETRAIN}")
    spec = {**DEFAULT_INPUT, **given}

    def number(key):
        value = spec[key]
        return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan

    problems = []
    if not math.isfinite(number("window_level_hu")):
        problems.append(f"window_level_hu {spec['window_level_hu']!r} is not a number of HU")
    if not number("window_width_hu") > 0 or not math.isfinite(number("window_width_hu")):
        problems.append(f"window_width_hu {spec['window_width_hu']!r} is not a width above 0 HU")
    if not 0.01 <= number("working_spacing_mm") <= MAX_PIXEL_SIZE_MM:  # the most an image's pixels may be
        problems.append(f"working_spacing_mm {spec['working_spacing_mm']!r} is not a pixel size in mm "
                        f"(0.01-{MAX_PIXEL_SIZE_MM:g})")
    divisor = 2 ** int(arch.get("encoder_depth", 5)) if isinstance(arch.get("encoder_depth"), int) else 1
    multiple = spec["pad_multiple"]
    if not (isinstance(multiple, numbers.Integral) and not isinstance(multiple, bool) and multiple >= 1
            and multiple % divisor == 0):
        problems.append(f"pad_multiple {multiple!r} is not a whole multiple of {divisor} (2 to the encoder's depth)")
    if spec["pad_mode"] not in _PAD_MODES:
        problems.append(f"pad_mode {spec['pad_mode']!r} is not one of {', '.join(_PAD_MODES)}")
    if problems:
        raise CalcinosisError(f"model card {card_path}: its input's {'; '.join(problems)}: correct the card, or {_RETRAIN}")


def model_caveat(model) -> str:
    """What a model's own card says against trusting it, or "": a validation Dice under
    :data:`train.POOR_DICE` (a fine-tune that went wrong, masks that mark something else)."""
    from .train import POOR_DICE

    dice = (getattr(model, "card", None) or {}).get("validation", {})
    dice = dice.get("dice_mean") if isinstance(dice, dict) else None
    if not isinstance(dice, numbers.Real) or not math.isfinite(dice) or dice >= POOR_DICE:
        return ""
    return (f"the model's own validation Dice is {dice:.2f} (its card), under {POOR_DICE}: its bone masks, and so the "
            "deposits measured beside them, are unreliable; train it on more labelled images, or use the bundled model")


def _check_safetensors(path: Path) -> None:
    """Refuse a file that is not a complete safetensors file, saying whether it is cut short.

    A copy or download cut short ends before the last tensor's byte range.
    """
    size = path.stat().st_size
    n_header, header = _raw_header(path)
    plausible = n_header > 0
    truncated = f"model file {path} is truncated ({size} bytes, cut short while copying or saving): {_RETRAIN}"
    if size == 0:
        raise CalcinosisError(f"model file {path} is empty: {_RETRAIN}")
    try:
        tensors = json.loads(header.decode("utf-8")) if plausible else None
    except (UnicodeDecodeError, ValueError):
        tensors = None
    if not isinstance(tensors, dict):
        if plausible and len(header) < n_header and header.lstrip().startswith(b"{"):
            raise CalcinosisError(truncated)
        raise CalcinosisError(f"model file {path} is not a safetensors file (napari-calcinosis models are): {_RETRAIN}")
    try:
        ends = [int(v.get("data_offsets", [0, 0])[1]) for k, v in tensors.items() if k != "__metadata__" and isinstance(v, dict)]
    except (IndexError, KeyError, OverflowError, TypeError, ValueError):
        raise CalcinosisError(f"model file {path} has a damaged header (tensor byte ranges are not numbers): {_RETRAIN}") from None
    if 8 + n_header + max(ends, default=0) > size:
        raise CalcinosisError(truncated)


def _unreadable(path: Path, exc: OSError) -> CalcinosisError:
    return CalcinosisError(f"cannot read model file {path} ({_one_line(exc)}): check it exists and is readable")


def _load_weights(network, path: Path, data: bytes, arch: dict) -> None:
    """Load the safetensors weights ``data`` (the bytes of ``path``, a file
    :func:`_check_safetensors` passed) into ``network``, refusing weights of another network."""
    from safetensors.torch import load

    try:
        state = load(data)
    except Exception as exc:  # a file that passed the header check but still does not parse
        raise CalcinosisError(f"model file {path} could not be read ({_one_line(exc)}): {_RETRAIN}") from exc
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or reshaped:
        example = (missing or unexpected or reshaped)[0]
        raise CalcinosisError(
            f"model file {path} does not hold the network its card describes (Unet, {arch['encoder_name']} encoder, "
            f"depth {arch['encoder_depth']}): {len(missing)} weight(s) missing, {len(unexpected)} unexpected, "
            f"{len(reshaped)} of another shape (e.g. {example!r}). It is not a phalanx model made by napari-calcinosis, "
            f"or its .json card belongs to another model: {_RETRAIN}"
        )
    network.load_state_dict(state)


# A mask marking more than this share of its image as bone is more likely inverted (bone 0,
# the rest 255) or a probability than a finger: a sagittal finger slice is a third bone or less.
MAX_BONE_SHARE = 0.6


def load_model(path=None, device: str = "cpu") -> PhalanxModel:
    """Load a phalanx U-Net from safetensors + its JSON card (default: the bundled model).

    Parameters
    ----------
    path : str or Path, optional
        A ``.safetensors`` file with a ``.json`` card beside it. Default (or ``"bundled"``): the
        shipped model.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.

    Raises
    ------
    CalcinosisError
        When the file or its card is missing, unreadable, truncated, or describes another network;
        the message names the file and says what to do.
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise CalcinosisError(f"a model is a .safetensors file's path, a loaded model (load_model) or None for the "
                              f"bundled one; got {type(path).__name__} {path!r:.40}")
    if path is not None and str(path) == "bundled" and not Path(path).exists():
        path = None  # the CLI's --model bundled / --init bundled, the widgets' choice
    path = bundled_model_path() if path is None else Path(path)
    # "model.v1" is model.v1.safetensors; a card or checkpoint given for its model (x.json,
    # x.pt) means the x.safetensors beside it.
    if path.suffix != ".safetensors" and model_file(path).exists() and (
            not path.is_file() or path.suffix.lower() in _MODEL_SUFFIXES):
        path = model_file(path)
    if path.suffix in (".pt", ".pth", ".ckpt") and path.is_file():
        raise CalcinosisError(
            f"{path.name} is a training checkpoint, not a model: give the .safetensors file 'napari-calcinosis train' "
            "wrote beside it, or continue training with --resume"
        )
    if not path.exists():
        raise CalcinosisError(f"model file not found: {path}. Give a .safetensors file made by 'napari-calcinosis train'")
    if not path.is_file():
        raise CalcinosisError(f"{path} is a folder, not a model file: give the .safetensors file inside it")
    try:
        _check_safetensors(path)  # first: a damaged file says so, rather than asking for its card
        data = path.read_bytes()  # read once: the checksum is of the weights loaded, even if the file is replaced
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    card_path = path.with_suffix(".json")
    card = _embedded_card(path)
    if card is None:
        card = _read_card(card_path, path.name)
    arch = _checked_architecture(card, card_path)
    _checked_input(card, card_path, arch)
    try:
        network = build_network(arch)
    except CalcinosisError:
        raise
    except Exception as exc:  # e.g. an encoder name this segmentation-models-pytorch does not know
        raise CalcinosisError(
            f"model card {card_path} describes a Unet (encoder {arch['encoder_name']!r}, depth {arch['encoder_depth']!r}) "
            f"that this installation cannot build ({type(exc).__name__}: {_one_line(exc)[:80]}): update "
            f"segmentation-models-pytorch if the card is right, or {_RETRAIN}"
        ) from exc
    _load_weights(network, path, data, arch)
    network.eval()
    model = PhalanxModel(network=network, card=card, path=path, sha256=hashlib.sha256(data).hexdigest())
    return model.to(device)


@dataclass
class BoneSegmentation:
    """Result of :func:`segment_phalanges`.

    Attributes
    ----------
    bone_mask : ndarray of bool
        Phalanx (bone) pixels on the input's pixel grid.
    probability : ndarray of float32
        The network's bone probability on the same grid.
    """

    bone_mask: np.ndarray
    probability: np.ndarray


def _as_hu_and_spacing(image, spacing_mm):
    """The pixels, spacing and window of ``image``; a ``spacing_mm`` given is checked (NaN, three
    values and 50 mm raised NumPy's errors) and replaces a CalcinosisImage's own (it was ignored)."""
    from .io import _checked_spacing

    refuse_layer(image, "the image", instead=AS_IMAGE)
    if spacing_mm is not None:
        spacing_mm = _checked_spacing(spacing_mm, "spacing_mm")
    if isinstance(image, CalcinosisImage):
        return image.pixels_hu, spacing_mm or image.spacing_mm, image.window_level_hu, image.window_width_hu
    array = np.asarray(image, dtype=np.float32)
    return array, spacing_mm, None, None


def normalise(pixels_hu: np.ndarray, input_spec: dict) -> np.ndarray:
    """The network's input: HU through the model's window, scaled to [-1, 1]."""
    unit = hu_to_window_unit(pixels_hu, input_spec["window_level_hu"], input_spec["window_width_hu"])
    return (unit * 2.0 - 1.0).astype(np.float32)


def working_shape(shape, spacing_mm, input_spec: dict) -> tuple[int, int]:
    """The shape of an image of ``shape`` pixels of ``spacing_mm`` at the model's working spacing."""
    spacing = np.broadcast_to(np.asarray(spacing_mm, float), (2,))
    work = np.maximum(np.round(np.array(shape) * spacing / input_spec["working_spacing_mm"]), 8)
    return int(work[0]), int(work[1])


def resample(array: np.ndarray, shape, order: int = 1) -> np.ndarray:
    """Resample a 2-D array onto ``shape`` with pixel centres aligned (as skimage.transform.resize)."""
    shape = tuple(int(s) for s in shape)
    if array.shape == shape:
        return array
    zoom = np.array(array.shape, float) / np.array(shape, float)
    offset = 0.5 * (zoom - 1.0)
    return ndi.affine_transform(array, zoom, offset=offset, output_shape=shape, order=order, mode="nearest")


def cuda_bf16(device) -> bool:
    """Whether ``device`` is a CUDA GPU that runs bfloat16 natively (Ampere and later)."""
    import torch

    if getattr(device, "type", str(device).split(":")[0]) != "cuda":
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.3 has no including_emulation
        return bool(torch.cuda.is_bf16_supported())


def _predict_logits(network, x: np.ndarray, device, pad_multiple: int, pad_mode: str) -> np.ndarray:
    import torch

    h, w = x.shape
    ph = (-h) % pad_multiple
    pw = (-w) % pad_multiple
    mode = pad_mode if (pad_mode != "reflect" or (h > ph and w > pw)) else "edge"
    xp = np.pad(x, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode=mode)
    t = torch.from_numpy(np.ascontiguousarray(xp))[None, None].to(device)
    if cuda_bf16(device):
        t = t.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = network(t)
    else:
        out = network(t)
    out = out.float()[0, 0].cpu().numpy()
    return out[ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]


# Bone is calcium: a piece of the mask with little at calcium density (subtract_bone's default
# threshold, 200 HU; _calcium) is soft tissue the U-Net took for bone. In the network's masks on
# images from ours and six independently written generators, calcium made at least 19 % of each
# of 904 true bone pieces (cortex, trabeculae), and at most 3 % of the soft tissue it took for
# bone: pieces of up to 1,600 mm2 of palm and finger pulp, some with hundreds of noise pixels
# above 200 HU (docs/validation.md). A piece is kept from 5 %.
MIN_BONE_PIECE_HU = 200.0
MIN_BONE_CALCIUM_FRACTION = 0.05
# No finger bone is 16 mm across (a metacarpal head, the widest, is about 15 mm), so no part of one
# lies more than 8 mm from calcium, however fatty its marrow; the most in those 904 pieces was
# 4.9 mm. Soft tissue taken for bone and joined to a bone reached 15-21 mm. Such a part is cut
# off along the bone: what lies over 1.5 mm from calcium (past the cortex's blur and the mask's
# edge) and, in one piece, reaches over 8 mm from it.
MAX_BONE_DISTANCE_FROM_CALCIUM_MM = 8.0
BONE_EDGE_BAND_MM = 1.5


def _calcium(pixels_hu: np.ndarray, min_hu: float) -> np.ndarray:
    """Pixels of ``min_hu`` or more after a 3x3 median, which a noise spike does not survive, or
    with at least two of their eight neighbours as dense: a cortex one pixel thin, which the
    median would take away."""
    dense = np.asarray(pixels_hu) >= min_hu
    neighbours = ndi.convolve(dense.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant") - dense
    return median3_at_least(pixels_hu, min_hu) | (dense & (neighbours >= 2))


# Distances from bone are measured from calcium in stretches of at least 9 pixels and 0.5 mm2:
# strong noise (100 HU) draws small clusters of dense pixels in soft tissue too.
MIN_CALCIUM_STRETCH_MM2 = 0.5


def _calcium_stretches(calcium: np.ndarray, spacing) -> np.ndarray:
    stretches, n = ndi.label(calcium, structure=np.ones((3, 3), bool))
    if not n:
        return calcium
    size = np.bincount(stretches.ravel())
    big = size >= max(9, int(np.ceil(MIN_CALCIUM_STRETCH_MM2 / (spacing[0] * spacing[1]))))
    big[0] = False
    return big[stretches]


def _keep_pieces_with_calcium(bone_mask: np.ndarray, calcium: np.ndarray, min_fraction: float) -> np.ndarray:
    pieces, n = label_bone_pieces(bone_mask)
    if not n:
        return bone_mask
    index = np.arange(1, n + 1)
    dense = ndi.sum_labels(calcium, pieces, index)
    area = ndi.sum_labels(np.ones(pieces.shape, bool), pieces, index)
    keep = np.concatenate([[False], (dense >= 1) & (dense >= min_fraction * area)])
    return keep[pieces]


# A piece the cut leaves with more than half of the mask within 1 mm around it cut away is a
# remnant of the soft tissue, such as the ring it leaves around a deposit lying in it; a bone
# with soft tissue joined to one side had at most 15 % (docs/validation.md).
MAX_CUT_AROUND_PIECE = 0.5


def _cut_parts_far_from_calcium(bone_mask: np.ndarray, calcium: np.ndarray, spacing, max_distance_mm: float,
                                band_mm: float = BONE_EDGE_BAND_MM) -> np.ndarray:
    anchors = _calcium_stretches(calcium, spacing)
    if not anchors.any() or not bone_mask.any():
        return bone_mask
    distance_mm = ndi.distance_transform_edt(~anchors, sampling=spacing)
    cores, n = ndi.label(bone_mask & (distance_mm > band_mm), structure=np.ones((3, 3), bool))
    if not n:
        return bone_mask
    too_far = np.concatenate([[False], ndi.maximum(distance_mm, cores, np.arange(1, n + 1)) > max_distance_mm])
    if not too_far.any():
        return bone_mask
    cut = too_far[cores]
    kept = bone_mask & ~cut
    pieces, n = label_bone_pieces(kept)
    if not n:
        return kept
    keep = share_around(pieces, n, cut, spacing, 1.0) <= MAX_CUT_AROUND_PIECE
    keep[0] = False
    return keep[pieces]


def drop_pieces_without_calcium(bone_mask: np.ndarray, pixels_hu: np.ndarray, min_hu: float = MIN_BONE_PIECE_HU,
                                min_fraction: float = MIN_BONE_CALCIUM_FRACTION) -> np.ndarray:
    """``bone_mask`` without its pieces (8-connected) that are not calcium.

    A piece is kept when at least ``min_fraction`` (5 %) of its pixels, and at least one, are
    calcium: ``min_hu`` or more after a 3x3 median, or with two neighbours as dense (a lone
    noisy pixel is neither; a cortex one pixel thin is).
    """
    bone_mask = np.asarray(bone_mask, bool)
    return _keep_pieces_with_calcium(bone_mask, _calcium(pixels_hu, min_hu), min_fraction)


def cut_parts_far_from_calcium(bone_mask: np.ndarray, pixels_hu: np.ndarray, spacing_mm,
                               min_hu: float = MIN_BONE_PIECE_HU,
                               max_distance_mm: float = MAX_BONE_DISTANCE_FROM_CALCIUM_MM) -> np.ndarray:
    """``bone_mask`` without the parts that reach more than ``max_distance_mm`` (8 mm) from calcium.

    Calcium is as in :func:`drop_pieces_without_calcium`, in stretches of at least 9 pixels and
    0.5 mm² (noise makes smaller clusters). A part is a connected stretch of the mask lying more
    than 1.5 mm from calcium: marrow inside a cortex, or soft tissue taken for bone beside it.
    The whole of a part that reaches further than ``max_distance_mm`` goes; the 1.5 mm along
    the bone's edge stays, unless more than half of the mask within 1 mm around what is left was
    cut away: then that is a remnant of the soft tissue too (a ring around a deposit in it).
    """
    bone_mask = np.asarray(bone_mask, bool)
    spacing = _spacing_pair(spacing_mm)
    return _cut_parts_far_from_calcium(bone_mask, _calcium(pixels_hu, min_hu), spacing, max_distance_mm)


# Bone lies inside the finger: a piece of the mask that air surrounds is a splint, a ring or
# other metal outside it (subtract.OUTSIDE_FINGER_AIR).
MAX_AIR_AROUND_BONE = OUTSIDE_FINGER_AIR


def drop_pieces_in_air(bone_mask: np.ndarray, pixels_hu: np.ndarray, spacing_mm,
                       max_air_fraction: float = MAX_AIR_AROUND_BONE) -> np.ndarray:
    """``bone_mask`` without its pieces (8-connected) that air surrounds.

    A piece is dropped when more than ``max_air_fraction`` (40 %) of the pixels within 1 mm outside
    it, and nearer to it than to any other piece, are air (below -250 HU after a 3x3 median;
    :func:`~napari_calcinosis.subtract.air_around`). Only the ring inside the image counts, so
    a bone cut by the border is judged by the tissue around the rest of it.
    """
    bone_mask = np.asarray(bone_mask, bool)
    pieces, n = label_bone_pieces(bone_mask)
    if not n:
        return bone_mask
    keep = air_around(pieces, n, pixels_hu, spacing_mm) <= max_air_fraction
    keep[0] = False
    return keep[pieces]


# A hole in the mask inside a bone is marrow (fat and sparse trabeculae) the network left out;
# a hole mostly at calcium density is a deposit the mask has ringed. On the network's masks of
# nine image sets (460 holes), the holes in true bone were per set a median 7-80 % calcium (3x3
# median >= 200 HU; fatty marrow, generators F and G, at the low end), the 21 holes holding a
# deposit 38-100 %.
MAX_MARROW_CALCIUM_SHARE = 0.25


def fill_marrow_holes(bone_mask: np.ndarray, pixels_hu: np.ndarray, spacing_mm, min_hu: float = MIN_BONE_PIECE_HU,
                      max_calcium_share: float = MAX_MARROW_CALCIUM_SHARE, within: np.ndarray | None = None) -> np.ndarray:
    """``bone_mask`` with its holes filled, except the holes of which more than
    ``max_calcium_share`` (a quarter) is calcium (``min_hu`` or more after a 3x3 median): a
    deposit the mask rings stays out of it. In the holes it fills, a clump of calcium of
    ``DEFAULT_MIN_AREA_MM2`` (0.3 mm²) or more not touching the mask (a trabecula, the cortex's
    blur do) stays out too, with two pixels around it: a deposit lying in a hole of soft tissue is
    still proposed and grown. ``within``: fill only there
    (the holes the network's own mask had)."""
    bone_mask = np.asarray(bone_mask, bool)
    hole = ndi.binary_fill_holes(bone_mask) & ~bone_mask
    if within is not None:
        hole &= within
    holes, n = ndi.label(hole)
    if not n:
        return bone_mask
    spacing = _spacing_pair(spacing_mm)
    calcium = median3_at_least(pixels_hu, min_hu) & (holes > 0)
    size = np.bincount(holes.ravel(), minlength=n + 1)
    share = np.bincount(holes[calcium], minlength=n + 1)
    fill = share <= max_calcium_share * size
    fill[0] = False
    clumps, m = ndi.label(calcium, structure=np.ones((3, 3), bool))
    if m:
        big = np.bincount(clumps.ravel(), minlength=m + 1) * spacing[0] * spacing[1] >= DEFAULT_MIN_AREA_MM2
        # Calcium touching the mask is the bone's own: a trabecula, the cortex's blur.
        big[np.unique(clumps[ndi.binary_dilation(bone_mask, structure=np.ones((3, 3), bool))])] = False
        big[0] = False
        keep_out = ndi.binary_dilation(big[clumps], structure=np.ones((3, 3), bool), iterations=2)
    else:
        keep_out = np.zeros_like(bone_mask)
    return bone_mask | (fill[holes] & ~keep_out)


def drop_pieces_not_bone(bone_mask: np.ndarray, pixels_hu: np.ndarray, spacing_mm,
                         min_piece_hu: float | None = MIN_BONE_PIECE_HU,
                         max_air_fraction: float | None = MAX_AIR_AROUND_BONE,
                         fill_marrow: bool = True) -> np.ndarray:
    """``bone_mask`` less what is not bone, as :func:`segment_phalanges` gives it: the parts that
    reach too far from calcium (:func:`cut_parts_far_from_calcium`), the pieces with too little
    calcium (:func:`drop_pieces_without_calcium`), then the pieces that air surrounds
    (:func:`drop_pieces_in_air`); last, the marrow holes left in what remains are filled
    (:func:`fill_marrow_holes`; only holes the mask given had). ``min_piece_hu=None`` leaves
    out the two calcium rules, ``max_air_fraction=None`` the air rule, ``fill_marrow=False``
    the filling."""
    bone_mask = np.asarray(bone_mask, bool)
    # Only the network's own holes are marrow: what the rules below cut out of a bone's middle
    # must not be filled back.
    network_holes = ndi.binary_fill_holes(bone_mask) & ~bone_mask if fill_marrow else None
    if min_piece_hu is not None and bone_mask.any():
        spacing = _spacing_pair(spacing_mm)
        calcium = _calcium(pixels_hu, min_piece_hu)
        bone_mask = _cut_parts_far_from_calcium(bone_mask, calcium, spacing, MAX_BONE_DISTANCE_FROM_CALCIUM_MM)
        bone_mask = _keep_pieces_with_calcium(bone_mask, calcium, MIN_BONE_CALCIUM_FRACTION)
    if max_air_fraction is not None:
        bone_mask = drop_pieces_in_air(bone_mask, pixels_hu, spacing_mm, max_air_fraction)
    if fill_marrow and network_holes.any():
        bone_mask = fill_marrow_holes(bone_mask, pixels_hu, spacing_mm, within=network_holes)
    return bone_mask


def segment_phalanges(
    image,
    model: PhalanxModel | str | Path | None = None,
    *,
    spacing_mm=None,
    device: str = "auto",
    tta: bool = False,
    threshold: float = 0.5,
    min_piece_hu: float | None = MIN_BONE_PIECE_HU,
    max_air_fraction: float | None = MAX_AIR_AROUND_BONE,
    fill_marrow: bool = True,
) -> BoneSegmentation:
    """Segment the phalanges (bone) of a sagittal finger image.

    Parameters
    ----------
    image : CalcinosisImage or ndarray
        The image; an array is taken to be in HU.
    model : PhalanxModel, path or None
        A loaded model, a ``.safetensors`` path, or None for the bundled model.
    spacing_mm : float or (float, float), optional
        Pixel spacing in mm when ``image`` is a bare array; without it the image is used at its
        own pixel size, which is right only near the model's working spacing (0.25 mm). Given
        with a :class:`CalcinosisImage`, it replaces the image's own.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"`` or ``"mps"``.
    tta : bool
        Average the probabilities over horizontal and vertical flips (4 passes).
    threshold : float
        Probability above which a pixel is bone.
    min_piece_hu : float or None
        Calcium density (HU, after a 3x3 median, or with two neighbours as dense: a cortex one
        pixel thin). Bone is calcium: a piece of the mask under
        5 % calcium is dropped, and so is a part of it reaching more than 8 mm from calcium
        (:func:`drop_pieces_without_calcium`, :func:`cut_parts_far_from_calcium`): soft tissue
        the U-Net took for bone. None leaves out these two rules. ``probability`` is the
        network's, unchanged.
    max_air_fraction : float or None
        A piece of the mask with more than this share of air around it (within 1 mm; 40 %) is
        dropped: bone lies inside the finger, and such a piece is a splint or other metal
        outside it (:func:`drop_pieces_in_air`). None keeps every piece.
    fill_marrow : bool
        Fill the holes the network left in the mask (marrow), except holes mostly calcium and
        clumps of calcium in them: a deposit (:func:`fill_marrow_holes`). False keeps them.

    Returns
    -------
    BoneSegmentation
        ``bone_mask`` and ``probability`` on the input's pixel grid.
    """
    import torch

    pixels_hu, spacing, _, _ = _as_hu_and_spacing(image, spacing_mm)
    if pixels_hu.ndim != 2:
        raise CalcinosisError(f"phalanx segmentation needs a 2-D image, got shape {pixels_hu.shape}")
    refuse_non_finite(pixels_hu)
    if not (isinstance(threshold, (int, float, np.floating)) and 0.0 < threshold < 1.0):
        raise CalcinosisError(f"threshold is a probability between 0 and 1 (0.5 by default); got {threshold!r}")
    if not isinstance(model, PhalanxModel):
        model = load_model(model, device=device)
    elif device != "auto" or model.device.type == "cpu":
        model.to(select_device(device))
    spec = model.input
    net = model.network
    net.eval()
    x = normalise(pixels_hu, spec)
    shape = x.shape
    if spacing is not None:
        spacing = np.broadcast_to(np.asarray(spacing, float), (2,))
        check_field_of_view(shape, spacing)  # resampled to 0.25 mm, a wider one would be tens of megapixels
        x = resample(x, working_shape(shape, spacing, spec), order=1)
    flips = [(), (0,), (1,), (0, 1)] if tta else [()]
    prob = np.zeros(x.shape, np.float32)
    with torch.inference_mode():
        for axes in flips:
            xf = np.flip(x, axes) if axes else x
            logits = _predict_logits(net, xf, model.device, int(spec["pad_multiple"]), spec.get("pad_mode", "reflect"))
            p = 1.0 / (1.0 + np.exp(-logits))
            prob += np.flip(p, axes) if axes else p
    prob /= len(flips)
    prob = np.clip(resample(prob, shape, order=1), 0.0, 1.0).astype(np.float32)
    bone_mask = drop_pieces_not_bone(prob > threshold, pixels_hu,
                                     spec["working_spacing_mm"] if spacing is None else spacing,
                                     min_piece_hu, max_air_fraction, fill_marrow)
    return BoneSegmentation(bone_mask=bone_mask, probability=prob)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two binary masks of the same shape (1.0 when both are empty)."""
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    if a.shape != b.shape:
        # numpy would broadcast a row against a column and count pixels that are in neither mask
        raise CalcinosisError(
            f"the two masks have different shapes ({a.shape} and {b.shape}): Dice compares masks of the same image"
        )
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)
