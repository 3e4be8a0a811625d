"""What the fitting sees of a photo: the aligned crop and everything measured on it.

All image-space quantities are in pixels of the square working crop (x right, y down, pixel centres at
integer coordinates); ``crop_to_photo`` maps them back to the photo.  Batched over B faces.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor

from fit3dmm.types.parts import NUM_PARTS, PART_NAMES


@dataclass
class PointSet:
    """A batch of 2D point sets padded to a common length.

    ``points`` (B, N, 2) float; ``valid`` (B, N) bool marks real points (padding is False).
    """

    points: Tensor
    valid: Tensor

    def __post_init__(self) -> None:
        if self.points.ndim != 3 or self.points.shape[-1] != 2:
            raise ValueError(f"points must be (B, N, 2), got {tuple(self.points.shape)}")
        if self.valid.shape != self.points.shape[:2]:
            raise ValueError(f"valid must be {tuple(self.points.shape[:2])}, got {tuple(self.valid.shape)}")

    def counts(self) -> Tensor:
        """(B,) number of valid points per item."""
        return self.valid.sum(-1)

    def to(self, device: torch.device | str) -> PointSet:
        return PointSet(self.points.to(device), self.valid.to(device))

    def item(self, b: int) -> Tensor:
        """The valid points of batch item ``b`` as (N_b, 2)."""
        return self.points[b][self.valid[b]]

    @staticmethod
    def from_list(items: list[Tensor]) -> PointSet:
        """Pad a list of (N_b, 2) tensors into one PointSet."""
        n = max((int(t.shape[0]) for t in items), default=0)
        ref = items[0]
        pts = ref.new_zeros((len(items), n, 2))
        valid = torch.zeros((len(items), n), dtype=torch.bool, device=ref.device)
        for b, t in enumerate(items):
            pts[b, : t.shape[0]] = t
            valid[b, : t.shape[0]] = True
        return PointSet(pts, valid)


@dataclass
class Observation:
    """Measurements on B aligned face crops.

    Attributes:
        image: (B, 3, S, S) float RGB in [0, 1], the aligned crop.
        crop_to_photo: (B, 3, 3) affine map from crop pixels (x, y, 1) to photo pixels.
        photo_size: (B, 2) photo width and height in pixels.
        landmarks: (B, L, 2) detected dense landmarks in crop pixels (mediapipe: L = 478), or None.
        landmarks68: (B, 68, 2) detected 68 iBUG landmarks in crop pixels, or None.
        landmark_weights: (B, 68) per-landmark confidence/weight, or None (all ones).
        masks: (B, P, S, S) bool part masks in :data:`~fit3dmm.types.parts.PART_NAMES` order, or None.
        hair: (B, S, S) bool hair (and other occluder) mask, or None.
        part_weights: (B, P) float, 0 for parts absent from the target (empty mask, or a class the label
            format does not have), else 1.
        points: per part name, the target point set C_p (B, N_p, 2), or empty when not computed.
        forehead_line: (B, 3) line (a, b, c) with a² + b² = 1 such that points with a·x + b·y + c < 0 lie
            above the eyebrows and are removed from both the target and the prediction; None = keep all.
        names: one identifier per item (file name and face index), for reports.
    """

    image: Tensor
    crop_to_photo: Tensor
    photo_size: Tensor
    landmarks: Tensor | None = None
    landmarks68: Tensor | None = None
    landmark_weights: Tensor | None = None
    masks: Tensor | None = None
    hair: Tensor | None = None
    part_weights: Tensor | None = None
    points: dict[str, PointSet] = field(default_factory=dict)
    forehead_line: Tensor | None = None
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.image.ndim != 4 or self.image.shape[1] != 3 or self.image.shape[2] != self.image.shape[3]:
            raise ValueError(f"image must be (B, 3, S, S), got {tuple(self.image.shape)}")
        b, s = self.image.shape[0], self.image.shape[-1]
        if self.crop_to_photo.shape != (b, 3, 3):
            raise ValueError(f"crop_to_photo must be ({b}, 3, 3), got {tuple(self.crop_to_photo.shape)}")
        if self.masks is not None and self.masks.shape != (b, NUM_PARTS, s, s):
            raise ValueError(f"masks must be ({b}, {NUM_PARTS}, {s}, {s}), got {tuple(self.masks.shape)}")
        if self.part_weights is not None and self.part_weights.shape != (b, NUM_PARTS):
            raise ValueError(f"part_weights must be ({b}, {NUM_PARTS}), got {tuple(self.part_weights.shape)}")
        unknown = set(self.points) - set(PART_NAMES)
        if unknown:
            raise ValueError(f"unknown parts in points: {sorted(unknown)}")

    @property
    def batch_size(self) -> int:
        return self.image.shape[0]

    @property
    def size(self) -> int:
        """Side S of the square crop in pixels."""
        return self.image.shape[-1]

    @property
    def device(self) -> torch.device:
        return self.image.device

    def to(self, device: torch.device | str) -> Observation:
        """A copy with every tensor moved to ``device``."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                moved[f.name] = value.to(device)
            elif f.name == "points":
                moved[f.name] = {k: v.to(device) for k, v in value.items()}
        return replace(self, **moved)

    def crop_points_to_photo(self, points: Tensor) -> Tensor:
        """Map (B, N, 2) crop pixels to photo pixels."""
        a = self.crop_to_photo.to(points.dtype)
        return points @ a[:, :2, :2].transpose(1, 2) + a[:, None, :2, 2]

    def photo_points_to_crop(self, points: Tensor) -> Tensor:
        """Map (B, N, 2) photo pixels to crop pixels."""
        inv = torch.linalg.inv(self.crop_to_photo.to(torch.float64)).to(points.dtype)
        return points @ inv[:, :2, :2].transpose(1, 2) + inv[:, None, :2, 2]

    def select(self, index: int | slice) -> Observation:
        """Items ``index`` (an int keeps a batch of one) of every batched field, as views."""
        rows = slice(index, index + 1) if isinstance(index, int) else index
        taken = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                taken[f.name] = value[rows]
            elif f.name == "points":
                taken[f.name] = {k: PointSet(v.points[rows], v.valid[rows]) for k, v in value.items()}
            elif f.name == "names":
                taken[f.name] = list(value[rows])
        return replace(self, **taken)

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors, lists and strings (CPU), loadable with ``torch.load(weights_only=True)``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "points":
                out[f.name] = {k: (v.points.detach().cpu(), v.valid.cpu()) for k, v in value.items()}
            elif isinstance(value, Tensor):
                out[f.name] = value.detach().cpu()
            else:
                out[f.name] = value
        return out

    @staticmethod
    def from_state_dict(data: dict[str, Any]) -> Observation:
        """Inverse of :meth:`state_dict`."""
        values = dict(data)
        values["points"] = {k: PointSet(p, v) for k, (p, v) in data.get("points", {}).items()}
        values["names"] = list(data.get("names", []))
        return Observation(**values)

    @staticmethod
    def stack(items: list[Observation]) -> Observation:
        """Concatenate observations of equal crop size along the batch."""
        if not items:
            raise ValueError("nothing to stack")
        out = {}
        for f in fields(Observation):
            values = [getattr(o, f.name) for o in items]
            if f.name == "names":
                out[f.name] = [n for v in values for n in v]
            elif f.name == "points":
                keys = set(values[0])
                if any(set(v) != keys for v in values):
                    raise ValueError("observations to stack must have point sets for the same parts")
                out[f.name] = {k: _cat_pointsets([v[k] for v in values]) for k in keys}
            elif all(v is None for v in values):
                out[f.name] = None
            elif any(v is None for v in values):
                raise ValueError(f"cannot stack observations where only some have {f.name}")
            else:
                out[f.name] = torch.cat(values, dim=0)
        return Observation(**out)


def _cat_pointsets(sets: list[PointSet]) -> PointSet:
    return PointSet.from_list([s.item(b) for s in sets for b in range(s.points.shape[0])])
