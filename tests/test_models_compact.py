"""The compact ICT-FaceKit Light shipped in the package, and the Algorithm 1 assets shipped beside it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fit3dmm.models.compact import COMPACT_NPZ, dequantize_basis, quantize_basis, read_compact_ict, write_compact_ict
from fit3dmm.models.face_model import file_checksum
from fit3dmm.models.store import ASSETS_FILE, find_model, load_model, packaged_models_dir, save_assets

SHIPPED = packaged_models_dir() / "ict-facekit-light"


def test_quantized_basis_is_within_half_a_step_and_deltas_wrap_exactly():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(3, 500, 3)).astype(np.float32)
    basis[0, ::2, 0], basis[0, 1::2, 0] = 5.0, -5.0  # consecutive codes ±32767: the deltas wrap around int16
    basis[2] = 0.0  # an all-zero basis stays exactly zero
    packed = quantize_basis(basis)
    assert packed["low"].dtype == packed["high"].dtype == np.uint8 and packed["low"].shape == (3, 3, 500)
    restored = dequantize_basis(packed["scale"], packed["low"], packed["high"])
    step = np.abs(basis).max(axis=1, keepdims=True) / 32767
    assert restored.shape == basis.shape and restored.dtype == np.float32
    assert (np.abs(restored - basis) <= step / 2 * (1 + 1e-5) + 1e-12).all()
    np.testing.assert_array_equal(restored[0, ::2, 0], 5.0)
    np.testing.assert_array_equal(restored[0, 1::2, 0], -5.0)
    np.testing.assert_array_equal(restored[2], 0.0)


def test_compact_file_keeps_every_other_array_exactly(tmp_path: Path):
    rng = np.random.default_rng(1)
    arrays = {"neutral": rng.normal(size=(40, 3)).astype(np.float32),
              "identity": rng.normal(size=(4, 40, 3)).astype(np.float32),
              "expression": rng.uniform(-1, 1, size=(2, 40, 3)).astype(np.float32),
              "faces": rng.integers(-1, 40, size=(10, 4)).astype(np.int32),
              "expression_names": np.array(["a", "b"])}
    np.savez(tmp_path / "src.npz", **arrays)
    write_compact_ict(tmp_path / "src.npz", tmp_path / COMPACT_NPZ)
    back = read_compact_ict(tmp_path / COMPACT_NPZ)
    assert sorted(back) == sorted(arrays)
    for name in ("neutral", "faces", "expression_names"):
        np.testing.assert_array_equal(back[name], arrays[name])
    for name in ("identity", "expression"):
        assert np.abs(back[name] - arrays[name]).max() <= np.abs(arrays[name]).max() / 32767
    with pytest.raises(ValueError, match="not an ICT-FaceKit npz"):
        np.savez(tmp_path / "other.npz", neutral=arrays["neutral"])
        write_compact_ict(tmp_path / "other.npz", tmp_path / "x.npz")


def test_shipped_model_is_within_a_hundredth_of_a_millimetre_of_the_float32_model(shared_dir: Path):
    original = shared_dir / "face-models" / "ict-facekit-light"
    if not (original / "ict_facekit_light.npz").is_file():
        pytest.skip(f"the float32 ICT-FaceKit Light is not in {original}")
    full, compact = load_model(str(original)), load_model(str(SHIPPED))
    assert compact.num_vertices == full.num_vertices == 26719
    np.testing.assert_array_equal(compact.triangles.numpy(), full.triangles.numpy())
    np.testing.assert_array_equal(compact.mean.numpy(), full.mean.numpy())
    rng = np.random.default_rng(0)
    worst = 0.0
    for identity in (rng.normal(size=(64, 100)), rng.uniform(-3, 3, size=(64, 100))):
        expression = rng.uniform(0, 1, size=(64, full.num_expression))
        import torch

        args = (torch.tensor(identity, dtype=torch.float32), torch.tensor(expression, dtype=torch.float32))
        with torch.no_grad():
            error = (compact(*args).vertices - full(*args).vertices).norm(dim=-1)  # cm
        worst = max(worst, float(error.max()) * 10)
    assert worst <= 0.01, f"largest vertex error {worst:.4f} mm"


def test_the_default_model_is_the_shipped_one_with_its_assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FIT3DMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FIT3DMM_MODELS", raising=False)
    assert find_model("ict") == ("ict", SHIPPED)
    model = load_model("ict")
    assert model.has_parts and model.assets.landmarks is not None and set(model.assets.eye_openings) == {
        "left_eye", "right_eye"}
    assert model.assets.source["model_checksum"] == model.checksum == file_checksum(str(SHIPPED / COMPACT_NPZ))
    assert not (tmp_path / "cache").exists()  # nothing was built or written
    assert "Permission is hereby granted, free of charge" in (SHIPPED / "LICENSE").read_text()  # the MIT notice


def test_cached_assets_win_and_foreign_folder_assets_are_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from fit3dmm.models.assets import FaceModelAssets

    monkeypatch.setenv("FIT3DMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FIT3DMM_MODELS", raising=False)
    model = load_model("ict")
    labels = np.full(model.num_vertices, -1, np.int64)
    labels[:10] = 0
    save_assets(model, FaceModelAssets(part_labels=labels))  # e.g. `fit3dmm models annotate`
    assert load_model("ict").part_labels.tolist() == labels.tolist()
    # a copy of the model folder whose annotations.npz records another model's checksum: not used
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / COMPACT_NPZ).write_bytes((SHIPPED / COMPACT_NPZ).read_bytes())
    with np.load(SHIPPED / ASSETS_FILE) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["source"] = np.asarray(json.dumps({**json.loads(str(arrays["source"])), "model_checksum": "0" * 64}))
    np.savez(folder / ASSETS_FILE, **arrays)
    monkeypatch.setenv("FIT3DMM_CACHE", str(tmp_path / "other-cache"))
    assert not load_model(str(folder)).has_parts
    (folder / ASSETS_FILE).write_bytes((SHIPPED / ASSETS_FILE).read_bytes())
    assert load_model(str(folder)).has_parts  # the same model data: its assets apply


def test_shipped_assets_record_the_inputs_the_code_would_use():
    from fit3dmm.annotate import AnnotationConfig, annotation_inputs

    with np.load(SHIPPED / ASSETS_FILE) as data:
        source = json.loads(str(data["source"]))
    checksum = file_checksum(str(SHIPPED / COMPACT_NPZ))
    assert source["model_checksum"] == checksum
    assert source["inputs"] == annotation_inputs(checksum, AnnotationConfig(), "mediapipe"), (
        "the shipped assets were built with other settings or another mediapipe: rebuild them with "
        "`fit3dmm models pack` (fit3dmm/data/ict-facekit-light/README.md)")


@pytest.mark.slow
def test_regenerating_the_shipped_assets_gives_them_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Algorithm 1 run again on the shipped model, with the recorded settings, reproduces the shipped assets
    (up to the detector's floating point on another CPU)."""
    from fit3dmm.annotate import AnnotationConfig, annotate_model, landmark_part_labels
    from fit3dmm.observe.detect import MediaPipeDetector

    monkeypatch.setenv("FIT3DMM_CACHE", str(tmp_path / "cache"))
    model = load_model(str(SHIPPED))
    shipped = model.assets
    with MediaPipeDetector(max_faces=1) as detector:
        rebuilt = annotate_model(model, detector, landmark_part_labels, AnnotationConfig())
    either = (shipped.part_labels >= 0) | (rebuilt.part_labels >= 0)
    assert (shipped.part_labels[either] == rebuilt.part_labels[either]).mean() >= 0.99
    mean = model.mean.numpy()

    def position(c):  # landmark positions on the mean face, cm
        return (c.weights[..., None] * mean[c.vertices]).sum(1)

    distance = np.linalg.norm(position(shipped.landmarks) - position(rebuilt.landmarks), axis=1) * 10
    assert np.median(distance) <= 0.1, f"median landmark shift {np.median(distance):.3f} mm"
    for name, samples in shipped.eye_openings.items():
        np.testing.assert_array_equal(rebuilt.eye_openings[name].triangles, samples.triangles)
    assert rebuilt.source["inputs"] == shipped.source["inputs"]


def test_models_pack_writes_a_folder_that_loads_as_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 shared_dir: Path):
    from fit3dmm.cli import main

    original = shared_dir / "face-models" / "ict-facekit-light"
    if not (original / "ict_facekit_light.npz").is_file():
        pytest.skip(f"the float32 ICT-FaceKit Light is not in {original}")
    monkeypatch.setenv("FIT3DMM_CACHE", str(tmp_path / "cache"))
    dest = tmp_path / "packed"
    result = CliRunner().invoke(main, ["models", "pack", str(original), str(dest), "--views", "4"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in dest.iterdir()} == {COMPACT_NPZ, ASSETS_FILE, "LICENSE", "SOURCE.md"}
    assert file_checksum(str(dest / COMPACT_NPZ)) == file_checksum(str(SHIPPED / COMPACT_NPZ))  # reproducible
    model = load_model(str(dest))
    assert model.has_parts and model.assets.source["views"] == "4"
    missing = CliRunner().invoke(main, ["models", "pack", str(tmp_path / "nowhere"), str(tmp_path / "x")])
    assert missing.exit_code == 1 and "nowhere" in missing.output and not (tmp_path / "x").exists()
