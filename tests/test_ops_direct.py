"""Brute-force distance reductions: hand-computed values, padding, checkpointed gradients."""

from __future__ import annotations

import math

import pytest
import torch

from fit3dmm.ops.direct import direct_distance_reduce


def test_hand_computed_values_and_padding() -> None:
    queries = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    points = torch.tensor([[[3.0, 0.0], [0.0, 4.0], [100.0, 100.0]], [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])
    valid = torch.tensor([[True, True, False], [True, False, False]])
    out = direct_distance_reduce(queries, points, valid, ("min", "max", "sum"))
    assert out.shape == (2, 2, 3) and out.dtype == torch.float32
    # item 0: from (0,0): 3, 4; from (3,4): 4, 3
    torch.testing.assert_close(out[0], torch.tensor([[3.0, 4.0, 7.0], [3.0, 4.0, 7.0]]))
    r = math.hypot(2.0, 3.0)
    torch.testing.assert_close(out[1], torch.tensor([[math.sqrt(2), math.sqrt(2), math.sqrt(2)], [r, r, r]]))
    empty = direct_distance_reduce(queries, points, torch.zeros(2, 3, dtype=torch.bool), ("min", "max", "sum"))
    assert (empty == 0).all()


def test_chunked_checkpointed_gradient_matches_one_block() -> None:
    gen = torch.Generator().manual_seed(0)
    q0 = torch.rand(2, 50, 2, generator=gen, dtype=torch.float64) * 10
    p0 = torch.rand(2, 30, 2, generator=gen, dtype=torch.float64) * 10
    grads = []
    for chunk in (1 << 20, 64):  # one block / many checkpointed chunks
        q, p = q0.clone().requires_grad_(), p0.clone().requires_grad_()
        out = direct_distance_reduce(q, p, None, ("min", "max", "sum"), chunk_pairs=chunk)
        out.pow(2).sum().backward()
        grads.append((out.detach(), q.grad, p.grad))
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda q, p: direct_distance_reduce(q, p, None, ("min", "max", "sum"), chunk_pairs=16),
        (q0[:, :5].clone().requires_grad_(), p0[:, :4].clone().requires_grad_()),
    )


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="reductions"):
        direct_distance_reduce(torch.zeros(3, 2), torch.zeros(1, 4, 2), None, ("mean",))
    with pytest.raises(ValueError, match="queries must be"):
        direct_distance_reduce(torch.zeros(2, 3, 2), torch.zeros(1, 4, 2), None, ("sum",))
