"""Head-pose error: mean absolute yaw, pitch and roll differences in degrees.

Angles follow :mod:`fit3dmm.render.camera` (``matrix_to_euler``), which is the AFLW2000-3D convention: yaw > 0
face turned towards the image's left, pitch > 0 chin up, roll > 0 clockwise in the image, and
R = Rx(−pitch) · Ry(−yaw) · Rz(−roll), the same composition as 3DDFA's ``angle2matrix_3ddfa``.  Differences
are wrapped to (−180°, 180°] before taking |·|, so 179° against −179° is a 2° error.  (SynergyNet and
FSA-Net take the plain |pred − gt| on images with |yaw| <= 99°; both agree whenever |pred − gt| <= 180°.)
"""

from __future__ import annotations

from fit3dmm.metrics._array import ArrayLike, as_tensor, like_input

POSE_NAMES: tuple[str, str, str] = ("yaw", "pitch", "roll")


def wrap_degrees(angles: ArrayLike) -> ArrayLike:
    """Angles in degrees wrapped to (−180, 180]: a ↦ 180 − ((180 − a) mod 360); any shape, float64 out."""
    a = as_tensor(angles, "angles").double()
    return like_input(180.0 - (180.0 - a).remainder(360.0), angles)


def pose_mae(pred_ypr_deg: ArrayLike, gt_ypr_deg: ArrayLike) -> dict[str, float]:
    """Mean absolute error of yaw, pitch and roll.

    Args:
        pred_ypr_deg: (B, 3) predicted (yaw, pitch, roll) in degrees.
        gt_ypr_deg: (B, 3) ground truth (yaw, pitch, roll) in degrees, same convention.

    Returns:
        ``{"yaw", "pitch", "roll"}``: (1/B) Σ_b |wrap(pred − gt)| per angle, and ``"mean"`` of those three.
    """
    pred = as_tensor(pred_ypr_deg, "pred_ypr_deg")
    gt = as_tensor(gt_ypr_deg, "gt_ypr_deg")
    if pred.ndim != 2 or pred.shape[-1] != 3 or pred.shape[0] == 0 or gt.shape != pred.shape:
        raise ValueError(f"pred_ypr_deg and gt_ypr_deg must both be (B, 3) with B >= 1, got "
                         f"{tuple(pred.shape)} and {tuple(gt.shape)}")
    diff = pred.double() - gt.double().to(pred.device)
    mae = wrap_degrees(diff).abs().mean(dim=0)
    out = {name: float(v) for name, v in zip(POSE_NAMES, mae, strict=True)}
    out["mean"] = float(mae.mean())
    return out
