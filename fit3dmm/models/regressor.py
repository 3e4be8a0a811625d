"""A ResNet-50 that regresses the coefficients α of a face model from an aligned crop (3DDFA-V3's network).

The head is the network's ``fc`` layer, D = K + E + 3 + 3 (+ Ka + 27 with an albedo) wide, initialised to
zero so that a fresh network predicts a sane face: the mean shape, bounded expressions near their rest value,
a frontal pose, and the nominal distance at which :func:`fit3dmm.observe.observe.observe_face` frames a face.
The head's outputs are scaled by s = 0.1 (``r = s·fc(features)``) and mapped to valid coefficients:

===========  =================================================================================
identity     ``r`` (the model's unit-variance modes)
expression   bounded models (ICT: [lo, hi] = [0, 1]): ``lo + (hi − lo)·sigmoid(r + logit(rest))``,
             so predictions never leave the box; unbounded: ``r``
rotation     axis-angle, radians: ``r``
translation  cm: ``nominal + r · (1, 1, 10)``
albedo       ``r``; lighting (SH offsets from the ambient start): ``0.3 · r``
===========  =================================================================================

Why s: Adam moves each weight of the zero head by about the learning rate per step, all in the direction
of the gradient's sign, and a ResNet's pooled features are non-negative, so an output moves by about
lr·Σ|f| per step, 0.1 to 0.5 for a fresh ResNet-50 at lr 1e-4: 6° to 30° of head rotation in one step.
Measured on a fixed batch of 16 training faces after 40 steps from a random backbone (lr 1e-4): loss 16.6
(train-mode BN) / 18.4 (eval) without the scale, worse than the rest state's 16.55; 14.9 / 15.4 with it.

A saved regressor (:func:`save_regressor`) is self-describing: it records the layout, the crop size it was
trained on and the face model's name and checksum, so :func:`load_regressor` needs nothing else.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fit3dmm.io.atomic import atomic_save
from fit3dmm.models.face_model import FaceModel, file_checksum
from fit3dmm.models.resnet import ResNet50, load_backbone_weights
from fit3dmm.observe.crop import crop_box
from fit3dmm.render.camera import PerspectiveCamera, axis_angle_to_matrix, transform_points
from fit3dmm.types.observation import Observation

REGRESSOR_FORMAT = "fit3dmm.regressor"
REGRESSOR_VERSION = 2  # 2: the head's output is scaled by HEAD_SCALE
# ImageNet statistics (the input normalisation of torchvision's ResNet-50 weights)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRANSLATION_SCALE = (1.0, 1.0, 10.0)
LIGHTING_SCALE = 0.3
HEAD_SCALE = 0.1
EXPRESSION_REST = 0.05  # start of bounded expressions, as a fraction of their range
NUM_SH = 27


@dataclass(frozen=True)
class CoefficientLayout:
    """Which coefficients the head predicts and how many of each.

    Attributes:
        identity, expression, albedo: K, E, Ka (Ka = 0 without an albedo).
        lighting: 27 SH coefficients with an albedo, else 0.
        expression_range: the model's (lo, hi) expression box, or None.
        nominal_translation: (x, y, z) cm where a face sits in a crop (:func:`nominal_translation`).
    """

    identity: int
    expression: int
    albedo: int = 0
    lighting: int = 0
    expression_range: tuple[float, float] | None = None
    nominal_translation: tuple[float, float, float] = (0.0, 0.0, -110.0)

    def __post_init__(self) -> None:
        if min(self.identity, self.expression, self.albedo, self.lighting) < 0:
            raise ValueError("coefficient counts must be ≥ 0")
        if self.lighting not in (0, NUM_SH):
            raise ValueError(f"lighting has {NUM_SH} SH coefficients or none, got {self.lighting}")
        if self.expression_range is not None and not self.expression_range[0] < self.expression_range[1]:
            raise ValueError(f"expression_range must be (lo, hi) with lo < hi, got {self.expression_range}")

    @staticmethod
    def for_model(model: FaceModel, size: int = 224, num_identity: int | None = None) -> CoefficientLayout:
        """The layout for ``model`` (its region is used for the nominal translation)."""
        k = model.num_identity if num_identity is None else min(num_identity, model.num_identity)
        rng = None if model.expression_range is None else tuple(float(v) for v in model.expression_range)
        return CoefficientLayout(
            identity=k, expression=model.num_expression, albedo=model.num_albedo,
            lighting=NUM_SH if model.has_albedo else 0, expression_range=rng,
            nominal_translation=nominal_translation(model, size),
        )

    def sizes(self) -> dict[str, int]:
        """Name → width of each block of the head's output, in output order (empty blocks left out)."""
        out = {"identity": self.identity, "expression": self.expression, "rotation": 3, "translation": 3,
               "albedo": self.albedo, "lighting": self.lighting}
        return {k: v for k, v in out.items() if v > 0}

    @property
    def total(self) -> int:
        return sum(self.sizes().values())

    @property
    def photometric(self) -> bool:
        return self.lighting > 0


