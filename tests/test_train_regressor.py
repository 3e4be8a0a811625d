"""The coefficient regressor: output mapping, nominal framing, saving/loading, starting a fit, training data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fit3dmm.fitting.engine import fit_observation
from fit3dmm.fitting.schedule import Schedule
from fit3dmm.io.params import result_to_dict, write_params_json
from fit3dmm.models.instances import SyntheticConfig, sample_coefficients
from fit3dmm.models.regressor import (
    CoefficientLayout,
    FaceRegressor,
    load_regressor,
    nominal_translation,
    predict_init,
    save_regressor,
)
from fit3dmm.observe.crop import crop_box
from fit3dmm.render.camera import PerspectiveCamera
from fit3dmm.synthetic import render_synthetic
from fit3dmm.train.data import ObservationCache, TrainItem, collate, find_target, read_target
from fit3dmm.types.observation import Observation

SIZE = 64


@pytest.fixture(scope="module")
def ict_layout(ict_model) -> CoefficientLayout:
    return CoefficientLayout.for_model(ict_model, SIZE, num_identity=20)


def test_head_width_and_valid_outputs(ict_model, ict_layout):
    assert ict_layout.sizes() == {"identity": 20, "expression": 53, "rotation": 3, "translation": 3}
    torch.manual_seed(0)
    net = FaceRegressor(ict_layout, SIZE)
    assert net.backbone.fc.out_features == 79
    coeffs = net.predict(Observation(torch.rand(2, 3, SIZE, SIZE), torch.eye(3).repeat(2, 1, 1),
                                     torch.full((2, 2), 64.0)))
    # a fresh network starts sane: near-mean shape, expressions near rest, frontal, at the nominal place
    assert coeffs.identity.shape == (2, 20) and coeffs.identity.abs().max() < 1e-6
    assert coeffs.expression.shape == (2, 53)
    assert ((coeffs.expression - 0.05).abs() < 0.05).all()
    assert coeffs.rotation.abs().max() < 1e-6
    assert (coeffs.translation - torch.tensor(ict_layout.nominal_translation)).abs().max() < 1.0
    # whatever the raw output, ICT's expressions stay in [0, 1]
    extreme = net.decode(torch.cat([torch.full((1, 79), 1e4), torch.full((1, 79), -1e4)]))
    assert extreme.expression.min() >= 0.0 and extreme.expression.max() <= 1.0
    assert torch.allclose(extreme.expression[0], torch.ones(53))
    assert torch.allclose(extreme.expression[1], torch.zeros(53))
    # the table of the module docstring, by hand: r = 0.1·raw
    ones = net.decode(torch.ones(1, 79))
    assert torch.allclose(ones.identity, torch.full((1, 20), 0.1))
    assert torch.allclose(ones.rotation, torch.full((1, 3), 0.1))
    nominal = torch.tensor(ict_layout.nominal_translation)
    assert torch.allclose(ones.translation[0], nominal + torch.tensor([0.1, 0.1, 1.0]), atol=1e-5)
    rest = torch.logit(torch.tensor(0.05))
    assert torch.allclose(ones.expression, torch.sigmoid(rest + 0.1).expand(1, 53), atol=1e-6)


def test_nominal_translation_frames_the_mean_face_like_the_crop(tiny_model):
    size = 128
    t = torch.tensor(nominal_translation(tiny_model, size), dtype=torch.float64)
    assert t[2] < 0  # in front of the camera
    camera = PerspectiveCamera.for_crop(size, 1, dtype=torch.float64)
    pix, _ = camera.project((tiny_model.mean.double()[tiny_model.landmarks68] + t)[None])
    left, top, side = crop_box(pix[0].numpy())
    # the landmark crop box of the mean face at the nominal translation is the crop itself (to a pixel)
    assert side == pytest.approx(size, abs=1.5)
    assert left == pytest.approx(0.0, abs=1.0) and top == pytest.approx(0.0, abs=1.0)


def test_saved_regressor_round_trips_and_starts_a_fit(ict_model, ict_layout, tiny_model, tmp_path):
    torch.manual_seed(0)
    net = FaceRegressor(ict_layout, SIZE)
    with torch.no_grad():
        net.backbone.fc.bias.normal_(0.0, 0.3)  # a non-trivial prediction
    path = tmp_path / "model.pt"
    save_regressor(path, net, ict_model, extra={"steps": 3})
    loaded, meta = load_regressor(path)
    assert meta["model"]["checksum"] == ict_model.checksum and meta["size"] == SIZE and meta["extra"]["steps"] == 3
    assert loaded.layout == ict_layout
    # a 128 px observation is resized to the regressor's 64 px
    obs = Observation(torch.rand(1, 3, 128, 128), torch.eye(3, dtype=torch.float64)[None],
                      torch.tensor([[128.0, 128.0]]), landmarks68=torch.rand(1, 68, 2) * 60 + 34)
    init = predict_init(path, obs)
    assert set(init) == {"identity", "expression", "rotation", "translation"}
    direct = net.predict(obs)
    for name, value in init.items():
        assert torch.allclose(value, getattr(direct, name)), name
    result = fit_observation(ict_model, obs, {"lmk": 1.6e-3, "reg": 3e-4},
                             Schedule.no_iterations(num_identity=20), init=init)
    for name, value in init.items():  # zero iterations: the result is the regressor's prediction
        assert torch.allclose(result.coefficients[name], value, atol=1e-6), name
    # a fit with the model's 100 identity modes starts from the prediction zero-padded (`fit --init`)
    result = fit_observation(ict_model, obs, {"lmk": 1.6e-3}, Schedule.no_iterations(), init=init)
    assert result.coefficients["identity"].shape == (1, 100)
    assert torch.allclose(result.coefficients["identity"][:, :20], init["identity"], atol=1e-6)
    assert not result.coefficients["identity"][:, 20:].any()
    # the public API's `init=` (what `fit --init` runs): the same start
    from fit3dmm.api import fit
    from fit3dmm.models.regressor import regressor_start

    started = fit(obs, model=ict_model, losses="lmk,reg", schedule=Schedule.no_iterations(), init=path,
                  device="cpu", annotate=False)
    for name, value in result.coefficients.items():
        assert torch.allclose(started.coefficients[name], value, atol=1e-6), name
    with pytest.raises(ValueError, match=r"regressor .*model\.pt: the regressor was trained for model"):
        regressor_start(path, tiny_model)
    (tmp_path / "junk.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a readable"):
        load_regressor(tmp_path / "junk.pt")


def test_fit_parameters_json_becomes_a_distillation_target(ict_model, tmp_path):
    layout = CoefficientLayout.for_model(ict_model, SIZE)
    truth = sample_coefficients(layout, SyntheticConfig(size=SIZE), 3)
    obs = Observation(torch.rand(1, 3, SIZE, SIZE), torch.eye(3, dtype=torch.float64)[None],
                      torch.tensor([[64.0, 64.0]]), landmarks68=torch.rand(1, 68, 2) * 30 + 17)
    result = fit_observation(ict_model, obs, {"lmk": 1.6e-3}, Schedule.no_iterations(),
                             init=truth.as_dict())
    (tmp_path / "photo_7").mkdir()
    write_params_json(tmp_path / "photo_7" / "face.json", result_to_dict(result, 0))
    found = find_target(tmp_path, "/somewhere/photo_7.jpg")
    assert found == tmp_path / "photo_7" / "face.json"
    assert find_target(tmp_path, "other.png") is None
    # two photos named a.jpg in different folders: `fit --out` names their folders a-<hash>; report.csv says which
    for name in ("a-1111", "a-2222"):
        (tmp_path / name).mkdir()
        write_params_json(tmp_path / name / "face.json", result_to_dict(result, 0))
    (tmp_path / "report.csv").write_text("input,output,face,status\n/x/a.jpg,a-1111/face.obj,0,ok\n"
                                         "/y/a.jpg,a-2222/face.obj,0,ok\n/y/b.jpg,,,no_face\n")
    assert find_target(tmp_path, "/y/a.jpg") == tmp_path / "a-2222" / "face.json"
    assert find_target(tmp_path, "/z/a.jpg") is None  # two rows by that name, neither this photo
    assert find_target(tmp_path, "/z/photo_7.jpg") == tmp_path / "photo_7" / "face.json"
    target = read_target(found, ict_model, CoefficientLayout.for_model(ict_model, SIZE, num_identity=30))
    assert target["identity"].shape == (1, 30)
    assert torch.allclose(target["identity"], truth.identity[:, :30], atol=1e-5)
    for name in ("expression", "rotation", "translation"):
        assert torch.allclose(target[name], getattr(truth, name), atol=1e-5), name


def test_synthetic_face_observation_matches_its_coefficients(tiny_model):
    size = 96
    layout = CoefficientLayout.for_model(tiny_model, size)
    config = SyntheticConfig(size=size, seed=3)
    coeffs = sample_coefficients(layout, config, 5)
    assert torch.equal(coeffs.identity, sample_coefficients(layout, config, 5).identity)  # (seed, index) → same face
    assert not torch.equal(coeffs.identity, sample_coefficients(layout, config, 6).identity)
    obs = render_synthetic(tiny_model, coeffs, size, (3, 5))
    assert obs.image.shape == (1, 3, size, size) and obs.image.min() >= 0 and obs.image.max() <= 1
    # the landmarks are the exact projections of the instance (68 cycling over the pyramid's corners)
    camera = PerspectiveCamera.for_crop(size, 1)
    pix, _ = camera.project(coeffs.vertices_cam(tiny_model))
    assert torch.allclose(obs.landmarks68[0, :5], pix[0, :5], atol=1e-4)
    # the render covers the projected pyramid: its apex pixel differs from the background ramp around it
    x, y = (round(v) for v in pix[0, 4].tolist())
    corner = obs.image[0, :, 0, 0]
    assert (obs.image[0, :, y, x] - corner).abs().max() > 0.02


def test_cache_and_collate(tiny_model, tmp_path):
    size = 64
    layout = CoefficientLayout.for_model(tiny_model, size)
    cfg = SyntheticConfig(size=size)
    synthetic = TrainItem(render_synthetic(tiny_model, sample_coefficients(layout, cfg, 0), size, (0, 0)),
                          sample_coefficients(layout, cfg, 0).as_dict(), "synthetic")
    photo = TrainItem(Observation(torch.rand(1, 3, size, size), torch.eye(3)[None], torch.tensor([[300.0, 200.0]]),
                                  landmarks=torch.rand(1, 478, 2), landmarks68=torch.rand(1, 68, 2)))
    cache = ObservationCache(tmp_path)
    key = ObservationCache.key(b"photo bytes", "size=64")
    assert key != ObservationCache.key(b"photo bytes", "size=65")
    assert cache.load(key) is None
    cache.save(key, synthetic)
    back = cache.load(key)
    assert back.source == "synthetic" and back.observation.names == synthetic.observation.names
    assert torch.equal(back.observation.image, synthetic.observation.image)
    assert torch.equal(back.target["translation"], synthetic.target["translation"])
    obs, target, has = collate([photo, back])
    assert obs.batch_size == 2 and obs.landmarks is None  # the synthetic pyramid has no dense landmarks
    assert obs.crop_to_photo.dtype == torch.float64
    assert has.tolist() == [False, True]
    assert torch.equal(target.translation[1], synthetic.target["translation"][0])
    assert np.all(target.identity[0].numpy() == 0)
