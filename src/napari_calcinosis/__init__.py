"""napari-calcinosis: measure calcinosis cutis on dual-energy CT finger images.

The method follows Chandrasekaran et al., Arthritis Research & Therapy 2021: a U-Net segments
the phalanges, the bone is subtracted from the bright pixels, and each deposit is grown from a
seed and measured in mm^2. The same functions serve the napari widgets, the
``napari-calcinosis`` command line and the napari console::

    from napari_calcinosis import read_image, quantify
    result = quantify(read_image("finger.dcm"), seeds=[(120, 88)])
    result.table[["lesion_id", "area_mm2", "long_axis_mm", "short_axis_mm", "status"]]
"""

from ._errors import CalcinosisError
from .grow import GrowResult, grow_lesions
from .io import CalcinosisImage, image_from_export, read_image, write_dicom, write_windowed_png
from .measure import feret_axes_mm, measure_lesions, summarize
from .phantom import Phantom, make_phantom
from .pipeline import QuantifyResult, quantify
from .segment import BoneSegmentation, PhalanxModel, dice, load_model, save_model, segment_phalanges
from .stats import Agreement, agreement, bland_altman, lins_ccc, plot_agreement
from .subtract import subtract_bone
from .train import TrainProgress, TrainResult, train_segmenter

__version__ = "0.1.0"

__all__ = [
    "Agreement",
    "BoneSegmentation",
    "CalcinosisError",
    "CalcinosisImage",
    "GrowResult",
    "Phantom",
    "PhalanxModel",
    "QuantifyResult",
    "TrainProgress",
    "TrainResult",
    "agreement",
    "bland_altman",
    "dice",
    "feret_axes_mm",
    "grow_lesions",
    "image_from_export",
    "lins_ccc",
    "load_model",
    "make_phantom",
    "measure_lesions",
    "plot_agreement",
    "quantify",
    "read_image",
    "save_model",
    "segment_phalanges",
    "subtract_bone",
    "summarize",
    "train_segmenter",
    "write_dicom",
    "write_windowed_png",
]
