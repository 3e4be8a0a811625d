"""Label maps from face parsers run elsewhere (DML-CSR, facer, BiSeNet, ...) → fit3dmm part masks.

A label map is one class index per pixel of the photo: a single-channel PNG (8- or 16-bit, grey or palette),
an RGB PNG whose three channels are equal, or a 2-D integer ``.npy`` array.  A map of another size than the
photo but of the same aspect ratio (its sides are the photo's times one factor, each rounded to whole pixels,
e.g. CelebAMask-HQ's 512² maps of its 1024² photos) is resized to the photo by nearest neighbour, and
:attr:`LabelMapParts.notes` says so; a map of another aspect ratio is refused.

Formats and their classes (index: name), named after who writes the map:

- **celebamask-hq** (19, CelebAMask-HQ's own labels as its ``face_parsing/Data_preprocessing/g_mask.py``
  writes them from ``CelebAMask-HQ-mask-anno``: class = position in its ``label_list`` + 1): 0 background,
  1 skin, 2 nose, 3 eye_g, 4 l_eye, 5 r_eye, 6 l_brow, 7 r_brow, 8 l_ear, 9 r_ear, 10 mouth, 11 u_lip,
  12 l_lip, 13 hair, 14 hat, 15 ear_r, 16 neck_l, 17 neck, 18 cloth.
- **bisenet** (19, the order of face-parsing.PyTorch's BiSeNet, trained on CelebAMask-HQ but with its own
  ``prepropess_data.py`` order, and of its copies in facexlib, uniface, ...): 0 background, 1 skin, 2 l_brow,
  3 r_brow, 4 l_eye, 5 r_eye, 6 eye_g, 7 l_ear, 8 r_ear, 9 ear_r, 10 nose, 11 mouth, 12 u_lip, 13 l_lip,
  14 neck, 15 neck_l, 16 cloth, 17 hair, 18 hat.
- **lapa** (11): 0 background, 1 skin, 2 left eyebrow, 3 right eyebrow, 4 left eye, 5 right eye, 6 nose,
  7 upper lip, 8 inner mouth, 9 lower lip, 10 hair.
- **helen** (11): 0 background, 1 face skin, 2 left eyebrow, 3 right eyebrow, 4 left eye, 5 right eye, 6 nose,
  7 upper lip, 8 inner mouth, 9 lower lip, 10 hair.
- **fasseg** (6): 0 background, 1 hair (eyebrows are painted as hair), 2 skin, 3 eyes (both), 4 nose,
  5 mouth (both lips).

The two 19-class orders hold the same classes at different indices (a CelebAMask-HQ map read as bisenet puts
the nose where the brows should be), so the former name ``celebamask`` is refused with a message asking for
one of them.

Mapping to fit3dmm (weight 0 = the part is absent from the target; "hair" = the hair/occluder mask, never
skin; ignored classes belong to no part):

| fit3dmm part | celebamask-hq | bisenet | lapa | helen | fasseg |
|---|---|---|---|---|---|
| left_eye, right_eye (*) | 4 l_eye, 5 r_eye | 4 l_eye, 5 r_eye | 4, 5 | 4, 5 | 3 eyes |
| left_eyebrow, right_eyebrow (*) | 6 l_brow, 7 r_brow | 2 l_brow, 3 r_brow | 2, 3 | 2, 3 | weight 0 (inside 1 hair) |
| up_lip | 11 u_lip | 12 u_lip | 7 | 7 | 5 mouth, merged: weight 0 |
| down_lip | 12 l_lip | 13 l_lip | 9 | 9 | 5 mouth, merged: weight 0 |
| nose | 2 nose | 10 nose | 6 | 6 | 4 |
| skin | 1 skin | 1 skin | 1 | 1 | 2 |
| hair | 13 hair, 14 hat, 3 eye_g | 17 hair, 18 hat, 6 eye_g | 10 | 10 | 1 (with the brows) |
| ignored | 0, 8, 9, 10 (inner mouth), 15-18 | 0, 7, 8, 9, 11 (inner mouth), 14-16 | 0, 8 (inner mouth) | 0, 8 | 0 |

* **Left and right.**  Which side the datasets' "l"/"left" names is not documented consistently (viewer's or
  subject's left, and parsers trained on them inherit either), and a swapped pair would make PRDL pull the
  model's left eye onto the right one.  fit3dmm therefore ignores the l/r in the class names: the two classes
  of a pair are merged and each connected component is assigned by position, the subject's left part being
  the one right of the nose in the image (component centroid x > nose centroid x; without a nose the
  centroid of all eye and brow pixels is the reference).  This holds for upright faces (roll within about
  ±45°), profiles included, whatever side a dataset meant (CelebAMask-HQ's l_/r_ are read as the person's
  left/right; the result is the same either way).  FASSEG's single eye class is split the same way.
* **celebamask-hq / bisenet**: glasses (eye_g) and hats are occluders, counted as hair; ears, earrings
  (ear_r), neck, necklace (neck_l) and cloth are ignored; "mouth" is the inner mouth between the lips.
* **lapa / helen**: LaPa (Liu et al., AAAI 2020) and the Helen parsing set (Smith et al., CVPR 2013, as
  single label maps in the order of its label00-label10 files) share the 11-class order.
* **fasseg** (as converted in ``../shared/datasets/fasseg-frontal``): eyebrows are painted as hair, so both
  brow parts have weight 0 and the hair mask holds them; the lips are one mouth class, so up_lip and
  down_lip have weight 0 each and both masks hold the whole mouth, recorded in ``merged`` so that the mouth
  can be compared as a union.  :func:`~fit3dmm.observe.segment.segment_with_label_map` later splits such a
  merged class between its parts with the landmarks (each pixel to the nearest landmark-segmented lip).

Inner-mouth classes belong to no part (neither lips nor skin).  Every part a format lacks, or whose mask is
empty, has weight 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fit3dmm.defaults import check_label_format
from fit3dmm.observe.crop import warp_to_crop
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX, PART_NAMES

# class index → fit3dmm target: a part name, "hair", "eye"/"brow" (side by position), or None (ignored)
_LAPA_HELEN = (None, "skin", "brow", "brow", "eye", "eye", "nose", "up_lip", None, "down_lip", "hair")
FORMATS: dict[str, tuple[str | None, ...]] = {
    "bisenet": (None, "skin", "brow", "brow", "eye", "eye", "hair", None, None, None, "nose", None,
                "up_lip", "down_lip", None, None, None, "hair", "hair"),
    "celebamask-hq": (None, "skin", "nose", "hair", "eye", "eye", "brow", "brow", None, None, None, "up_lip",
                      "down_lip", "hair", "hair", None, None, None, None),
    "fasseg": (None, "hair", "skin", "eye", "nose", "mouth"),
    "helen": _LAPA_HELEN,
    "lapa": _LAPA_HELEN,
}
"""Format name → the fit3dmm target of each class index (the names of :data:`fit3dmm.defaults.LABEL_FORMATS`)."""
_MERGED: dict[str, dict[str, list[str]]] = {
    "fasseg": {"mouth": ["up_lip", "down_lip"], "hair": ["left_eyebrow", "right_eyebrow"]},
}


class LabelMapError(ValueError):
    """A label map that cannot be used; the message names the file and the cause on one line."""


@dataclass
class LabelMapParts:
    """Part masks imported from a label map, in the photo's pixels.

    Attributes:
        masks: (P, H, W) bool in :data:`~fit3dmm.types.parts.PART_NAMES` order.
        hair: (H, W) bool hair and occluders (hats, glasses where the format has them).
        part_weights: (P,) float32, 1 for parts the format has and the map shows, else 0.
        merged: format class → the parts it covers without telling them apart (e.g. FASSEG
            ``{"mouth": ["up_lip", "down_lip"], "hair": ["left_eyebrow", "right_eyebrow"]}``).
        notes: what the import did that the user should know, one line each (a resized map).
    """

    masks: np.ndarray
    hair: np.ndarray
    part_weights: np.ndarray
    merged: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def format_table(fmt: str) -> tuple[str | None, ...]:
    """The fit3dmm target of each class of format ``fmt``.

    Raises:
        ValueError: one line, for an unknown name or the retired ambiguous ``celebamask``.
    """
    return FORMATS[check_label_format(fmt)]


def load_label_map(path: str | Path, fmt: str, image_size: tuple[int, int]) -> LabelMapParts:
    """Read a label map of the photo and convert it to part masks (conventions in the module doc).

    A map of the photo's aspect ratio but another size is resized to the photo (nearest neighbour), with a
    note in :attr:`LabelMapParts.notes`.

    Args:
        path: label map file (image or ``.npy``).
        fmt: a name of :data:`FORMATS`.
        image_size: (H, W) of the photo the map labels.

    Raises:
        LabelMapError: unreadable file, another aspect ratio, several different channels, non-integer values
            or classes outside the format's range.
        ValueError: an unknown or retired format name.
    """
    table = format_table(fmt)
    labels = read_label_map(path, len(table), fmt)
    (mh, mw), (h, w) = labels.shape, image_size
    notes = []
    if (mh, mw) != (h, w):
        if not same_aspect((mh, mw), (h, w)):
            raise LabelMapError(f"label map {path}: it is {mw}×{mh} px but the photo is {w}×{h} px (W×H), "
                                "another aspect ratio; a map of another size must be the photo scaled")
        labels = resize_nearest(labels, (h, w))
        notes.append(f"label map {path}: resized from {mw}×{mh} px to the photo's {w}×{h} px (nearest "
                     "neighbour)")
    parts = labels_to_parts(labels, fmt)
    parts.notes = notes
    return parts


def same_aspect(map_size: tuple[int, int], photo_size: tuple[int, int]) -> bool:
    """Whether an (H, W) map can be the (H, W) photo scaled by one factor s with each side rounded to whole
    pixels: |side_map − s · side_photo| ≤ ½ for both sides."""
    (mh, mw), (h, w) = map_size, photo_size
    low = max((mh - 0.5) / h, (mw - 0.5) / w)
    high = min((mh + 0.5) / h, (mw + 0.5) / w)
    return low <= high + 1e-12


def resize_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (h, w) class map to ``size`` (H, W): each output pixel takes the class of the input pixel
    under its centre (no class is blended or invented)."""
    (mh, mw), (h, w) = labels.shape, size
    rows = np.minimum(((np.arange(h) + 0.5) * (mh / h)).astype(np.int64), mh - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * (mw / w)).astype(np.int64), mw - 1)
    return labels[np.ix_(rows, cols)]


