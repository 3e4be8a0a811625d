"""Statistics of per-photo scores (issue #13) against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fit3dmm.evaluate.statistics import mean_std, paired_bootstrap, win_tie_loss

# 4 photos: d = a − b = [0.2, −0.1, 0.3, 0.0], mean 0.4 / 4 = 0.1
A = np.array([0.8, 0.6, 0.7, 0.5])
B = np.array([0.6, 0.7, 0.4, 0.5])
# resampled means: [0.2]·4 → 0.2; [−0.1]·4 → −0.1; all four → 0.1; (0.3 + 0.3 + 0 + 0) / 4 = 0.15;
# (−0.1 + 0 + 0 + 0) / 4 = −0.025; sorted: −0.1, −0.025, 0.1, 0.15, 0.2 (R = 5)
INDICES = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 2, 3], [2, 2, 3, 3], [1, 3, 3, 3]])


def test_paired_bootstrap_interval_by_hand_with_linear_quantiles():
    mean, low, high = paired_bootstrap(A, B, indices=INDICES)
    assert mean == pytest.approx(0.1)
    # level 0.95: q = 0.025 → h = (R − 1) q = 0.1 → −0.1 + 0.1 · (−0.025 − (−0.1)) = −0.0925
    assert low == pytest.approx(-0.0925)
    # q = 0.975 → h = 3.9 → 0.15 + 0.9 · (0.2 − 0.15) = 0.195
    assert high == pytest.approx(0.195)
    # level 0.5: q = 0.25, 0.75 → h = 1 and 3, exactly the 2nd and 4th sorted means
    assert paired_bootstrap(A, B, indices=INDICES, level=0.5) == pytest.approx((0.1, -0.025, 0.15))


def test_paired_bootstrap_drops_photos_where_either_score_is_nan():
    # the fifth and sixth photos have no pair; the indices refer to the 4 pairs left, in order
    a = np.array([0.8, 0.6, np.nan, 0.7, 0.5, 0.9])
    b = np.array([0.6, 0.7, 0.1, 0.4, 0.5, np.nan])
    assert paired_bootstrap(a, b, indices=INDICES) == pytest.approx((0.1, -0.0925, 0.195))
    with pytest.raises(ValueError, match="indices must lie in \\[0, 4\\)"):
        paired_bootstrap(a, b, indices=[[0, 1, 2, 4]])
    with pytest.raises(ValueError, match="no photo where both"):
        paired_bootstrap([np.nan, 0.5], [0.5, np.nan])


def test_swapping_a_and_b_negates_and_swaps_the_interval():
    mean, low, high = paired_bootstrap(A, B, resamples=2000, seed=3)
    assert paired_bootstrap(B, A, resamples=2000, seed=3) == pytest.approx((-mean, -high, -low))
    assert paired_bootstrap(B, A, indices=INDICES) == pytest.approx((-0.1, -0.195, 0.0925))


def test_identical_or_constantly_shifted_columns_have_a_point_interval():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.4, 0.9, 30)
    assert paired_bootstrap(a, a.copy()) == (0.0, 0.0, 0.0)
    # a constant paired difference has no spread, however different the photos are
    assert paired_bootstrap(a + 0.05, a) == pytest.approx((0.05, 0.05, 0.05))


def test_random_resamples_are_seeded_and_match_the_normal_interval_on_many_photos():
    rng = np.random.default_rng(7)
    d = rng.normal(0.02, 0.1, 400)
    b = rng.uniform(0.3, 0.7, 400)
    mean, low, high = paired_bootstrap(b + d, b)
    assert (mean, low, high) == paired_bootstrap(b + d, b, seed=0)  # seed 0 is the default: same draws
    assert (low, high) != paired_bootstrap(b + d, b, seed=1)[1:]
    assert mean == pytest.approx(d.mean())
    # for a mean of 400 photos the bootstrap interval is close to mean ± 1.96 s / √n
    half = 1.96 * d.std(ddof=1) / math.sqrt(d.size)
    assert low == pytest.approx(mean - half, abs=0.1 * half)
    assert high == pytest.approx(mean + half, abs=0.1 * half)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"level": 1.0}, "level must be in"),
    ({"resamples": 0}, "resamples must be"),
    ({"indices": [[0.0, 1.0]]}, "integer array"),
    ({"indices": [0, 1]}, "integer array"),
    ({"indices": [[-1, 0]]}, "must lie in"),
])
def test_paired_bootstrap_rejects_bad_options(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(A, B, **kwargs)


def test_paired_inputs_are_validated():
    with pytest.raises(ValueError, match="same photos"):
        paired_bootstrap(A, B[:3])
    with pytest.raises(ValueError, match="1-D"):
        win_tie_loss(A[None], B[None])
    with pytest.raises(ValueError, match="infinite"):
        win_tie_loss([np.inf], [0.5])
    with pytest.raises(ValueError, match="tie must be"):
        win_tie_loss(A, B, tie=-0.1)


def test_win_tie_loss_by_hand():
    a = np.array([0.8, 0.6, 0.7, 0.5, 0.5005, np.nan, 0.4])
    b = np.array([0.6, 0.7, 0.4, 0.5, 0.5, 0.3, np.nan])
    # d = 0.2 win, −0.1 loss, 0.3 win, 0 tie, 0.0005 tie (≤ 0.001); the last two photos have no pair
    assert win_tie_loss(a, b) == (2, 2, 1)
    assert win_tie_loss(b, a) == (1, 2, 2)
    # |d| = tie exactly is a tie (0.75 − 0.5 = 0.25 in binary); 0.3 > 0.25 wins, −0.1 ties
    assert win_tie_loss(a, b, tie=0.25) == (1, 4, 0)
    assert win_tie_loss([0.75], [0.5], tie=0.25) == (0, 1, 0)
    assert win_tie_loss(a, b, tie=0.0) == (3, 1, 1)


def test_mean_std_by_hand_with_a_missing_region():
    values = np.array([[0.5, 0.2],
                       [0.7, 0.4],
                       [0.9, 0.4],
                       [np.nan, 0.6]])
    mean, std, count = mean_std(values)
    # column 0 over 3 photos: mean 2.1 / 3 = 0.7, std √((0.04 + 0 + 0.04) / 2) = 0.2
    # column 1 over 4 photos: mean 1.6 / 4 = 0.4, std √((0.04 + 0 + 0 + 0.04) / 3) = √0.0266… = 0.16330
    np.testing.assert_allclose(mean, [0.7, 0.4])
    np.testing.assert_allclose(std, [0.2, math.sqrt(0.08 / 3)])
    assert count.tolist() == [3, 4]
    one_mean, one_std, one_count = mean_std(values[:, 0])
    assert (float(one_mean), float(one_std), int(one_count)) == pytest.approx((0.7, 0.2, 3))


def test_mean_std_of_one_or_no_present_value_is_nan_without_warnings():
    with np.errstate(all="raise"):
        mean, std, count = mean_std(np.array([[np.nan, 0.3], [np.nan, np.nan]]))
    assert np.isnan(mean[0]) and mean[1] == pytest.approx(0.3)
    assert np.isnan(std).all() and count.tolist() == [0, 1]
    with pytest.raises(ValueError, match="at least one row"):
        mean_std(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="1-D or 2-D"):
        mean_std(np.zeros((2, 2, 2)))
