"""The ``fit3dmm`` command line: a thin click group over the Python API.

Each command lives in its own module, imported only when that command runs (or shows its help), so that
``fit3dmm --help`` and bad inputs answer at once instead of after loading torch; the group lists the commands
from :data:`COMMANDS`.  Commands parse options, check what they can without torch, call the public API and
print; they hold no logic of their own.  Expected failures (unreadable image, no face, missing model, bad
option) end with one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import importlib
import os

# OpenMP's default busy-wait makes torch many times slower on a busy or small machine (measured: 4.4 s vs
# 0.8 s for one PRDL step on 2 loaded cores); it must be set before torch is imported.  Users can override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from fit3dmm import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("fit3dmm.cli.bench:bench", "Run the benchmark suite of a source checkout."),
    "compare": ("fit3dmm.cli.compare:compare", "Fit each geometric loss alone and compare their Part IoU."),
    "fit": ("fit3dmm.cli.fit:fit", "Fit the face model to photos; writes mesh, parameters, overlay."),
    "models": ("fit3dmm.cli.models:models", "List, install, annotate and pack face models."),
    "predict": ("fit3dmm.cli.train:predict", "Reconstruct photos with a trained regressor alone (no fitting)."),
    "segment": ("fit3dmm.cli.segment:segment", "Part segmentation of a photo, colour-coded, with an overlay."),
    "track": ("fit3dmm.cli.track:track", "Track a face through a video: ARKit weights, pose, animation files."),
    "train": ("fit3dmm.cli.train:train", "Train a ResNet-50 regressor that amortises the fit."),
}
"""Command name → (``module:attribute`` of its click command, the line ``fit3dmm --help`` shows for it)."""


class _Group(click.Group):
    """Imports a command's module when the command is asked for, lists the commands without importing any,
    and turns the library's input errors into one-line click errors."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute = COMMANDS[cmd_name][0].split(":")
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]  # one line each; write_dl wraps
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fit3dmm")
def main() -> None:
    """Reconstruct a 3D face from a photo by fitting a 3D Morphable Model."""
