"""Training the regressor: a step lowers the loss, and an interrupted run resumes to the same weights."""

from __future__ import annotations

import csv

import pytest
import torch

from fit3dmm.models.instances import SyntheticConfig, sample_coefficients
from fit3dmm.models.regressor import CoefficientLayout, FaceRegressor
from fit3dmm.synthetic import render_synthetic
from fit3dmm.train.data import TrainItem, collate
from fit3dmm.train.loop import RegressionObjective, TrainConfig, recalibrate_batchnorm, train_regressor
from fit3dmm.train.synthetic import synthetic_items

SIZE = 64


def test_one_step_lowers_the_loss_on_a_fixed_batch(ict_model):
    layout = CoefficientLayout.for_model(ict_model, SIZE, num_identity=40)
    items = synthetic_items(ict_model, layout, 2, SyntheticConfig(size=SIZE, seed=1))
    obs, target, has = collate(items)
    objective = RegressionObjective(ict_model, {"lmk": 1.6e-3, "reg": 3e-4}, supervise=0.1)
    objective.check(obs)
    torch.manual_seed(0)
    net = FaceRegressor(layout, SIZE).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

    def loss() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total, terms, _ = objective(net(obs.image), obs, target, has)
        return total.mean(), terms

    before, terms = loss()
    assert set(terms) == {"lmk", "reg", "sup"} and all(v.shape == (2,) for v in terms.values())
    assert float(terms["sup"].detach().min()) > 0  # the rest state is not the synthetic faces' truth
    optimizer.zero_grad()
    before.backward()
    assert net.backbone.fc.weight.grad.abs().sum() > 0
    optimizer.step()
    after, _ = loss()
    assert float(after.detach()) < float(before.detach())


def _rows(path):
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


@pytest.mark.slow  # three training runs (~10 s)
def test_resume_after_an_interruption_gives_the_uninterrupted_run(tiny_model, tmp_path):
    size = 64  # the pyramid needs no detail; the smallest training size
    layout = CoefficientLayout.for_model(tiny_model, size)
    cfg = SyntheticConfig(size=size, seed=2)
    items = []
    for i in range(4):
        coeffs = sample_coefficients(layout, cfg, i)
        items.append(TrainItem(render_synthetic(tiny_model, coeffs, size, (2, i)),
                               coeffs.as_dict() if i % 2 else None, "synthetic"))
    # 2 steps per epoch, a checkpoint after every step
    config = TrainConfig(weights={"lmk": 1.6e-3, "reg": 3e-4}, size=size, batch_size=2, epochs=1, lr=1e-3,
                         checkpoint_every=1)
    quiet = {"log": lambda _msg: None, "val_items": items[:2]}

    straight = train_regressor(tiny_model, items, config, tmp_path / "straight", **quiet)

    def crash(step, total, values):
        if step == 2:  # after step 2 is logged, before its checkpoint: the run must redo it from step 1
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_regressor(tiny_model, items, config, tmp_path / "split", progress=crash, **quiet)
    assert [int(r["step"]) for r in _rows(tmp_path / "split" / "log.csv")] == [1, 2]
    assert not (tmp_path / "split" / "val.csv").read_text().strip().count("\n")  # no validation yet
    with pytest.raises(ValueError, match="--resume"):
        train_regressor(tiny_model, items, config, tmp_path / "split", **quiet)
    resumed = train_regressor(tiny_model, items, config, tmp_path / "split", resume=True, **quiet)

    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log_a, log_b = _rows(tmp_path / "straight" / "log.csv"), _rows(tmp_path / "split" / "log.csv")
    assert [int(r["step"]) for r in log_b] == [1, 2]  # step 2 is not logged twice
    assert log_a == log_b
    val_a = _rows(tmp_path / "straight" / "val.csv")
    assert len(val_a) == 1 and float(val_a[0]["nme"]) > 0
    assert val_a == _rows(tmp_path / "split" / "val.csv")
    assert (tmp_path / "split" / "curves.png").stat().st_size > 1000
    # the weights moved: this is not two copies of an untrained network
    assert b["backbone.fc.weight"].abs().sum() > 0
    # a different setting is refused on resume
    other = TrainConfig(**{**config.__dict__, "lr": 2e-3})
    with pytest.raises(ValueError, match="other settings"):
        train_regressor(tiny_model, items, other, tmp_path / "split", resume=True, **quiet)


def test_batchnorm_recalibration_averages_the_batch_statistics(tiny_model):
    size = 64
    layout = CoefficientLayout.for_model(tiny_model, size)
    cfg = SyntheticConfig(size=size, seed=3)
    items = [TrainItem(render_synthetic(tiny_model, sample_coefficients(layout, cfg, i), size, (3, i)), None,
                       "synthetic") for i in range(6)]
    torch.manual_seed(0)
    net = FaceRegressor(layout, size)
    stem = net.backbone.bn1
    stem.running_mean.fill_(5.0)  # stale statistics
    recalibrate_batchnorm(net, items, batch_size=2, batches=2)  # 4 items spread over 6: 0, 2, 3, 5
    assert stem.momentum == 0.1 and net.training
    with torch.no_grad():
        means = []
        for batch in ([0, 2], [3, 5]):
            images = torch.cat([items[i].observation.image for i in batch])
            features = net.backbone.conv1(net.normalize(images))
            means.append(features.mean(dim=(0, 2, 3)))
    assert torch.allclose(stem.running_mean, torch.stack(means).mean(0), atol=1e-5)
    assert int(stem.num_batches_tracked) == 2
