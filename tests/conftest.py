import numpy as np
import pytest
from scipy import ndimage as ndi


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing or broken: GPU tests cannot run either
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def no_tf32():
    """CUDA float32 as float32: TF32 off for cuDNN's convolutions and cuBLAS's products during
    the test (GPU tests that compare two routes to the same sums), put back after."""
    import torch

    was = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = was


@pytest.fixture(scope="session")
def bundled_model_label():
    """How rows name the bundled model: its name and the start of its file's SHA-256, as
    ``sha256sum`` prints it (computed here, not by the package)."""
    import hashlib

    from napari_calcinosis.segment import bundled_model_path

    return f"bundled phalanx_unet (sha256 {hashlib.sha256(bundled_model_path().read_bytes()).hexdigest()[:12]})"


# Bland JM, Altman DG. Statistical methods for assessing agreement between two methods of
# clinical measurement. Lancet 1986;327:307-310, Table 1: peak expiratory flow rate (l/min) of
# 17 subjects, first reading with the Wright peak flow meter and with the mini Wright meter.
# Published: mean difference -2.1 l/min, SD of differences 38.8 l/min, limits of agreement
# (mean +- 2 SD) -79.7 to 75.5 l/min.
WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]


@pytest.fixture
def pefr():
    """Bland & Altman's 1986 worked example: (Wright, mini Wright) peak flow in l/min."""
    return WRIGHT, MINI


def _finger_with_lines(air=True):
    """A straight finger (air above and below) with one phalanx along it, and calcium: an artery
    (a thin line along the bone, deep in the soft tissue), a plaque along the skin, a nodule and
    a deep line across the bone's axis. 0.2 mm pixels."""
    img = np.full((200, 300), -1000.0 if air else 40.0, np.float32)
    img[40:160, :] = 40.0
    bone = np.zeros(img.shape, bool)
    bone[80:110, 20:280] = True
    img[bone] = 1500.0
    shapes = {"artery": (slice(125, 128), slice(60, 160)),  # 0.6 x 20 mm, 3 mm from the bone, 6 mm deep
              "plaque": (slice(155, 158), slice(180, 280)),  # 0.6 x 20 mm, 0.4 mm under the skin
              "across": (slice(118, 148), slice(230, 233))}  # 6 mm long, 90 degrees to the bone
    masks = {}
    for name, box in shapes.items():
        masks[name] = np.zeros(img.shape, bool)
        masks[name][box] = True
    masks["nodule"] = (np.arange(200)[:, None] - 60) ** 2 + (np.arange(300)[None, :] - 150) ** 2 <= 8**2
    for mask in masks.values():
        img[mask] = 800.0
    rng = np.random.default_rng(0)
    return ndi.gaussian_filter(img, 1.0) + rng.normal(0, 8, img.shape).astype(np.float32), bone, masks


@pytest.fixture
def finger_with_lines():
    """``make(air=True) -> (image_hu, bone_mask, shape masks)``: see ``_finger_with_lines``."""
    return _finger_with_lines
