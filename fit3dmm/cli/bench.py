"""``fit3dmm bench``: run the benchmark suite of a source checkout (``benchmarks/run.py``).

The suite needs the repository's ``benchmarks/`` folder and the shared datasets, which an installed wheel does
not carry; the command runs ``benchmarks/run.py``'s ``main`` with the same options.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import click

from fit3dmm.cli.common import fail, source_checkout


def find_suite(repo: Path | None = None) -> Path:
    """``benchmarks/run.py`` of ``repo``, or of the checkout this package was imported from."""
    return (repo if repo is not None else source_checkout()) / "benchmarks" / "run.py"


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--repo", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The fit3dmm source checkout (default: the one this package runs from).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(repo: Path | None, args: tuple[str, ...]) -> None:
    """Run the benchmark suite; ARGS go to benchmarks/run.py (e.g. --quick, --only fasseg; see --help there)."""
    script = find_suite(repo)
    if not script.is_file():
        fail(f"{script} not found: the benchmark suite runs from a source checkout of fit3dmm (use --repo DIR)")
    spec = importlib.util.spec_from_file_location("fit3dmm_benchmarks_run", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    raise SystemExit(module.main(list(args)))
