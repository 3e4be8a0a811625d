"""``fit3dmm compare`` on one FASSEG photo: each loss alone from the same rigid start, tables and figures."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from fit3dmm.api import Pipeline, Schedule
from fit3dmm.cli import main
from fit3dmm.evaluate import (
    ConfigRun,
    Evaluation,
    evaluate_fits,
    experiments,
    fasseg_photos,
    loss_alone_configs,
    prepare_targets,
    run_compare,
    write_compare,
)
from fit3dmm.evaluate.experiments import Config
from fit3dmm.evaluate.html_report import write_html_report
from fit3dmm.evaluate.render_score import NO_FACE, RenderSegmentScore, render_segment_iou
from fit3dmm.evaluate.statistics import mean_std, paired_bootstrap, win_tie_loss
from fit3dmm.fitting.objective import Objective
from fit3dmm.fitting.problem import FitProblem
from fit3dmm.io.images import write_png
from fit3dmm.io.tables import read_csv
from fit3dmm.losses.base import Prediction
from fit3dmm.losses.prdl import STATS, PRDLLoss
from fit3dmm.losses.registry import loss_class
from fit3dmm.metrics.fit_metrics import FASSEG_GROUPS
from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.store import packaged_models_dir
from fit3dmm.types.observation import Observation, PointSet
from fit3dmm.types.parts import NUM_PARTS, PART_NAMES

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
        raster = [float(row[f"raster_{g}"]) for g in FASSEG_GROUPS]  # the raster-label IoU beside it
        assert all(0.0 <= v <= 1.0 for v in raster) and raster != values
        assert float(row["raster_mean"]) == pytest.approx(np.mean(raster)) and int(row["unscored"]) == 0
        assert 1 <= float(row["iterations"]) <= 2 and int(row["images"]) == 1  # iterations run (early stop)
        # the rigid start from the landmarks already puts the model's nose on the photo's nose
        assert float(row["nose"]) > 0.4, row
    reg = loss_class("reg").default_weight
    chamfer = loss_class("chamfer").default_weight
    assert evaluation.regularizer == reg and evaluation.runs[0].weights == {"chamfer": chamfer, "reg": reg}
    table = (tmp_path / "table.md").read_text()
    assert "| chamfer |" in table and "| icp |" in table and f"λ = {reg:g}" in table
    assert "Main columns: Part IoU by render and segment (the paper's protocol)" in table
    assert "| mean | raster_mean | unscored | images |" in table
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
            "--model", str(SHIPPED_ICT), "--device", "cpu", "--out", str(tmp_path), "--quiet", "--scorer", "raster"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert [r["config"] for r in read_csv(tmp_path / "table.csv")] == ["icp_rev", "icp"]
    assert "| icp_rev |" in result.output
    per_image = read_csv(tmp_path / "per_image.csv")
    assert [(r["image"], r["config"]) for r in per_image] == [("test_2", "icp_rev"), ("test_2", "icp")]
    # the raster scorer alone: today's columns, named for what they are
    assert "raster_mean" not in per_image[0] and "unscored" not in per_image[0]
    assert "Main columns: raster-label IoU (the model's own Algorithm 1 labels; favours point losses)" in \
        (tmp_path / "table.md").read_text()


def test_compare_counts_a_render_without_a_face_as_unscored(quick_model: FaceModel, shared_dir: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The second configuration's render "shows no face": a NaN row left out of the main columns, counted and
    named per photo, while its raster-label IoU is still scored."""
    calls: list[int] = []

    def no_face_the_second_time(result, index, masks, detector, groups):
        calls.append(index)
        if len(calls) == 2:
            return RenderSegmentScore(None, None, NO_FACE)
        return render_segment_iou(result, index, masks, detector, groups)

    monkeypatch.setattr(experiments, "render_segment_iou", no_face_the_second_time)
    photos = fasseg_photos(shared_dir / FASSEG_SUBDIR, "test", limit=1)
    evaluation, _, _ = run_compare(photos, ["chamfer", "icp"], tmp_path, model=quick_model,
                                   schedule=Schedule(iterations=2, rigid_iterations=10), device="cpu")
    assert calls == [0, 0]
    scored, unscored = evaluation.runs
    assert np.isfinite(scored.iou).all() and np.isnan(unscored.iou).all()
    assert np.isfinite(unscored.iou_raster).all() and unscored.unscored == [NO_FACE] and scored.unscored == [""]
    rows = read_csv(tmp_path / "table.csv")
    assert [int(r["unscored"]) for r in rows] == [0, 1]
    assert rows[1]["mean"] in ("", "nan") and 0.0 <= float(rows[1]["raster_mean"]) <= 1.0
    per_image = read_csv(tmp_path / "per_image.csv")
    assert [r["unscored"] for r in per_image] == ["", NO_FACE]
    table = (tmp_path / "table.md").read_text()
    assert NO_FACE in table and "against each configuration" not in table  # no photo to pair chamfer with icp


