"""``fit3dmm train`` and ``fit3dmm predict`` end to end through click's CliRunner (tiny run, one step)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fit3dmm.cli import main
from fit3dmm.models.store import packaged_models_dir


def test_train_then_predict_writes_the_networks_reconstruction(ict_model, tmp_path: Path):
    photo = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"
    ict = str(packaged_models_dir() / "ict-facekit-light")
    runner = CliRunner()
    run = tmp_path / "run"
    args = ["train", "--synthetic", "2", "--size", "64", "--batch-size", "2", "--epochs", "1", "--loss", "lmk,reg",
            "--model", ict, "--num-identity", "10", "--out", str(run), "--device", "cpu", "--quiet"]
    trained = runner.invoke(main, args)
    assert trained.exit_code == 0, trained.output
    assert {p.name for p in run.iterdir()} >= {"cache", "checkpoints", "log.csv", "val.csv", "curves.png",
                                              "model.pt", "config.json"}
    assert len(list((run / "cache").glob("*.pt"))) == 2  # the two synthetic faces, rendered once
    again = runner.invoke(main, args)  # the run folder holds a run: refused without --resume
    assert again.exit_code == 1 and "--resume" in again.output

    out = tmp_path / "pred"
    predicted = runner.invoke(main, ["predict", str(photo), "--regressor", str(run / "model.pt"), "--out", str(out),
                                     "--model", ict, "--device", "cpu"])
    assert predicted.exit_code == 0, predicted.output
    params = json.loads((out / "astronaut" / "face.json").read_text())
    assert (out / "astronaut" / "face.obj").stat().st_size > 0 and (out / "astronaut" / "face_overlay.png").is_file()
    assert len(params["coefficients"]["identity"]) == 10 and params["status"] == "ok"
    # the written coefficients are the network's output on the photo's crop
    from fit3dmm.api import ObserveOptions, observe_faces
    from fit3dmm.models.regressor import predict_init

    init = predict_init(run / "model.pt", observe_faces(photo, options=ObserveOptions(size=64))[0])
    assert torch.allclose(torch.tensor(params["coefficients"]["expression"]), init["expression"][0], atol=1e-5)
    assert torch.allclose(torch.tensor(params["pose"]["translation_cm"]), init["translation"][0], atol=1e-4)

    # `fit --init`: the network's prediction is where the fit starts (0 iterations: where it ends)
    fitted_dir = tmp_path / "fitted"
    fitted = runner.invoke(main, ["fit", str(photo), "--init", str(run / "model.pt"), "--out", str(fitted_dir),
                                  "--model", ict, "--size", "64", "--loss", "lmk,reg", "--iterations", "0",
                                  "--rigid-iterations", "0", "--lm-iterations", "0", "--device", "cpu", "--quiet",
                                  "--no-overlay"])
    assert fitted.exit_code == 0, fitted.output
    started = json.loads((fitted_dir / "astronaut" / "face.json").read_text())
    assert started["coefficients"]["expression"] == pytest.approx(params["coefficients"]["expression"], abs=1e-5)
    assert started["pose"]["translation_cm"] == pytest.approx(params["pose"]["translation_cm"], abs=1e-4)
    # ...and the usual start is somewhere else
    plain = runner.invoke(main, ["fit", str(photo), "--out", str(tmp_path / "plain"), "--model", ict, "--size", "64",
                                 "--loss", "lmk,reg", "--iterations", "0", "--rigid-iterations", "0",
                                 "--lm-iterations", "0",
                                 "--device", "cpu", "--quiet", "--no-overlay"])
    assert plain.exit_code == 0, plain.output
    usual = json.loads((tmp_path / "plain" / "astronaut" / "face.json").read_text())
    assert usual["pose"]["translation_cm"] != pytest.approx(started["pose"]["translation_cm"], abs=1e-2)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a network")
    bad = runner.invoke(main, ["fit", str(photo), "--init", str(junk), "--out", str(tmp_path / "bad"),
                               "--model", ict, "--device", "cpu", "--quiet"])
    assert bad.exit_code == 1 and str(junk) in bad.output and len(bad.output.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()

    missing = runner.invoke(main, ["train", "--out", str(tmp_path / "x")])
    assert missing.exit_code != 0 and "nothing to train on" in missing.output
