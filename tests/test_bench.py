"""The benchmark runner: option merging, README sections, and skipping missing data without crashing."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fit3dmm.cli import main
from fit3dmm.cli.bench import find_suite

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def run_module():
    spec = importlib.util.spec_from_file_location("bench_run_under_test", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_merge_options_replaces_and_appends(run_module):
    command = ["bench.py", "--photos", "5", "--iterations", "100", "--flag"]
    merged = run_module.merge_options(command, ["--iterations", "20", "--limit", "3", "--skip-dense"])
    assert merged == ["bench.py", "--photos", "5", "--iterations", "20", "--flag", "--limit", "3", "--skip-dense"]
    assert run_module.merge_options(command, []) == command


def test_readme_sections_are_replaced_in_place_and_others_kept(run_module, tmp_path: Path):
    readme = tmp_path / "README.md"
    begin, end = run_module.BEGIN, run_module.END
    readme.write_text(f"# Benchmarks\n\nintro\n\n## Results\n\n{begin.format('a')}\nold a\n{end.format('a')}\n\n"
                      f"{begin.format('b')}\nold b\n{end.format('b')}\n\nfooter\n")
    run_module.update_readme({"a": f"{begin.format('a')}\nnew a\n{end.format('a')}",
                              "c": f"{begin.format('c')}\nnew c\n{end.format('c')}"}, ["a", "b", "c"], readme)
    text = readme.read_text()
    assert "old a" not in text and "new a" in text
    assert "old b" in text and "intro" in text and "footer" in text
    assert text.index("new a") < text.index("old b") < text.index("new c")  # c appended at the end
    run_module.update_readme({"c": f"{begin.format('c')}\nnewer c\n{end.format('c')}"}, ["c"], readme)
    assert readme.read_text().count(begin.format("c")) == 1 and "newer c" in readme.read_text()


def test_section_names_command_commit_and_mode(run_module):
    step = run_module.Step("fasseg", "FASSEG fits", ["benchmarks/bench_fasseg.py"])
    outcome = run_module.Outcome(step, "ok", "| a |\n| --- |", 12.3, "python benchmarks/bench_fasseg.py --limit 4")
    block = run_module.section(outcome, True, "abc1234", "2030-01-01", ["![plot](results/x.png)"])
    assert block.startswith(run_module.BEGIN.format("fasseg")) and block.endswith(run_module.END.format("fasseg"))
    assert "`python benchmarks/bench_fasseg.py --limit 4`" in block and "commit `abc1234`" in block
    assert "quick run" in block and "![plot](results/x.png)" in block


@pytest.mark.slow  # runs benchmark scripts in other processes
@pytest.mark.parametrize("script", ["bench_fasseg.py", "bench_aflw.py"])
def test_benchmarks_skip_missing_datasets(script: str, tmp_path: Path):
    proc = subprocess.run([sys.executable, str(BENCH / script), "--shared", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("skipped:") and "not found" in proc.stdout


def test_quick_runs_keep_their_files_apart(run_module):
    assert run_module.results_folder(False) == run_module.RESULTS
    quick = run_module.results_folder(True)
    assert quick == run_module.RESULTS / "quick"
    assert run_module._link(quick / "a.png", quick) == "results/quick/a.png"
    assert run_module._link(run_module.RESULTS / "a.png", run_module.RESULTS) == "results/a.png"


def test_runner_skips_steps_whose_data_is_missing(run_module, tmp_path: Path):
    step = next(s for s in run_module.steps(tmp_path) if s.name == "fasseg")
    outcome = run_module.run_step(step, True, tmp_path, {})
    assert outcome.step.name == "fasseg" and outcome.status == "skipped"
    assert "not found" in outcome.markdown and "--limit 3" in outcome.shown


@pytest.mark.slow  # runs benchmark scripts in other processes
def test_bench_cli_finds_and_runs_the_suite():
    assert find_suite() == BENCH / "run.py"
    result = CliRunner().invoke(main, ["bench", "--list"])
    assert result.exit_code == 0, result.output
    assert "fasseg" in result.output and "bench_fasseg.py" in result.output
    missing = CliRunner().invoke(main, ["bench", "--repo", "/nonexistent-checkout", "--list"])
    assert missing.exit_code == 1 and "source checkout" in missing.output


def test_plots_are_drawn_from_the_results(run_module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import json

    monkeypatch.setattr(run_module, "RESULTS", tmp_path)
    summary = [{"config": "prdl,lmk,reg", "eyes": 0.5, "nose": 0.8, "mean": 0.65},
               {"config": "lmk,reg", "eyes": 0.4, "nose": 0.7, "mean": 0.55}]
    (tmp_path / "fasseg.json").write_text(json.dumps({"summary": summary, "groups": ["eyes", "nose"],
                                                      "split": "test"}))
    (tmp_path / "compare.csv").write_text("config,eyes,nose,mean,images,iterations,ms_per_face,diverged\n"
                                          "prdl,0.5,0.8,0.65,2,10,100.0,0\nicp,0.4,0.7,0.55,2,10,10.0,0\n")
    (tmp_path / "aflw.json").write_text(json.dumps({"photos": ["a", "b"], "per_image": {
        "detector": {"nme": [0.02, 0.05]}, "lmk,reg": {"nme": [0.03, 0.04]}}}))
    rows = [{"refinement iterations": n, "eyes": 0.6, "nose": 0.8, "mouth": 0.7, "skin": 0.6, "mean": 0.68}
            for n in ("0", "5")]
    rows.append({**rows[-1], "refinement iterations": "default", "iterations run (mean)": 4.2})
    (tmp_path / "iterations.json").write_text(json.dumps({"rows": rows, "split": "train", "losses": "prdl,lmk,reg"}))
    images = run_module.plots({"fasseg", "compare", "aflw", "fit", "iterations"})
    assert set(images) == {"fasseg", "compare", "aflw", "iterations"}
    for name in ("fasseg_part_iou.png", "compare_part_iou.png", "aflw_nme_ced.png", "iterations.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert images["aflw"] == ["![NME cumulative error distribution](results/aflw_nme_ced.png)"]


def test_fit_benchmark_runs_the_batch_path_and_reports_its_stages(shared_dir: Path, tmp_path: Path):
    if not (shared_dir / "datasets" / "fasseg-frontal" / "index.csv").is_file():
        pytest.skip("FASSEG not found")
    out = tmp_path / "fit.json"
    proc = subprocess.run([sys.executable, str(BENCH / "bench_fit.py"), "--shared", str(shared_dir), "--photos", "1",
                           "--model", str(shared_dir / "face-models" / "ict-facekit-light"), "--losses", "lmk,reg",
                           "--batch", "1", "--threads", "1", "--thread-photos", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "| wall per photo |" in proc.stdout and "Peak memory" in proc.stdout
    data = json.loads(out.read_text())
    assert data["photos"] == ["test_1"] and [r["losses"] for r in data["stages"]] == ["lmk,reg"]
    (photo,) = data["per_photo"]["lmk,reg"]  # the stages of the one photo, read back from its face.json
    assert photo["landmark stages"] > 0 and photo["write"] > 0 and photo["refinement"] == 0  # lmk,reg: LM only
    assert photo["wall per photo"] >= photo["landmark stages"] + photo["write"]
    assert [(r["machine"], r["torch threads"]) for r in data["threads"]] == [("quiet", 1), ("one core busy", 1)]


def test_compare_outputs_are_kept_with_a_small_figure(run_module, tmp_path: Path):
    import numpy as np
    from PIL import Image

    out, results = tmp_path / "out", tmp_path / "kept"
    out.mkdir()
    (out / "table.md").write_text("# title\n\n| config | mean |\n| --- | --- |\n| prdl | 0.5 |\n\n## Per image\n\nx\n")
    (out / "per_image.csv").write_text("image,config,mean\na,prdl,0.5\n")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (500, 2000, 3), dtype=np.uint8)).save(out / "figure.png")
    markdown = run_module.collect_compare(out, "", results)
    assert "| prdl | 0.5 |" in markdown and "## Per image" not in markdown and "# title" not in markdown
    assert markdown.startswith("title.")
    assert Image.open(results / "compare_figure.jpg").size == (1100, 275)
    assert (results / "compare_per_image.csv").read_text().startswith("image,config")
    assert "![compare](results/kept/compare_figure.jpg)" in markdown
