"""Frame sources: videos, folders and globs give the selected frames (checked by colour-coded indices), seeking
gives the frames of a full pass, damaged and bad inputs give one-line VideoErrors or a truncated pass."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fit3dmm.observe import video as video_module
from fit3dmm.observe.video import DEFAULT_FPS, FrameSource, VideoError, open_frames

SIZE = (64, 48)
COUNT = 20


def _colour(index: int) -> tuple[int, int, int]:
    """RGB of frame ``index``: red and green step by 12, far apart enough to survive compression."""
    return 12 * index, 240 - 12 * index, 128


def _image(index: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    image = np.empty((size[1], size[0], 3), np.uint8)
    image[:] = _colour(index)
    return image


def _decoded_index(image: np.ndarray) -> int:
    """The index a frame was made from, read back from its mean red and green (so RGB order is checked too)."""
    red, green, blue = image.reshape(-1, 3).mean(axis=0)
    index = round(red / 12)
    assert round((240 - green) / 12) == index and abs(blue - 128) < 6, (red, green, blue)
    return index


def _write_video(path: Path, count: int = COUNT, fourcc: str = "mp4v", fps: float = 30.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, SIZE)
    assert writer.isOpened()
    for index in range(count):
        writer.write(cv2.cvtColor(_image(index), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _read(source: FrameSource) -> list[tuple[int, float, np.ndarray]]:
    with source:
        return [(frame.index, frame.time, frame.image) for frame in source]


@pytest.fixture
def mp4(tmp_path: Path) -> Path:
    return _write_video(tmp_path / "clip.mp4")


def test_video_yields_every_frame_in_rgb_with_its_index_and_time(mp4: Path) -> None:
    source = open_frames(mp4)
    assert (source.fps, source.count, source.size, source.kind) == (30.0, COUNT, SIZE, "video")
    frames = _read(source)
    assert [index for index, _, _ in frames] == list(range(COUNT))
    assert [_decoded_index(image) for _, _, image in frames] == list(range(COUNT))
    assert [time for _, time, _ in frames] == pytest.approx([i / 30 for i in range(COUNT)])
    assert all(image.dtype == np.uint8 and image.shape == (48, 64, 3) for _, _, image in frames)
    assert not source.truncated and source.truncated_at is None


@pytest.mark.parametrize(("start", "end", "step"), [(0, None, 1), (3, 17, 4), (7, None, 5), (12, 13, 1),
                                                    (5, 100, 6), (19, None, 1)])
def test_start_end_step_select_input_indices(mp4: Path, start: int, end: int | None, step: int) -> None:
    source = open_frames(mp4, start=start, end=end, step=step)
    expected = list(range(start, min(end or COUNT, COUNT), step))
    frames = _read(source)
    assert source.count == len(expected)
    assert [index for index, _, _ in frames] == expected
    assert [_decoded_index(image) for _, _, image in frames] == expected


@pytest.mark.parametrize("start", [1, 7, 12, 13, 19])
def test_seeking_gives_the_frames_of_a_pass_from_zero(mp4: Path, start: int) -> None:
    full = {index: image for index, _, image in _read(open_frames(mp4))}
    seeked = _read(open_frames(mp4, start=start, step=2))
    assert [index for index, _, _ in seeked] == list(range(start, COUNT, 2))
    for index, _, image in seeked:
        np.testing.assert_array_equal(image, full[index])


def test_a_seek_that_lands_elsewhere_falls_back_to_decoding(mp4: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A codec that seeks to the key frame before the target: the frames must still be the right ones."""
    full = {index: image for index, _, image in _read(open_frames(mp4))}
    seeks = []

    capture_class = cv2.VideoCapture

    class KeyFrameSeeking:
        """A capture whose frame seeks land 3 frames early (a wrapper: subclassing OpenCV's class crashes)."""

        def __init__(self, *args: object) -> None:
            self._capture = capture_class(*args)

        def set(self, prop: int, value: float) -> bool:
            if prop == cv2.CAP_PROP_POS_FRAMES:
                seeks.append(value)
                value = max(value - 3, 0)
            return self._capture.set(prop, value)

        def __getattr__(self, name: str) -> object:
            return getattr(self._capture, name)

    monkeypatch.setattr(video_module.cv2, "VideoCapture", KeyFrameSeeking)
    frames = _read(open_frames(mp4, start=9, step=4))
    assert seeks == [9]
    assert [index for index, _, _ in frames] == [9, 13, 17]
    for index, _, image in frames:
        np.testing.assert_array_equal(image, full[index])