def test_cli_compare_without_photos_runs_on_the_examples_into_compare_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    args = ["compare", "--losses", "icp", "--iterations", "2", "--rigid-iterations", "5", "--lm-iterations", "5",
            "--model", str(SHIPPED_ICT), "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    examples = Path(__file__).resolve().parents[1] / "examples"
    assert f"no IMAGE given: comparing on {examples / 'astronaut.jpg'}" in result.stderr
    assert result.stdout.splitlines()[-1] == "wrote 6 files under compare-out"
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


def _hand_run(name: str, iou: np.ndarray) -> ConfigRun:
    """A ConfigRun with only its Part IoU filled (no fit behind it)."""
    n = len(iou)
    return ConfigRun(name=name, weights={name: 1.0, "reg": 1.0}, iou=iou, labels=[],
                     landmarks68=np.zeros((n, 68, 2)), pose_deg=np.zeros((n, 3)), expression=np.zeros((n, 1)),
                     vertices=None, vertices_cam=None, status=["ok"] * n, iterations=[1] * n,
                     fit_seconds=[0.1] * n, batch_sizes=[1] * n)


def _markdown_after(text: str, lead: str) -> list[dict[str, str]]:
    """The rows of the first Markdown table after the paragraph starting with ``lead``."""
    lines = text[text.index(lead):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("| ")), len(lines))
    header, *rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[start:end]]
    assert rows[0] == ["---"] * len(header)
    return [dict(zip(header, row, strict=True)) for row in rows[1:]]


