import itertools

import pytest
import torch

from hashbench.methods._lagnh_net import PAPER_RULES, Generator, lower_quantile, squared_distances


@pytest.mark.parametrize("n", [1, 2, 7, 8, 1000])
def test_lower_quantile_at_one_half_is_torchs_median(n):
    generator = torch.Generator().manual_seed(n)
    values = torch.randint(0, 5, (n,), generator=generator).float()  # many ties
    assert lower_quantile(values, 0.5) == values.median()
    values = torch.rand(n, generator=generator)
    assert lower_quantile(values, 0.5) == values.median() and lower_quantile(values, 0.5).dtype == values.dtype


@pytest.mark.parametrize("quantile", [0.01, 0.1, 0.37, 0.9])
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_lower_quantile_is_torchs_lower_quantile(n, quantile):
    values = torch.rand(n, generator=torch.Generator().manual_seed(n))
    assert lower_quantile(values, quantile) == torch.quantile(values, quantile, interpolation="lower")


def bandwidth_generator(sigma, quantile=0.1) -> Generator:
    return Generator(3, None, 4, proj_dim=3, hidden=4, dropout=0.0, rules=PAPER_RULES, attention=False,
                     gcn_graph="visual", mu=1.0, sigma=sigma, bandwidth_quantile=quantile, decoder=False)  # fmt: skip


def test_median_bandwidth_is_half_the_median_squared_distance_of_distinct_pairs():
    nodes = torch.randn(9, 3, generator=torch.Generator().manual_seed(0))
    pairs = sorted(float((a - b).square().sum()) for a, b in itertools.combinations(nodes, 2))
    expected = pairs[(len(pairs) - 1) // 2] / 2  # 36 pairs: the lower of the two middle ones
    squared = squared_distances(nodes, nodes)
    assert bandwidth_generator("median").bandwidth(squared).item() == pytest.approx(expected, rel=1e-5)
    # "median" reads no quantile; "quantile" at 0.5 is the same rule
    assert bandwidth_generator("median", 0.9).bandwidth(squared) == bandwidth_generator("quantile", 0.5).bandwidth(
        squared
    )


def test_quantile_bandwidth_gives_exp_minus_one_to_that_share_of_the_distinct_pairs():
    nodes = torch.randn(9, 3, generator=torch.Generator().manual_seed(0))
    pairs = sorted(float((a - b).square().sum()) for a, b in itertools.combinations(nodes, 2))
    sigma2 = bandwidth_generator("quantile", 0.25).bandwidth(squared_distances(nodes, nodes)).item()
    assert sigma2 == pytest.approx(pairs[8] / 2, rel=1e-5)  # rank floor(35 * 0.25) = 8 of 36 pairs
    weights = [torch.exp(torch.tensor(-d / (2 * sigma2))).item() for d in pairs]
    assert sum(w >= torch.exp(torch.tensor(-1.0)).item() - 1e-6 for w in weights) == 9  # ranks 0..8
