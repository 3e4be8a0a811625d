"""The loss terms, each as a pure function on tensors and as a :class:`~fit3dmm.losses.base.Loss` module
(``forward(prediction, observation) -> (B,)``), and the registry that maps names to them."""

from fit3dmm.defaults import GEOMETRIC_LOSSES
from fit3dmm.losses.base import Loss, Prediction
from fit3dmm.losses.chamfer import ChamferLoss, chamfer_distance
from fit3dmm.losses.dcd import DCDLoss, dcd_distance
from fit3dmm.losses.icp import ICPLoss, ReverseICPLoss, icp_distance
from fit3dmm.losses.landmark import LandmarkLoss, landmark_chi2
from fit3dmm.losses.photometric import PhotometricLoss, photometric_loss
from fit3dmm.losses.prdl import PRDLLoss, prdl_descriptor, prdl_loss
from fit3dmm.losses.registry import LOSS_CLASSES, loss_class, parse_losses
from fit3dmm.losses.regularization import RegularizationLoss, coefficient_l2
from fit3dmm.losses.softras import SoftRasLoss, soft_iou_loss

__all__ = [
    "GEOMETRIC_LOSSES",
    "LOSS_CLASSES",
    "ChamferLoss",
    "DCDLoss",
    "ICPLoss",
    "LandmarkLoss",
    "Loss",
    "PRDLLoss",
    "PhotometricLoss",
    "Prediction",
    "RegularizationLoss",
    "ReverseICPLoss",
    "SoftRasLoss",
    "chamfer_distance",
    "coefficient_l2",
    "dcd_distance",
    "icp_distance",
    "landmark_chi2",
    "loss_class",
    "parse_losses",
    "photometric_loss",
    "prdl_descriptor",
    "prdl_loss",
    "soft_iou_loss",
]