def test_write_compare_adds_the_statistics_of_issue_13_to_table_md(tmp_path: Path):
    # 5 photos, regions eyes and nose; photo 3 has no eyes in its target (NaN for every configuration)
    nan = np.nan
    icp = np.array([[0.50, 0.80], [0.60, 0.70], [0.70, 0.90], [nan, 0.60], [0.40, 0.85]])
    prdl = np.array([[0.60, 0.80], [0.60, 0.7005], [0.50, 0.80], [nan, 0.70], [0.40, 0.95]])
    chamfer = prdl - 0.02
    evaluation = Evaluation(names=[f"p{n}" for n in range(5)], groups={"eyes": ("eyes",), "nose": ("nose",)},
                            runs=[_hand_run("icp", icp), _hand_run("prdl", prdl), _hand_run("chamfer", chamfer)])
    written = write_compare(evaluation, [], tmp_path)
    assert written == [tmp_path / "table.md", tmp_path / "table.csv", tmp_path / "per_image.csv",
                       tmp_path / "report.html"]
    assert list(read_csv(tmp_path / "table.csv")[0]) == evaluation.table_columns()  # the summary is unchanged
    text = (tmp_path / "table.md").read_text()
    assert text.index("| config | eyes | nose | mean | images") < text.index("**Spread over photos.**") < \
        text.index("**prdl against each configuration.**") < text.index("\n## Per image")

    spread = _markdown_after(text, "**Spread over photos.**")
    assert [r["config"] for r in spread] == ["icp", "prdl", "chamfer"]
    for row, run in zip(spread, evaluation.runs, strict=True):
        mean, std, count = mean_std(np.column_stack([run.iou, evaluation.mean_iou(run)]))
        assert count.tolist() == [4, 5, 5]
        assert row == {"config": run.name, "eyes": f"{mean[0]:.3f} ± {std[0]:.3f} (n = 4)",
                       "nose": f"{mean[1]:.3f} ± {std[1]:.3f}", "mean": f"{mean[2]:.3f} ± {std[2]:.3f}"}
    # by hand: icp's eyes over 4 photos: mean 2.2 / 4 = 0.55, std √((0.0025 + 0.0025 + 0.0225 + 0.0225) / 3)
    assert spread[0]["eyes"] == f"0.550 ± {math.sqrt(0.05 / 3):.3f} (n = 4)" == "0.550 ± 0.129 (n = 4)"

    paired = _markdown_after(text, "**prdl against each configuration.**")
    assert [r["config"] for r in paired] == ["icp", "chamfer"]  # prdl is the reference, wherever it is listed
    reference = evaluation.mean_iou(evaluation.runs[1])
    for row, run in zip(paired, [evaluation.runs[0], evaluation.runs[2]], strict=True):
        mean, low, high = paired_bootstrap(reference, evaluation.mean_iou(run), resamples=10000, seed=0)
        wins, ties, losses = win_tie_loss(reference, evaluation.mean_iou(run), tie=1e-3)
        assert row == {"config": run.name, "prdl − config": f"{mean:+.3f}", "95 % interval": f"[{low:+.3f}, "
                       f"{high:+.3f}]", "wins": str(wins), "ties": str(ties), "losses": str(losses)}
    # by hand: per-photo means prdl − icp = [0.05, 0.00025, −0.15, 0.1, 0.05]: 3 wins, 1 tie, 1 loss,
    # mean 0.05025 / 5 = +0.010; chamfer is prdl − 0.02 on every photo: 5 wins and an interval [+0.020, +0.020]
    assert (paired[0]["prdl − config"], paired[0]["wins"], paired[0]["ties"], paired[0]["losses"]) == (
        "+0.010", "3", "1", "1")
    assert (paired[1]["prdl − config"], paired[1]["95 % interval"], paired[1]["wins"]) == (
        "+0.020", "[+0.020, +0.020]", "5")

    # without a configuration named prdl, the first one is the reference; one configuration has no pairs
    evaluation.runs = [_hand_run("icp", icp), _hand_run("chamfer", chamfer)]
    write_compare(evaluation, [], tmp_path)
    text = (tmp_path / "table.md").read_text()
    assert [r["config"] for r in _markdown_after(text, "**icp against each configuration.**")] == ["chamfer"]
    evaluation.runs = evaluation.runs[:1]
    write_compare(evaluation, [], tmp_path)
    text = (tmp_path / "table.md").read_text()
    assert "**Spread over photos.**" in text and "against each configuration" not in text


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class ReportParser(HTMLParser):
    """Checks that every non-void tag opened is closed in order; collects the links, the image sources, the
    tables (rows of cell texts) and the figure captions' texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.links: list[str] = []
        self.sources: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.captions: list[str] = []
        self.cell: list[str] | None = None
        self.caption: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.links.append(values["href"])
        if tag == "img":
            self.sources.append(values.get("src") or "")
        if tag in VOID:
            return
        self.stack.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "figcaption":
            self.caption = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "figcaption" and self.caption is not None:
            self.captions.append(" ".join(" ".join(self.caption).split()))
            self.caption = None

    def handle_data(self, data: str) -> None:
        for part in (self.cell, self.caption):
            if part is not None:
                part.append(data)


def _parse_report(path: Path) -> ReportParser:
    parser = ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    assert parser.errors == [] and parser.stack == [], (parser.errors, parser.stack)
    return parser


def _targets_exist(parser: ReportParser, folder: Path) -> None:
    from urllib.parse import unquote

    for reference in [*parser.links, *parser.sources]:
        assert "://" not in reference and not reference.startswith("/"), reference  # relative: travels with it
        assert (folder / unquote(reference)).is_file(), reference


def test_write_compare_writes_an_html_report_of_its_tables(tmp_path: Path):
    """Issue #13: ``report.html`` parses, shows table.csv's numbers and the statistics tables, links what exists."""
    nan = np.nan
    icp = np.array([[0.50, 0.80], [0.60, 0.70], [0.70, 0.90], [nan, 0.60]])
    evaluation = Evaluation(names=["p0", "p1", "p2", "p3"], groups={"eyes": ("eyes",), "nose": ("nose",)},
                            runs=[_hand_run("icp", icp), _hand_run("prdl <&>", icp + 0.05)], regularizer=1.0)
    written = write_compare(evaluation, [], tmp_path, title="A & B")
    assert written[-1] == tmp_path / "report.html"
    parser = _parse_report(tmp_path / "report.html")
    assert sorted(parser.links) == ["per_image.csv", "table.csv", "table.md"] and parser.sources == []
    _targets_exist(parser, tmp_path)
    summary, spread, paired = parser.tables
    header, *rows = summary
    assert header == evaluation.table_columns()
    csv_rows = read_csv(tmp_path / "table.csv")
    assert [row[0] for row in rows] == [r["config"] for r in csv_rows] == ["icp", "prdl <&>"]
    for row, expected in zip(rows, csv_rows, strict=True):
        for column, text in zip(header[1:], row[1:], strict=True):
            assert float(text) == pytest.approx(float(expected[column]), abs=5e-4), (column, text)
    # the statistics tables are table.md's, cell for cell
    markdown = (tmp_path / "table.md").read_text()
    for table, lead in ((spread, "**Spread over photos.**"), (paired, "**icp against each configuration.**")):
        expected = _markdown_after(markdown, lead)
        assert table == [list(expected[0]), *[list(r.values()) for r in expected]]


