"""Label-map importers on small hand-made maps of every format, file checks, FASSEG's real labels."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fit3dmm.defaults import LABEL_FORMATS
from fit3dmm.observe.crop import crop_matrix
from fit3dmm.observe.labelmaps import (
    FORMATS,
    LabelMapError,
    LabelMapParts,
    format_table,
    labels_to_parts,
    load_label_map,
    read_label_map,
    same_aspect,
    warp_parts,
)
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX, PART_NAMES

SHARED = Path(os.environ.get("FIT3DMM_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
FASSEG = SHARED / "datasets" / "fasseg-frontal"

# A 12 × 16 "face" drawn with format-neutral names; each format fills in its own class indices.
#   rows 1-2: brows (image-left brow at cols 2-5, image-right brow at cols 10-13)
#   rows 3-4: eyes (image-left eye at cols 2-5, image-right eye at cols 10-13)
#   rows 5-7: nose at cols 7-8;  row 8: upper lip, row 9: inner mouth, row 10: lower lip (cols 6-9)
#   col 0: hair; col 15: ear; everything else inside cols 1-14: skin; row 11: neck
LAYOUT = [
    "HSSSSSSSSSSSSSSE",
    "HSaaaaSSSSbbbbSE",
    "HSSSSSSSSSSSSSSE",
    "HScccc SSSddddSE",
    "HScccc SSSddddSE",
    "HSSSSSSnnSSSSSSE",
    "HSSSSSSnnSSSSSSE",
    "HSSSSSSnnSSSSSSE",
    "HSSSSSuuuuSSSSSE",
    "HSSSSSmmmmSSSSSE",
    "HSSSSSllllSSSSSE",
    "KKKKKKKKKKKKKKKK",
]
# the l/r names of each format deliberately put its "left" class on the image's LEFT (a, c): whatever a
# dataset means by it, the importer must call the image-right part the subject's left
CODES = {
    "celebamask-hq": {"H": 13, "S": 1, "a": 6, "b": 7, "c": 4, "d": 5, "n": 2, "u": 11, "m": 10, "l": 12, "E": 8,
                      "K": 17, " ": 0},
    "bisenet": {"H": 17, "S": 1, "a": 2, "b": 3, "c": 4, "d": 5, "n": 10, "u": 12, "m": 11, "l": 13, "E": 7,
                "K": 14, " ": 0},
    "lapa": {"H": 10, "S": 1, "a": 2, "b": 3, "c": 4, "d": 5, "n": 6, "u": 7, "m": 8, "l": 9, "E": 1, "K": 0,
             " ": 0},
    "helen": {"H": 10, "S": 1, "a": 2, "b": 3, "c": 4, "d": 5, "n": 6, "u": 7, "m": 8, "l": 9, "E": 0, "K": 0,
              " ": 0},
    "fasseg": {"H": 1, "S": 2, "a": 1, "b": 1, "c": 3, "d": 3, "n": 4, "u": 5, "m": 5, "l": 5, "E": 0, "K": 2,
               " ": 0},
}


def _layout(fmt: str) -> np.ndarray:
    return np.array([[CODES[fmt][ch] for ch in row] for row in LAYOUT], np.uint8)


def _region(*chars: str) -> np.ndarray:
    return np.array([[ch in chars for ch in row] for row in LAYOUT])


def _check_common(parts: LabelMapParts) -> None:
    m = {name: parts.masks[PART_INDEX[name]] for name in PART_NAMES}
    assert parts.masks.shape == (NUM_PARTS, 12, 16) and parts.masks.dtype == bool
    assert np.array_equal(m["left_eye"], _region("d")), "the image-right eye is the subject's left"
    assert np.array_equal(m["right_eye"], _region("c"))
    assert np.array_equal(m["nose"], _region("n"))
    assert parts.part_weights.dtype == np.float32 and parts.part_weights.shape == (NUM_PARTS,)


@pytest.mark.parametrize("fmt", ["celebamask-hq", "bisenet", "lapa", "helen"])
def test_formats_with_every_part(fmt: str) -> None:
    parts = labels_to_parts(_layout(fmt), fmt)
    _check_common(parts)
    m = {name: parts.masks[PART_INDEX[name]] for name in PART_NAMES}
    assert np.array_equal(m["left_eyebrow"], _region("b")) and np.array_equal(m["right_eyebrow"], _region("a"))
    assert np.array_equal(m["up_lip"], _region("u")) and np.array_equal(m["down_lip"], _region("l"))
    skin = _region("S") | (_region("E") if fmt == "lapa" else False)  # this lapa layout draws ears as skin
    assert np.array_equal(m["skin"], skin)
    assert np.array_equal(parts.hair, _region("H"))
    assert not (parts.masks.any(0) & _region("m", "K", " ")).any()  # inner mouth, neck, background: no part
    assert parts.part_weights.tolist() == [1.0] * NUM_PARTS and parts.merged == {}


@pytest.mark.parametrize(("fmt", "hat", "glasses", "cloth"), [("celebamask-hq", 14, 3, 18), ("bisenet", 18, 6, 16)])
def test_celebamask_occluders_are_hair(fmt: str, hat: int, glasses: int, cloth: int) -> None:
    labels = _layout(fmt)
    labels[0, 5] = hat
    labels[2, 3] = glasses
    labels[11, 0] = cloth  # ignored
    parts = labels_to_parts(labels, fmt)
    assert parts.hair[0, 5] and parts.hair[2, 3] and not parts.hair[11, 0] and not parts.masks[:, 11, 0].any()


# What every class of every format must become, written out from the datasets' own class lists (not from
# FORMATS): a part, "hair", a side-split pair ("eye", "brow"), or absent (no part, not hair).
EXPECTED = {
    # CelebAMask-HQ g_mask.py: label_list index + 1
    "celebamask-hq": {1: "skin", 2: "nose", 3: "hair", 4: "eye", 5: "eye", 6: "brow", 7: "brow", 11: "up_lip",
                      12: "down_lip", 13: "hair", 14: "hair"},
    # face-parsing.PyTorch prepropess_data.py atts, 1-based
    "bisenet": {1: "skin", 2: "brow", 3: "brow", 4: "eye", 5: "eye", 6: "hair", 10: "nose", 12: "up_lip",
                13: "down_lip", 17: "hair", 18: "hair"},
    "lapa": {1: "skin", 2: "brow", 3: "brow", 4: "eye", 5: "eye", 6: "nose", 7: "up_lip", 9: "down_lip", 10: "hair"},
    "helen": {1: "skin", 2: "brow", 3: "brow", 4: "eye", 5: "eye", 6: "nose", 7: "up_lip", 9: "down_lip",
              10: "hair"},
    "fasseg": {1: "hair", 2: "skin", 3: "eye", 4: "nose", 5: "mouth"},
}
CLASS_COUNTS = {"celebamask-hq": 19, "bisenet": 19, "lapa": 11, "helen": 11, "fasseg": 6}


@pytest.mark.parametrize("fmt", sorted(EXPECTED))
def test_each_class_lands_in_its_part(fmt: str) -> None:
    assert len(format_table(fmt)) == CLASS_COUNTS[fmt]
    block = np.zeros((8, 8), bool)
    block[2:4, 5:7] = True
    for cls in range(1, CLASS_COUNTS[fmt]):
        parts = labels_to_parts(np.where(block, cls, 0), fmt)
        m = {name: parts.masks[PART_INDEX[name]] for name in PART_NAMES}
        target = EXPECTED[fmt].get(cls)
        found = {name for name, mask in m.items() if mask.any()}
        if target in ("eye", "brow"):
            side = {"eye": ("left_eye", "right_eye"), "brow": ("left_eyebrow", "right_eyebrow")}[target]
            assert len(found) == 1 and found <= set(side) and np.array_equal(m[found.pop()], block), (fmt, cls)
        elif target == "mouth":  # FASSEG's merged lips
            assert found == {"up_lip", "down_lip"} and np.array_equal(m["up_lip"], block), (fmt, cls)
        elif target in PART_INDEX:
            assert found == {target} and np.array_equal(m[target], block), (fmt, cls)
        else:
            assert found == set(), (fmt, cls)
        assert np.array_equal(parts.hair, block if target == "hair" else np.zeros_like(block)), (fmt, cls)


def test_the_two_celebamask_orders_differ() -> None:
    # CelebAMask-HQ's own map read in BiSeNet's order would put its nose (2) where the brows are
    hq = labels_to_parts(_layout("celebamask-hq"), "celebamask-hq")
    as_bisenet = labels_to_parts(_layout("celebamask-hq"), "bisenet")
    assert np.array_equal(hq.masks[PART_INDEX["nose"]], _region("n"))
    assert not np.array_equal(as_bisenet.masks[PART_INDEX["nose"]], _region("n"))


def test_fasseg_merges_the_mouth_and_hides_the_brows() -> None:
    parts = labels_to_parts(_layout("fasseg"), "fasseg")
    _check_common(parts)
    w = dict(zip(PART_NAMES, parts.part_weights.tolist(), strict=True))
    assert w == {"left_eye": 1.0, "right_eye": 1.0, "left_eyebrow": 0.0, "right_eyebrow": 0.0, "up_lip": 0.0,
                 "down_lip": 0.0, "nose": 1.0, "skin": 1.0}
    mouth = _region("u", "m", "l")
    assert np.array_equal(parts.masks[PART_INDEX["up_lip"]], mouth)
    assert np.array_equal(parts.masks[PART_INDEX["down_lip"]], mouth)
    assert parts.merged == {"mouth": ["up_lip", "down_lip"], "hair": ["left_eyebrow", "right_eyebrow"]}
    assert np.array_equal(parts.hair, _region("H", "a", "b"))
    assert not parts.masks[PART_INDEX["left_eyebrow"]].any()
    assert np.array_equal(parts.masks[PART_INDEX["skin"]], _region("S", "K"))


def test_sides_follow_the_nose_for_a_profile() -> None:
    # a face turned to the image's left: one visible eye, right of the nose → the subject's left eye
    labels = np.zeros((8, 12), np.uint8)
    labels[2:4, 6:9] = 4  # "l_eye" — a name that must not matter
    labels[3:6, 2:4] = 6  # nose on the image's left
    parts = labels_to_parts(labels, "lapa")
    assert parts.masks[PART_INDEX["left_eye"]].sum() == 6 and not parts.masks[PART_INDEX["right_eye"]].any()
    assert parts.part_weights[PART_INDEX["right_eye"]] == 0 and parts.part_weights[PART_INDEX["left_eye"]] == 1


def _save(path: Path, array: np.ndarray) -> Path:
    if path.suffix == ".npy":
        np.save(path, array)
    else:
        Image.fromarray(array).save(path)
    return path


def test_file_kinds(tmp_path: Path) -> None:
    labels = _layout("lapa")
    expected = labels_to_parts(labels, "lapa")
    palette = Image.new("P", (16, 12))
    palette.putdata(labels.flatten().tolist())
    palette.putpalette([v for i in range(256) for v in (i * 7 % 256, i * 13 % 256, i * 29 % 256)])
    palette.save(tmp_path / "p.png")
    files = [
        _save(tmp_path / "l.png", labels),
        tmp_path / "p.png",
        _save(tmp_path / "i16.png", labels.astype(np.uint16)),
        _save(tmp_path / "rgb.png", np.repeat(labels[..., None], 3, -1)),
        _save(tmp_path / "a.npy", labels.astype(np.int32)),
    ]
    for path in files:
        parts = load_label_map(path, "lapa", (12, 16))
        assert np.array_equal(parts.masks, expected.masks), path.name
        assert np.array_equal(parts.hair, expected.hair)
    assert read_label_map(files[0], 11).dtype == np.int64


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.png", "no such file"),
        (lambda d: d, "not a file"),
        (lambda d: (d / "text.png").write_text("hello") and d / "text.png", "not a readable image"),
        (lambda d: _save(d / "big.png", np.zeros((13, 16), np.uint8)), r"16×13 px but the photo is 16×12"),
        (lambda d: _save(d / "square.png", np.zeros((8, 8), np.uint8)), r"8×8 px but the photo is 16×12 .*aspect"),
        (lambda d: _save(d / "color.png", np.dstack([_layout("lapa")] * 2 + [_layout("lapa") * 0])),
         "channels differ"),
        (lambda d: _save(d / "rgba.png", np.dstack([_layout("lapa")] * 4)), "4 channels"),
        (lambda d: _save(d / "range.png", _layout("lapa") + 5), r"values 5\.\.15 but the lapa format"),
        (lambda d: _save(d / "float.npy", _layout("lapa").astype(np.float32)), "float32 values"),
        (lambda d: _save(d / "neg.npy", _layout("lapa").astype(np.int16) - 1), r"values -1\.\.9"),
        (lambda d: _save(d / "f.tiff", _layout("lapa").astype(np.float32)), "floating-point"),
    ],
)
def test_bad_maps_fail_with_one_line(tmp_path: Path, make: Callable[[Path], Path], message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(LabelMapError, match=message) as info:
        load_label_map(path, "lapa", (12, 16))
    text = str(info.value)
    assert "\n" not in text and str(path) in text and isinstance(info.value, ValueError)


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown label map format"):
        labels_to_parts(np.zeros((2, 2), np.uint8), "cityscapes")
    assert set(FORMATS) == set(LABEL_FORMATS) == {"celebamask-hq", "bisenet", "lapa", "helen", "fasseg"}


def test_retired_celebamask_name_asks_for_a_choice(tmp_path: Path) -> None:
    path = _save(tmp_path / "l.png", _layout("bisenet"))
    for call in (lambda: labels_to_parts(_layout("bisenet"), "celebamask"),
                 lambda: load_label_map(path, "celebamask", (12, 16))):
        with pytest.raises(ValueError, match=r"choose celebamask-hq .* or bisenet") as info:
            call()
        assert "\n" not in str(info.value)


@pytest.mark.parametrize(("command", "out"), [("segment", "seg.png"), ("fit", "out"), ("compare", "out")])
def test_retired_celebamask_name_through_the_cli(tmp_path: Path, command: str, out: str) -> None:
    from fit3dmm.cli import main

    result = CliRunner().invoke(main, [command, str(tmp_path / "photo.png"), "--out", str(tmp_path / out),
                                       "--seg", str(tmp_path / "l.png"), "--seg-format", "celebamask"])
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert "celebamask-hq" in line and "bisenet" in line and "--seg-format" in line
    assert list(tmp_path.iterdir()) == []


def test_same_aspect_allows_rounding_only() -> None:
    assert same_aspect((512, 512), (1024, 1024)) and same_aspect((384, 512), (750, 1000))
    assert same_aspect((383, 512), (750, 1001))  # 750 · 512/1001 = 383.6, rounded down
    assert same_aspect((1024, 2048), (512, 1024))  # a map larger than the photo
    assert not same_aspect((13, 16), (12, 16)) and not same_aspect((8, 8), (12, 16))
    assert not same_aspect((512, 512), (1024, 1000))


def test_half_size_map_is_resized_to_the_photo(tmp_path: Path) -> None:
    # the photo is 24 × 32 and its true labels are the layout at 2×; the file holds every other pixel
    full = _layout("bisenet").repeat(2, 0).repeat(2, 1)
    path = _save(tmp_path / "half.png", full[::2, ::2])
    parts = load_label_map(path, "bisenet", (24, 32))
    expected = labels_to_parts(full, "bisenet")
    assert np.array_equal(parts.masks, expected.masks) and np.array_equal(parts.hair, expected.hair)
    (note,) = parts.notes
    assert str(path) in note and "16×12" in note and "32×24" in note and "resized" in note
    assert load_label_map(_save(tmp_path / "full.png", full), "bisenet", (24, 32)).notes == []
    # a non-integer scale (2.08 × 2.06): each photo pixel takes the class of the map pixel under its centre
    odd = load_label_map(path, "bisenet", (25, 33))
    half = full[::2, ::2]
    under = np.array([[half[int((r + 0.5) * 12 / 25), int((c + 0.5) * 16 / 33)] for c in range(33)]
                      for r in range(25)])
    assert np.array_equal(odd.masks, labels_to_parts(under, "bisenet").masks) and len(odd.notes) == 1
    assert 6 <= odd.masks[PART_INDEX["nose"]].any(1).sum() <= 7  # 3 map rows → 6.25 photo rows


def test_warp_parts_into_a_crop() -> None:
    parts = labels_to_parts(_layout("lapa"), "lapa")
    # a crop of the photo's top-left 8 × 8 pixels at 16 px: every photo pixel becomes 2 × 2 crop pixels
    crop = warp_parts(parts, crop_matrix(0.0, 0.0, 8.0, 16), 16)
    assert np.array_equal(crop.masks, parts.masks[:, :8, :8].repeat(2, 1).repeat(2, 2))
    assert np.array_equal(crop.hair, parts.hair[:8, :8].repeat(2, 0).repeat(2, 1))
    left_eye, lip = PART_INDEX["left_eye"], PART_INDEX["up_lip"]
    assert crop.part_weights[lip] == 0 and crop.part_weights[left_eye] == 0  # outside the crop
    assert crop.part_weights[PART_INDEX["right_eye"]] == 1


def test_real_fasseg_labels() -> None:
    if not (FASSEG / "index.csv").is_file():
        pytest.skip(f"FASSEG not found under {FASSEG}")
    raw = np.array(Image.open(FASSEG / "labels" / "test_1.png"))
    parts = load_label_map(FASSEG / "labels" / "test_1.png", "fasseg", raw.shape)
    le, re = parts.masks[PART_INDEX["left_eye"]], parts.masks[PART_INDEX["right_eye"]]
    assert np.array_equal(le | re, raw == 3) and not (le & re).any()
    assert np.nonzero(le)[1].mean() > np.nonzero(re)[1].mean()  # the subject's left eye: image right
    assert np.array_equal(parts.masks[PART_INDEX["up_lip"]], raw == 5) and np.array_equal(parts.hair, raw == 1)


def test_merged_mouth_is_split_between_the_lips_by_the_nearest_reference_lip() -> None:
    from fit3dmm.observe.segment import split_merged_parts

    up, down = PART_INDEX["up_lip"], PART_INDEX["down_lip"]
    masks = np.zeros((NUM_PARTS, 20, 20), bool)
    masks[up, 8:14, 4:16] = masks[down, 8:14, 4:16] = True  # one mouth class, shared by both lips
    weights = np.ones(NUM_PARTS, np.float32)
    weights[[up, down]] = 0
    reference = np.zeros_like(masks)
    reference[up, 9:10, 5:15] = True  # the landmark segmenter's lips: rows 9 and 12
    reference[down, 12:13, 5:15] = True
    out, w = split_merged_parts(masks, weights, {"mouth": ["up_lip", "down_lip"], "hair": ["left_eyebrow"]},
                                reference)
    # rows 8-10 are nearer row 9, rows 11-13 nearer row 12 (row 10.5 is the boundary)
    assert np.array_equal(np.flatnonzero(out[up].any(1)), [8, 9, 10])
    assert np.array_equal(np.flatnonzero(out[down].any(1)), [11, 12, 13])
    assert np.array_equal(out[up] | out[down], masks[up]) and not (out[up] & out[down]).any()
    assert w[up] == 1 and w[down] == 1 and w[PART_INDEX["left_eyebrow"]] == 1  # hair group left alone
    assert np.array_equal(out[PART_INDEX["nose"]], masks[PART_INDEX["nose"]])
    # without a reference for one of the lips the class stays merged (weight 0)
    reference[down] = False
    kept, kw = split_merged_parts(masks, weights, {"mouth": ["up_lip", "down_lip"]}, reference)
    assert np.array_equal(kept, masks) and kw[up] == 0 and kw[down] == 0
