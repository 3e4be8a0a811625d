"""Training data for the regressor: observed photos (cached on disk), distillation targets, batching.

A training item is one face: an :class:`~fit3dmm.types.observation.Observation` with B = 1 (crop,
landmarks, part masks and point sets) and, when known, its coefficients (a synthetic face's truth, or a
per-photo fit given with ``--targets``).  Observing a photo (detection, crop, segmentation) costs far more
than a training step, so each observation is computed once and kept in ``<run>/cache/<sha256>.pt``; the key
covers the photo's bytes and every setting that changes the observation, so a stale entry is never used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
from torch import Tensor

from fit3dmm import __version__
from fit3dmm.api import FaceTooSmallError, Pipeline
from fit3dmm.defaults import STATUS_OK
from fit3dmm.fitting.engine import one_line
from fit3dmm.io.atomic import atomic_save
from fit3dmm.io.params import read_params_json
from fit3dmm.io.tables import read_csv
from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.regressor import CoefficientLayout, Coefficients
from fit3dmm.observe.detect import NoFaceError
from fit3dmm.observe.image import load_image
from fit3dmm.observe.points import DEFAULT_COUNTS
from fit3dmm.types.observation import Observation

CACHE_VERSION = 1
COEFFICIENT_NAMES = ("identity", "expression", "rotation", "translation")


@dataclass
class TrainItem:
    """One face to train on.

    Attributes:
        observation: B = 1.
        target: known coefficients by name, (1, ·) each (``identity``, ``expression``, ``rotation``,
            ``translation``), or None.
        source: ``"photo"`` or ``"synthetic"``.
    """

    observation: Observation
    target: dict[str, Tensor] | None = None
    source: str = "photo"

    def __post_init__(self) -> None:
        if self.observation.batch_size != 1:
            raise ValueError(f"a training item holds one face, got a batch of {self.observation.batch_size}")
        if self.target is not None:
            missing = set(COEFFICIENT_NAMES) - set(self.target)
            if missing:
                raise ValueError(f"target lacks {sorted(missing)}")


class ObservationCache:
    """Observations (and optional targets) on disk under ``folder``, one ``<sha256>.pt`` file per key.

    Writes are atomic, so an interrupted run never leaves a half-written entry.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @staticmethod
    def key(*parts: str | bytes) -> str:
        """sha256 of the parts (with the cache format and fit3dmm version mixed in)."""
        digest = hashlib.sha256(f"fit3dmm-train-cache/{CACHE_VERSION}/{__version__}".encode())
        for part in parts:
            digest.update(b"\0" + (part if isinstance(part, bytes) else part.encode()))
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def load(self, key: str) -> TrainItem | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            return TrainItem(Observation.from_state_dict(data["observation"]), data.get("target"), data["source"])
        except Exception:  # a damaged entry is recomputed
            return None

    def save(self, key: str, item: TrainItem) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        data = {"observation": item.observation.state_dict(), "source": item.source,
                "target": None if item.target is None else {k: v.cpu() for k, v in item.target.items()}}
        atomic_save(self.path(key), lambda p: torch.save(data, p))


# ---------------------------------------------------------------------------------------------- photos
def observe_photos(
    paths: Sequence[Path],
    pipeline: Pipeline,
    *,
    cache: ObservationCache | None = None,
    log: Callable[[str], None] = print,
) -> list[tuple[Path, Observation]]:
    """Observe the largest face of each photo through ``pipeline`` (cached); photos without a usable face are
    reported and skipped.

    Args:
        pipeline: the observe path (crop size, detection size, minimum face size, segmentation for the losses).
        cache: where to keep the observations; None computes everything.
    """
    o = pipeline.observe_options
    settings = (f"size={o.size};segment={o.segment};min_face_size={o.min_face_size};max_side={o.detect_max_side};"
                f"counts={sorted(DEFAULT_COUNTS.items())};detector=mediapipe")
    out: list[tuple[Path, Observation]] = []
    with ExitStack() as stack:
        detector = None
        for path in paths:
            key = ObservationCache.key(Path(path).read_bytes(), settings)
            item = cache.load(key) if cache is not None else None
            if item is None:
                if detector is None:
                    detector = pipeline.detector_factory()
                    stack.callback(detector.close)
                try:
                    obs = pipeline.observe(load_image(path), detector, name=Path(path).name)[0]
                except (NoFaceError, FaceTooSmallError) as exc:
                    log(f"{path}: {one_line(exc)}, skipped")
                    continue
                item = TrainItem(obs)
                if cache is not None:
                    cache.save(key, item)
            out.append((Path(path), item.observation))
    return out


