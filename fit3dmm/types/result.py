"""The outcome of a fit, in the spirit of smplx's named outputs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor

from fit3dmm.render.camera import PerspectiveCamera
from fit3dmm.types.observation import Observation

# field metadata: which axis of a field runs over the batch (absent: shared by every face)
_BATCH = "batch_axis"
_AXIS0 = {_BATCH: 0}
_AXIS1 = {_BATCH: 1}


@dataclass
class FitResult:
    """Fitted coefficients and geometry for B faces.

    Attributes:
        coefficients: by name: ``identity`` (B, K), ``expression`` (B, E), ``rotation`` (B, 3) axis-angle,
            ``translation`` (B, 3) cm, optionally ``albedo`` (B, Ka) and ``lighting`` (B, 27) SH.
        vertices: (B, V, 3) full-model vertices in model space (cm), before the rigid motion.
        triangles: (T, 3) the full model's triangles.
        face_triangles: (T', 3) the triangles of the fitted face region (full-model indices), for overlays.
        vertices_cam: (B, V, 3) the same in camera space (cm).
        vertices_photo: (B, V, 2) full-model vertices projected into photo pixels.
        rotation: (B, 3, 3) model→camera rotation.
        pose_deg: (B, 3) yaw, pitch, roll in degrees (convention of :mod:`fit3dmm.render.camera`).
        camera: the camera in crop pixels (focal, principal point).
        observation: the Observation the fit used (crop transform, landmarks, masks).
        landmarks68_photo: (B, 68, 2) projected fitted landmarks in photo pixels.
        landmarks68_cam: (B, 68, 3) the fitted landmarks in camera space (cm).
        losses: final unweighted value of each loss term, (B,) each.
        weights: the weight of each loss term.
        history: total loss per refinement iteration, (iterations, B); NaN after a face's fit stopped (when
            results of different lengths were stacked), or None without a refinement.
        timings: seconds spent per stage.
        expression_names: names of the expression coefficients (ARKit names for ICT).
        model_info: the model's :meth:`~fit3dmm.models.face_model.FaceModel.describe`.
        status: per item, "ok" or why the fit failed (e.g. "diverged").
        retried: per item, whether it was fitted a second time (with a safer schedule) after a divergence.
    """

    coefficients: dict[str, Tensor] = field(metadata=_AXIS0)
    vertices: Tensor = field(metadata=_AXIS0)
    triangles: Tensor
    face_triangles: Tensor
    vertices_cam: Tensor = field(metadata=_AXIS0)
    vertices_photo: Tensor = field(metadata=_AXIS0)
    rotation: Tensor = field(metadata=_AXIS0)
    pose_deg: Tensor = field(metadata=_AXIS0)
    camera: PerspectiveCamera = field(metadata=_AXIS0)
    observation: Observation = field(metadata=_AXIS0)
    landmarks68_photo: Tensor = field(metadata=_AXIS0)
    landmarks68_cam: Tensor = field(metadata=_AXIS0)
    losses: dict[str, Tensor] = field(default_factory=dict, metadata=_AXIS0)
    weights: dict[str, float] = field(default_factory=dict)
    history: Tensor | None = field(default=None, metadata=_AXIS1)
    timings: dict[str, float] = field(default_factory=dict)
    expression_names: list[str] = field(default_factory=list)
    model_info: dict[str, object] = field(default_factory=dict)
    status: list[str] = field(default_factory=list, metadata=_AXIS0)
    retried: list[bool] = field(default_factory=list, metadata=_AXIS0)

    @property
    def batch_size(self) -> int:
        return self.vertices.shape[0]

    def iterations(self, index: int) -> int:
        """How many refinement iterations face ``index`` ran (0 without a refinement)."""
        if self.history is None:
            return 0
        ran = ~torch.isnan(self.history[:, index])
        return int(ran.nonzero().max()) + 1 if bool(ran.any()) else 0

    @staticmethod
    def stack(results: list[FitResult]) -> FitResult:
        """Concatenate results of the same model along the batch (shared fields from the first)."""
        if not results:
            raise ValueError("nothing to stack")
        values = {}
        for f in dataclasses.fields(FitResult):
            items = [getattr(r, f.name) for r in results]
            axis = f.metadata.get(_BATCH)
            values[f.name] = items[0] if axis is None else _cat(items, axis)
        return FitResult(**values)

    def take(self, rows: list[int]) -> FitResult:
        """The faces ``rows`` (in that order) as a result of len(rows) faces, on the same device."""
        for index in rows:
            if not 0 <= index < self.batch_size:
                raise IndexError(f"face index {index} is outside the batch of {self.batch_size}")
        values = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            axis = f.metadata.get(_BATCH)
            values[f.name] = value if axis is None else _take(value, rows, axis)
        return FitResult(**values)

    def select(self, index: int) -> FitResult:
        """Face ``index`` as a B = 1 result on the CPU: detached copies, safe to pickle and to keep."""
        return _to_cpu(self.take([index % self.batch_size if index < 0 else index]))


def _take(value: object, rows: list[int], axis: int) -> object:
    """The items ``rows`` of ``value`` along ``axis``."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        return value.index_select(axis, torch.as_tensor(rows, dtype=torch.long, device=value.device))
    if isinstance(value, dict):
        return {k: _take(v, rows, axis) for k, v in value.items()}
    if isinstance(value, list):
        return [value[i] for i in rows]
    if isinstance(value, PerspectiveCamera):
        return PerspectiveCamera(_take(value.focal, rows, 0), _take(value.principal, rows, 0))
    if isinstance(value, Observation):
        return Observation.stack([value.select(i) for i in rows])
    raise TypeError(f"cannot select from {type(value).__name__}")


def _to_cpu(result: FitResult) -> FitResult:
    """Detached CPU copies of every tensor of ``result``."""
    def move(value: object) -> object:
        if isinstance(value, Tensor):
            return value.detach().cpu().clone()
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return list(value)
        if isinstance(value, PerspectiveCamera):
            return PerspectiveCamera(move(value.focal), move(value.principal))
        if isinstance(value, Observation):
            return value.to("cpu")
        return value

    return FitResult(**{f.name: move(getattr(result, f.name)) for f in dataclasses.fields(result)})


def _cat(items: list[object], axis: int) -> object:
    """Concatenate per-batch values of one field along ``axis``."""
    first = items[0]
    if first is None:
        if any(i is not None for i in items):
            raise ValueError("cannot stack results where only some have a value")
        return None
    if isinstance(first, Tensor):
        if axis == 1:  # per-iteration values of fits that stopped at different iterations: pad with NaN
            rows = max(i.shape[0] for i in items)
            items = [torch.cat([i, i.new_full((rows - i.shape[0], *i.shape[1:]), float("nan"))]) for i in items]
        return torch.cat([i.to(first.device) for i in items], dim=axis)
    if isinstance(first, dict):
        return {k: _cat([i[k] for i in items], axis) for k in first}
    if isinstance(first, list):
        return [v for i in items for v in i]
    if isinstance(first, PerspectiveCamera):
        return PerspectiveCamera(_cat([i.focal for i in items], 0), _cat([i.principal for i in items], 0))
    if isinstance(first, Observation):
        return Observation.stack([i.to(first.device) for i in items])
    raise TypeError(f"cannot stack {type(first).__name__}")
