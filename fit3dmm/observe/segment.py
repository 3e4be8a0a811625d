"""The built-in part segmenter: facial part masks drawn from mediapipe FaceMesh's 478 landmarks.

No face-parsing network is needed: every part is a polygon through FaceMesh landmarks, rasterised at pixel
centres by :func:`fill_polygon` (pixel (r, c) is in a polygon when (x, y) = (c, r) lies inside it; shared
edges go to exactly one side).  mediapipe's ``LEFT`` contours are the subject's left (they appear on the
image's right in a frontal photo; checked on FASSEG photos), the convention of
:data:`~fit3dmm.types.parts.PART_NAMES`.

| part | region |
|---|---|
| left_eye, right_eye | the eye opening: the eyelid contour (``FACEMESH_LEFT_EYE`` / ``FACEMESH_RIGHT_EYE``) |
| left_eyebrow, right_eyebrow | a band between the upper and lower brow lines (``FACEMESH_*_EYEBROW``) |
| up_lip | outer upper-lip contour minus inner upper-lip contour (``FACEMESH_LIPS``), corner to corner |
| down_lip | the same for the lower lip; teeth and the mouth opening belong to neither lip |
| nose | the nose outline: bridge between the inner eye corners (168), sides, alae, base (subnasale, 2); not convex |
| skin | the face oval (``FACEMESH_FACE_OVAL``) minus all of the above and the mouth opening, cleaned up |

Clean-up (:mod:`fit3dmm.observe.cleanup`): nothing above the line over both brows (the forehead, where hair
may be), no islands below 5 % of their part.  The landmarks alone cannot see hair, so ``hair`` is empty
unless the image is given; then skin-coloured statistics find the hair that falls into the oval from its
outline (:func:`hair_in_face`), which is taken out of the skin.  Ears, the neck and the forehead above the
line are outside the oval or cut, so they are never skin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from fit3dmm.observe.cleanup import brow_tangent_line, clean_part_masks, remove_above_line
from fit3dmm.observe.crop import crop_matrix, warp_to_crop
from fit3dmm.observe.labelmaps import LabelMapParts, warp_parts
from fit3dmm.observe.points import DEFAULT_COUNTS, mask_point_sets
from fit3dmm.types.observation import Observation
from fit3dmm.types.parts import BACKGROUND_COLOR, HAIR_COLOR, NUM_PARTS, PART_COLORS, PART_INDEX, PART_NAMES

# Closed polygons of FaceMesh landmark indices (subject's left/right).  The eye, brow, lip and oval loops
# are the documented contours of mediapipe.solutions.face_mesh_connections chained into loops (checked by
# tests/test_segment_landmarks.py); the brow loops join the upper and lower brow lines at their ends.
LEFT_EYE_LOOP = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_EYE_LOOP = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_BROW_LOOP = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
RIGHT_BROW_LOOP = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
UPPER_LIP_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_LIP_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
UPPER_LIP_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_LIP_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
UP_LIP_LOOP = UPPER_LIP_OUTER + UPPER_LIP_INNER[::-1]
DOWN_LIP_LOOP = LOWER_LIP_OUTER + LOWER_LIP_INNER[::-1]
MOUTH_OPENING_LOOP = UPPER_LIP_INNER + LOWER_LIP_INNER[-2:0:-1]
FACE_OVAL_LOOP = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
                  152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
# Nose outline through symmetric pairs (193, 417), (245, 465), (188, 412), (174, 399), (236, 456), (198, 420),
# (131, 360), (49, 279), (64, 294), (240, 460), (97, 326): the bridge at the inner eye corners (168 between
# them), the sides of the nose, the outer edge of the alae and the base through the subnasale (2).  The side
# points were chosen among FaceMesh's nose points by the nose IoU on the 20 FASSEG *training* photos.
NOSE_LOOP = (168, 417, 465, 412, 399, 456, 420, 360, 279, 294, 460, 326, 2, 97, 240, 64, 49, 131, 198, 236,
             174, 188, 245, 193)

PART_LOOPS: dict[str, tuple[int, ...]] = {
    "left_eye": LEFT_EYE_LOOP,
    "right_eye": RIGHT_EYE_LOOP,
    "left_eyebrow": LEFT_BROW_LOOP,
    "right_eyebrow": RIGHT_BROW_LOOP,
    "up_lip": UP_LIP_LOOP,
    "down_lip": DOWN_LIP_LOOP,
    "nose": NOSE_LOOP,
}
# Mahalanobis distance (CIE Lab) from the skin colour beyond which a darker pixel is a hair candidate; picked
# on the 20 FASSEG training photos (skin IoU: 3 hurts, 4-6 help about equally, 8 helps less)
HAIR_THRESHOLD = 5.0
MIN_LANDMARKS = 468  # the loops use the 468 mesh points; the 10 iris points of refine_landmarks are unused
# enlargement of the crop in point-set views: neighbouring pixels' dots 8 px apart (224 px → 1792 px); larger
# crops are enlarged less, to at most POINTS_MAX_SIDE px, but never below 4 (where the dots still part)
POINTS_SCALE = 8
POINTS_MAX_SIDE = 2048


@dataclass
class Segmentation:
    """Part masks of one face in one pixel frame (H, W).

    Attributes:
        masks: (P, H, W) bool, :data:`~fit3dmm.types.parts.PART_NAMES` order; pairwise disjoint, except that a
            class an imported label-map format merges (FASSEG's mouth) fills each of its parts.
        hair: (H, W) bool, what is known to be hair (non-face) inside the face region; may be empty.
        labels: (H, W) int64 part index per pixel, −1 for none (hair and background).
        forehead_line: (3,) (a, b, c), a² + b² = 1, a·x + b·y + c < 0 above the brows (removed); None when
            no brow is visible.
        face: (H, W) bool, the face oval (the region the segmenter describes).
        part_weights: (P,) float32, 1 for a part present in the target, 0 for a part absent (empty mask, or
            a class a label-map format does not have).
    """

    masks: np.ndarray
    hair: np.ndarray
    labels: np.ndarray
    forehead_line: np.ndarray | None
    face: np.ndarray
    part_weights: np.ndarray


def segment_from_landmarks(
    landmarks: np.ndarray,
    size: tuple[int, int],
    image: np.ndarray | None = None,
    *,
    min_fraction: float = 0.05,
) -> Segmentation:
    """Part masks from FaceMesh landmarks (module doc), in the landmarks' pixel frame.

    Args:
        landmarks: (L, 2) x, y FaceMesh landmarks, L ≥ 468 (478 with iris points), in the pixels of an
            image of ``size`` (a photo or a crop).
        size: (H, W) of that image.
        image: optional (H, W, 3) uint8 RGB image in the same frame, used to find hair inside the oval.
        min_fraction: islands smaller than this fraction of their part are removed.
    """
    lmk = np.asarray(landmarks, np.float64)
    if lmk.ndim != 2 or lmk.shape[1] != 2 or lmk.shape[0] < MIN_LANDMARKS:
        raise ValueError(f"landmarks must be (L ≥ {MIN_LANDMARKS}, 2) FaceMesh points, got {lmk.shape}")
    if not np.isfinite(lmk).all():
        raise ValueError("landmarks contain NaN or infinite values")
    h, w = _check_size(size)
    if image is not None and (image.shape != (h, w, 3) or image.dtype != np.uint8):
        raise ValueError(f"image must be ({h}, {w}, 3) uint8 RGB to match size, got {image.shape} "
                         f"{image.dtype}")

    def fill(loop: tuple[int, ...]) -> np.ndarray:
        return fill_polygon(lmk[list(loop)], (h, w))

    masks = np.zeros((NUM_PARTS, h, w), bool)
    taken = np.zeros((h, w), bool)
    for name, loop in PART_LOOPS.items():
        part = fill(loop) & ~taken
        masks[PART_INDEX[name]] = part
        taken |= part
    opening = fill(MOUTH_OPENING_LOOP)
    for name in ("up_lip", "down_lip"):
        masks[PART_INDEX[name]] &= ~opening
    face = fill(FACE_OVAL_LOOP)
    masks[PART_INDEX["skin"]] = face & ~taken & ~opening
    line = brow_tangent_line(masks[PART_INDEX["left_eyebrow"]], masks[PART_INDEX["right_eyebrow"]])
    hair = hair_in_face(image, masks, face, line) if image is not None else np.zeros((h, w), bool)
    masks = clean_part_masks(masks, hair=hair, forehead_line=line, min_fraction=min_fraction)
    weights = masks.any((1, 2)).astype(np.float32)
    return Segmentation(masks=masks, hair=hair, labels=labels_from_masks(masks), forehead_line=line,
                        face=face, part_weights=weights)


def segment_with_label_map(
    parts: LabelMapParts,
    landmarks: np.ndarray,
    *,
    min_fraction: float = 0.05,
    face_margin: float = 0.02,
) -> Segmentation:
    """Part masks imported from another parser (:func:`~fit3dmm.observe.labelmaps.load_label_map`), cleaned
    up as in the paper, in the common pixel frame of ``parts`` and ``landmarks``.

    The landmarks give what a label map lacks: the face oval, grown by ``face_margin`` × its height (parsers
    draw skin to the true outline, a little beyond FaceMesh's oval), outside which skin is dropped (ears,
    neck); and the forehead line when the map has no eyebrows (FASSEG).  With eyebrows in the map, the line
    is tangent to the imported brows.  Hair from the map is never skin; small islands are removed.

    Args:
        parts: imported part masks (P, H, W), hair and weights.
        landmarks: (L ≥ 468, 2) FaceMesh landmarks in the same frame.
        min_fraction: islands smaller than this fraction of their part are removed.
        face_margin: growth of the face oval, as a fraction of its height.

    A class that the format merges from several parts (FASSEG's mouth: both lips) is split between them,
    each pixel going to the part whose landmark segmentation is nearest (the lips' inner line then
    separates them), so that every loss gets per-part targets instead of none.

    Returns:
        A :class:`Segmentation` whose ``part_weights`` are the map's (merged parts included once split), set
        to 0 for parts the clean-up emptied.
    """
    h, w = parts.masks.shape[1:]
    if parts.masks.shape != (NUM_PARTS, h, w) or parts.hair.shape != (h, w):
        raise ValueError(f"parts must hold ({NUM_PARTS}, H, W) masks and an (H, W) hair mask, got "
                         f"{parts.masks.shape} and {parts.hair.shape}")
    reference = segment_from_landmarks(landmarks, (h, w), min_fraction=min_fraction)
    brows = [PART_INDEX["left_eyebrow"], PART_INDEX["right_eyebrow"]]
    if parts.part_weights[brows].any():
        line = brow_tangent_line(*(parts.masks[i] & (parts.part_weights[i] > 0) for i in brows))
    else:
        line = reference.forehead_line
    rows = np.flatnonzero(reference.face.any(1))
    margin = round(face_margin * (rows[-1] - rows[0] + 1)) if len(rows) else 0
    masks, weights = split_merged_parts(parts.masks, parts.part_weights.astype(np.float32), parts.merged,
                                        reference.masks)
    masks = clean_part_masks(masks, hair=parts.hair, face=reference.face, forehead_line=line,
                             min_fraction=min_fraction, face_margin=margin)
    weights = weights * masks.any((1, 2))
    return Segmentation(masks=masks, hair=parts.hair.copy(), labels=labels_from_masks(masks),
                        forehead_line=line, face=reference.face, part_weights=weights)


def split_merged_parts(masks: np.ndarray, weights: np.ndarray, merged: Mapping[str, Sequence[str]],
                       reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split each merged class (its parts share one mask) between its parts by the nearest ``reference`` part.

    Args:
        masks: (P, H, W) bool; the parts of a group in ``merged`` hold the same mask.
        weights: (P,) part weights (0 for merged parts).
        merged: class name → its parts (:class:`~fit3dmm.observe.labelmaps.LabelMapParts`); groups that are
            not part masks (FASSEG's hair, which holds the brows) are left alone.
        reference: (P, H, W) bool masks of another segmentation of the same face (the landmark segmenter's).
    Returns:
        New masks and weights; a split part gets weight 1 when it receives pixels.
    """
    masks, weights = masks.copy(), weights.copy()
    for group in merged.values():
        index = [PART_INDEX[name] for name in group if name in PART_INDEX]
        if len(index) < 2 or not all(np.array_equal(masks[index[0]], masks[i]) for i in index[1:]):
            continue
        shared = masks[index[0]].copy()
        if not shared.any() or not all(reference[i].any() for i in index):
            continue
        # distance of every pixel to each reference part; a pixel goes to the nearest
        distance = np.stack([cv2.distanceTransform((~reference[i]).astype(np.uint8), cv2.DIST_L2, 5)
                             for i in index])
        nearest = distance.argmin(0)
        for k, i in enumerate(index):
            masks[i] = shared & (nearest == k)
            weights[i] = float(masks[i].any())
    return masks, weights


def segment_observation(
    observation: Observation,
    label_parts: LabelMapParts | None = None,
    counts: Mapping[str, int] = DEFAULT_COUNTS,
) -> Observation:
    """An Observation with its target filled in: part masks, hair, part weights, forehead line and the
    point sets C_p (:func:`~fit3dmm.observe.points.mask_point_sets`), all in crop pixels.

    Args:
        observation: B faces with FaceMesh ``landmarks`` (B, ≥ 468, 2) in crop pixels.
        label_parts: masks imported from a label map *of the photo* (B must be 1); they are resampled into
            the crop (nearest neighbour) and cleaned up by :func:`segment_with_label_map`.  None uses the
            built-in segmenter on the crop (:func:`segment_from_landmarks` with the crop image).
        counts: FPS sizes per part for the point sets (default: 3000 skin points).

    Where no brow is visible the stored forehead line is y = −10·S, which removes nothing from the crop.
    """
    if observation.landmarks is None or observation.landmarks.shape[1] < MIN_LANDMARKS:
        raise ValueError("segmentation needs FaceMesh landmarks (B, 478, 2) in the observation")
    if label_parts is not None and observation.batch_size != 1:
        raise ValueError(f"a label map describes one photo; the observation holds {observation.batch_size}")
    size = observation.size
    segs = []
    for b in range(observation.batch_size):
        crop = (observation.image[b].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
        lmk = observation.landmarks[b].detach().double().cpu().numpy()
        if label_parts is None:
            segs.append(segment_from_landmarks(lmk, (size, size), crop))
        else:
            matrix = observation.crop_to_photo[b].detach().double().cpu().numpy()
            segs.append(segment_with_label_map(warp_parts(label_parts, matrix, size), lmk))
    no_line = np.array([0.0, 1.0, 10.0 * size])
    device = observation.device
    masks = torch.from_numpy(np.stack([s.masks for s in segs])).to(device)
    line = torch.from_numpy(np.stack([no_line if s.forehead_line is None else s.forehead_line for s in segs]))
    line = line.to(device=device, dtype=torch.float32)
    return replace(
        observation,
        masks=masks,
        hair=torch.from_numpy(np.stack([s.hair for s in segs])).to(device),
        part_weights=torch.from_numpy(np.stack([s.part_weights for s in segs])).to(device),
        points=mask_point_sets(masks, counts, line),
        forehead_line=line,
    )


def hair_in_face(
    image: np.ndarray,
    masks: np.ndarray,
    face: np.ndarray,
    line: np.ndarray | None,
    threshold: float = HAIR_THRESHOLD,
) -> np.ndarray:
    """Hair inside the face oval, from colour: (H, W) bool.

    The skin colour is modelled as a Gaussian in CIE Lab from the skin and nose pixels between the bottom
    of the eyes and the top of the lips (cheeks and nose, which hair rarely covers), fitted twice with the
    10 % least skin-like pixels dropped the second time.  A skin pixel of the oval below ``line`` is a hair
    candidate when it is darker than the mean skin and its Mahalanobis distance exceeds ``threshold``;
    only candidate regions (after a 3 × 3 opening) that touch the oval's outline above the nose tip level
    are kept: hair falls in from the outline at the temples and the forehead, while a dark beard or a
    shadow inside the face is not hair.

    Args:
        image: (H, W, 3) uint8 RGB.
        masks: (P, H, W) bool part masks before clean-up (skin = oval minus the other parts).
        face: (H, W) bool face oval.
        line: the forehead line, or None.
        threshold: Mahalanobis distance beyond which a darker pixel is not skin.
    """
    h, w = face.shape
    none = np.zeros((h, w), bool)
    eyes = masks[PART_INDEX["left_eye"]] | masks[PART_INDEX["right_eye"]]
    lips = masks[PART_INDEX["up_lip"]] | masks[PART_INDEX["down_lip"]]
    nose = masks[PART_INDEX["nose"]]
    skin = masks[PART_INDEX["skin"]]
    if not (eyes.any() and lips.any() and nose.any()):
        return none
    rows = np.arange(h)[:, None]
    band = (rows > np.nonzero(eyes)[0].max()) & (rows < np.nonzero(lips)[0].min())
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float64)
    sample = lab[(skin | nose) & band]
    if len(sample) < 50:
        return none
    distance = np.zeros((h, w))
    for _ in range(2):
        mean = sample.mean(0)
        inverse = np.linalg.inv(np.cov(sample.T) + 1e-3 * np.eye(3))
        d_sample = np.sqrt(np.einsum("ni,ij,nj->n", sample - mean, inverse, sample - mean))
        sample = sample[d_sample <= np.quantile(d_sample, 0.9)]
    diff = lab[skin] - mean
    distance[skin] = np.sqrt(np.einsum("ni,ij,nj->n", diff, inverse, diff))
    candidate = skin & (distance > threshold) & (lab[..., 0] < mean[0])
    candidate = remove_above_line(candidate, line)
    candidate = cv2.morphologyEx(candidate.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    outline = face & ~cv2.erode(face.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    outline &= rows < np.nonzero(nose)[0].max()
    _, components = cv2.connectedComponents(candidate, connectivity=8)
    touching = np.unique(components[outline & (components > 0)])
    return np.isin(components, touching)


def fill_polygon(vertices: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Rasterise a closed polygon (N, 2) of x, y vertices into an (H, W) bool mask at pixel centres.

    Even-odd rule with the top-left convention: pixel (r, c) is set when the scanline y = r crosses the
    polygon boundary an odd number of times left of x = c, counting an edge from y₀ to y₁ when
    min(y₀, y₁) ≤ r < max(y₀, y₁) and a crossing at x when x ≤ c.  So a pixel centre strictly inside is set,
    one strictly outside is not, and two polygons sharing an edge never share (nor both miss) a pixel.
    Self-intersecting polygons follow the even-odd rule.
    """
    v = np.asarray(vertices, np.float64)
    if v.ndim != 2 or v.shape[1] != 2 or len(v) < 3:
        raise ValueError(f"vertices must be (N ≥ 3, 2), got {v.shape}")
    h, w = _check_size(size)
    mask = np.zeros((h, w), bool)
    rows = np.arange(max(0, int(np.ceil(v[:, 1].min()))), min(h, int(np.ceil(v[:, 1].max()))))
    if len(rows) == 0:
        return mask
    a, b = v, np.roll(v, -1, axis=0)
    lo, hi = np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 1], b[:, 1])
    y = rows[:, None].astype(np.float64)
    crosses = (y >= lo) & (y < hi)  # (R, E); horizontal edges never cross
    t = (y - a[:, 1]) / np.where(hi > lo, b[:, 1] - a[:, 1], 1.0)
    x = np.where(crosses, a[:, 0] + t * (b[:, 0] - a[:, 0]), np.inf)
    first = np.clip(np.ceil(x), 0, w).astype(np.int64)  # first column at or right of each crossing
    toggles = np.zeros((len(rows), w + 1), np.int64)
    row_of = np.broadcast_to(np.arange(len(rows))[:, None], first.shape)
    np.add.at(toggles, (row_of[crosses], first[crosses]), 1)
    mask[rows] = (np.cumsum(toggles, axis=1)[:, :w] % 2).astype(bool)
    return mask


def labels_from_masks(masks: np.ndarray) -> np.ndarray:
    """(P, H, W) bool part masks → (H, W) int64 part index, −1 where no part; the lowest index wins."""
    masks = np.asarray(masks)
    if masks.dtype != bool or masks.ndim != 3 or masks.shape[0] != NUM_PARTS:
        raise ValueError(f"masks must be bool ({NUM_PARTS}, H, W), got {masks.dtype} {masks.shape}")
    return np.where(masks.any(0), masks.argmax(0), -1).astype(np.int64)


def color_part_map(labels: np.ndarray, hair: np.ndarray | None = None) -> np.ndarray:
    """(H, W) part labels (−1 none) and optional hair mask → (H, W, 3) uint8 RGB: each part in its
    :data:`~fit3dmm.types.parts.PART_COLORS`, hair (where no part) in ``HAIR_COLOR``, the rest in
    ``BACKGROUND_COLOR``."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.min(initial=0) < -1 or labels.max(initial=0) >= NUM_PARTS:
        raise ValueError(f"labels must be (H, W) with values in [-1, {NUM_PARTS - 1}], got {labels.shape}")
    palette = np.array([*PART_COLORS, BACKGROUND_COLOR], np.uint8)  # index −1 → the last row
    out = palette[labels]
    if hair is not None:
        out[np.asarray(hair, bool) & (labels < 0)] = HAIR_COLOR
    return out


def overlay_part_map(image: np.ndarray, colors: np.ndarray, known: np.ndarray, alpha: float = 0.5
                     ) -> np.ndarray:
    """Blend a colour-coded part map over an (H, W, 3) uint8 image where ``known`` (H, W) is True."""
    if image.shape != colors.shape or known.shape != image.shape[:2]:
        raise ValueError(f"image {image.shape}, colours {colors.shape} and mask {known.shape} must match")
    out = image.copy()
    blend = (1.0 - alpha) * image[known].astype(np.float64) + alpha * colors[known].astype(np.float64)
    out[known] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return out


def draw_point_sets(
    image: np.ndarray,
    labels: np.ndarray,
    hair: np.ndarray | None,
    points: Mapping[str, np.ndarray],
    scale: int = POINTS_SCALE,
    alpha: float = 0.35,
) -> np.ndarray:
    """Part point sets as dots over an image of their frame enlarged ``scale`` times, so that every point
    shows: (h·scale, w·scale, 3) uint8 RGB.

    Each part is tinted with its colour at ``alpha`` (:func:`overlay_part_map`; the image shows through),
    then each point becomes a dot of the part's colour ringed in black or white, whichever contrasts more
    with that colour.  Dots are sized to the enlargement (outline radius 0.3 · scale, fill one pixel less) so
    that the dots of neighbouring pixels (the dense sets keep every mask pixel) leave the image between them.

    Args:
        image: (h·scale, w·scale, 3) uint8 RGB; frame pixel (r, c) covers the scale × scale block at
            (r·scale, c·scale).
        labels: (h, w) part labels (−1 none), :func:`labels_from_masks`, in the points' frame.
        hair: optional (h, w) bool hair mask, tinted in ``HAIR_COLOR`` where no part is.
        points: part name → (N, 2) x, y points in the frame's pixels.
    """
    labels = np.asarray(labels)
    h, w = labels.shape
    if image.shape != (h * scale, w * scale, 3) or image.dtype != np.uint8:
        raise ValueError(f"image must be ({h * scale}, {w * scale}, 3) uint8 for {h}×{w} labels enlarged "
                         f"{scale}×, got {image.shape} {image.dtype}")
    colors = color_part_map(labels, hair).repeat(scale, 0).repeat(scale, 1)
    known = labels >= 0 if hair is None else (labels >= 0) | np.asarray(hair, bool)
    out = np.ascontiguousarray(overlay_part_map(image, colors, known.repeat(scale, 0).repeat(scale, 1), alpha))
    outline_radius = max(1, round(0.3 * scale))
    fill_radius = outline_radius - 1
    for name, pts in points.items():
        if name not in PART_INDEX:
            raise ValueError(f"unknown part {name!r}; parts are {PART_NAMES}")
        color = PART_COLORS[PART_INDEX[name]]
        ring = (0, 0, 0) if 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2] >= 128 else (255, 255, 255)
        centres = np.rint((np.asarray(pts, np.float64).reshape(-1, 2) + 0.5) * scale - 0.5).astype(int)
        for x, y in centres:
            cv2.circle(out, (int(x), int(y)), outline_radius, ring, thickness=-1, lineType=cv2.LINE_8)
            cv2.circle(out, (int(x), int(y)), fill_radius, color, thickness=-1, lineType=cv2.LINE_8)
    return out


def point_sets_view(photo: np.ndarray, observation: Observation, index: int = 0, scale: int | None = None
                    ) -> np.ndarray:
    """The target point sets C_p of face ``index`` (parts of weight > 0) over the photo, drawn by
    :func:`draw_point_sets` in the working crop where they are computed, enlarged ``scale`` times (the photo
    is resampled at that resolution; None: :data:`POINTS_SCALE`, less for crops that would exceed
    :data:`POINTS_MAX_SIDE`, at least 4)."""
    if observation.masks is None or not observation.points:
        raise ValueError("the observation has no part masks and point sets (observe with segment=True)")
    size = observation.size
    scale = scale or max(4, min(POINTS_SCALE, POINTS_MAX_SIDE // size))
    to_photo = observation.crop_to_photo[index].detach().double().cpu().numpy() @ crop_matrix(0.0, 0.0, size,
                                                                                              size * scale)
    view = warp_to_crop(photo, to_photo, size * scale)
    labels = labels_from_masks(observation.masks[index].cpu().numpy())
    hair = None if observation.hair is None else observation.hair[index].cpu().numpy()
    weights = observation.part_weights[index].cpu().numpy()
    points = {name: observation.points[name].item(index).detach().double().cpu().numpy()
              for p, name in enumerate(PART_NAMES) if weights[p] > 0}
    return draw_point_sets(view, labels, hair, points, scale)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2 or int(size[0]) != size[0] or int(size[1]) != size[1] or min(size) < 1:
        raise ValueError(f"size must be (H, W) positive integers, got {size}")
    return int(size[0]), int(size[1])