def read_label_map(path: str | Path, num_classes: int, fmt: str = "") -> np.ndarray:
    """(H, W) int64 class indices from a label-map file, checked to lie in [0, num_classes).

    Raises:
        LabelMapError: as :func:`load_label_map` (``fmt`` only names the format in the message).
    """
    path = Path(path)

    def fail(cause: str) -> LabelMapError:
        return LabelMapError(f"label map {path}: {cause}")

    if not path.is_file():
        raise fail("no such file" if not path.exists() else "not a file")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise fail(f"not a readable .npy array ({' '.join(str(exc).split())})") from None
    else:
        try:
            with Image.open(path) as pil:
                if pil.mode == "F":
                    raise fail("it holds floating-point values, not class indices")
                array = np.asarray(pil.convert("L") if pil.mode == "1" else pil)
        except LabelMapError:
            raise
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ... on unreadable files
            raise fail(f"not a readable image ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    if array.ndim == 3 and array.shape[2] in (3, 4):
        if array.shape[2] == 4:
            raise fail("it has 4 channels (RGBA); a label map has one channel of class indices")
        if not ((array[..., 0] == array[..., 1]).all() and (array[..., 0] == array[..., 2]).all()):
            raise fail("its 3 channels differ (a colour visualisation?); a label map has one channel of "
                       "class indices")
        array = array[..., 0]
    if array.ndim != 2:
        raise fail(f"expected one channel of class indices, got an array of shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise fail(f"it holds {array.dtype} values, not integer class indices")
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        name = f"the {fmt} format" if fmt else "the format"
        raise fail(f"values {int(array.min())}..{int(array.max())} but {name} has classes "
                   f"0..{num_classes - 1}")
    return array.astype(np.int64)


def labels_to_parts(labels: np.ndarray, fmt: str) -> LabelMapParts:
    """(H, W) class indices of format ``fmt`` → :class:`LabelMapParts` (conventions in the module doc)."""
    table = format_table(fmt)
    labels = np.asarray(labels)
    if labels.ndim != 2 or (labels.size and (labels.min() < 0 or labels.max() >= len(table))):
        raise ValueError(f"labels must be (H, W) with classes 0..{len(table) - 1} for {fmt}")

    def region(target: str) -> np.ndarray:
        return np.isin(labels, [i for i, t in enumerate(table) if t == target])

    h, w = labels.shape
    masks = np.zeros((NUM_PARTS, h, w), bool)
    for name in ("up_lip", "down_lip", "nose", "skin"):
        masks[PART_INDEX[name]] = region(name)
    eyes, brows, nose = region("eye"), region("brow"), masks[PART_INDEX["nose"]]
    reference = nose if nose.any() else eyes | brows
    ref_x = float(np.nonzero(reference)[1].mean()) if reference.any() else (w - 1) / 2.0
    masks[PART_INDEX["left_eye"]], masks[PART_INDEX["right_eye"]] = split_sides(eyes, ref_x)
    masks[PART_INDEX["left_eyebrow"]], masks[PART_INDEX["right_eyebrow"]] = split_sides(brows, ref_x)
    merged = {k: list(v) for k, v in _MERGED.get(fmt, {}).items()}
    if fmt == "fasseg":
        mouth = region("mouth")
        masks[PART_INDEX["up_lip"]] = mouth
        masks[PART_INDEX["down_lip"]] = mouth
    covered = {p for parts in merged.values() for p in parts}
    present = {t for t in table if t is not None}
    has = {"left_eye": "eye", "right_eye": "eye", "left_eyebrow": "brow", "right_eyebrow": "brow"}
    weights = np.array([float(has.get(name, name) in present and name not in covered and masks[i].any())
                        for i, name in enumerate(PART_NAMES)], np.float32)
    return LabelMapParts(masks=masks, hair=region("hair"), part_weights=weights, merged=merged)


def warp_parts(parts: LabelMapParts, crop_to_photo: np.ndarray, size: int) -> LabelMapParts:
    """Resample photo-frame parts into a crop (nearest neighbour, :func:`~fit3dmm.observe.crop.warp_to_crop`);
    parts that leave the crop get weight 0."""
    def warp(mask: np.ndarray) -> np.ndarray:
        return warp_to_crop(mask.astype(np.uint8), crop_to_photo, size, cv2.INTER_NEAREST).astype(bool)

    masks = np.stack([warp(m) for m in parts.masks])
    weights = parts.part_weights.astype(np.float32) * masks.any((1, 2))
    return LabelMapParts(masks=masks, hair=warp(parts.hair), part_weights=weights,
                         merged={k: list(v) for k, v in parts.merged.items()}, notes=list(parts.notes))


def split_sides(mask: np.ndarray, reference_x: float) -> tuple[np.ndarray, np.ndarray]:
    """Split a two-sided region (both eyes, both brows) into (subject's left, subject's right).

    Each 8-connected component whose centroid lies right of ``reference_x`` in the image (larger x) is the
    subject's left, the others the subject's right.
    """
    mask = np.asarray(mask, bool)
    _, components, _, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    left_ids = np.flatnonzero(centroids[:, 0] > reference_x)
    left = np.isin(components, left_ids[left_ids > 0])
    return left & mask, mask & ~left
