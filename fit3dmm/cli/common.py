"""Options and helpers shared by the commands."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import click

from fit3dmm import defaults


def fail(message: str) -> NoReturn:
    """Stop the command with a one-line error and exit code 1."""
    raise click.ClickException(message)


def source_checkout() -> Path:
    """The folder that holds the fit3dmm package: in a source checkout (and an editable install) the
    repository, with ``benchmarks/`` and ``examples/``, which an installed wheel does not carry."""
    import fit3dmm

    return Path(fit3dmm.__file__).resolve().parents[1]


def parse_weights(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, float]:
    """``--weight NAME=VALUE`` items → {name: weight} (no ``--weight``: no import of the loss registry, which
    loads torch)."""
    if not value:
        return {}
    from fit3dmm.losses.registry import parse_weight_options

    try:
        return parse_weight_options(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def loss_options(func: Callable) -> Callable:
    """``--loss LIST`` and repeatable ``--weight NAME=VALUE``."""
    func = click.option("--weight", "weights", multiple=True, callback=parse_weights,
                        help="Override a loss weight, e.g. --weight prdl=0.3 (repeatable).")(func)
    return click.option("--loss", "losses", default=None,
                        help="Comma-separated losses among lmk, reg, pho, prdl, softras, icp, icp_rev, chamfer, "
                             "dcd. Default: prdl,lmk,reg when the model has part annotations, else lmk,reg.")(func)


def model_option(func: Callable) -> Callable:
    """``--model NAME|PATH``."""
    return click.option("--model", default=defaults.DEFAULT_MODEL, show_default=True,
                        help="Face model name (ict, bfm2009, 3ddfa_v3) or a model folder/file.")(func)


def schedule_options(func: Callable) -> Callable:
    """``--rigid-iterations``, ``--lm-iterations``, ``--iterations`` (defaults of :mod:`fit3dmm.defaults`)."""
    func = click.option("--iterations", default=defaults.ITERATIONS, show_default=True,
                        type=click.IntRange(0, 100000),
                        help="Refinement iterations with the geometric losses (PRDL, ...), coarse to fine.")(func)
    func = click.option("--lm-iterations", default=defaults.LM_ITERATIONS, show_default=True,
                        type=click.IntRange(0, 100000),
                        help="Levenberg-Marquardt iterations on pose, identity and expression against the "
                             "landmarks and the prior.")(func)
    return click.option("--rigid-iterations", default=defaults.RIGID_ITERATIONS, show_default=True,
                        type=click.IntRange(0, 100000),
                        help="Levenberg-Marquardt iterations on the pose alone, after PnP.")(func)


def size_option(func: Callable) -> Callable:
    """``--size``: the working crop."""
    return click.option("--size", default=defaults.CROP_SIZE, show_default=True, type=click.IntRange(64, 1024),
                        help="Working crop size in pixels.")(func)


def _check_seg_format(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse an unknown or retired (``celebamask``) format with the one line of
    :func:`~fit3dmm.defaults.check_label_format`, exit code 1, before torch is loaded."""
    if value is not None:
        try:
            defaults.check_label_format(value)
        except ValueError as exc:
            fail(f"--seg-format: {exc}")
    return value


def seg_format_option(func: Callable) -> Callable:
    """``--seg-format FMT``: the class order of the ``--seg`` label maps."""
    names = "|".join(defaults.LABEL_FORMATS)
    return click.option("--seg-format", default=None, metavar=f"[{names}]", callback=_check_seg_format,
                        help="Class order of --seg: CelebAMask-HQ's own labels (celebamask-hq), "
                             "face-parsing.PyTorch's BiSeNet and facexlib (bisenet), LaPa, Helen or FASSEG "
                             "(README, Segmentation).")(func)


def check_device_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Refuse an unknown ``--device`` name when the option is parsed, before torch is loaded (one line,
    exit code 1)."""
    try:
        return defaults.check_device(value)
    except ValueError as exc:
        fail(str(exc))


def device_option(func: Callable) -> Callable:
    """``--device`` (its name checked when parsed) and ``--threads`` (torch's CPU threads: the command sets
    them with :func:`use_threads` once its inputs are checked, so that bad inputs fail before torch loads)."""
    func = click.option("--threads", default=defaults.CPU_THREADS, show_default=True, type=click.IntRange(1, 256),
                        envvar="FIT3DMM_THREADS",
                        help="Torch CPU threads (one is never the slow case on a shared machine; "
                             "see benchmarks/README.md).")(func)
    return click.option("--device", default="auto", show_default=True, callback=check_device_option,
                        help=f"{defaults.DEVICES}.")(func)


def use_threads(threads: int) -> None:
    """Set torch's CPU threads (``--threads``); loads torch."""
    import torch

    torch.set_num_threads(threads)


@contextmanager
def progress_bar(quiet: bool, label: str) -> Iterator[Callable[[int, int, float], None] | None]:
    """A tqdm bar fed by the fitting engine's ``progress(step, total, loss)`` callback (None when quiet)."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=1, desc=label, unit="it", leave=False, dynamic_ncols=True)

    def report(step: int, total: int, loss: float) -> None:
        bar.total = total
        bar.n = step
        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        bar.refresh()

    try:
        yield report
    finally:
        bar.close()
