"""Making the model that ships in the package: the compact ICT-FaceKit Light with its Algorithm 1 assets."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from fit3dmm.annotate.algorithm1 import AnnotationConfig, ensure_annotations
from fit3dmm.models.store import load_model, pack_ict


def pack_annotated_ict(source: str | Path, dest: str | Path, config: AnnotationConfig | None = None,
                       progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the compact model of the float32 ICT folder ``source`` (:func:`fit3dmm.models.store.pack_ict`) and
    its Algorithm 1 assets (``annotations.npz``, built with ``config``) into the folder ``dest``.

    The folder is built beside ``dest`` under a temporary name and renamed over it at the end, so a failure
    leaves ``dest`` as it was.  Reproducible: the same source and settings give the same files.
    """
    dest = Path(dest).expanduser()
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-pack-"))
    try:
        pack_ict(source, stage)
        ensure_annotations(load_model(stage), config, progress, force=True, folder=stage)
        if dest.exists():
            shutil.rmtree(dest)
        stage.rename(dest)
    finally:
        if stage.exists():
            shutil.rmtree(stage)
    return dest
