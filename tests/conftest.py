import pytest


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
