"""The ``fit3dmm`` command line: a thin click group over the Python API.

Each command lives in its own module and is registered here; commands parse options, call the public API
and print; they hold no logic of their own.  Expected failures (unreadable image, no face, missing model,
bad option) end with one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import os

# OpenMP's default busy-wait makes torch many times slower on a busy or small machine (measured: 4.4 s vs
# 0.8 s for one PRDL step on 2 loaded cores); it must be set before torch is imported.  Users can override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from fit3dmm import __version__


class _Group(click.Group):
    """Turns the library's input errors into one-line click errors."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fit3dmm")
def main() -> None:
    """Reconstruct a 3D face from a photo by fitting a 3D Morphable Model."""


from fit3dmm.cli.bench import bench  # noqa: E402
from fit3dmm.cli.compare import compare  # noqa: E402
from fit3dmm.cli.fit import fit  # noqa: E402
from fit3dmm.cli.models import models  # noqa: E402
from fit3dmm.cli.segment import segment  # noqa: E402
from fit3dmm.cli.train import predict, train  # noqa: E402

main.add_command(fit)
main.add_command(compare)
main.add_command(bench)
main.add_command(models)
main.add_command(segment)
main.add_command(train)
main.add_command(predict)
