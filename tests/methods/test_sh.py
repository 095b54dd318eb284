import numpy as np

from hashbench.methods.sh import SH, smallest_modes
from tests.methods.shallow_checks import (
    centred_gaussian,
    check_determinism,
    clustered,
    mean_imbalance,
    signs,
)


def test_deterministic_and_seed_free():
    check_determinism(SH, clustered(100), random=False)


def box(widths, n=4000, seed=0) -> np.ndarray:
    """Uniform points in an axis-aligned box of the given widths, centred at 0."""
    rng = np.random.default_rng(seed)
    return ((rng.random((n, len(widths))) - 0.5) * widths).astype(np.float32)


def test_wide_direction_gets_bits_before_narrow_one():
    # eigenvalues grow with (k / width)^2: for widths 2.5 and 1 they are 0.16, 0.64, 1.44, ... on
    # the wide direction and 1, 4, ... on the narrow one, so the order is wide k=1, wide k=2,
    # narrow k=1, wide k=3
    sh = SH(n_bits=2).fit(box([2.5, 1.0]))
    np.testing.assert_array_equal(sh.modes_, [[1, 0], [2, 0]])
    sh = SH(n_bits=4).fit(box([2.5, 1.0]))
    np.testing.assert_array_equal(sh.modes_, [[1, 0], [2, 0], [0, 1], [3, 0]])


def test_mode_order_follows_eigenvalues():
    modes = smallest_modes(np.array([3.0, 2.0, 1.0]), 6)
    frequency, direction = modes.max(axis=1), modes.argmax(axis=1)
    eigenvalue_order = (frequency / np.array([3.0, 2.0, 1.0])[direction]) ** 2
    assert np.all(np.diff(eigenvalue_order) >= 0)
    assert (np.count_nonzero(modes, axis=1) == 1).all()


def test_bits_are_signs_of_the_analytic_eigenfunctions():
    features = box([2.5, 1.0], seed=1)
    sh = SH(n_bits=4).fit(features)
    lower, width = features.min(axis=0), features.max(axis=0) - features.min(axis=0)
    unit = (features - lower) / width
    expected = np.stack(
        [np.where(np.cos(np.pi * k * unit[:, i]) >= 0, 1, -1) for i, k in [(0, 1), (0, 2), (1, 1), (0, 3)]], axis=1
    )
    agree = (sh.transform(features) == expected).mean(axis=0)
    # a principal axis may come out reversed, which negates the odd-k bits
    assert np.all((agree > 0.995) | (agree < 0.005)), agree


def test_more_bits_than_feature_width_use_higher_modes():
    features = box([2.0, 1.5, 1.0])
    sh = SH(n_bits=7).fit(features)
    assert sh.transform(features).shape == (4000, 7)
    assert sh.modes_.max() > 1


def test_balanced_on_centred_uniform_data():
    # SH's model of the data: every mode of a uniform box splits it in half
    features = box([3.0, 2.5, 2.0, 1.5, 1.2, 1.0])
    sh = SH(n_bits=12).fit(features)
    assert sh.modes_.max() == 3
    assert np.abs(sh.transform(features).mean(axis=0)).max() < 0.15


def test_first_modes_roughly_balanced_on_centred_gaussian_data():
    # k = 1 bits cut at the middle of the training range, which sample extremes move off the
    # mean; k >= 2 bits are unbalanced by design on peaked data (cos(2 pi t) > 0 only in the tails)
    split = centred_gaussian()
    sh = SH(n_bits=16).fit(split)
    first_modes = sh.modes_.max(axis=1) == 1
    assert first_modes.sum() >= 12
    assert mean_imbalance(signs(sh, split)[:, first_modes]) < 0.3
