"""``fit3dmm compare`` on one FASSEG photo: each loss alone from the same rigid start, tables and figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fit3dmm.api import Pipeline, Schedule
from fit3dmm.cli import main
from fit3dmm.evaluate import (
    evaluate_fits,
    fasseg_photos,
    loss_alone_configs,
    prepare_targets,
    run_compare,
)
from fit3dmm.io.tables import read_csv
from fit3dmm.losses.registry import loss_class
from fit3dmm.metrics.fit_metrics import FASSEG_GROUPS
from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.store import packaged_models_dir

SHIPPED_ICT = packaged_models_dir() / "ict-facekit-light"
FASSEG_SUBDIR = Path("datasets") / "fasseg-frontal"


@pytest.fixture(scope="module")
def quick_model(annotated_ict: FaceModel) -> FaceModel:
    """The shipped ICT-FaceKit Light with its shipped Algorithm 1 assets (nothing to build)."""
    return annotated_ict


def test_compare_two_losses_on_one_fasseg_photo(quick_model: FaceModel, shared_dir: Path, tmp_path: Path):
    photos = fasseg_photos(shared_dir / FASSEG_SUBDIR, "test", limit=1)
    assert [p.name for p in photos] == ["test_1"]
    evaluation, written, failures = run_compare(
        photos, ["chamfer", "icp"], tmp_path, model=quick_model,
        schedule=Schedule(iterations=2, rigid_iterations=10), device="cpu")
    assert failures == {}
    assert list(evaluation.groups) == list(FASSEG_GROUPS)  # FASSEG labels → its four classes
    rows = read_csv(tmp_path / "table.csv")
    assert [r["config"] for r in rows] == ["chamfer", "icp"]
    for row in rows:
        values = [float(row[g]) for g in FASSEG_GROUPS]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert float(row["mean"]) == pytest.approx(np.mean(values))
        assert 1 <= float(row["iterations"]) <= 2 and int(row["images"]) == 1  # iterations run (early stop)
        # the rigid start from the landmarks already puts the model's nose on the photo's nose
        assert float(row["nose"]) > 0.4, row
    reg = loss_class("reg").default_weight
    chamfer = loss_class("chamfer").default_weight
    assert evaluation.regularizer == reg and evaluation.runs[0].weights == {"chamfer": chamfer, "reg": reg}
    table = (tmp_path / "table.md").read_text()
    assert "| chamfer |" in table and "| icp |" in table and f"λ = {reg:g}" in table
    figure = tmp_path / "figure.png"
    assert figure in written and (tmp_path / "figures" / "test_1.png") in written
    from PIL import Image

    with Image.open(figure) as image:
        width, height = image.size
    assert height > 256 and width >= 3 * 160  # three panels (target, chamfer, icp), each at least 160 px wide


def test_every_configuration_starts_from_the_same_rigid_fit(quick_model: FaceModel, shared_dir: Path):
    pipeline = Pipeline.create(model=quick_model, losses="icp,chamfer,reg", device="cpu",
                               schedule=Schedule(iterations=0, rigid_iterations=10))
    targets, _ = prepare_targets(fasseg_photos(shared_dir / FASSEG_SUBDIR, "test", limit=1), pipeline)
    configs = loss_alone_configs(["icp", "chamfer"])
    evaluation = evaluate_fits(pipeline, targets, configs, groups=FASSEG_GROUPS)
    first, second = evaluation.runs
    assert np.array_equal(first.pose_deg, second.pose_deg)
    assert np.array_equal(first.iou, second.iou, equal_nan=True)
    # and a different rigid stage gives a different start
    pipeline.schedule = Schedule(iterations=0, rigid_iterations=0)
    other = evaluate_fits(pipeline, targets, {"icp": configs["icp"]}, groups=FASSEG_GROUPS)
    assert not np.array_equal(other.runs[0].pose_deg, first.pose_deg)


def test_loss_alone_configs_refuse_what_is_not_a_geometric_loss():
    assert loss_alone_configs(["icp"], {"reg": 0.5}) == {"icp": {"icp": loss_class("icp").default_weight,
                                                                 "reg": 0.5}}
    assert loss_alone_configs(["icp"], regularize=False) == {"icp": {"icp": loss_class("icp").default_weight}}
    with pytest.raises(ValueError, match="not among"):
        loss_alone_configs(["lmk"])
    with pytest.raises(ValueError, match="twice"):
        loss_alone_configs(["icp", "icp"])
    with pytest.raises(ValueError, match="not compared"):
        loss_alone_configs(["icp"], {"prdl": 1.0})


def test_cli_compare_writes_tables(quick_model: FaceModel, shared_dir: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch):
    root = shared_dir / FASSEG_SUBDIR
    args = ["compare", str(root / "images" / "test_2.png"), "--seg", str(root / "labels" / "test_2.png"),
            "--seg-format", "fasseg", "--losses", "icp_rev,icp", "--iterations", "2", "--rigid-iterations", "5",
            "--model", str(SHIPPED_ICT), "--device", "cpu", "--out", str(tmp_path), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert [r["config"] for r in read_csv(tmp_path / "table.csv")] == ["icp_rev", "icp"]
    assert "| icp_rev |" in result.output
    per_image = read_csv(tmp_path / "per_image.csv")
    assert [(r["image"], r["config"]) for r in per_image] == [("test_2", "icp_rev"), ("test_2", "icp")]


def test_cli_compare_without_photos_runs_on_the_examples_into_compare_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    args = ["compare", "--losses", "icp", "--iterations", "2", "--rigid-iterations", "5", "--lm-iterations", "5",
            "--model", str(SHIPPED_ICT), "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    examples = Path(__file__).resolve().parents[1] / "examples"
    assert f"no IMAGE given: comparing on {examples / 'astronaut.jpg'}" in result.stderr
    assert result.stdout.splitlines()[-1] == "wrote 5 files under compare-out"
    assert [(r["image"], r["config"]) for r in read_csv(tmp_path / "compare-out" / "per_image.csv")] == [
        ("astronaut", "icp")]
    assert (tmp_path / "compare-out" / "figures" / "astronaut.png").is_file()


def test_cli_compare_without_photos_outside_a_checkout_says_what_to_pass(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("fit3dmm.cli.compare.source_checkout", lambda: tmp_path / "site-packages")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["compare", "--losses", "icp"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: no IMAGE given and no example photos in {tmp_path / 'site-packages' / 'examples'} (they come "
        "with a source checkout); give IMAGE... or --dataset NAME DIR"]
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "message"), [
    (["x.png", "--seg", "y.png", "--losses", "icp"], "--seg and --seg-format go together"),
    (["--seg", "y.png", "--seg-format", "fasseg"], "--seg labels the IMAGEs given; give them too"),
    (["x.png", "--dataset", "fasseg", "d"], "not both"),
])
def test_cli_compare_rejects_bad_options(tmp_path: Path, args: list[str], message: str):
    result = CliRunner().invoke(main, ["compare", *args, "--out", str(tmp_path)])
    assert result.exit_code != 0 and message in result.output
