"""Run the fit3dmm benchmark suite, print its tables and regenerate the results in benchmarks/README.md.

    python benchmarks/run.py [--quick] [--only NAME,...] [--skip NAME,...] [--no-readme] [--list]
    fit3dmm bench [same options]

Each benchmark runs as its own process (``python benchmarks/<script>.py`` or ``fit3dmm compare``) from the
repository root; its Markdown output goes to the console and, with the exact command, the git commit
(``git rev-parse --short HEAD``, ``+dirty`` when tracked files had uncommitted changes), the date, the wall time
and the machine, into its own section of benchmarks/README.md between ``<!-- results:NAME:begin -->`` and
``<!-- results:NAME:end -->`` (sections of benchmarks that did not run are kept as they were).  JSON numbers
and plots (Part IoU bar charts, the NME cumulative error curve) go to benchmarks/results/ (results/quick/ for
``--quick``, so that a quick run never overwrites the files of a full one).  A benchmark
whose data set is missing is skipped with a message; one that fails is reported as failed, and the others
still run.

``--quick`` runs subsets with fewer iterations (a few minutes on a 2-core CPU, more when the PRDL fits are
slow); its sections say "quick" and replace the full ones, so regenerate with a full run before committing
numbers.  FIT3DMM_MODELS defaults to <shared>/face-models.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `fit3dmm bench` loads this file by path
    sys.path.insert(0, str(HERE))

from common import REPO, default_shared, git_commit, machine, machine_line  # noqa: E402

README = HERE / "README.md"
RESULTS = HERE / "results"
BEGIN, END = "<!-- results:{}:begin -->", "<!-- results:{}:end -->"


@dataclass
class Step:
    """One benchmark: ``command`` (full run) and ``quick`` (extra arguments for --quick, replacing options of
    the same name), the shared data it needs, whether it writes ``results/<name>.json``, and why it cannot run
    (``skip_reason``, e.g. a missing input), if so."""

    name: str
    title: str
    command: list[str]
    quick: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    json: bool = False
    skip_reason: str = ""


def steps(shared: Path, regressor: Path | None = None) -> list[Step]:
    """The suite, in order; the training benchmark needs a trained ``regressor`` (``fit3dmm train``)."""
    fasseg = shared / "datasets" / "fasseg-frontal"
    fit_quick = ["--iterations", "10"]
    train = ["benchmarks/bench_train.py", "--regressor", str(regressor)] if regressor else ["benchmarks/bench_train.py"]
    fasseg_needs = ["datasets/fasseg-frontal/index.csv", "face-models/ict-facekit-light"]
    compared = "prdl,softras,icp,icp_rev,chamfer,dcd,prdl:min,prdl:max,prdl:ave"  # + Fig. 10's ablation
    return [
        Step("segmentation", "Built-in segmenter vs FASSEG hand labels", ["benchmarks/bench_segmentation.py"],
             ["--limit", "10"], ["datasets/fasseg-frontal/index.csv"]),
        Step("losses", "Geometric losses: speed, fast-vs-dense PRDL, PRDL's anchor stride",
             ["benchmarks/bench_losses.py", "--threads", "1"],
             ["--repeats", "1", "--skip-dense"]),
        Step("render", "Renderers", ["benchmarks/bench_render.py"], ["--repeats", "2"],
             ["face-models/ict-facekit-light"]),
        Step("batch", "Batch throughput (`fit3dmm fit` on a folder)", ["benchmarks/bench_batch.py"],
             ["--limit", "4", "--batch-sizes", "1,4"],
             ["datasets/aflw2000-16/landmarks.json", "face-models/ict-facekit-light"], json=True),
        Step("fit", "Speed and memory of one fit: stages, batching, threads",
             ["benchmarks/bench_fit.py", "--photos", "10"],
             ["--photos", "2", "--thread-photos", "1", "--batch", "2"], [], json=True),
        Step("iterations", "Part IoU against refinement iterations (FASSEG train: the calibration)",
             ["benchmarks/bench_iterations.py"], ["--limit", "4", "--iterations", "0,5"], fasseg_needs, json=True),
        Step("fasseg", "Part IoU of fits on FASSEG (default fit, landmarks only, PRDL alone)",
             ["benchmarks/bench_fasseg.py"], ["--limit", "3", *fit_quick], fasseg_needs, json=True),
        Step("compare", "Each geometric loss alone on FASSEG (`fit3dmm compare`)",
             ["fit3dmm", "compare", "--dataset", "fasseg", str(fasseg), "--split", "test", "--figure-rows", "6",
              "--losses", compared],
             ["--limit", "3", *fit_quick], fasseg_needs),
        Step("compare_oracle", "Each geometric loss alone on FASSEG, fitted to the hand labels (oracle targets)",
             ["fit3dmm", "compare", "--dataset", "fasseg", str(fasseg), "--split", "test", "--figure-rows", "6",
              "--losses", compared, "--targets", "labels"],
             ["--limit", "3", *fit_quick], fasseg_needs),
        Step("compare_tuned", "Each geometric loss alone on FASSEG, settings tuned per loss on the train photos",
             ["benchmarks/bench_compare_tuning.py"], ["--limit", "2", "--factors", "1", "--iterations", "2"],
             fasseg_needs, json=True),
        Step("aflw", "Landmarks and pose on AFLW2000-3D (16 photos)",
             ["benchmarks/bench_aflw.py"], ["--limit", "3", *fit_quick],
             ["datasets/aflw2000-16/landmarks.json", "face-models/ict-facekit-light"], json=True),
        Step("synthetic", "3D error on synthetic renders",
             ["benchmarks/bench_synthetic.py", "--count", "20"],
             ["--count", "3", *fit_quick], ["face-models/ict-facekit-light"], json=True),
        Step("profiles", "Profiles: synthetic renders at |yaw| 60–90°",
             ["benchmarks/bench_synthetic.py", "--count", "20", "--yaw", "60", "90", "--configs",
              "prdl,lmk,reg;lmk,reg"],
             ["--count", "6", *fit_quick], ["face-models/ict-facekit-light"], json=True),
        Step("track", "Tracking a synthetic video (`fit3dmm track`) against per-frame fits",
             ["benchmarks/bench_track.py", "--frames", "240"], ["--frames", "40"],
             ["face-models/ict-facekit-light"], json=True),
        Step("train", "Trained regressor vs per-photo fitting on FASSEG", train,
             ["--limit", "4", "--fit-limit", "2", "--refine-iterations", "10"],
             fasseg_needs, json=True,
             skip_reason="" if regressor else "needs a trained regressor: run.py --regressor RUN/model.pt "
                                              "(made by `fit3dmm train`)"),
    ]


def merge_options(command: list[str], extra: list[str]) -> list[str]:
    """``command`` with each ``--option value`` of ``extra`` replacing the same option (or appended)."""
    out = list(command)
    i = 0
    while i < len(extra):
        option = extra[i]
        takes_value = i + 1 < len(extra) and not extra[i + 1].startswith("--")
        value = [extra[i + 1]] if takes_value else []
        if option in out:
            j = out.index(option)
            out[j: j + 1 + len(value)] = [option, *value]
        else:
            out += [option, *value]
        i += 1 + len(value)
    return out


@dataclass
class Outcome:
    """What a step produced: its Markdown (stdout), status, wall time and the command shown."""

    step: Step
    status: str
    markdown: str
    seconds: float
    shown: str


def results_folder(quick: bool) -> Path:
    """Where a run writes its JSON, copies and plots: ``results/``, or ``results/quick/`` for ``--quick`` (a
    quick run never overwrites the numbers of a full one)."""
    return RESULTS / "quick" if quick else RESULTS


def _link(path: Path, results: Path) -> str:
    """``path`` (a file of ``results``) as the README links it."""
    return f"results/{path.name}" if results == RESULTS else f"results/{results.name}/{path.name}"


def run_step(step: Step, quick: bool, shared: Path, env: dict[str, str], results: Path | None = None) -> Outcome:
    """Run one benchmark as a subprocess from the repository root (stderr passes through); its JSON and
    other files go to ``results`` (default :func:`results_folder`)."""
    results = results or results_folder(quick)
    command = merge_options(step.command, step.quick) if quick else list(step.command)
    missing = [n for n in step.needs if not (shared / n).exists()]
    script = REPO / command[0] if command[0].endswith(".py") else None
    if script is not None and not script.is_file():
        return Outcome(step, "skipped", f"skipped: {command[0]} does not exist yet", 0.0, shlex.join(command))
    if step.skip_reason:
        return Outcome(step, "skipped", f"skipped: {step.skip_reason}", 0.0, shlex.join(command))
    if missing:
        return Outcome(step, "skipped", f"skipped: {', '.join(str(shared / n) for n in missing)} not found", 0.0,
                       shlex.join(command))
    temp = None
    if step.json:
        command += ["--json", str((results / f"{step.name}.json").relative_to(REPO))]
    if step.name == "train" and "--regressor" in command:
        command += ["--results", str(results.relative_to(REPO))]
    if step.name.startswith("compare"):
        temp = tempfile.mkdtemp(prefix="fit3dmm-compare-")
        command += ["--out", temp]
    shown = shlex.join(["python", *command] if script is not None else command)
    if temp is not None:
        shown = shown.replace(temp, "OUT")
    if script is not None:
        argv = [sys.executable, *command]
    else:  # the console script, as a user runs it
        exe = shutil.which(command[0])
        argv = [exe, *command[1:]] if exe else [sys.executable, "-c", "from fit3dmm.cli import main; main()",
                                                *command[1:]]
    print(f"\n=== {step.name}: {shown}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    text = proc.stdout.strip()
    if temp is not None:
        if proc.returncode == 0:
            text = collect_compare(Path(temp), text, results, step.name)
        shutil.rmtree(temp, ignore_errors=True)
    if proc.returncode != 0:
        return Outcome(step, "failed", f"failed with exit code {proc.returncode} (see the console for the "
                                       f"traceback).\n\n{text}", seconds, shown)
    status = "skipped" if text.startswith("skipped") else "ok"
    return Outcome(step, status, text, seconds, shown)


def collect_compare(out: Path, stdout: str, results: Path | None = None, name: str = "compare") -> str:
    """Keep the compare tables and figure in ``results`` (default results/) as ``<name>.csv``,
    ``<name>_per_image.csv``, ``<name>.md``, ``<name>_figure.jpg``, and return the README Markdown (the table's
    title as its first sentence: what was fitted to what)."""
    results = results or RESULTS
    results.mkdir(parents=True, exist_ok=True)
    for source, target in (("table.csv", f"{name}.csv"), ("per_image.csv", f"{name}_per_image.csv"),
                           ("table.md", f"{name}.md")):
        if (out / source).is_file():
            shutil.copyfile(out / source, results / target)
    if (out / "figure.png").is_file():  # photos: a ≤ 1100 px JPEG keeps the repository small
        from PIL import Image

        figure = Image.open(out / "figure.png").convert("RGB")
        figure.thumbnail((1100, 1100 * figure.height // figure.width), Image.LANCZOS)
        figure.save(results / f"{name}_figure.jpg", quality=80)
    head = (out / "table.md").read_text().split("\n## Per image")[0] if (out / "table.md").is_file() else stdout
    lines = head.splitlines()
    if lines and lines[0].startswith("# "):  # the title becomes the first sentence
        lines = [lines[0][2:].rstrip(".") + ".", *lines[1:]]
    body = "\n".join(lines)
    per_image, figure = (_link(results / n, results) for n in (f"{name}_per_image.csv", f"{name}_figure.jpg"))
    return (body.strip() + f"\n\nPer-image values: [{per_image}]({per_image}); "
            "figure (first photos; fitted regions filled, target outlined in white):\n\n"
            f"![compare]({figure})")


def plots(names: set[str], results: Path | None = None) -> dict[str, list[str]]:
    """Draw the plots of the steps that ran from their files in ``results`` (default results/); returns step
    name → Markdown image lines."""
    results = results or RESULTS
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out: dict[str, list[str]] = {}

    def bars(rows: list[dict], groups: list[str], label_key: str, path: Path, title: str) -> None:
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(groups), 3.6))
        width = 0.8 / max(1, len(rows))
        x = np.arange(len(groups))
        for k, row in enumerate(rows):
            values = [float(row.get(g, "nan") or "nan") for g in groups]
            ax.bar(x + (k - (len(rows) - 1) / 2) * width, values, width, label=str(row[label_key]))
        ax.set_xticks(x, groups)
        ax.set_ylim(0, 1)
        ax.set_ylabel("Part IoU (mean over photos)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, ncol=2)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    if "fasseg" in names and (results / "fasseg.json").is_file():
        data = json.loads((results / "fasseg.json").read_text())
        path = results / "fasseg_part_iou.png"
        bars(data["summary"], [*data["groups"], "mean"], "config", path,
             f"FASSEG {data['split']}: Part IoU per configuration")
        out["fasseg"] = [f"![Part IoU per part and configuration]({_link(path, results)})"]
    if "compare" in names and (results / "compare.csv").is_file():
        import csv

        with open(results / "compare.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        counts = ("config", "images", "iterations", "ms_per_face", "diverged", "unscored")
        # the main score per region and the mean, and the raster-label mean beside it (not each raster region)
        groups = [c for c in rows[0] if c not in counts and (not c.startswith("raster_") or c == "raster_mean")]
        path = results / "compare_part_iou.png"
        bars(rows, groups, "config", path, "FASSEG: each geometric loss alone")
        out["compare"] = [f"![Part IoU per part and loss]({_link(path, results)})"]
    if "iterations" in names and (results / "iterations.json").is_file():
        data = json.loads((results / "iterations.json").read_text())
        counted = [r for r in data["rows"] if r["refinement iterations"].isdigit()]
        fig, ax = plt.subplots(figsize=(5, 3.6))
        x = [int(r["refinement iterations"]) for r in counted]
        for group in ("eyes", "nose", "mouth", "skin", "mean"):
            ax.plot(x, [r[group] for r in counted], marker="o", label=group, linewidth=2 if group == "mean" else 1)
        default = next((r for r in data["rows"] if not r["refinement iterations"].isdigit()), None)
        if default is not None:
            ax.scatter([default["iterations run (mean)"]], [default["mean"]], marker="*", s=120, color="k",
                       zorder=3, label="default (stops early)")
        ax.set_xlabel("refinement iterations")
        ax.set_ylabel("Part IoU (mean over photos)")
        ax.set_title(f"FASSEG {data['split']}, {data['losses']}", fontsize=10)
        ax.legend(fontsize=8, ncol=2)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = results / "iterations.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out["iterations"] = [f"![Part IoU against refinement iterations]({_link(path, results)})"]
    if "train" in names and (results / "train_curves.png").is_file():
        out["train"] = [f"![training curves]({_link(results / 'train_curves.png', results)})"]
    if "aflw" in names and (results / "aflw.json").is_file():
        data = json.loads((results / "aflw.json").read_text())
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for label, values in data["per_image"].items():
            nme = np.sort(100 * np.asarray(values["nme"], float))
            ax.step(np.concatenate([[0], nme]), np.arange(len(nme) + 1) / len(nme), where="post",
                    label="detector (mediapipe)" if label == "detector" else f"fit {label}")
        ax.set_xlabel("NME (%)")
        ax.set_ylabel("fraction of photos")
        ax.set_ylim(0, 1)
        ax.set_title(f"AFLW2000-3D ({len(data['photos'])} photos): cumulative NME", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = results / "aflw_nme_ced.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out["aflw"] = [f"![NME cumulative error distribution]({_link(path, results)})"]
    return out


def section(outcome: Outcome, quick: bool, commit: str, when: str, images: list[str]) -> str:
    """The README block of one step (markers included)."""
    mode = "quick run (subset, fewer iterations)" if quick else "full run"
    lines = [BEGIN.format(outcome.step.name), f"### {outcome.step.title}", "",
             f"`{outcome.shown}` — commit `{commit}`, {when}, {outcome.seconds:.0f} s, {mode}, {outcome.status}.",
             "", outcome.markdown]
    if images:
        lines += ["", *images]
    lines.append(END.format(outcome.step.name))
    return "\n".join(lines)


def update_readme(blocks: dict[str, str], order: list[str], path: Path = README) -> None:
    """Replace each named block between its markers, appending missing ones under '## Results'."""
    text = path.read_text() if path.is_file() else "# fit3dmm benchmarks\n"
    if "## Results" not in text:
        text = text.rstrip() + "\n\n## Results\n"
    for name in order:
        if name not in blocks:
            continue
        begin, end = BEGIN.format(name), END.format(name)
        if begin in text and end in text:
            a, b = text.index(begin), text.index(end) + len(end)
            text = text[:a] + blocks[name] + text[b:]
        else:
            text = text.rstrip() + "\n\n" + blocks[name] + "\n"
    path.write_text(text.rstrip() + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="subsets and fewer iterations (minutes)")
    parser.add_argument("--only", default="", help="comma-separated step names to run")
    parser.add_argument("--skip", default="", help="comma-separated step names not to run")
    parser.add_argument("--shared", type=Path, default=default_shared(), help="the shared data folder")
    parser.add_argument("--no-readme", action="store_true", help="do not touch benchmarks/README.md")
    parser.add_argument("--regressor", type=Path, default=None,
                        help="a trained regressor (fit3dmm train's RUN/model.pt) for the training benchmark")
    parser.add_argument("--list", action="store_true", help="list the steps and their commands, run nothing")
    args = parser.parse_args(argv)
    shared = args.shared.resolve()
    suite = steps(shared, args.regressor)
    names = [s.name for s in suite]
    only = {n for n in args.only.split(",") if n}
    skip = {n for n in args.skip.split(",") if n}
    unknown = (only | skip) - set(names)
    if unknown:
        parser.error(f"unknown step(s) {sorted(unknown)}; steps: {', '.join(names)}")
    chosen = [s for s in suite if (not only or s.name in only) and s.name not in skip]
    if args.list:
        for s in suite:
            command = merge_options(s.command, s.quick) if args.quick else s.command
            print(f"{s.name:<13} {shlex.join(command)}")
        return 0
    env = dict(os.environ)
    env.setdefault("FIT3DMM_MODELS", str(shared / "face-models"))
    env.setdefault("FIT3DMM_SHARED", str(shared))
    results = results_folder(args.quick)
    results.mkdir(parents=True, exist_ok=True)
    when = datetime.date.today().isoformat()
    print(f"fit3dmm benchmarks at commit {git_commit()} ({machine_line(machine())})", file=sys.stderr)
    outcomes, commits = [], {}
    for step in chosen:  # the commit each step ran at (others may commit while a long run goes on)
        commits[step.name] = git_commit()
        outcomes.append(run_step(step, args.quick, shared, env, results))
    images = plots({o.step.name for o in outcomes if o.status == "ok"}, results)
    blocks = {}
    for outcome in outcomes:
        print(f"\n## {outcome.step.title}\n\n{outcome.shown}\n\n{outcome.markdown}")
        blocks[outcome.step.name] = section(outcome, args.quick, commits[outcome.step.name], when,
                                            images.get(outcome.step.name, []))
    if not args.no_readme:  # a skipped step keeps the numbers of its last run
        kept = {o.step.name for o in outcomes if o.status == "skipped" and BEGIN.format(o.step.name) in
                (README.read_text() if README.is_file() else "")}
        update_readme({k: v for k, v in blocks.items() if k not in kept}, names)
        print(f"\nupdated {README.relative_to(REPO)} ({', '.join(blocks)})", file=sys.stderr)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
