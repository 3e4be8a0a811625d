"""Helpers shared by the fit benchmarks (bench_fit, bench_fasseg, bench_aflw, bench_synthetic) and run.py.

Every benchmark prints Markdown to stdout (what run.py pastes into benchmarks/README.md), writes its numbers
as JSON with ``--json PATH`` (what run.py plots), and exits 0 with a "skipped: ..." line when its data is
missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from bench_segmentation import default_shared

from fit3dmm import defaults
from fit3dmm.api import Pipeline, Schedule
from fit3dmm.losses.registry import parse_losses

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = ("prdl,lmk,reg", "lmk,reg", "prdl,reg")


def dataset_parser(doc: str) -> argparse.ArgumentParser:
    """The argument parser of a benchmark on a shared data set, with ``--shared`` and ``--limit``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared(), help="the shared data folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos")
    return parser


def find_dataset(shared: Path, name: str, marker: str) -> Path | None:
    """``<shared>/datasets/<name>`` when it holds ``marker``; else None, after the ``skipped: ...`` line that
    run.py reports."""
    root = shared / "datasets" / name
    if (root / marker).is_file():
        return root
    print(f"skipped: {name} not found under {root.parent} (use --shared or FIT3DMM_SHARED)")
    return None


def add_fit_options(parser: argparse.ArgumentParser) -> None:
    """The options every fit benchmark shares: --configs, --iterations, --rigid-iterations, --batch, --model,
    --device, --json."""
    parser.add_argument("--configs", default=";".join(DEFAULT_CONFIGS),
                        help="semicolon-separated loss sets, e.g. 'prdl,lmk,reg;lmk,reg'")
    parser.add_argument("--iterations", type=int, default=defaults.ITERATIONS,
                        help="refinement iterations (geometric losses) after the landmark stage")
    parser.add_argument("--rigid-iterations", type=int, default=defaults.RIGID_ITERATIONS,
                        help="iterations of the shared rigid stage")
    parser.add_argument("--batch", type=int, default=1,
                        help="faces fitted together (1 is fastest per face on CPU; results do not depend on it)")
    parser.add_argument("--model", default=defaults.DEFAULT_MODEL)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")


def fit_setup(args: argparse.Namespace) -> tuple[dict[str, dict[str, float]], Pipeline | None]:
    """The configurations ({spec: weights}) of :func:`add_fit_options`' options and the one pipeline they are
    fitted with (model annotated for their losses, observe path, schedule, device), or None after the
    ``skipped: ...`` line when the face model is missing."""
    configs = {spec.strip(): parse_losses(spec) for spec in args.configs.split(";") if spec.strip()}
    every_loss = list(dict.fromkeys(name for config in configs.values() for name in config))
    schedule = Schedule(iterations=args.iterations, rigid_iterations=args.rigid_iterations)
    return configs, create_pipeline(model=args.model, losses=every_loss, schedule=schedule, device=args.device)


def create_pipeline(**options: object) -> Pipeline | None:
    """``Pipeline.create(**options)`` (annotation progress on stderr), or None after the ``skipped: ...`` line
    that run.py reports when the face model is not installed."""
    try:
        return Pipeline.create(on_annotate=progress_line, **options)
    except FileNotFoundError as exc:
        print(f"skipped: {str(exc).splitlines()[0]}")
        return None


RESULT_FILES = (":!benchmarks/results", ":!benchmarks/README.md")
"""What the suite itself writes: not code, so changes there do not make a run "dirty"."""


def git_commit(repo: Path = REPO) -> str:
    """``git rev-parse --short HEAD``, with ``+dirty`` when the working tree has uncommitted changes to tracked
    files other than the suite's own results (:data:`RESULT_FILES`); ``unknown`` outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *RESULT_FILES],
                               cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine() -> dict[str, object]:
    """The machine and code the numbers come from: CPU cores, torch threads and version, load average and the
    commit (:func:`git_commit`) at call time, i.e. when a benchmark starts (the code that runs is the code
    imported then, whatever is committed while it runs)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"commit": git_commit(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "cuda": torch.cuda.is_available(),
            "load_average_1_5_15": [round(v, 2) for v in load]}


def machine_line(info: dict[str, object]) -> str:
    """One sentence for the tables."""
    load = info["load_average_1_5_15"]
    return (f"{info['cpu_cores']} CPU cores, {info['torch_threads']} torch threads, torch {info['torch']}, "
            f"{'CUDA available' if info['cuda'] else 'CPU only'}; load average {load[0]} when it started "
            "(other jobs shared the machine: timings are noisy)")


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The exact command that produced a result, as one would type it from the repository root."""
    given = list(argv) if argv is not None else sys.argv[1:]
    return shlex.join(["python", f"benchmarks/{script}", *given])


def write_json(path: str | Path | None, data: dict[str, object]) -> None:
    """Write ``data`` (numpy values converted) to ``path`` unless it is None."""
    if path is None:
        return

    def plain(value: object) -> object:
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(f"cannot write {type(value).__name__} as JSON")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=plain, allow_nan=True) + "\n")


def progress_line(line: str) -> None:
    """Progress on stderr (stdout is the Markdown report)."""
    print(line, file=sys.stderr, flush=True)
