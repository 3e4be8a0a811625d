"""The distributed path on CPU: two gloo processes train one regressor with DistributedDataParallel."""

from __future__ import annotations

import csv
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from fit3dmm.models.instances import SyntheticConfig, sample_coefficients
from fit3dmm.models.regressor import CoefficientLayout
from fit3dmm.synthetic import render_synthetic
from fit3dmm.train.data import TrainItem
from fit3dmm.train.distributed import DistInfo, setup_distributed, teardown_distributed
from fit3dmm.train.loop import TrainConfig, train_regressor

SIZE = 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, model, items, out: str, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = DistInfo(rank=rank, world_size=world, local_rank=rank)
    device = setup_distributed(info, torch.device("cpu"))
    try:
        config = TrainConfig(weights={"lmk": 1.6e-3, "reg": 3e-4}, size=SIZE, batch_size=1, epochs=1, lr=1e-3)
        regressor = train_regressor(model, items, config, out, device=device, dist_info=info, log=lambda _m: None)
        torch.save({k: v.clone() for k, v in regressor.state_dict().items()}, f"{result_dir}/rank{rank}.pt")
    finally:
        teardown_distributed()


@pytest.mark.slow  # two worker processes
def test_two_gloo_processes_end_with_identical_weights(tiny_model, tmp_path):
    layout = CoefficientLayout.for_model(tiny_model, SIZE)
    cfg = SyntheticConfig(size=SIZE, seed=4)
    items = [TrainItem(render_synthetic(tiny_model, sample_coefficients(layout, cfg, i), SIZE, (4, i)), None,
                       "synthetic") for i in range(4)]
    out = tmp_path / "run"
    mp.spawn(_worker, args=(2, _free_port(), tiny_model, items, str(out), str(tmp_path)), nprocs=2, join=True)

    first = torch.load(tmp_path / "rank0.pt", weights_only=True)
    second = torch.load(tmp_path / "rank1.pt", weights_only=True)
    params = [k for k in first if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    for key in params:
        assert torch.equal(first[key], second[key]), key
    # 4 faces, 2 processes, 1 face per process and step: 2 steps, and the weights moved from the zero head
    assert first["backbone.fc.weight"].abs().sum() > 0
    with open(out / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2]  # one writer (rank 0), not a line per process
    assert (out / "model.pt").is_file() and (out / "checkpoints" / "last.pt").is_file()


def test_environment_gives_the_rank():
    assert DistInfo.from_env({}) == DistInfo(0, 1, 0)
    info = DistInfo.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank, info.is_main, info.distributed) == (3, 4, 1, False, True)
