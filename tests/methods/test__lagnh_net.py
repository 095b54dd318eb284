import itertools

import pytest
import torch

from hashbench.methods._lagnh_net import PAPER_RULES, Generator, lower_median, squared_distances


@pytest.mark.parametrize("n", [1, 2, 7, 8, 1000])
def test_lower_median_is_torchs_median(n):
    generator = torch.Generator().manual_seed(n)
    values = torch.randint(0, 5, (n,), generator=generator).float()  # many ties
    assert lower_median(values) == values.median()
    values = torch.rand(n, generator=generator)
    assert lower_median(values) == values.median() and lower_median(values).dtype == values.dtype


def test_median_bandwidth_is_half_the_median_squared_distance_of_distinct_pairs():
    nodes = torch.randn(9, 3, generator=torch.Generator().manual_seed(0))
    generator = Generator(3, None, 4, proj_dim=3, hidden=4, dropout=0.0, rules=PAPER_RULES, attention=False,
                          gcn_graph="visual", mu=1.0, sigma="median", decoder=False)  # fmt: skip
    pairs = sorted(float((a - b).square().sum()) for a, b in itertools.combinations(nodes, 2))
    expected = pairs[(len(pairs) - 1) // 2] / 2  # 36 pairs: the lower of the two middle ones
    assert generator.bandwidth(squared_distances(nodes, nodes)).item() == pytest.approx(expected, rel=1e-5)
