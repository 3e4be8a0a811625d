"""Face models: the linear model module, loaders (ICT, BFM 2009, 3DDFA-V3), search path, install, assets."""

from fit3dmm.models.assets import Correspondence, FaceModelAssets, SurfaceSamples
from fit3dmm.models.bfm import load_bfm2009
from fit3dmm.models.ddfa_v3 import load_ddfa_v3
from fit3dmm.models.face_model import FaceModel, FaceModelOutput
from fit3dmm.models.ict import load_ict
from fit3dmm.models.ict_obj import convert_ict_checkout
from fit3dmm.models.store import (
    MODEL_KINDS,
    ModelEntry,
    ModelLocation,
    ModelNotFoundError,
    assets_dir,
    find_model,
    install_model,
    list_models,
    load_assets,
    load_model,
    save_assets,
)

__all__ = [
    "MODEL_KINDS",
    "Correspondence",
    "FaceModel",
    "FaceModelAssets",
    "FaceModelOutput",
    "ModelEntry",
    "ModelLocation",
    "ModelNotFoundError",
    "SurfaceSamples",
    "assets_dir",
    "convert_ict_checkout",
    "find_model",
    "install_model",
    "list_models",
    "load_assets",
    "load_bfm2009",
    "load_ddfa_v3",
    "load_ict",
    "load_model",
    "save_assets",
]
