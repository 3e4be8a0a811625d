"""Per-loss gradients on the predicted points of one part, their figures, and ``compare --gradients PART``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from fit3dmm.cli import main
from fit3dmm.evaluate.gradients import (
    GRADIENT_LOSSES,
    descriptor_figure,
    figure_size,
    gradient_figure,
    point_gradients,
)
from fit3dmm.losses.chamfer import chamfer_distance
from fit3dmm.losses.icp import icp_distance
from fit3dmm.losses.prdl import prdl_descriptor
from fit3dmm.models.store import packaged_models_dir
from fit3dmm.ops.grid import AnchorGrid
from fit3dmm.types.observation import PointSet

SIZE = 32


def _points(n: int, seed: int) -> torch.Tensor:
    """``n`` distinct points inside a SIZE × SIZE crop, off the anchor grid, float64."""
    generator = torch.Generator().manual_seed(seed)
    return 6.0 + 20.0 * torch.rand(n, 2, generator=generator, dtype=torch.float64)


def _one(points: torch.Tensor) -> PointSet:
    return PointSet(points[None], torch.ones(1, len(points), dtype=torch.bool))


def _value(loss: str, pred: torch.Tensor, target: torch.Tensor, stride: int) -> float:
    """The one-part term, written out from the losses' public functions (PRDL with the dense reference)."""
    if loss == "prdl":
        grid = AnchorGrid.full(SIZE, stride)
        diff = prdl_descriptor(pred[None], None, grid, impl="dense") - \
            prdl_descriptor(target[None], None, grid, impl="dense")
        return float(diff.pow(2).sum() / grid.num_anchors)
    if loss == "chamfer":
        return float(chamfer_distance(_one(pred), _one(target)))
    if loss == "icp":
        return float(icp_distance(_one(target), _one(pred)))
    return float(icp_distance(_one(pred), _one(target)))


def _finite_difference(loss: str, pred: torch.Tensor, target: torch.Tensor, stride: int,
                       eps: float = 1e-6) -> torch.Tensor:
    """Central differences of :func:`_value` in every coordinate of ``pred``."""
    grad = torch.zeros_like(pred)
    for i in range(pred.shape[0]):
        for j in range(2):
            step = torch.zeros_like(pred)
            step[i, j] = eps
            grad[i, j] = (_value(loss, pred + step, target, stride) - _value(loss, pred - step, target, stride)) / (
                2 * eps)
    return grad


@pytest.mark.parametrize("loss", ["chamfer", "prdl", "icp", "icp_rev"])
def test_point_gradients_match_finite_differences(loss: str):
    pred, target = _points(5, 0), _points(7, 1)
    grads = point_gradients(pred, target, [loss], size=SIZE, stride=2)
    assert list(grads) == [loss] and grads[loss].shape == (5, 2)
    expected = _finite_difference(loss, pred, target, stride=2)
    assert grads[loss].abs().max() > 1e-3  # not trivially zero
    torch.testing.assert_close(grads[loss], expected, rtol=1e-5, atol=1e-6)


def test_point_gradients_of_chamfer_are_by_hand():
    """Chamfer's gradient on v: 2(v − ĉ)/|V| from its nearest target ĉ, plus 2(v − c)/|C| per target c whose
    nearest point is v."""
    pred = torch.tensor([[10.0, 10.0], [20.0, 10.0]], dtype=torch.float64)
    target = torch.tensor([[11.0, 10.0], [20.0, 12.0], [21.0, 12.0]], dtype=torch.float64)
    grad = point_gradients(pred, target, ["chamfer"], size=SIZE)["chamfer"]
    # v0: nearest c0 (1/|V| = 1/2), nearest of c0 (1/|C| = 1/3); v1: nearest c1, nearest of c1 and c2
    expected = torch.tensor([[-2 * 1 / 2 - 2 * 1 / 3, 0.0],
                             [-2 * 1 / 3, -2 * 2 / 2 - 2 * 2 / 3 - 2 * 2 / 3]], dtype=torch.float64)
    torch.testing.assert_close(grad, expected)


def test_a_prediction_on_the_target_gets_no_point_set_gradient():
    target = _points(7, 2)
    grads = point_gradients(target.clone(), target, GRADIENT_LOSSES, size=SIZE, stride=2)
    assert list(grads) == list(GRADIENT_LOSSES)
    for loss in ("chamfer", "icp", "icp_rev", "prdl"):
        assert grads[loss].abs().max() < 1e-9, loss
    # and off the target the same losses pull: the points move towards the target's side
    shifted = target + torch.tensor([3.0, 0.0], dtype=torch.float64)
    grads = point_gradients(shifted, target, ["chamfer", "icp_rev", "prdl"], size=SIZE, stride=2)
    for loss, grad in grads.items():
        assert grad[:, 0].sum() > 0 and grad[:, 0].sum() > 10 * grad[:, 1].abs().sum() / 7, loss


def test_point_gradients_refuse_softras_and_empty_sets():
    with pytest.raises(ValueError, match="softras"):
        point_gradients(_points(3, 0), _points(3, 1), ["softras"], size=SIZE)
    with pytest.raises(ValueError, match="non-empty"):
        point_gradients(_points(3, 0), _points(0, 1), ["icp"], size=SIZE)


def test_figures_are_written_at_their_size(tmp_path: Path):
    pred, target = _points(5, 0), _points(7, 1)
    grads = point_gradients(pred, target, ["chamfer", "prdl", "dcd"], size=SIZE, stride=2)
    crop = np.full((SIZE, SIZE, 3), 128, np.uint8)
    mask = np.zeros((SIZE, SIZE), bool)
    mask[8:24, 8:24] = True
    path = gradient_figure(crop, mask, pred.numpy(), grads, tmp_path / "gradients.png", title="test")
    with Image.open(path) as image:
        assert image.size == figure_size(3)
        pixels = np.asarray(image.convert("RGB"))
    assert ((pixels[..., 0] > 200) & (pixels[..., 1] > 200) & (pixels[..., 2] < 80)).any()  # yellow arrows
    path = descriptor_figure(target.numpy(), AnchorGrid.full(SIZE, 1), tmp_path / "descriptors.png")
    with Image.open(path) as image:
        assert image.size == figure_size(3)
    with pytest.raises(ValueError, match="no gradient"):
        gradient_figure(crop, mask, pred.numpy(), {}, tmp_path / "none.png")


def test_cli_compare_gradients_writes_both_figures(annotated_ict, tmp_path: Path):
    """Slow (mediapipe): the example photo, two iterations, the nose."""
    photo = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"
    args = ["compare", str(photo), "--losses", "prdl,icp", "--iterations", "2", "--rigid-iterations", "5",
            "--model", str(packaged_models_dir() / "ict-facekit-light"), "--device", "cpu", "--scorer", "raster",
            "--out", str(tmp_path), "--quiet", "--gradients", "nose"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for name in ("gradients_astronaut_nose.png", "descriptors_astronaut_nose.png"):
        with Image.open(tmp_path / name) as image:
            assert image.size == figure_size(2 if name.startswith("gradients") else 3)


def test_cli_compare_gradients_refuses_an_unknown_part(tmp_path: Path):
    photo = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"
    result = CliRunner().invoke(main, ["compare", str(photo), "--losses", "icp", "--gradients", "ear",
                                       "--out", str(tmp_path), "--quiet"])
    assert result.exit_code != 0
    assert "unknown part 'ear'" in result.output + str(result.exception)
