"""Labelled photo collections for evaluation: a photo with its optional label map, FASSEG's index."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fit3dmm.metrics.fit_metrics import FASSEG_GROUPS, PART_GROUPS
from fit3dmm.observe.labelmaps import format_table


@dataclass
class LabelledPhoto:
    """A photo (a path or an (H, W, 3) uint8 RGB array) and, optionally, its label map (``label_format`` among
    :data:`~fit3dmm.observe.labelmaps.FORMATS`)."""

    name: str
    image: Path | np.ndarray
    label: Path | None = None
    label_format: str | None = None

    def __post_init__(self) -> None:
        if (self.label is None) != (self.label_format is None):
            raise ValueError(f"{self.name}: a label map and its format go together")
        if self.label_format is not None:
            format_table(self.label_format)  # an unknown or retired name fails now, with one line


def fasseg_photos(root: str | Path, split: str = "test", limit: int | None = None) -> list[LabelledPhoto]:
    """The photos of a FASSEG folder (``index.csv``: split,name,image,label,...), numerically sorted.

    Args:
        root: the dataset folder (e.g. ``../shared/datasets/fasseg-frontal``).
        split: ``"train"``, ``"test"`` or ``"all"``.
        limit: keep the first ``limit`` photos.
    Raises:
        FileNotFoundError: no ``index.csv`` in ``root``.
    """
    root = Path(root)
    index = root / "index.csv"
    if not index.is_file():
        raise FileNotFoundError(f"{root}: no index.csv (expected the FASSEG frontal folder)")
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be train, test or all, got {split!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be ≥ 1, got {limit}")
    with open(index, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if split == "all" or r["split"] == split]
    rows.sort(key=lambda r: (r["split"], int(r["name"])))
    photos = [LabelledPhoto(f"{r['split']}_{r['name']}", root / r["image"], root / r["label"], "fasseg")
              for r in rows]
    return photos[:limit] if limit is not None else photos


def default_groups(photos: Sequence[LabelledPhoto]) -> dict[str, tuple[str, ...]]:
    """FASSEG's classes when every photo has a FASSEG label map, else every part on its own."""
    if photos and all(p.label_format == "fasseg" for p in photos):
        return dict(FASSEG_GROUPS)
    return dict(PART_GROUPS)