def test_html_report_shows_each_photo_figure_with_its_mean_iou(tmp_path: Path):
    icp = np.array([[0.50, 0.80], [0.60, 0.70], [0.70, 0.90]])
    names = ["p 0", "p1", "p#2"]  # names that need quoting in a link
    evaluation = Evaluation(names=names, groups={"eyes": ("eyes",), "nose": ("nose",)},
                            runs=[_hand_run("icp", icp), _hand_run("prdl", icp - 0.1)])
    (tmp_path / "figures").mkdir()
    files = [tmp_path / "figure.png", *[tmp_path / "figures" / f"{name}.png" for name in names[::2]]]
    for path in files:
        write_png(path, np.full((4, 4, 3), 200, np.uint8))
    report = write_html_report(tmp_path, evaluation, files)
    parser = _parse_report(report)
    assert parser.tables[0][0] == evaluation.table_columns()
    _targets_exist(parser, tmp_path)
    assert parser.sources == ["figure.png", "figures/p%200.png", "figures/p%232.png"]  # p1 has no figure
    assert parser.captions[1:] == ["p 0 icp: 0.650 prdl: 0.550", "p#2 icp: 0.800 prdl: 0.700"]


def brute_force_descriptor(points: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(A, 3) nearest, farthest and mean distance from each anchor to ``points`` (N, 2), by hand."""
    distances = np.sqrt(((anchors[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    return np.stack([distances.min(1), distances.max(1), distances.mean(1)], axis=-1)


def test_prdl_ablation_configs_fit_only_their_statistics(tiny_model: FaceModel):
    """prdl:min/max/ave are PRDL with that column of Γ alone (against a brute force over anchors × points),
    prdl:min+ave with two, prdl with all three; the schedule's other PRDL options still apply."""
    labels = ["prdl:min", "prdl:max", "prdl:ave", "prdl", "prdl:ave+min"]
    configs = loss_alone_configs(labels)
    assert list(configs) == labels
    schedule = Schedule(loss_options={"prdl": {"stride": 3}})  # every configuration keeps it
    losses = {}
    for label, config in configs.items():
        objective = Objective(config.weights, tiny_model, config.schedule(schedule).loss_options)
        losses[label] = objective.losses["prdl"]
        assert isinstance(losses[label], PRDLLoss) and losses[label].stride == 3
    assert [losses[k].stats for k in labels] == [("min",), ("max",), ("ave",), STATS, ("min", "ave")]
    assert configs["prdl"].loss_options == {} and configs["prdl"] == {"prdl": 0.1, "reg": 1.0}

    size, rng = 20, np.random.default_rng(3)
    parts = {"nose": (12, 9), "skin": (40, 30), "left_eye": (0, 5), "up_lip": (6, 0)}  # |C_p|, |V_p|
    weights = rng.uniform(0.5, 2.0, (1, NUM_PARTS))
    targets, predicted = {}, {}
    for name, (n_target, n_predicted) in parts.items():
        for store, n, shift in ((targets, n_target, 0.0), (predicted, n_predicted, 1.5)):
            points = torch.from_numpy(rng.uniform(2.0, size - 3.0, (1, n, 2)) + shift)
            store[name] = PointSet(points, torch.ones(1, n, dtype=torch.bool))
    observation = Observation(image=torch.zeros(1, 3, size, size), crop_to_photo=torch.eye(3)[None],
                              photo_size=torch.full((1, 2), float(size)), part_weights=torch.from_numpy(weights),
                              points=targets)
    prediction = Prediction(vertices=torch.zeros(1, 4, 3), vertices_cam=torch.zeros(1, 4, 3),
                            points2d=torch.zeros(1, 4, 2), depth=torch.ones(1, 4),
                            visible=torch.ones(1, 4, dtype=torch.bool), triangles=torch.zeros(1, 3, dtype=torch.long),
                            part_labels=torch.zeros(4, dtype=torch.long), landmarks68=torch.zeros(1, 68, 2),
                            parts=predicted)
    values = {label: float(loss(prediction, observation)[0]) for label, loss in losses.items()}

    grid = np.arange(0, size, 3, dtype=np.float64)  # the stride-3 anchors (x, y) on pixel centres
    anchors = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    column_terms = np.zeros(3)  # Σ_p w_p Σ_i (Γ(V_p) − Γ(C_p))²_ij / A, per statistic j
    for name, (n_target, n_predicted) in parts.items():
        if n_target and n_predicted:  # an empty C_p or V_p contributes 0
            difference = (brute_force_descriptor(predicted[name].points[0].numpy(), anchors)
                          - brute_force_descriptor(targets[name].points[0].numpy(), anchors))
            column_terms += weights[0, PART_NAMES.index(name)] * (difference ** 2).sum(0) / len(anchors)
    assert column_terms.min() > 0
    for j, stat in enumerate(STATS):
        assert values[f"prdl:{stat}"] == pytest.approx(column_terms[j], rel=1e-9)
    # ‖D‖²_F is the sum of its columns' squared norms: all three statistics = the sum of the single ones
    assert values["prdl"] == pytest.approx(column_terms.sum(), rel=1e-9)
    assert values["prdl"] == pytest.approx(values["prdl:min"] + values["prdl:max"] + values["prdl:ave"], rel=1e-9)
    assert values["prdl:ave+min"] == pytest.approx(column_terms[0] + column_terms[2], rel=1e-9)


def test_config_is_its_weights_plus_loss_options():
    plain = {"prdl": 0.1, "reg": 1.0}
    narrowed = Config(plain, {"prdl": {"stats": ("min",)}})
    assert Config(plain) == plain and dict(narrowed) == plain and narrowed["prdl"] == 0.1 and len(narrowed) == 2
    assert narrowed != plain and narrowed != Config(plain, {"prdl": {"stats": ("max",)}})
    assert narrowed == Config(dict(plain), {"prdl": {"stats": ("min",)}})
    base = Schedule(iterations=7, loss_options={"prdl": {"stride": 2, "stats": STATS}, "icp": {"k": 1}})
    assert Config(plain).schedule(base) is base
    mine = narrowed.schedule(base)
    assert mine.loss_options == {"prdl": {"stride": 2, "stats": ("min",)}, "icp": {"k": 1}} and mine.iterations == 7
    assert base.loss_options["prdl"]["stats"] == STATS  # the shared schedule is left alone
    with pytest.raises(ValueError, match=r"options given for \['icp'\]"):
        Config(plain, {"icp": {"k": 2}})


def test_loss_alone_configs_parse_prdl_statistics():
    configs = loss_alone_configs(["prdl:max", " icp", "prdl:min+max+ave"], {"prdl": 0.3}, regularize=False)
    assert configs == {"prdl:max": Config({"prdl": 0.3}, {"prdl": {"stats": ("max",)}}),
                       "icp": {"icp": loss_class("icp").default_weight},
                       "prdl:min+max+ave": Config({"prdl": 0.3}, {"prdl": {"stats": STATS}})}
    for losses, message in [
        (["icp:min"], "'icp:min': icp takes no options (only prdl here)"),
        (["prdl:mean"], "'prdl:mean': choose among min, max, ave, each once, joined by '+' (e.g. prdl:min+ave)"),
        (["prdl:min+min"], "'prdl:min+min': choose among"),
        (["prdl:"], "'prdl:': choose among"),
        (["prdl:min", "prdl", "prdl:min"], "listed twice"),
        (["lmk:min"], "not among"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            loss_alone_configs(losses)


def test_cli_compare_refuses_a_bad_statistic_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["compare", "--losses", "prdl:min,icp:min", "--quiet"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["Error: 'icp:min': icp takes no options (only prdl here)"]
    assert sorted(tmp_path.iterdir()) == []


def test_compare_prdl_statistics_on_one_fasseg_photo(quick_model: FaceModel, shared_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    built: list[Objective] = []
    objective = FitProblem.objective
    monkeypatch.setattr(FitProblem, "objective", lambda problem, weights: built.append(
        objective(problem, weights)) or built[-1])
    photos = fasseg_photos(shared_dir / FASSEG_SUBDIR, "test", limit=1)
    evaluation, _, failures = run_compare(photos, ["prdl:min", "prdl"], tmp_path, model=quick_model,
                                          schedule=Schedule(iterations=2, rigid_iterations=10), device="cpu")
    assert failures == {}
    assert [r["config"] for r in read_csv(tmp_path / "table.csv")] == ["prdl:min", "prdl"]
    assert [r["config"] for r in read_csv(tmp_path / "per_image.csv")] == ["prdl:min", "prdl"]
    assert "| prdl:min |" in (tmp_path / "table.md").read_text()
    assert [r.loss_options for r in evaluation.runs] == [{"prdl": {"stats": ("min",)}}, {}]
    assert [o.losses["prdl"].stats for o in built] == [("min",), STATS]  # each fitted with its own statistics
    for run in evaluation.runs:
        assert run.weights == {"prdl": loss_class("prdl").default_weight, "reg": loss_class("reg").default_weight}
        assert 0.0 <= float(np.nanmean(evaluation.mean_iou(run))) <= 1.0 and run.iterations[0] >= 1


@pytest.mark.parametrize(("args", "fit_labels"), [
    (["--dataset", "fasseg", "DIR"], False),                      # a labelled dataset: the segmenter's parts
    (["--dataset", "fasseg", "DIR", "--targets", "labels"], True),  # the oracle
    (["IMAGE", "--seg", "LABEL", "--seg-format", "fasseg"], True),  # the user's own label map is the target
    (["IMAGE", "--seg", "LABEL", "--seg-format", "fasseg", "--targets", "segmenter"], False),
])
def test_compare_fits_to_the_segmenter_or_the_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args,
                                                     fit_labels):
    """What the losses are fitted to (issue #13: targets and scores apart), checked where the targets are made."""
    seen = {}

    def spy(photos, pipeline, *, fit_labels=True, **options):
        seen["fit_labels"] = fit_labels
        raise ValueError("stopped by the test")

    monkeypatch.setattr("fit3dmm.evaluate.compare.prepare_targets", spy)
    monkeypatch.setattr("fit3dmm.evaluate.compare.Pipeline.create", lambda **options: None)
    root = tmp_path / "fasseg"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "test_1.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "labels" / "test_1.png")
    (root / "index.csv").write_text("split,name,image,label,width,height\n"
                                    "test,1,images/test_1.png,labels/test_1.png,8,8\n")
    swap = {"DIR": str(root), "IMAGE": str(root / "images" / "test_1.png"),
            "LABEL": str(root / "labels" / "test_1.png")}
    result = CliRunner().invoke(main, ["compare", *[swap.get(a, a) for a in args], "--losses", "icp",
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "stopped by the test" in result.output, result.output
    assert seen == {"fit_labels": fit_labels}
    with pytest.raises(ValueError, match="targets_from"):
        run_compare(fasseg_photos(root, "test"), ["icp"], tmp_path, targets_from="hand")