def test_resuming_after_an_interruption_yields_the_rest_of_the_pass(mp4: Path) -> None:
    uninterrupted = _read(open_frames(mp4, start=2, end=19, step=3))
    with open_frames(mp4, start=2, end=19, step=3) as source:
        done = []
        for frame in source:
            done.append((frame.index, frame.time, frame.image))
            if len(done) == 2:
                break
    resumed = _read(open_frames(mp4, start=done[-1][0] + 3, end=19, step=3))
    combined = done + resumed
    assert [index for index, _, _ in combined] == [index for index, _, _ in uninterrupted] == [2, 5, 8, 11, 14, 17]
    for (_, time_a, image_a), (_, time_b, image_b) in zip(combined, uninterrupted, strict=True):
        assert time_a == time_b
        np.testing.assert_array_equal(image_a, image_b)


def test_fps_argument_overrides_the_video_rate(mp4: Path) -> None:
    source = open_frames(mp4, start=10, end=12, fps=20)
    assert source.fps == 20.0
    assert [time for _, time, _ in _read(source)] == pytest.approx([0.5, 0.55])


def test_a_source_is_read_once_and_released_by_its_context(mp4: Path) -> None:
    with open_frames(mp4, end=3) as source:
        assert len(list(source)) == 3
        with pytest.raises(RuntimeError, match="already read"):
            list(source)
    assert not source._capture.isOpened()


def test_describe_names_the_input_and_the_selection(mp4: Path) -> None:
    assert open_frames(mp4, start=4, end=15, step=5).describe() == {
        "path": str(mp4), "kind": "video", "fps": 30.0, "size": [64, 48], "count": 3, "start": 4, "end": 15,
        "step": 5, "truncated_at": None}


