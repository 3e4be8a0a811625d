"""Option parsing and request checks, property-based where it helps (hypothesis): losses and weights, batch
and output options, output folder names, and the refusals that must come before any work."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fit3dmm import batch
from fit3dmm.api import ObserveOptions
from fit3dmm.io.outputs import OutputOptions
from fit3dmm.losses.registry import LOSS_CLASSES, loss_class, parse_losses, parse_weight_options
from fit3dmm.observe.image import ImageLoadError

NAMES = sorted(LOSS_CLASSES)
finite_weights = st.floats(min_value=0.0, max_value=1e30, allow_nan=False, allow_infinity=False)


@given(names=st.lists(st.sampled_from(NAMES), min_size=1, unique=True), data=st.data())
def test_parse_losses_gives_defaults_and_overrides(names, data):
    chosen = data.draw(st.lists(st.sampled_from(names), unique=True))
    overrides = {name: data.draw(finite_weights) for name in chosen}
    spec = data.draw(st.sampled_from([",".join(names), " , ".join(names) + ",", names]))
    out = parse_losses(spec, overrides)
    assert list(out) == names
    for name in names:
        assert out[name] == overrides.get(name, loss_class(name).default_weight)


@given(names=st.lists(st.sampled_from(NAMES), min_size=1, unique=True),
       bad=st.one_of(st.floats(max_value=-1e-300), st.just(math.inf), st.just(math.nan)))
def test_parse_losses_refuses_negative_or_non_finite_weights(names, bad):
    with pytest.raises(ValueError, match="must be a finite number"):
        parse_losses(names, {names[0]: bad})


@given(name=st.text(min_size=1, max_size=12).filter(lambda s: s.strip() and "," not in s and s.strip() not in NAMES))
def test_parse_losses_refuses_unknown_names(name):
    with pytest.raises(ValueError, match="unknown loss"):
        parse_losses(f"lmk,{name}")


@given(names=st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
def test_parse_losses_refuses_duplicates_and_foreign_weights(names):
    with pytest.raises(ValueError, match="listed twice"):
        parse_losses(names + names[:1])
    other = next(n for n in NAMES if n not in names)
    with pytest.raises(ValueError, match="not among the selected"):
        parse_losses(names, {other: 1.0})


@given(items=st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
                             st.floats(allow_nan=False), max_size=5))
def test_parse_weight_options_round_trips(items):
    parsed = parse_weight_options([f"{k}={v!r}" for k, v in items.items()])
    assert parsed == items


@given(item=st.text(max_size=20))
def test_parse_weight_options_never_crashes(item):
    """Any text is either a NAME=number pair or refused with a ValueError naming it."""
    try:
        parsed = parse_weight_options([item])
    except ValueError as exc:
        assert "--weight" in str(exc)
    else:
        name, _, value = item.partition("=")
        assert parsed == {name.strip(): float(value)}


@given(batch_size=st.integers(-5, 2000), jobs=st.integers(-3, 300), size=st.integers(0, 2000),
       min_face=st.floats(-10, 1e7, allow_nan=False), side=st.integers(0, 20000),
       faces=st.sampled_from(["largest", "all", "some", ""]))
def test_batch_and_observe_options_accept_exactly_the_documented_ranges(batch_size, jobs, size, min_face, side,
                                                                         faces):
    valid = 1 <= batch_size <= 1024 and 0 <= jobs <= 256
    if valid:
        assert batch.BatchOptions(batch_size=batch_size, jobs=jobs).batch_size == batch_size
    else:
        with pytest.raises(ValueError):
            batch.BatchOptions(batch_size=batch_size, jobs=jobs)
    valid = 64 <= size <= 1024 and 0 <= min_face < 1e6 and 64 <= side <= 16384 and faces in ("largest", "all")
    kwargs = dict(size=size, min_face_size=min_face, detect_max_side=side, faces=faces)
    if valid:
        assert ObserveOptions(**kwargs).size == size
    else:
        with pytest.raises(ValueError):
            ObserveOptions(**kwargs)


@given(fmt=st.sampled_from(["obj", ".OBJ", "ply", ".glb", "stl", "", "obj2"]),
       color=st.sampled_from(["auto", "texture", "vertex", "none", "rgb"]), texture=st.integers(0, 10000))
def test_output_options(fmt, color, texture):
    known = fmt.lower().lstrip(".") in ("obj", "ply", "glb")
    valid = known and color != "rgb" and 16 <= texture <= 8192 and not (color == "texture" and "ply" in fmt)
    if not valid:
        with pytest.raises(ValueError):
            OutputOptions(mesh_format=fmt, color=color, texture_size=texture)
        return
    options = OutputOptions(mesh_format=fmt, color=color, texture_size=texture)
    assert options.mesh_format == "." + fmt.lower().lstrip(".")


stems = st.text(alphabet=st.sampled_from("abAB._- é"), min_size=1, max_size=6)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.tuples(st.sampled_from(["x", "y", "x/z"]), stems,
                                st.sampled_from([".jpg", ".PNG", ".png"])), min_size=1, max_size=8), data=st.data())
def test_output_names_are_unique_safe_and_independent_of_order(tmp_path, files, data):
    paths = list(dict.fromkeys(tmp_path / folder / f"{stem}{ext}" for folder, stem, ext in files))
    names = batch.output_names(paths)
    assert len({n.lower() for n in names}) == len(names)
    for path, name in zip(paths, names, strict=True):
        assert "/" not in name and not name.startswith(".") and name.lower() not in ("report.csv", "done.json")
        assert name == path.stem or name.startswith((path.stem.lstrip(".") or "photo") + "-")
    shuffled = data.draw(st.permutations(range(len(paths))))
    again = batch.output_names([paths[i] for i in shuffled])
    assert [again[shuffled.index(i)] for i in range(len(paths))] == names


def test_output_names_keep_plain_stems_and_refuse_duplicates(tmp_path):
    assert batch.output_names([tmp_path / "a.jpg", tmp_path / "b.png"]) == ["a", "b"]
    names = batch.output_names([tmp_path / "a.jpg", tmp_path / "A.png", tmp_path / "report.csv.jpg"])
    assert all(n.startswith(("a-", "A-", "report.csv-")) and len(n.split("-")[-1]) == 8 for n in names)
    with pytest.raises(ValueError, match="listed twice"):
        batch.output_names([tmp_path / "a.jpg", tmp_path / "." / "a.jpg"])


# ------------------------------------------------------------------ request checks (before any work)
@pytest.fixture
def photos(tmp_path) -> list[Path]:
    out = []
    for i, size in enumerate([(40, 30), (50, 40)]):
        path = tmp_path / "in" / f"p{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(path)
        out.append(path)
    return out


def check(images, out, **kwargs):
    options = kwargs.pop("options", batch.BatchOptions())
    return batch.check_request([str(i) for i in images], out, options, **kwargs)


def test_check_request_accepts_folders_and_leaves_out_earlier_outputs(tmp_path, photos):
    out = tmp_path / "in" / "out"
    (out / "p0").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(out / "p0" / "face_overlay.png")
    request = check([tmp_path / "in"], out, recursive=True)
    assert request.paths == photos and request.mesh_target is None
    request = check([photos[0]], tmp_path / "face.PLY", options=batch.BatchOptions(
        outputs=OutputOptions(color="vertex")))
    assert request.mesh_target == tmp_path / "face.PLY" and request.outputs.mesh_format == ".ply"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"losses": "lmk,nope"}, "unknown loss 'nope'"),
    ({"losses": "lmk,reg", "weights": {"reg": -1.0}}, "must be a finite number"),
    ({"weights": {"nope": 1.0}}, "unknown loss 'nope'"),
    ({"seg": Path("x.png")}, "--seg and --seg-format go together"),
])
def test_check_request_refuses_bad_losses_and_options(tmp_path, photos, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check(photos[:1], tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_check_request_refuses_bad_combinations(tmp_path, photos):
    with pytest.raises(ValueError, match="a mesh path can only be given for one photo"):
        check(photos, tmp_path / "face.obj")
    with pytest.raises(ValueError, match="a mesh path holds one face"):
        check(photos[:1], tmp_path / "face.obj", faces="all")
    with pytest.raises(ValueError, match="--format ply disagrees"):
        check(photos[:1], tmp_path / "face.obj", mesh_format="ply")
    with pytest.raises(ValueError, match="PLY holds no texture"):
        check(photos[:1], tmp_path / "face.ply", options=batch.BatchOptions(outputs=OutputOptions(color="texture")))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        check(photos, tmp_path / "file")
    with pytest.raises(ValueError, match="--seg applies to one photo, got 2"):
        check(photos, tmp_path / "out", seg=tmp_path / "l.png", seg_format="fasseg")
    with pytest.raises(ValueError, match="all input images lie inside the output folder"):
        check(photos, tmp_path / "in")


def test_check_request_refuses_missing_inputs_and_empty_folders(tmp_path, photos):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageLoadError, match=r"no images in directory .*empty"):
        check([photos[0], tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(ImageLoadError, match=r"no such file or directory: .*missing\.jpg"):
        check([tmp_path / "missing.jpg"], tmp_path / "out")
    with pytest.raises(ImageLoadError, match="no images match the pattern"):
        check([tmp_path / "*.tif"], tmp_path / "out")


def test_check_request_refuses_a_label_map_of_another_aspect_ratio(tmp_path, photos):
    label = tmp_path / "labels.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(label)  # photo p0 is 40 x 30
    with pytest.raises(ValueError, match=r"label map .*40×40 px but the photo is 40×30 px.*aspect ratio"):
        check(photos[:1], tmp_path / "out", seg=label, seg_format="fasseg")
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(label)
    request = check(photos[:1], tmp_path / "out", seg=label, seg_format="fasseg")
    assert request.paths == photos[:1] and request.notes == []
    # the photo's aspect ratio at another size (here 2×): resized, and the request says so
    Image.fromarray(np.zeros((60, 80), np.uint8)).save(label)
    (note,) = check(photos[:1], tmp_path / "out", seg=label, seg_format="fasseg").notes
    assert str(label) in note and "resized from 80×60 px to the photo's 40×30 px" in note
