"""Shared fixtures: the ../shared data folder, the ICT model, a tiny hand-built model, a temporary cache.

Tests that need the shared data or model, mediapipe, or other processes are marked ``slow`` (those using the
``shared_dir`` or ``ict_model`` fixtures automatically); ``python -m pytest -m "not slow"`` runs the rest in
seconds.  CI runs everything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fit3dmm.models.face_model import FaceModel

SHARED = Path(os.environ.get("FIT3DMM_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
PACKAGED_ICT = Path(__file__).resolve().parents[1] / "fit3dmm" / "data" / "ict-facekit-light"


SLOW_FIXTURES = frozenset({"shared_dir", "ict_model", "annotated_ict"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the shared data folder or the ICT model as ``slow``."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point FIT3DMM_CACHE at a session temporary folder (unless set) so tests never write into $HOME."""
    if os.environ.get("FIT3DMM_CACHE"):
        yield Path(os.environ["FIT3DMM_CACHE"])
        return
    root = tmp_path_factory.mktemp("fit3dmm-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FIT3DMM_CACHE", str(root))
        yield root


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder (../shared or $FIT3DMM_SHARED); skips when absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder {SHARED} not found (set FIT3DMM_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def ict_model(session_cache: Path) -> FaceModel:
    """The ICT-FaceKit Light shipped in the package, loaded through :func:`fit3dmm.models.store.load_model`,
    without annotations (whatever the session cache holds), so that tests do not depend on their order."""
    from fit3dmm.models.assets import FaceModelAssets
    from fit3dmm.models.store import load_model

    model = load_model(str(PACKAGED_ICT))
    model.assets = FaceModelAssets()
    return model


@pytest.fixture(scope="session")
def annotated_ict(session_cache: Path) -> FaceModel:
    """The shipped ICT-FaceKit Light with the Algorithm 1 annotation shipped beside it."""
    from fit3dmm.annotate import is_annotated
    from fit3dmm.models.store import load_model

    model = load_model(str(PACKAGED_ICT))
    assert is_annotated(model), "the shipped model lost its annotations.npz"
    return model


@pytest.fixture
def tiny_model() -> FaceModel:
    """A square pyramid seen from the front for fast unit tests.

    5 vertices (cm), 4 outward counter-clockwise triangles, 2 identity, 2 expression and 1 albedo mode,
    68 landmarks cycling over the vertices; the apex (vertex 4) sits at z = 2, towards the viewer.
    """
    mean = np.array([[-5, -5, 0], [5, -5, 0], [5, 5, 0], [-5, 5, 0], [0, 0, 2]], dtype=np.float32)
    triangles = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    identity = np.zeros((2, 5, 3), np.float32)
    identity[0, :, 0] = mean[:, 0] * 0.1  # widen by 10 % per unit
    identity[1, 4, 2] = 1.0  # move the apex forward by 1 cm
    expression = np.zeros((2, 5, 3), np.float32)
    expression[0, 0, 1] = -1.0  # lower corner 0 by 1 cm
    expression[1, 1, 1] = -1.0
    albedo_mean = np.full((5, 3), 0.5, np.float32)
    albedo_basis = np.full((1, 5, 3), 0.1, np.float32)
    return FaceModel(
        "tiny", mean, identity, expression, triangles, np.arange(68) % 5,
        albedo_mean=albedo_mean, albedo_basis=albedo_basis, checksum="0" * 64,
    )
