"""Figures of an evaluation: per photo, the target parts and each configuration's fitted parts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from fit3dmm.observe.segment import color_part_map, overlay_part_map
from fit3dmm.types.parts import PART_INDEX

PANEL_HEIGHT = 256
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _short(name: str) -> str:
    """A region name short enough for a figure panel (left_eyebrow → l.brow)."""
    for long, short in (("left_", "l."), ("right_", "r."), ("eyebrow", "brow"), ("up_", "u."), ("down_", "d.")):
        name = name.replace(long, short)
    return name


def _box(mask: np.ndarray, shape: tuple[int, int], margin: float = 0.2) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of ``mask``'s bounding box grown by ``margin`` × its size, within ``shape``;
    the whole image when the mask is empty."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return 0, 0, shape[0], shape[1]
    dy, dx = margin * (rows[-1] - rows[0] + 1), margin * (cols[-1] - cols[0] + 1)
    return (max(0, int(rows[0] - dy)), max(0, int(cols[0] - dx)), min(shape[0], int(rows[-1] + 1 + dy)),
            min(shape[1], int(cols[-1] + 1 + dx)))


def _labelled_panel(image: np.ndarray, lines: Sequence[str], width: int) -> np.ndarray:
    """``image`` (h, w, 3) over a dark strip holding ``lines`` of text, padded to ``width``."""
    strip = np.full((14 * len(lines) + 6, width, 3), 30, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(strip, line, (4, 14 * (i + 1)), _FONT, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    top = np.zeros((image.shape[0], width, 3), np.uint8)
    top[:, : image.shape[1]] = image
    return np.concatenate([top, strip], axis=0)


def compare_figure(
    photo: np.ndarray,
    target_masks: np.ndarray,
    fitted: Sequence[tuple[str, np.ndarray, np.ndarray, float]],
    groups: Mapping[str, Sequence[str]],
    panel_height: int = PANEL_HEIGHT,
) -> np.ndarray:
    """One row: the photo with the target parts, then per configuration its fitted part regions over the photo
    (filled, part colours) with the target regions outlined in white, IoU under each panel.  Panels show the
    box around the target and the fitted regions (grown by 20 %), scaled to ``panel_height``.

    Args:
        photo: (H, W, 3) uint8 RGB.
        target_masks: (8, H, W) bool target masks.
        fitted: per configuration (name, labels (H, W) int, iou (G,), mean IoU).
        groups: the scored regions, in the order of ``iou``.
    Returns:
        (h, w, 3) uint8 RGB.
    """
    group_masks = [np.any([target_masks[PART_INDEX[p]] for p in parts], axis=0) for parts in groups.values()]
    union = np.any(group_masks, axis=0)
    covered = union | np.any([np.asarray(labels) >= 0 for _, labels, _, _ in fitted], axis=0) if fitted else union
    top, left, bottom, right = _box(covered, photo.shape[:2])
    photo = photo[top:bottom, left:right]
    group_masks = [m[top:bottom, left:right] for m in group_masks]
    union = union[top:bottom, left:right]
    fitted = [(n, np.asarray(lab)[top:bottom, left:right], iou, m) for n, lab, iou, m in fitted]
    h, w = photo.shape[:2]
    scale = panel_height / h
    pw = max(1, round(w * scale))

    def fit_size(image: np.ndarray, nearest: bool = False) -> np.ndarray:
        return cv2.resize(image, (pw, panel_height), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)

    outlines = []
    for mask in group_masks:
        contours, _ = cv2.findContours(fit_size(mask.astype(np.uint8), True), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_NONE)
        outlines.append(contours)
    target_labels = np.full((h, w), -1, np.int64)
    for parts, mask in zip(groups.values(), group_masks, strict=True):
        target_labels[mask & (target_labels < 0)] = PART_INDEX[parts[0]]
    target_view = fit_size(overlay_part_map(photo, color_part_map(target_labels), union))
    text_width = max(pw, 160)
    panels = [_labelled_panel(target_view, ["target", ""], text_width)]
    names = list(groups)
    for name, labels, iou, mean in fitted:
        labels = np.asarray(labels, np.int64)
        view = fit_size(overlay_part_map(photo, color_part_map(labels), labels >= 0, alpha=0.55))
        for contours in outlines:
            cv2.drawContours(view, contours, -1, (255, 255, 255), 1, cv2.LINE_AA)
        cells = [f"{_short(g)} {v:.2f}" for g, v in zip(names, iou, strict=True)]
        lines = [f"{name}  mean {mean:.3f}"] + ["  ".join(cells[i: i + 2]) for i in range(0, len(cells), 2)]
        panels.append(_labelled_panel(view, lines, text_width))
    height = max(p.shape[0] for p in panels)
    panels = [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0))) for p in panels]
    gap = np.full((height, 4, 3), 255, np.uint8)
    row = [panels[0]]
    for p in panels[1:]:
        row += [gap, p]
    return np.concatenate(row, axis=1)
