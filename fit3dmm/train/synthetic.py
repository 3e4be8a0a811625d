"""Synthetic training items: renders of the face model (:mod:`fit3dmm.synthetic`) with their true
coefficients as targets, cached like photos."""

from __future__ import annotations

from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.instances import SyntheticConfig, sample_coefficients
from fit3dmm.models.regressor import CoefficientLayout
from fit3dmm.synthetic import render_synthetic
from fit3dmm.train.data import ObservationCache, TrainItem


def synthetic_items(model: FaceModel, layout: CoefficientLayout, count: int, config: SyntheticConfig,
                    cache: ObservationCache | None = None) -> list[TrainItem]:
    """``count`` synthetic faces with their true coefficients as targets (cached like photos)."""
    items = []
    region = model.region() if count else None
    for index in range(count):
        key = ObservationCache.key("synthetic", model.checksum, str(model.has_parts), config.describe(),
                                   repr(layout), str(index))
        item = cache.load(key) if cache is not None else None
        if item is None:
            coeffs = sample_coefficients(layout, config, index)
            obs = render_synthetic(model, coeffs, config.size, (config.seed, index), region=region)
            item = TrainItem(obs.to("cpu"), target=coeffs.as_dict(photometric=False), source="synthetic")
            if cache is not None:
                cache.save(key, item)
        items.append(item)
    return items
