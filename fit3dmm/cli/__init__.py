"""The ``fit3dmm`` command line: a thin click group over the Python API.

Each command lives in its own module and is registered here; commands parse options, call the public API
and print; they hold no logic of their own.
"""

from __future__ import annotations

import click

from fit3dmm import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fit3dmm")
def main() -> None:
    """Reconstruct a 3D face from a photo by fitting a 3D Morphable Model."""
