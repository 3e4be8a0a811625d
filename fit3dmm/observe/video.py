"""Frames of a video file, a folder of images or a glob pattern, decoded one at a time (the input of tracking).

:func:`open_frames` opens any of the three and returns a :class:`FrameSource`, an iterable of :class:`Frame`
(input index, time, (H, W, 3) uint8 RGB image) that holds one decoded frame at a time, so memory does not grow
with the length of the input.

- **Video** (anything OpenCV's FFmpeg backend reads: mp4, mov, avi, mkv, webm, ...): ``index`` is the frame
  number in the file, ``fps`` the container's rate.  ``count`` comes from the container's frame count
  (``CAP_PROP_FRAME_COUNT``): exact for mp4/mov/avi, estimated from duration × rate for mkv/webm, where it may
  be off by a frame or more.  ``start > 0`` seeks with ``CAP_PROP_POS_FRAMES`` and checks the position of the
  frame that comes back; where the seek lands elsewhere (some codecs seek to key frames), the video is decoded
  from its start and the frames before ``start`` dropped, so that a pass from ``start`` always gives the
  frames of an uninterrupted pass.  A frame that fails to decode before the container's frame count stops the
  pass: ``truncated`` becomes True and ``truncated_at`` the index of the frame that could not be read (the
  frames before it were yielded).
- **Folder or glob pattern**: the image files (:data:`~fit3dmm.observe.image.IMAGE_EXTENSIONS`, hidden files
  skipped) sorted in natural order (``frame2`` before ``frame10``); ``index`` is the position in that list and
  ``fps`` is given (default :data:`DEFAULT_FPS`).  Every selected frame's size is read from its header when the
  source opens (a few ms per frame), so frames of different sizes fail at once rather than hours into a track.
  Images are loaded with :func:`~fit3dmm.observe.image.load_image`; one that fails to decode stops the pass
  like a damaged video frame.  A single image file is a one-frame sequence.

``start``, ``end`` (exclusive) and ``step`` select input indices: ``range(start, end, step)``.  To resume a
pass after frame ``k``, open the same input with ``start = k + step`` and the same ``end`` and ``step``: it
yields the frames the interrupted pass had left.  ``time = index / fps``.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np
from PIL import ExifTags, Image

from fit3dmm.observe.image import IMAGE_EXTENSIONS, ImageLoadError, find_images, load_image

DEFAULT_FPS = 30.0
"""Frames per second of a folder of frames when none is given."""

_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})


class VideoError(ValueError):
    """Frames cannot be read from an input or the selection is invalid; one line naming the input and the cause."""


def _fail(source: str | Path, cause: str) -> VideoError:
    return VideoError(f"cannot read frames from {source}: {cause}")


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame.

    Attributes:
        index: frame number in the input (video frame, or position in the sorted list of images).
        time: seconds from the start of the input, ``index / fps``.
        image: (H, W, 3) uint8 RGB.
    """

    index: int
    time: float
    image: np.ndarray


class FrameSource(ABC):
    """Frames selected from one input, yielded once in input order; a context manager that releases the input.

    Attributes:
        path: the input as given (file, folder or pattern).
        kind: ``"video"`` or ``"images"``.
        fps: frames per second (``time = index / fps``).
        size: (W, H) of the frames.
        start, end, step: the selection, ``range(start, end, step)`` (``end`` None: to the last frame).
        truncated: True once a pass stopped at a frame that could not be decoded.
        truncated_at: the input index of that frame, else None.
    """

    def __init__(self, path: str, kind: str, fps: float, size: tuple[int, int], total: int, start: int,
                 end: int | None, step: int) -> None:
        self.path = path
        self.kind = kind
        self.fps = fps
        self.size = size
        self.start, self.end, self.step = start, end, step
        self.truncated = False
        self.truncated_at: int | None = None
        self._total = total
        self._started = False

    @property
    def count(self) -> int:
        """Frames a pass yields, for progress bars; for a video it relies on the container's frame count, which
        may be approximate (module docstring), and a damaged video yields fewer."""
        stop = self._total if self.end is None else min(self.end, self._total)
        return len(range(self.start, stop, self.step))

    def describe(self) -> dict[str, Any]:
        """The input and the selection as JSON-ready values (path, kind, fps, size, count, start, end, step,
        truncated_at)."""
        return {"path": self.path, "kind": self.kind, "fps": self.fps, "size": list(self.size),
                "count": self.count, "start": self.start, "end": self.end, "step": self.step,
                "truncated_at": self.truncated_at}

    def __iter__(self) -> Iterator[Frame]:
        """Yield the selected frames once; a second pass needs a new :func:`open_frames`."""
        if self._started:
            raise RuntimeError(f"the frames of {self.path} were already read; open the input again")
        self._started = True
        for index, image in self._decode():
            yield Frame(index, index / self.fps, image)

    @abstractmethod
    def _decode(self) -> Iterator[tuple[int, np.ndarray]]:
        """(input index, RGB image) of each selected frame, in order (one subclass per kind of input)."""

    def _stop(self, index: int) -> None:
        """Record that the frame at input ``index`` could not be decoded."""
        self.truncated = True
        self.truncated_at = index

    def close(self) -> None:  # noqa: B027 - a default, not an abstract method: image inputs hold nothing
        """Release the input (a no-op for images)."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _rgb(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class _VideoFrames(FrameSource):
    """A video file read with OpenCV's FFmpeg backend, the first selected frame decoded when it opens."""

    def __init__(self, path: Path, start: int, end: int | None, step: int, fps: float | None) -> None:
        capture = self._open(path)
        try:
            total = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
            native = capture.get(cv2.CAP_PROP_FPS)
            rate = fps or (native if math.isfinite(native) and native > 0 else DEFAULT_FPS)
            capture, first = self._first(path, capture, start, total)
        except BaseException:
            capture.release()
            raise
        self._capture = capture
        self._first_image = first
        height, width = first.shape[:2]
        super().__init__(str(path), "video", float(rate), (width, height), total, start, end, step)

    @staticmethod
    def _open(path: Path) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise _fail(path, "not a video OpenCV can read (corrupt, truncated, empty or unsupported format)")
        return capture

    @classmethod
    def _first(cls, path: Path, capture: cv2.VideoCapture, start: int,
               total: int) -> tuple[cv2.VideoCapture, np.ndarray]:
        """Position ``capture`` just after frame ``start`` and return it with that frame (RGB).

        Seeks when ``start > 0`` and keeps the result only if the frame read comes from position ``start``;
        otherwise decodes from frame 0 and drops the frames before ``start``.
        """
        if start > 0 and capture.set(cv2.CAP_PROP_POS_FRAMES, start):
            ok, bgr = capture.read()
            if ok and round(capture.get(cv2.CAP_PROP_POS_FRAMES)) == start + 1:
                return capture, _rgb(bgr)
            if not ok and total and start >= total:
                raise _fail(path, f"start {start} is past the last frame (the video has {total} frames)")
            capture.release()
            capture = cls._open(path)
        for index in range(start):
            if not capture.grab():
                raise _fail(path, f"start {start} is past the last frame (only {index} frames decoded)")
        ok, bgr = capture.read()
        if not ok:
            if start == 0:
                raise _fail(path, "the video contains no frames (or its first frame cannot be decoded)")
            raise _fail(path, f"start {start} is past the last frame (only {start} frames decoded)")
        return capture, _rgb(bgr)

    def _decode(self) -> Iterator[tuple[int, np.ndarray]]:
        index, image = self.start, self._first_image
        self._first_image = np.empty(0, np.uint8)  # not kept alive for the whole pass
        while True:
            yield index, image
            following = index + self.step
            if self.end is not None and following >= self.end:
                return
            for skipped in range(index + 1, following):
                if not self._capture.grab():
                    self._ended(skipped)
                    return
            ok, bgr = self._capture.read()
            if not ok:
                self._ended(following)
                return
            index, image = following, _rgb(bgr)

    def _ended(self, index: int) -> None:
        """The decoder gave nothing at ``index``: the end of the video, or damage when the container announced
        more frames (one frame of slack for containers whose count is an estimate)."""
        if index < self._total - 1:
            self._stop(index)

    def close(self) -> None:
        self._capture.release()