@dataclass
class Coefficients:
    """Coefficients of B faces with the attributes :class:`~fit3dmm.fitting.prediction.PredictionBuilder`
    reads, so that the fitting's losses apply to a network's output unchanged.

    ``identity`` (B, K), ``expression`` (B, E), ``rotation`` (B, 3) axis-angle, ``translation`` (B, 3) cm,
    ``albedo`` (B, Ka) and ``lighting`` (B, 27) or None.
    """

    identity: Tensor
    expression: Tensor
    rotation: Tensor
    translation: Tensor
    albedo: Tensor | None = None
    lighting: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.identity.shape[0]

    def rotation_matrix(self) -> Tensor:
        """(B, 3, 3) model→camera rotation."""
        return axis_angle_to_matrix(self.rotation)

    def to(self, device: torch.device | str) -> Coefficients:
        """A copy with every coefficient on ``device``."""
        return Coefficients(*(None if v is None else v.to(device) for v in (
            self.identity, self.expression, self.rotation, self.translation, self.albedo, self.lighting)))

    def as_dict(self, photometric: bool = True) -> dict[str, Tensor]:
        """Detached coefficients by name (the ``init`` of :func:`~fit3dmm.fitting.engine.fit_observation`);
        ``photometric=False`` leaves out albedo and lighting (a fit without the photometric term has none)."""
        out = {"identity": self.identity, "expression": self.expression, "rotation": self.rotation,
               "translation": self.translation}
        if photometric:
            out.update({k: v for k, v in (("albedo", self.albedo), ("lighting", self.lighting)) if v is not None})
        return {k: v.detach().clone() for k, v in out.items()}

    @staticmethod
    def from_dict(values: dict[str, Tensor]) -> Coefficients:
        missing = {"identity", "expression", "rotation", "translation"} - set(values)
        if missing:
            raise ValueError(f"coefficients lack {sorted(missing)}")
        return Coefficients(**{k: values.get(k) for k in
                               ("identity", "expression", "rotation", "translation", "albedo", "lighting")})

    def vertices_cam(self, model: FaceModel) -> Tensor:
        """(B, V, 3) camera-space vertices of ``model`` for these coefficients."""
        verts = model(self.identity, self.expression).vertices
        return transform_points(verts, self.rotation_matrix(), self.translation)


def nominal_translation(model: FaceModel, size: int = 224) -> tuple[float, float, float]:
    """Where the mean face sits when a photo is cropped the way :func:`~fit3dmm.observe.observe.observe_face`
    does: the translation (cm) that puts the :func:`~fit3dmm.observe.crop.crop_box` of the projected landmarks
    (the dense landmark correspondence when the model has one, else its 68) exactly on the crop of the default
    crop camera."""
    mean = model.mean.detach().cpu().double()
    landmarks = model.assets.landmarks
    if landmarks is not None:
        weights = torch.as_tensor(landmarks.weights).double()
        points = (mean[torch.as_tensor(landmarks.vertices)] * weights[..., None]).sum(1)
    else:
        points = mean[model.landmarks68.cpu()]
    camera = PerspectiveCamera.for_crop(size, 1, dtype=torch.float64)
    trial = 100.0
    pix, _ = camera.project((points + torch.tensor([0.0, 0.0, -trial], dtype=torch.float64))[None])
    left, top, side = crop_box(pix[0].numpy())
    distance = trial * side / size
    centre = (size - 1) / 2.0
    dx = left + side / 2.0 - 0.5 - centre  # box centre in pixel-centre coordinates, relative to the principal
    dy = top + side / 2.0 - 0.5 - centre
    focal = float(camera.focal[0])
    return (-dx * trial / focal, dy * trial / focal, -distance)


