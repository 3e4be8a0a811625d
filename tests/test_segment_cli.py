"""``fit3dmm segment`` with click's CliRunner: a FASSEG photo, an imported label map, bad inputs."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fit3dmm.cli import main
from fit3dmm.types.parts import BACKGROUND_COLOR, HAIR_COLOR, PART_COLORS, PART_INDEX

SHARED = Path(os.environ.get("FIT3DMM_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
FASSEG = SHARED / "datasets" / "fasseg-frontal"
PALETTE = {*PART_COLORS, HAIR_COLOR, BACKGROUND_COLOR}
pytestmark = pytest.mark.slow  # mediapipe and the shared FASSEG photos


@pytest.fixture(scope="module")
def photo() -> Path:
    path = FASSEG / "images" / "test_20.png"
    if not path.is_file():
        pytest.skip(f"FASSEG photo not found: {path}")
    return path


def _colors(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_builtin_segmentation_with_points(photo: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "seg.png"
    result = runner.invoke(main, ["segment", str(photo), "--out", str(out)])
    assert result.exit_code == 0, result.output
    overlay = tmp_path / "seg_overlay.png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.png", "seg_overlay.png"]
    size = Image.open(photo).size
    colors = _colors(out)
    assert Image.open(out).size == size and Image.open(overlay).size == size
    found = {tuple(c) for c in np.unique(colors.reshape(-1, 3), axis=0)}
    assert found <= PALETTE and {PART_COLORS[PART_INDEX["nose"]], PART_COLORS[PART_INDEX["skin"]]} <= found
    # where the map says background, the overlay is the photo; elsewhere it is tinted
    rgb = _colors(photo)
    background = (colors == BACKGROUND_COLOR).all(-1)
    assert np.array_equal(_colors(overlay)[background], rgb[background])
    assert not np.array_equal(_colors(overlay)[~background], rgb[~background])
    # --points: the same part map and overlay, and the point sets over the crop enlarged 8×: one dot of the
    # part's colour per point (3000 on the skin), the photo showing between them
    dotted = tmp_path / "dots" / "seg.png"
    dotted.parent.mkdir()
    result = runner.invoke(main, ["segment", str(photo), "--out", str(dotted), "--points"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in dotted.parent.iterdir()) == ["seg.png", "seg_overlay.png", "seg_points.png"]
    assert np.array_equal(_colors(dotted), colors)
    assert np.array_equal(_colors(dotted.with_name("seg_overlay.png")), _colors(overlay))
    view = _colors(dotted.with_name("seg_points.png"))
    assert view.shape == (224 * 8, 224 * 8, 3)
    skin = (view == PART_COLORS[PART_INDEX["skin"]]).all(-1)
    dots, _ = cv2.connectedComponents(skin.astype(np.uint8), connectivity=8)
    assert 3000 <= dots - 1 <= 3020  # (a few photo pixels may blend to the exact colour)
    assert len(np.unique(view.reshape(-1, 3), axis=0)) > 5000  # the photo, not flat colours


def test_imported_label_map(photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "fasseg.png"
    label = FASSEG / "labels" / photo.name
    result = CliRunner().invoke(main, ["segment", str(photo), "--out", str(out), "--seg", str(label),
                                       "--seg-format", "fasseg", "--points", "--size", "128"])
    assert result.exit_code == 0, result.output
    colors = _colors(out)
    raw = np.asarray(Image.open(label))
    # FASSEG's hair (brows included) is drawn as hair where no part is; its mouth as the upper lip's colour
    assert ((colors == HAIR_COLOR).all(-1) <= (raw == 1)).all()
    mouth = (colors == PART_COLORS[PART_INDEX["up_lip"]]).all(-1)
    assert mouth.any() and (mouth <= (raw == 5)).all()
    assert not (colors == PART_COLORS[PART_INDEX["left_eyebrow"]]).all(-1).any()


def test_label_map_of_another_size_is_resized(photo: Path, tmp_path: Path) -> None:
    # the label map at twice the photo's size: resized back by nearest neighbour, the same result, one warning
    label = FASSEG / "labels" / photo.name
    big = tmp_path / "big.png"
    Image.fromarray(np.asarray(Image.open(label)).repeat(2, 0).repeat(2, 1)).save(big)
    runner = CliRunner()
    outputs = []
    for name, seg in (("same", label), ("big", big)):
        out = tmp_path / f"{name}.png"
        result = runner.invoke(main, ["segment", str(photo), "--out", str(out), "--seg", str(seg),
                                      "--seg-format", "fasseg", "--size", "128"])
        assert result.exit_code == 0, result.output
        outputs.append((_colors(out), result.stderr.strip().splitlines()))
    (same, same_err), (resized, warnings) = outputs
    assert np.array_equal(resized, same) and same_err == []
    (line,) = warnings
    w, h = Image.open(photo).size
    assert line.startswith("warning: ") and str(big) in line and f"{2 * w}×{2 * h}" in line and f"{w}×{h}" in line


def test_bad_label_map_writes_nothing(photo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    Image.fromarray(np.full((10, 10), 3, np.uint8)).save(bad)
    out = tmp_path / "out" / "seg.png"
    out.parent.mkdir()
    result = CliRunner().invoke(main, ["segment", str(photo), "--out", str(out), "--seg", str(bad),
                                       "--seg-format", "lapa"])
    assert result.exit_code != 0
    message = result.output.strip().splitlines()
    assert len(message) == 1 and str(bad) in message[0] and "photo is" in message[0]
    assert list(out.parent.iterdir()) == []


def test_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = tmp_path / "nothing.jpg"
    result = runner.invoke(main, ["segment", str(missing), "--out", str(tmp_path / "a.png")])
    assert result.exit_code != 0 and str(missing) in result.output and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(main, ["segment", str(missing), "--out", str(tmp_path / "a.png"), "--seg", "x.png"])
    assert result.exit_code != 0 and "--seg-format" in result.output
    result = runner.invoke(main, ["segment", str(missing), "--out", str(tmp_path / "a.jpg")])
    assert result.exit_code != 0 and ".png" in result.output
    result = runner.invoke(main, ["segment", str(missing), "--out", str(tmp_path / "no" / "a.png")])
    assert result.exit_code != 0 and "does not exist" in result.output
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(blank)
    result = runner.invoke(main, ["segment", str(blank), "--out", str(tmp_path / "b.png")])
    assert result.exit_code != 0 and "no face found" in result.output and str(blank) in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.png"]
