"""Benchmark of the built-in landmark segmenter against FASSEG's hand labels (frontal02, 50 test photos).

Run from the repository root:

    python benchmarks/bench_segmentation.py [--shared ../shared] [--split test] [--no-image] [--limit N]

Every photo goes through mediapipe FaceMesh (:class:`~fit3dmm.observe.detect.MediaPipeDetector`) and
:func:`~fit3dmm.observe.segment.segment_from_landmarks` in photo pixels (with the photo for the hair
refinement, unless ``--no-image``).  The result is mapped onto FASSEG's classes:

* eyes = left_eye ∪ right_eye, mouth = up_lip ∪ down_lip (FASSEG's mouth is both lips), nose, skin;
* our eyebrows are counted as none of these four (FASSEG paints brows as hair);
* FASSEG's skin includes the forehead up to the hair line and the neck, which the landmark segmenter does
  not claim (it stops at the line over the brows and at the face oval), so these count as misses.

IoU = |P ∩ T| / |P ∪ T| per class, reported as the mean over photos of the per-photo IoU and as the pooled
IoU (intersections and unions summed over all photos), with the mean over eyes, nose, mouth and skin.  A
photo where no face is detected counts as IoU 0 for every class and is listed.  Three regions are scored:

1. the whole image (the primary number);
2. only the pixels on or below our forehead line (the line over both brows), where the segmenter claims
   to describe the face; FASSEG's neck still counts;
3. the pixels below the line *and* inside the detected face oval: how well the parts are placed within the
   face.  This region is defined by our own prediction, so it hides skin we miss outside the oval (neck,
   the sides); read it next to table 1, not instead of it.

It also reports the median time per photo of the detection and of the segmentation (this machine, CPU).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from fit3dmm.metrics.report import markdown_table
from fit3dmm.observe.cleanup import remove_above_line
from fit3dmm.observe.detect import MediaPipeDetector
from fit3dmm.observe.image import load_image
from fit3dmm.observe.labelmaps import load_label_map
from fit3dmm.observe.segment import segment_from_landmarks
from fit3dmm.types.parts import PART_INDEX

CLASSES: dict[str, tuple[str, ...]] = {
    "eyes": ("left_eye", "right_eye"),
    "nose": ("nose",),
    "mouth": ("up_lip", "down_lip"),
    "skin": ("skin",),
}
REGIONS = ("whole image", "below the forehead line", "below the line, inside the face oval")


def default_shared() -> Path:
    return Path(os.environ.get("FIT3DMM_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def class_masks(masks: np.ndarray) -> dict[str, np.ndarray]:
    """(P, H, W) part masks → FASSEG class masks (unions of parts)."""
    return {c: np.any([masks[PART_INDEX[p]] for p in parts], axis=0) for c, parts in CLASSES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared(), help="the shared data folder")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--no-image", action="store_true", help="landmarks only (no colour hair refinement)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos (smoke runs)")
    args = parser.parse_args(argv)
    root = args.shared / "datasets" / "fasseg-frontal"
    if not (root / "index.csv").is_file():
        print(f"FASSEG not found under {root} (use --shared or FIT3DMM_SHARED)", file=sys.stderr)
        return 2
    with open(root / "index.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == args.split]
    rows.sort(key=lambda r: int(r["name"]))
    rows = rows[: args.limit] if args.limit else rows

    inter = np.zeros((len(REGIONS), len(rows), len(CLASSES)))
    union = np.zeros_like(inter)
    t_detect, t_segment, missing = [], [], []
    with MediaPipeDetector(max_faces=1) as detector:
        for i, row in enumerate(rows):
            photo = load_image(root / row["image"])
            target = class_masks(load_label_map(root / row["label"], "fasseg", photo.shape[:2]).masks)
            t0 = time.perf_counter()
            faces = detector.detect(photo)
            t_detect.append(time.perf_counter() - t0)
            if not faces:  # IoU 0: the union is the target, the intersection empty
                missing.append(row["image"])
                for r in range(len(REGIONS)):
                    union[r, i] = [target[c].sum() for c in CLASSES]
                continue
            t0 = time.perf_counter()
            image = None if args.no_image else photo
            seg = segment_from_landmarks(faces[0].landmarks, photo.shape[:2], image)
            t_segment.append(time.perf_counter() - t0)
            pred = class_masks(seg.masks)
            everywhere = np.ones(photo.shape[:2], bool)
            below = remove_above_line(everywhere, seg.forehead_line)
            for r, region in enumerate((everywhere, below, below & seg.face)):
                for k, c in enumerate(CLASSES):
                    inter[r, i, k] = (pred[c] & target[c] & region).sum()
                    union[r, i, k] = ((pred[c] | target[c]) & region).sum()

    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python benchmarks/bench_segmentation.py", *given])
    print(f"FASSEG frontal02 {args.split} split, {len(rows)} photos; built-in segmenter "
          f"({'landmarks only' if args.no_image else 'landmarks + colour hair refinement'}).\n")
    print(f"Command: `{command}`\n")
    names = list(CLASSES)
    for r, region in enumerate(REGIONS):
        with np.errstate(invalid="ignore", divide="ignore"):
            per_photo = np.where(union[r] > 0, inter[r] / union[r], np.nan)
        pooled = inter[r].sum(0) / union[r].sum(0)
        table = []
        for label, values in (("mean over photos", np.nanmean(per_photo, axis=0)), ("pooled", pooled)):
            entry = {"IoU": label, **dict(zip(names, values, strict=True))}
            entry["mean (4 classes)"] = float(np.mean(values))
            table.append(entry)
        print(f"IoU, {region}:\n")
        print(markdown_table(table, ["IoU", *names, "mean (4 classes)"]))
        print()
    ms = [1000 * statistics.median(t) if t else float("nan") for t in (t_detect, t_segment)]
    print(f"Median time per photo: detection {ms[0]:.1f} ms, segmentation {ms[1]:.1f} ms "
          f"({os.cpu_count()} CPU cores, shared).")
    print(f"No face detected in {len(missing)} photo(s)" + (f": {', '.join(missing)}" if missing else "."))
    return 0


if __name__ == "__main__":
    sys.exit(main())
