"""Evaluation targets: each photo observed through the pipeline's one observe path, with the masks a fit is
scored against."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np

from fit3dmm.api import Pipeline
from fit3dmm.evaluate.datasets import LabelledPhoto
from fit3dmm.fitting.engine import one_line
from fit3dmm.observe.detect import Detection, LandmarkDetector
from fit3dmm.observe.image import load_image
from fit3dmm.observe.labelmaps import load_label_map
from fit3dmm.observe.segment import segment_from_landmarks
from fit3dmm.types.observation import Observation

Progress = Callable[[str], None]


@dataclass
class FitTarget:
    """One detected face, ready to fit and to score.

    Attributes:
        name: identifier of the photo.
        photo: (H, W, 3) uint8 RGB.
        observation: B = 1, with part masks and point sets when the pipeline's losses use parts.
        masks: (8, H, W) bool target part masks in photo pixels (a label map as loaded, or the built-in
            segmenter on the photo), or None when not scored.
        landmarks68: (68, 2) detected 68 landmarks in photo pixels.
        timings: seconds for ``detect`` (the detector) and ``observe`` (all of observing: detection, crop,
            part masks and point sets).
    """

    name: str
    photo: np.ndarray
    observation: Observation
    masks: np.ndarray | None
    landmarks68: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


class TimedDetector:
    """A detector that remembers how long its last call took (to split observing into its steps)."""

    def __init__(self, detector: LandmarkDetector) -> None:
        self.detector = detector
        self.name = detector.name
        self.num_landmarks = detector.num_landmarks
        self.seconds = 0.0

    def detect(self, image: np.ndarray) -> list[Detection]:
        start = time.perf_counter()
        try:
            return self.detector.detect(image)
        finally:
            self.seconds = time.perf_counter() - start


def prepare_targets(
    photos: Sequence[LabelledPhoto],
    pipeline: Pipeline,
    *,
    fit_labels: bool = True,
    score: bool = True,
    detector: LandmarkDetector | None = None,
    progress: Progress | None = None,
) -> tuple[list[FitTarget], dict[str, str]]:
    """Observe the largest face of each photo with ``pipeline`` and build its photo-level target masks.

    Args:
        photos: the photos (with label maps where available).
        pipeline: the observe path (crop size, detection size, minimum face size, segmentation).
        fit_labels: fit to a photo's label map when it has one; False fits to the built-in segmenter's parts
            while still scoring against the label map (what ``fit3dmm fit`` does on a labelled photo).
        score: compute the masks a fit is scored against (the label map, else the built-in segmenter on the
            photo).
        detector: landmark backend (default the pipeline's, closed afterwards).
        progress: called with one line per photo that fails and per note on a label map (a resized map).
    Returns:
        (targets, failures): failures maps a photo's name to why it was skipped (no face, bad label map).
    """
    targets: list[FitTarget] = []
    failures: dict[str, str] = {}
    segment = pipeline.observe_options.segment
    with ExitStack() as stack:
        if detector is None:
            detector = pipeline.detector_factory()
            stack.callback(detector.close)
        timed = TimedDetector(detector)
        for item in photos:
            try:
                photo = item.image if isinstance(item.image, np.ndarray) else load_image(item.image)
                parts = None if item.label is None else load_label_map(item.label, item.label_format, photo.shape[:2])
                if parts is not None and progress is not None:
                    for note in parts.notes:
                        progress(f"{item.name}: {note}")
                start = time.perf_counter()
                labels = parts if fit_labels and segment else None
                obs = pipeline.observe(photo, timed, name=item.name, labels=labels)[0]
                timings = {"detect": timed.seconds, "observe": time.perf_counter() - start}
                landmarks = obs.crop_points_to_photo(obs.landmarks.double())[0].numpy()
                masks = None
                if score:
                    masks = parts.masks if parts is not None else \
                        segment_from_landmarks(landmarks, photo.shape[:2], photo).masks
                lmk68 = obs.crop_points_to_photo(obs.landmarks68.double())[0].numpy()
            except (ValueError, OSError) as exc:
                failures[item.name] = one_line(exc)
                if progress is not None:
                    progress(f"{item.name}: skipped ({failures[item.name]})")
                continue
            targets.append(FitTarget(item.name, photo, obs, masks, lmk68, timings))
    return targets, failures