def test_truncated_video_yields_the_frames_before_the_damage(tmp_path: Path) -> None:
    whole = _write_video(tmp_path / "whole.avi", fourcc="MJPG")
    data = whole.read_bytes()
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(data[: len(data) * 7 // 10])
    source = open_frames(damaged)
    assert source.count == COUNT  # what the container announces
    frames = _read(source)
    kept = len(frames)
    assert 0 < kept < COUNT - 1
    assert [_decoded_index(image) for _, _, image in frames] == list(range(kept))
    assert source.truncated and source.truncated_at == kept
    assert source.describe()["truncated_at"] == kept
    intact = open_frames(whole)
    assert len(_read(intact)) == COUNT and not intact.truncated


def _write_frames(folder: Path, indices: list[int], name: str = "frame{}.png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name.format(index) for index in indices]
    for index, path in zip(indices, paths, strict=True):
        assert cv2.imwrite(str(path), cv2.cvtColor(_image(index), cv2.COLOR_RGB2BGR))
    return paths


def test_folder_frames_come_in_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    _write_frames(folder, [10, 2, 0, 11, 1, 3, 9])
    (folder / ".frame5.png").write_bytes(b"hidden")
    (folder / "notes.txt").write_text("not a frame")
    source = open_frames(folder)
    assert (source.fps, source.count, source.size, source.kind) == (DEFAULT_FPS, 7, SIZE, "images")
    frames = _read(source)
    assert [index for index, _, _ in frames] == list(range(7))
    assert [_decoded_index(image) for _, _, image in frames] == [0, 1, 2, 3, 9, 10, 11]
    assert [time for _, time, _ in frames] == pytest.approx([i / DEFAULT_FPS for i in range(7)])


def test_glob_selects_matching_frames_with_start_end_step_and_fps(tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    _write_frames(folder, list(range(12)))
    _write_frames(folder, [5], name="other{}.jpg")
    source = open_frames(str(folder / "frame*.png"), start=1, end=11, step=3, fps=12.5)
    frames = _read(source)
    assert source.count == 4
    assert [index for index, _, _ in frames] == [1, 4, 7, 10]
    assert [_decoded_index(image) for _, _, image in frames] == [1, 4, 7, 10]
    assert [time for _, time, _ in frames] == pytest.approx([0.08, 0.32, 0.56, 0.8])


def test_a_single_image_is_one_frame(tmp_path: Path) -> None:
    (path,) = _write_frames(tmp_path, [4])
    frames = _read(open_frames(path))
    assert [(index, _decoded_index(image)) for index, _, image in frames] == [(0, 4)]


def test_an_image_that_fails_to_decode_stops_the_pass(tmp_path: Path) -> None:
    paths = _write_frames(tmp_path / "shots", list(range(5)))
    data = paths[3].read_bytes()
    source = open_frames(tmp_path / "shots")
    paths[3].write_bytes(data[: len(data) // 2])  # damaged after its header was read
    frames = _read(source)
    assert [_decoded_index(image) for _, _, image in frames] == [0, 1, 2]
    assert source.truncated and source.truncated_at == 3


def _error_cases(tmp_path: Path) -> dict[str, tuple[Path | str, dict]]:
    """name → (input, open_frames keywords), each expected to raise a VideoError naming the input."""
    random_bytes = tmp_path / "random.mp4"
    random_bytes.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    whole = _write_video(tmp_path / "whole.mp4")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[:900])  # mp4v's index is written last
    empty = _write_video(tmp_path / "empty.avi", count=0, fourcc="MJPG")
    no_images = tmp_path / "no_images"
    no_images.mkdir()
    (no_images / "readme.txt").write_text("nothing to see")
    mixed = tmp_path / "mixed"
    _write_frames(mixed, [0, 1])
    cv2.imwrite(str(mixed / "frame2.png"), np.zeros((48, 60, 3), np.uint8))
    return {
        "missing file": (tmp_path / "missing.mp4", {}),
        "random bytes": (random_bytes, {}),
        "truncated mp4": (truncated, {}),
        "empty video": (empty, {}),
        "folder without images": (no_images, {}),
        "glob matching nothing": (str(tmp_path / "nothing*.png"), {}),
        "start equal to end": (whole, {"start": 5, "end": 5}),
        "start after end": (whole, {"start": 6, "end": 2}),
        "step zero": (whole, {"step": 0}),
        "negative start": (whole, {"start": -1}),
        "start past the video": (whole, {"start": 25}),
        "start past the folder": (mixed, {"start": 7}),
        "frames of different sizes": (mixed, {}),
        "bad fps": (whole, {"fps": 0}),
    }


@pytest.mark.parametrize("case", ["missing file", "random bytes", "truncated mp4", "empty video",
                                  "folder without images", "glob matching nothing", "start equal to end",
                                  "start after end", "step zero", "negative start", "start past the video",
                                  "start past the folder", "frames of different sizes", "bad fps"])
def test_bad_inputs_give_one_line_video_errors_naming_the_input(tmp_path: Path, case: str) -> None:
    source, options = _error_cases(tmp_path)[case]
    with pytest.raises(VideoError) as caught:
        open_frames(source, **options)
    message = str(caught.value)
    assert str(source) in message and "\n" not in message
    assert isinstance(caught.value, ValueError)


def test_error_messages_say_what_is_wrong(tmp_path: Path) -> None:
    cases = _error_cases(tmp_path)
    expected = {"empty video": "no frames", "start past the video": "past the last frame",
                "frames of different sizes": "60×48", "step zero": "step must be ≥ 1",
                "start equal to end": "smaller than end", "glob matching nothing": "no images match"}
    for case, words in expected.items():
        source, options = cases[case]
        with pytest.raises(VideoError, match=words):
            open_frames(source, **options)
