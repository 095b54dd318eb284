import numpy as np
import pytest

import hashbench as hb
from hashbench.codes import BinaryCodes
from hashbench.health import DEGENERATE_RULE, STAT_KEYS, is_degenerate


def test_hand_worked_codes():
    # bit 0 constant, bit 1 balanced, bit 2 equal to bit 1, bit 3 the opposite of bit 1
    bits = np.array([[1, 0, 0, 1], [1, 1, 1, 0], [1, 0, 0, 1], [1, 1, 1, 0]])
    stats = hb.code_stats(bits)
    assert set(stats) == set(STAT_KEYS)
    assert stats["constant_bits"] == 0.25
    assert stats["mean_abs_balance"] == pytest.approx((1 + 0 + 0 + 0) / 4)
    assert stats["distinct_fraction"] == 0.5
    assert stats["mean_abs_correlation"] == pytest.approx(1.0)  # bits 1-3 are (anti-)copies of each other


def test_signs_bits_and_binary_codes_agree():
    rng = np.random.default_rng(0)
    bits = (rng.random((300, 20)) < 0.3).astype(np.uint8)
    expected = hb.code_stats(bits)
    assert hb.code_stats(bits.astype(np.int8) * 2 - 1) == expected
    assert hb.code_stats(BinaryCodes.from_bits(bits)) == expected


def test_correlation_matches_numpy_and_skips_constant_bits():
    rng = np.random.default_rng(1)
    bits = (rng.random((500, 6)) < [0.5, 0.2, 0.7, 0.5, 0.0, 1.0]).astype(np.uint8)
    bits[:, 3] = bits[:, 0] ^ (rng.random(500) < 0.1)
    varying = np.corrcoef(bits[:, :4].T.astype(float))
    expected = np.abs(varying[np.triu_indices(4, k=1)]).mean()
    assert hb.code_stats(bits)["mean_abs_correlation"] == pytest.approx(expected)
    assert hb.code_stats(bits)["constant_bits"] == pytest.approx(2 / 6)


def test_nearly_constant_bit_counts_from_99_percent():
    bits = np.zeros((1000, 2), np.uint8)
    bits[:10, 0] = 1  # 99.0% agree: constant
    bits[:11, 1] = 1  # 98.9% agree: not constant
    assert hb.code_stats(bits)["constant_bits"] == 0.5


def test_fewer_than_two_varying_bits_have_zero_correlation():
    assert hb.code_stats(np.array([[1, 0], [1, 1]]))["mean_abs_correlation"] == 0.0


def test_random_codes_are_healthy_and_constant_codes_are_degenerate():
    rng = np.random.default_rng(2)
    healthy = hb.code_stats(rng.integers(0, 2, (2000, 32)))
    assert healthy["constant_bits"] == 0 and healthy["distinct_fraction"] == 1.0
    assert healthy["mean_abs_balance"] < 0.1 and healthy["mean_abs_correlation"] < 0.05
    assert not is_degenerate(healthy)
    assert is_degenerate(hb.code_stats(np.ones((2000, 32))))
    few_codes = np.repeat(rng.integers(0, 2, (5, 32)), 200, axis=0)
    assert is_degenerate(hb.code_stats(few_codes))


@pytest.mark.parametrize(
    "codes, message",
    [
        (np.zeros((0, 8)), "at least one code"),
        (np.array([[0, 2], [1, 0]]), "-1/\\+1 or 0/1"),
        (np.zeros(8), "2-D"),
    ],
)
def test_bad_input_is_named(codes, message):
    with pytest.raises(hb.InvalidInputError, match=message):
        hb.code_stats(codes)


def test_bits_that_copy_one_split_are_degenerate_though_no_bit_is_constant():
    rng = np.random.default_rng(3)
    split = rng.random((2000, 1)) < 0.5
    copies = split ^ (rng.random((2000, 64)) < 0.015)  # 64 noisy copies of one bit
    stats = hb.code_stats(copies)
    assert stats["constant_bits"] == 0 and stats["distinct_fraction"] > 0.2
    assert stats["mean_abs_correlation"] > 0.9 and is_degenerate(stats)
    independent = hb.code_stats(rng.random((2000, 64)) < 0.5)
    assert not is_degenerate(independent)
    assert "mean_abs_correlation > 0.9" in DEGENERATE_RULE
