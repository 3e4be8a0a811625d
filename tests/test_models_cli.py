"""``fit3dmm models list`` / ``install`` through click's CliRunner, into a temporary cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fit3dmm.cli import main
from fit3dmm.models.store import load_model


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("FIT3DMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FIT3DMM_MODELS", raising=False)
    return tmp_path / "cache"


def test_install_list_load_ict(cache: Path, shared_dir: Path) -> None:
    source = shared_dir / "face-models" / "ict-facekit-light"
    if not (source / "ict_facekit_light.npz").is_file():
        pytest.skip(f"ICT-FaceKit Light not found in {source}")
    runner = CliRunner()
    shipped = runner.invoke(main, ["models", "list"])  # before any install: the model shipped in the package
    assert shipped.exit_code == 0
    (row,) = shipped.stdout.splitlines()[1:]
    assert row.split()[:6] == ["*", "ict", "12.9M", "c1e40c1925f6", "yes", "yes"]
    assert row.endswith(str(Path("fit3dmm") / "data" / "ict-facekit-light"))

    result = runner.invoke(main, ["models", "install", "ict", str(source)])
    assert result.exit_code == 0, result.output
    dest = cache / "models" / "ict"
    assert f"installed ict into {dest}" in result.stdout
    assert (dest / "LICENSE").read_bytes() == (source / "LICENSE").read_bytes()

    listing = runner.invoke(main, ["models", "list"])
    assert listing.exit_code == 0
    (row,) = [line for line in listing.stdout.splitlines() if str(dest) in line]
    assert row.split()[:5] == ["*", "ict", "22.3M", "eda565f92179", "no"]  # installed: found before the package's
    assert listing.stdout.splitlines()[-1].startswith("  ict")  # the shipped one, no longer the default

    assert load_model("ict").num_vertices == 26719

    npz = "ict_facekit_light.npz"
    before = (dest / npz).stat().st_mtime_ns
    same = runner.invoke(main, ["models", "install", "ict", str(source)])
    assert same.exit_code == 0, same.output  # the same model again is a no-op
    assert (dest / npz).stat().st_mtime_ns == before
    (dest / npz).write_bytes(b"another model")  # now the installed copy differs from the source
    again = runner.invoke(main, ["models", "install", "ict", str(source)])
    assert again.exit_code == 1
    assert len(again.stderr.strip().splitlines()) == 1 and "already installed" in again.stderr
    forced = runner.invoke(main, ["models", "install", "ict", str(source), "--force"])
    assert forced.exit_code == 0, forced.output
    assert [p.name for p in (cache / "models").iterdir()] == ["ict"]  # old copy and staging removed
    assert (dest / npz).stat().st_size == (source / npz).stat().st_size


def test_install_errors_are_one_line_and_write_nothing(cache: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = tmp_path / "nowhere"
    result = runner.invoke(main, ["models", "install", "ict", str(missing)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"Error: {missing}: no such folder"]

    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    (not_a_model / "LICENSE").write_text("MIT")
    dest = ["--dest", str(tmp_path / "m")]
    result = runner.invoke(main, ["models", "install", "ict", str(not_a_model), *dest])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert str(not_a_model) in line and "generic_neutral_mesh.obj" in line
    assert list((tmp_path / "m").iterdir()) == []

    bad_kind = runner.invoke(main, ["models", "install", "flame", str(not_a_model)])
    assert bad_kind.exit_code == 2 and "flame" in bad_kind.stderr