def _natural_key(path: Path) -> list[tuple[int, int | str]]:
    """Sort key with digit runs compared as numbers: frame2 < frame10."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", str(path))]


def _displayed_size(path: Path, source: str) -> tuple[int, int]:
    """(W, H) of an image as displayed (EXIF orientation applied), from its header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception as exc:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError...
        raise _fail(source, f"{path} is not a readable image ({type(exc).__name__}: {exc})") from None
    return (height, width) if orientation in _TRANSPOSING_ORIENTATIONS else (width, height)


class _ImageFrames(FrameSource):
    """Image files in natural order; every selected frame's size checked from its header when it opens."""

    def __init__(self, source: str, paths: list[Path], start: int, end: int | None, step: int,
                 fps: float | None) -> None:
        selected = range(start, len(paths) if end is None else min(end, len(paths)), step)
        if not selected:
            raise _fail(source, f"start {start} is past the last frame ({len(paths)} images)")
        size = _displayed_size(paths[start], source)
        for index in selected[1:]:
            other = _displayed_size(paths[index], source)
            if other != size:
                raise _fail(source, f"{paths[index]} is {other[0]}×{other[1]} but {paths[start]} is "
                                    f"{size[0]}×{size[1]}; all frames must have the same size")
        self._paths = paths
        self._selected = selected
        super().__init__(source, "images", float(fps or DEFAULT_FPS), size, len(paths), start, end, step)

    def _decode(self) -> Iterator[tuple[int, np.ndarray]]:
        for index in self._selected:
            try:
                image = load_image(self._paths[index])
            except ImageLoadError:
                self._stop(index)
                return
            yield index, image


def open_frames(input: str | Path, start: int = 0, end: int | None = None, step: int = 1,
                fps: float | None = None) -> FrameSource:
    """Open a video file, a folder of images or a glob pattern for reading frames ``range(start, end, step)``.

    Args:
        input: video file, folder, image file or glob pattern (e.g. ``"shots/*.png"``).
        start, end, step: the input indices to yield (``end`` exclusive, None: to the last frame).
        fps: frames per second; overrides the video's own rate, default :data:`DEFAULT_FPS` for images.

    Raises:
        VideoError: missing input, unreadable/corrupt/empty video, a folder or pattern without images, images
            of different sizes, ``start ≥ end``, ``step < 1``, ``start`` past the last frame, a bad ``fps``.
    """
    name = str(input)
    for label, value in (("start", start), ("step", step), ("end", end)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise _fail(name, f"{label} must be an integer, got {value!r}")
    if start < 0:
        raise _fail(name, f"start must be ≥ 0, got {start}")
    if step < 1:
        raise _fail(name, f"step must be ≥ 1, got {step}")
    if end is not None and start >= end:
        raise _fail(name, f"start {start} must be smaller than end {end}")
    if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise _fail(name, f"fps must be a positive number, got {fps!r}")
    path = Path(input)
    if path.is_file() and path.suffix.lower() not in IMAGE_EXTENSIONS:
        return _VideoFrames(path, start, end, step, fps)
    try:
        paths = sorted(find_images([input]), key=_natural_key)
    except ImageLoadError as exc:
        raise VideoError(f"cannot read frames: {exc}") from None
    return _ImageFrames(name, paths, start, end, step, fps)
