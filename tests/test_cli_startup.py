"""The command line starts without torch, OpenCV or mediapipe: the group lists its commands without importing
them, ``--help`` and bad inputs answer before torch is loaded (each checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from fit3dmm.cli import COMMANDS, main

HEAVY = ("torch", "cv2", "mediapipe")
ASTRONAUT = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"

# prints which heavy modules are loaded after importing the CLI and after each --help
HELP_PROBE = """
import contextlib, io, json, sys
loaded = lambda: [m for m in {heavy!r} if m in sys.modules]
from fit3dmm.cli import main
seen = {{"import": loaded()}}
for args in {helps!r}:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = main(args, standalone_mode=False)
    assert code == 0 and "Usage:" in out.getvalue(), (args, code)
    seen[" ".join(args)] = loaded()
print(json.dumps(seen))
"""

# runs the command line on its arguments and prints which heavy modules were loaded when it exits
EXIT_PROBE = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps([m for m in {heavy!r} if m in sys.modules])))
from fit3dmm.cli import main
main(prog_name="fit3dmm")
"""


def python(code: str, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_importing_the_cli_and_help_load_neither_torch_nor_opencv_nor_mediapipe():
    helps = [["--help"], ["fit", "--help"], ["compare", "--help"], ["-h"]]
    result = python(HELP_PROBE.format(heavy=HEAVY, helps=helps))
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen == {"import": [], **{" ".join(args): [] for args in helps}}


@pytest.mark.parametrize(("args", "message"), [
    (["fit", "missing.jpg", "--out", "{tmp}/out"], "Error: no such file or directory: missing.jpg"),
    (["fit", ASTRONAUT, "--out", "{tmp}/out", "--device", "gpu"],
     "Error: --device gpu: unknown device; use auto, cpu, cuda or cuda:N"),
    (["compare", "missing.jpg"], "Error: no such file or directory: missing.jpg"),
    (["compare", "--device", "cuda:x"], "Error: --device cuda:x: unknown device; use auto, cpu, cuda or cuda:N"),
    (["train", "--out", "{tmp}/out", "--device", "tpu"],
     "Error: --device tpu: unknown device; use auto, cpu, cuda or cuda:N"),
])
def test_bad_inputs_fail_in_one_line_before_torch_is_loaded(tmp_path: Path, args: list[object], message: str):
    result = python(EXIT_PROBE.format(heavy=HEAVY), *(str(a).format(tmp=tmp_path) for a in args))
    assert (result.returncode, result.stderr.splitlines()) == (1, [message])
    assert "torch" not in json.loads(result.stdout.splitlines()[-1])
    assert not (tmp_path / "out").exists()


def test_the_group_lists_every_command_and_loads_it_by_name():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = result.output.split("Commands:\n")[1].splitlines()
    assert [line.split()[0] for line in listed] == sorted(COMMANDS)
    for line in listed:
        name, short_help = line.split(maxsplit=1)
        assert short_help == COMMANDS[name][1]
        with click.Context(main) as ctx:
            command = main.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name
    unknown = CliRunner().invoke(main, ["fitt"])
    assert unknown.exit_code == 2 and "No such command 'fitt'" in unknown.output


def test_threads_are_set_once_the_inputs_are_checked(tmp_path: Path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        result = CliRunner().invoke(main, ["fit", str(ASTRONAUT), "--out", str(tmp_path / "out"), "--threads", "2",
                                           "--loss", "lmk,bogus"])
        assert result.exit_code == 1 and "unknown loss 'bogus'" in result.output
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
