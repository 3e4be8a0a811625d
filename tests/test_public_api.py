"""The flat public API: every name the package exports imports, and the README lists exactly those."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import fit3dmm

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("name", fit3dmm.__all__)
def test_every_exported_name_imports(name):
    assert getattr(fit3dmm, name) is not None


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fit3dmm.nope  # noqa: B018


def test_the_readme_lists_the_exported_names():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python API"): text.index("\n## ", text.index("## Python API") + 3)]
    listed = set(re.findall(r"`fit3dmm\.(\w+)`", section))
    assert listed == set(fit3dmm.__all__) - {"__version__"}, listed ^ (set(fit3dmm.__all__) - {"__version__"})



def test_no_exported_name_is_also_a_subpackage():
    """A function named like a subpackage is replaced by the module as soon as anything imports that subpackage
    (``fit3dmm.observe`` was: after ``fit3dmm.fit`` it was the package, not the function)."""
    import subprocess
    import sys

    packages = {p.name for p in Path(fit3dmm.__file__).parent.iterdir() if (p / "__init__.py").is_file()}
    assert set(fit3dmm._SUBPACKAGES) <= packages
    assert not set(fit3dmm._EXPORTS) & packages
    code = "import fit3dmm, fit3dmm.api; print(callable(fit3dmm.observe_faces), callable(fit3dmm.fit))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == [
        "True", "True"]
