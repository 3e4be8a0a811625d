"""atomic_write / atomic_save / atomic_files: complete files on success, nothing on failure."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fit3dmm.io.atomic import atomic_files, atomic_save, atomic_write


def test_atomic_write_binary_and_text(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "a.bin") as handle:
        handle.write(b"\x00\x01")
    with atomic_write(tmp_path / "b.txt", "w") as handle:
        handle.write("é\n")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_bytes() == "é\n".encode()
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.txt"]


def test_atomic_write_replaces_and_uses_default_permissions(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    target.write_text("old")
    with atomic_write(target, "w") as handle:
        handle.write("new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_exception_leaves_no_file_and_no_temp(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), atomic_write(tmp_path / "out.json", "w") as handle:
        handle.write("partial")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_exception_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("previous")
    with pytest.raises(KeyboardInterrupt), atomic_write(target, "w") as handle:
        handle.write("partial")
        raise KeyboardInterrupt
    assert target.read_text() == "previous" and os.listdir(tmp_path) == ["out.txt"]


def test_atomic_save_with_cv2_keeps_extension(tmp_path: Path) -> None:
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    seen: list[Path] = []

    def writer(path: Path) -> bool:
        seen.append(path)
        return cv2.imwrite(str(path), image)

    atomic_save(tmp_path / "img.png", writer)
    assert seen[0].suffix == ".png" and seen[0].parent == tmp_path and seen[0].name.startswith(".")
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "img.png")), image)
    assert os.listdir(tmp_path) == ["img.png"]


@pytest.mark.parametrize("outcome", ["raise", "false", "nothing"])
def test_atomic_save_failures_leave_nothing(tmp_path: Path, outcome: str) -> None:
    def writer(path: Path) -> bool | None:
        path.write_bytes(b"half")
        if outcome == "raise":
            raise ValueError("library error")
        if outcome == "nothing":
            path.unlink()
            return None
        return False

    with pytest.raises((ValueError, OSError)):
        atomic_save(tmp_path / "mesh.ply", writer)
    assert os.listdir(tmp_path) == []


def test_atomic_files_group_is_all_or_nothing(tmp_path: Path) -> None:
    names = [tmp_path / "t.png", tmp_path / "m.mtl", tmp_path / "f.obj"]
    with atomic_files(names) as temps:
        for temp, content in zip(temps, [b"png", b"mtl", b"obj"], strict=True):
            assert not temp.exists()
            temp.write_bytes(content)
    assert [p.read_bytes() for p in names] == [b"png", b"mtl", b"obj"]
    assert sorted(os.listdir(tmp_path)) == ["f.obj", "m.mtl", "t.png"]

    others = [tmp_path / "u.png", tmp_path / "u.obj"]
    with pytest.raises(RuntimeError), atomic_files(others) as temps:
        temps[0].write_bytes(b"png")
        raise RuntimeError("second file failed")
    assert sorted(os.listdir(tmp_path)) == ["f.obj", "m.mtl", "t.png"]


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "a", "a"):
        pass
    with pytest.raises(ValueError, match="same path twice"), atomic_files([tmp_path / "a", tmp_path / "a"]):
        pass
