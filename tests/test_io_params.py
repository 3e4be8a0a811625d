"""Fit parameters: a hand-built FitResult round-trips through JSON and NPZ; bad files give clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fit3dmm import __version__
from fit3dmm.io.params import (
    FIELDS,
    SCHEMA_VERSION,
    ParamsFormatError,
    read_params_json,
    result_to_dict,
    schema_markdown,
    write_params_json,
    write_params_npz,
)
from fit3dmm.render.camera import PerspectiveCamera, axis_angle_to_matrix
from fit3dmm.types.observation import Observation
from fit3dmm.types.result import FitResult


def _result() -> FitResult:
    """Two faces, 3 identity and 2 expression coefficients, 4 vertices: every number distinct."""
    g = torch.Generator().manual_seed(0)
    b, s = 2, 8
    rotation = torch.tensor([[0.1, -0.2, 0.05], [0.0, 0.3, 0.0]])
    crop_to_photo = torch.tensor([[2.0, 0.0, 100.0], [0.0, 2.0, 50.0], [0.0, 0.0, 1.0]]).repeat(b, 1, 1)
    obs = Observation(image=torch.zeros(b, 3, s, s), crop_to_photo=crop_to_photo,
                      photo_size=torch.tensor([[640.0, 480.0], [640.0, 480.0]]), names=["a.jpg#0", "a.jpg#1"])
    return FitResult(
        coefficients={
            "identity": torch.rand(b, 3, generator=g) - 0.5,
            "expression": torch.rand(b, 2, generator=g),
            "rotation": rotation,
            "translation": torch.tensor([[0.5, -1.0, -50.3], [1.0, 2.0, -60.0]]),
        },
        vertices=torch.rand(b, 4, 3, generator=g),
        triangles=torch.tensor([[0, 1, 2], [0, 2, 3]]),
        face_triangles=torch.tensor([[0, 1, 2]]),
        vertices_cam=torch.rand(b, 4, 3, generator=g),
        vertices_photo=torch.rand(b, 4, 2, generator=g),
        rotation=axis_angle_to_matrix(rotation),
        pose_deg=torch.tensor([[10.0, -5.5, 2.25], [0.0, 17.2, 0.0]]),
        camera=PerspectiveCamera.for_crop(s, batch=b),
        observation=obs,
        landmarks68_photo=torch.rand(b, 68, 2, generator=g) * 600,
        landmarks68_cam=torch.rand(b, 68, 3, generator=g),
        losses={"prdl": torch.tensor([0.25, float("nan")]), "landmark": torch.tensor([1.5, 2.5])},
        weights={"prdl": 0.8, "landmark": 1.0},
        history=torch.rand(5, b, generator=g),
        timings={"fit": 1.25},
        expression_names=["jawOpen", "mouthSmile_L"],
        model_info={"name": "tiny", "checksum": "abc123"},
        status=["ok", "diverged"],
    )


def _f32(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def test_result_to_dict_values() -> None:
    result = _result()
    d = result_to_dict(result, 1, extra={"command": "fit3dmm fit a.jpg", "path": Path("out")})
    assert d["schema_version"] == SCHEMA_VERSION and d["fit3dmm_version"] == __version__
    assert (d["name"], d["index"], d["status"]) == ("a.jpg#1", 1, "diverged")
    assert d["model"] == {"name": "tiny", "checksum": "abc123"}
    coeffs = {k: v[1].numpy() for k, v in result.coefficients.items()}
    np.testing.assert_array_equal(_f32(d["coefficients"]["identity"]), coeffs["identity"])
    expression = coeffs["expression"]
    assert list(d["blendshapes"]) == ["jawOpen", "mouthSmile_L"]
    np.testing.assert_array_equal(_f32(list(d["blendshapes"].values())), expression)
    assert d["coefficients"]["albedo"] is None and d["coefficients"]["lighting"] is None
    assert (d["pose"]["yaw"], d["pose"]["pitch"], d["pose"]["roll"]) == (0.0, 17.2, 0.0)
    assert d["pose"]["translation_cm"] == [1.0, 2.0, -60.0]  # float32 written with its shortest decimal
    np.testing.assert_array_equal(_f32(d["pose"]["rotation_matrix"]), result.rotation[1].numpy())
    # camera of an 8-px crop: f = 1015 / 224 · 8, principal point at (8 − 1) / 2
    assert d["camera"]["crop_size"] == 8 and d["camera"]["principal"] == [3.5, 3.5]
    assert np.float32(d["camera"]["focal"]) == np.float32(1015.0 / 224.0 * 8)
    assert d["crop"] == {"crop_to_photo": [[2.0, 0.0, 100.0], [0.0, 2.0, 50.0], [0.0, 0.0, 1.0]],
                         "photo_size": [640, 480]}
    np.testing.assert_array_equal(_f32(d["landmarks68"]["photo_px"]), result.landmarks68_photo[1].numpy())
    assert np.asarray(d["landmarks68"]["camera_cm"]).shape == (68, 3)
    assert d["losses"] == {"prdl": None, "landmark": 2.5}  # NaN → null
    assert d["weights"] == {"prdl": 0.8, "landmark": 1.0} and d["timings"] == {"fit": 1.25}
    assert d["iterations"] == 5
    assert d["extra"] == {"command": "fit3dmm fit a.jpg", "path": "out"}


def test_json_round_trip(tmp_path: Path) -> None:
    d = result_to_dict(_result(), 0)
    write_params_json(tmp_path / "p.json", d)
    assert os.listdir(tmp_path) == ["p.json"]
    text = (tmp_path / "p.json").read_text()
    assert "NaN" not in text and "0.10000000149" not in text
    assert read_params_json(tmp_path / "p.json") == json.loads(json.dumps(d))


def test_npz_round_trip(tmp_path: Path) -> None:
    result = _result()
    write_params_npz(tmp_path / "p.npz", result, 1)
    with np.load(tmp_path / "p.npz", allow_pickle=False) as z:
        coeffs = {k: v[1].numpy() for k, v in result.coefficients.items()}
        np.testing.assert_array_equal(z["coefficients_identity"], coeffs["identity"])
        np.testing.assert_array_equal(z["coefficients_expression"], coeffs["expression"])
        np.testing.assert_array_equal(z["pose_rotation_matrix"], result.rotation[1].numpy())
        np.testing.assert_array_equal(z["pose_translation_cm"], [1.0, 2.0, -60.0])
        np.testing.assert_array_equal(z["pose_deg"], _f32([0.0, 17.2, 0.0]))
        np.testing.assert_array_equal(z["landmarks68_camera_cm"], result.landmarks68_cam[1].numpy())
        np.testing.assert_array_equal(z["crop_photo_size"], [640, 480])
        np.testing.assert_array_equal(z["history"], result.history[:, 1].numpy())
        assert z["blendshape_names"].tolist() == ["jawOpen", "mouthSmile_L"]
        assert dict(zip(z["loss_names"].tolist(), z["loss_values"].tolist(), strict=True)) == {
            "prdl": pytest.approx(float("nan"), nan_ok=True), "landmark": 2.5}
        assert str(z["status"]) == "diverged" and str(z["schema_version"]) == SCHEMA_VERSION
        assert int(z["camera_crop_size"]) == 8 and "coefficients_albedo" not in z


def test_index_and_names_are_checked() -> None:
    result = _result()
    with pytest.raises(IndexError, match="outside the batch of 2"):
        result_to_dict(result, 2)
    result.expression_names = ["only_one"]
    with pytest.raises(ValueError, match="1 expression names for 2"):
        result_to_dict(result, 0)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"schema": "fit3dmm.params", ', r"not valid JSON \(line 1"),
        ("[1, 2]", "not a fit3dmm parameters file"),
        ('{"schema": "fit3dmm.params", "schema_version": "2.0"}', "schema version '2.0' is not supported"),
    ],
)
def test_bad_json_gives_clear_errors(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(ParamsFormatError, match=match) as info:
        read_params_json(tmp_path / "bad.json")
    assert str(tmp_path / "bad.json") in str(info.value)


def test_missing_fields_are_named(tmp_path: Path) -> None:
    d = result_to_dict(_result(), 0)
    del d["pose"]["yaw"], d["losses"]
    d["schema_version"] = "1.3"  # a later minor version is accepted when complete
    write_params_json(tmp_path / "p.json", d)
    with pytest.raises(ParamsFormatError, match=r"missing fields pose\.yaw, losses$"):
        read_params_json(tmp_path / "p.json")
    with pytest.raises(ParamsFormatError, match="no such file"):
        read_params_json(tmp_path / "none.json")


def test_schema_markdown_lists_every_field() -> None:
    table = schema_markdown().splitlines()
    assert table[0] == "| field | type | meaning |" and len(table) == 2 + len(FIELDS)
    assert all(f"`{key}`" in row for (key, _, _), row in zip(FIELDS, table[2:], strict=True))
    # every field of a written document is documented, and every documented field is written
    d = result_to_dict(_result(), 0, extra={})
    leaves = {k if k not in ("coefficients", "model", "pose", "camera", "crop", "landmarks68") else None
              for k in d} - {None}
    nested = {f"{k}.{sub}" for k in ("coefficients", "model", "pose", "camera", "crop", "landmarks68")
              for sub in d[k]}
    assert leaves | nested == {key for key, _, _ in FIELDS}