class FaceRegressor(nn.Module):
    """ResNet-50 → coefficients of a face model, for (B, 3, S, S) crops with RGB in [0, 1].

    Args:
        layout: what to predict (:meth:`CoefficientLayout.for_model`).
        size: the crop size the network is trained for; inputs of another size are resized to it.
    """

    def __init__(self, layout: CoefficientLayout, size: int = 224) -> None:
        super().__init__()
        if size < 32:
            raise ValueError(f"size must be ≥ 32 px, got {size}")
        self.layout = layout
        self.size = size
        self.backbone = ResNet50(num_outputs=layout.total)
        # a zero head (as Deep3DFaceRecon's final layers) predicts the rest state whatever the features'
        # scale (a fresh backbone's eval-mode features are far from unit scale); it gets gradients at once
        nn.init.zeros_(self.backbone.fc.weight)
        nn.init.zeros_(self.backbone.fc.bias)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("nominal", torch.tensor(layout.nominal_translation), persistent=False)
        self.register_buffer("translation_scale", torch.tensor(TRANSLATION_SCALE), persistent=False)

    def load_backbone(self, weights: str | Path | dict[str, Tensor]) -> list[str]:
        """Initialise the backbone from a torchvision ResNet-50 checkpoint (the head keeps its init)."""
        return load_backbone_weights(self.backbone, weights)

    def forward(self, images: Tensor) -> Coefficients:
        """(B, 3, H, W) RGB in [0, 1] → :class:`Coefficients` of B faces."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[-2:] != (self.size, self.size):
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                   antialias=True)
        return self.decode(self.backbone(self.normalize(images)))

    def normalize(self, images: Tensor) -> Tensor:
        """RGB in [0, 1] → the backbone's input (ImageNet mean and standard deviation)."""
        return (images - self.pixel_mean) / self.pixel_std

    def decode(self, raw: Tensor) -> Coefficients:
        """Map the head's raw (B, D) output to valid coefficients (table in the module docstring)."""
        if raw.ndim != 2 or raw.shape[1] != self.layout.total:
            raise ValueError(f"raw output must be (B, {self.layout.total}), got {tuple(raw.shape)}")
        raw = HEAD_SCALE * raw
        parts = dict(zip(self.layout.sizes(), raw.split(list(self.layout.sizes().values()), dim=1), strict=True))
        expression = parts["expression"]
        if self.layout.expression_range is not None:
            lo, hi = self.layout.expression_range
            expression = lo + (hi - lo) * torch.sigmoid(expression + math.log(EXPRESSION_REST / (1 - EXPRESSION_REST)))
        lighting = parts.get("lighting")
        return Coefficients(
            identity=parts["identity"],
            expression=expression,
            rotation=parts["rotation"],
            translation=self.nominal + parts["translation"] * self.translation_scale,
            albedo=parts.get("albedo"),
            lighting=None if lighting is None else LIGHTING_SCALE * lighting,
        )

    @torch.no_grad()
    def predict(self, observation: Observation) -> Coefficients:
        """Coefficients for the crops of ``observation`` (eval mode, no gradient, on the regressor's device)."""
        was_training = self.training
        self.eval()
        try:
            return self(observation.image.to(self.nominal.device))
        finally:
            self.train(was_training)