def read_target(path: str | Path, model: FaceModel, layout: CoefficientLayout) -> dict[str, Tensor]:
    """Coefficients (1, ·) from a ``fit3dmm fit`` parameters JSON, checked against ``model`` and padded or cut
    to the regressor's ``layout`` (a fit with fewer identity modes leaves the rest at 0)."""
    doc = read_params_json(path)
    checksum = doc["model"]["checksum"]
    if checksum and model.checksum and checksum != model.checksum:
        raise ValueError(f"{path}: fitted with model {doc['model']['name']!r}, not {model.name!r} "
                         "(checksums differ)")
    if doc.get("status", STATUS_OK) != STATUS_OK:
        raise ValueError(f"{path}: the fit's status is {doc['status']!r}")
    coeffs = doc["coefficients"]
    identity = torch.zeros(1, layout.identity)
    given = torch.tensor(coeffs["identity"], dtype=torch.float32)[: layout.identity]
    identity[0, : given.numel()] = given
    expression = torch.tensor([coeffs["expression"]], dtype=torch.float32)
    if expression.shape[1] != layout.expression:
        raise ValueError(f"{path}: {expression.shape[1]} expression coefficients, the model has {layout.expression}")
    return {
        "identity": identity,
        "expression": expression,
        "rotation": torch.tensor([doc["pose"]["rotation_axis_angle"]], dtype=torch.float32),
        "translation": torch.tensor([doc["pose"]["translation_cm"]], dtype=torch.float32),
    }


def find_target(folder: str | Path, photo: str | Path) -> Path | None:
    """The parameters JSON of ``photo`` (its first face) in a folder of ``fit3dmm fit`` outputs, or None.

    Looked up in the folder's ``report.csv`` first (the row whose input is ``photo``, or the only row with its
    file name: right also when photos shared a stem and got ``<stem>-<hash>/`` folders), then as
    ``<stem>/face.json`` (what ``fit --out DIR`` writes) or ``<stem>.json``.
    """
    folder, photo = Path(folder), Path(photo)
    report = folder / "report.csv"
    if report.is_file():
        rows = [r for r in read_csv(report) if r.get("output") and r.get("face", "0") in ("0", "")]
        same = [r for r in rows if Path(r["input"]).resolve() == photo.resolve()]
        named = [r for r in rows if Path(r["input"]).name == photo.name]
        for row in same or (named if len(named) == 1 else []):
            candidate = (folder / row["output"]).with_suffix(".json")
            if candidate.is_file():
                return candidate
    for candidate in (folder / photo.stem / "face.json", folder / f"{photo.stem}.json"):
        if candidate.is_file():
            return candidate
    return None


# --------------------------------------------------------------------------------------------- batches
def collate(items: Sequence[TrainItem]) -> tuple[Observation, Coefficients | None, Tensor]:
    """Stack items into one batch → (observation, targets or None, (B,) bool: which items have a target).

    Fields that some items lack (e.g. dense landmarks) are dropped from the whole batch; items without a
    target get zeros in the stacked targets and False in the mask.
    """
    if not items:
        raise ValueError("nothing to collate")
    observations = [it.observation for it in items]
    drop = {f.name: None for f in fields(Observation)
            if f.name not in ("image", "crop_to_photo", "photo_size", "names", "points")
            and any(getattr(o, f.name) is None for o in observations)}
    parts = set.intersection(*(set(o.points) for o in observations))
    observations = [replace(o, **drop, points={k: v for k, v in o.points.items() if k in parts})
                    for o in observations]
    for o in observations:
        o.crop_to_photo = o.crop_to_photo.to(torch.float64)
    obs = Observation.stack(observations)
    has = torch.tensor([it.target is not None for it in items])
    if not bool(has.any()):
        return obs, None, has
    ref = next(it.target for it in items if it.target is not None)
    stacked = {name: torch.cat([(it.target[name] if it.target is not None else torch.zeros_like(ref[name]))
                                .to(torch.float32) for it in items]) for name in COEFFICIENT_NAMES}
    return obs, Coefficients.from_dict(stacked), has