def save_regressor(path: str | Path, regressor: FaceRegressor, model: FaceModel,
                   extra: dict[str, Any] | None = None) -> None:
    """Atomically write the network and what is needed to use it (layout, crop size, model name/checksum)."""
    data = {
        "format": REGRESSOR_FORMAT,
        "version": REGRESSOR_VERSION,
        "layout": asdict(regressor.layout),
        "size": regressor.size,
        "model": {"name": model.name, "checksum": model.checksum},
        "state_dict": {k: v.detach().cpu() for k, v in regressor.state_dict().items()},
        "extra": extra or {},
    }
    atomic_save(path, lambda p: torch.save(data, p))


def load_regressor(path: str | Path, device: torch.device | str | None = None
                   ) -> tuple[FaceRegressor, dict[str, Any]]:
    """Read a :func:`save_regressor` file → (regressor in eval mode, its metadata: ``model``, ``size``, ``extra``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"regressor {path}: no such file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(f"regressor {path}: not a readable torch file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != REGRESSOR_FORMAT:
        raise ValueError(f"regressor {path}: not a fit3dmm regressor (a training checkpoint? use run/model.pt)")
    if data.get("version") != REGRESSOR_VERSION:
        raise ValueError(f"regressor {path}: format version {data.get('version')} is not supported")
    layout = dict(data["layout"])
    for key in ("expression_range", "nominal_translation"):
        if layout.get(key) is not None:
            layout[key] = tuple(layout[key])
    regressor = FaceRegressor(CoefficientLayout(**layout), size=int(data["size"]))
    regressor.load_state_dict(data["state_dict"])
    regressor.eval()
    if device is not None:
        regressor.to(device)
    return regressor, {"model": data["model"], "size": int(data["size"]), "extra": data.get("extra", {})}


def check_model(meta: dict[str, Any], model: FaceModel) -> None:
    """Refuse a face model other than the one the regressor was trained for (name and checksum)."""
    want = meta["model"]
    if want.get("checksum") and model.checksum and want["checksum"] != model.checksum:
        raise ValueError(f"the regressor was trained for model {want.get('name')!r} (checksum "
                         f"{want['checksum'][:12]}…), not {model.name!r} ({model.checksum[:12]}…)")


def predict_init(regressor: str | Path | FaceRegressor, observation: Observation) -> dict[str, Tensor]:
    """Starting coefficients of a fit (``init=``) from a regressor.

    Args:
        regressor: a ``run/model.pt`` written by ``fit3dmm train`` (loaded on each call; pass a loaded
            :class:`FaceRegressor` when fitting many photos).
        observation: B faces, any crop size (resized to the regressor's).
    Returns:
        ``identity``, ``expression``, ``rotation``, ``translation`` (+ ``albedo``, ``lighting`` when the
        regressor predicts them), (B, ·) each, on the observation's device; the fit keeps what it fits.
    """
    if not isinstance(regressor, FaceRegressor):
        regressor, _ = load_regressor(regressor)
    return {k: v.to(observation.device) for k, v in regressor.predict(observation).as_dict().items()}


class RegressorStart:
    """The start of a fit from a regressor's prediction instead of the PnP pose and the mean face
    (a :data:`~fit3dmm.fitting.engine.Start`): what ``fit3dmm fit --init run/model.pt`` runs.

    Args:
        regressor: a loaded :class:`FaceRegressor` (moved to each observation's device when used).
        fingerprint: what identifies the network in resumable runs (e.g. the SHA-256 of its file).
    """

    def __init__(self, regressor: FaceRegressor, fingerprint: str = "") -> None:
        self.regressor = regressor
        self.fingerprint = fingerprint

    def __call__(self, observation: Observation) -> dict[str, Tensor]:
        self.regressor.to(observation.device)
        return predict_init(self.regressor, observation)


def regressor_start(path: str | Path, model: FaceModel) -> RegressorStart:
    """The :class:`RegressorStart` of the regressor file ``path`` (``fit3dmm train``'s ``run/model.pt``),
    which must have been trained for ``model``.

    Raises:
        FileNotFoundError / ValueError: one line naming ``path``: missing, unreadable, or trained for
        another face model.
    """
    regressor, meta = load_regressor(path)
    try:
        check_model(meta, model)
    except ValueError as exc:
        raise ValueError(f"regressor {path}: {exc}") from None
    return RegressorStart(regressor, fingerprint=file_checksum(str(path)))
