import numpy as np
import pytest
import torch

import hashbench as hb
from hashbench.methods.greedyhash import GreedyHash, cubic_penalty, greedy_sign, half_pair_similarity_loss
from tests.methods.feature_deep_checks import feature_split


def test_greedy_sign_is_the_sign_forward_and_passes_the_gradient_unchanged():
    values = torch.tensor([[-1.5, 0.0, 0.2], [3.0, -0.1, 0.0]], requires_grad=True)
    signs = greedy_sign(values)
    torch.testing.assert_close(signs.detach(), torch.tensor([[-1.0, 1.0, 1.0], [1.0, -1.0, 1.0]]))
    upstream = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.0, -4.0]])
    (signs * upstream).sum().backward()
    torch.testing.assert_close(values.grad, upstream)


def test_half_pair_loss_pairs_each_row_of_the_first_half_with_its_twin_in_the_second():
    codes = torch.tensor([[1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]])
    features = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    # pairs (0, 2) and (1, 3): code cosines 1 and 0, feature cosines 0 and 1
    assert half_pair_similarity_loss(codes, features).item() == pytest.approx(1.0)
    # of 5 rows, (0, 2) and (1, 3) pair again and the last has no twin
    odd = half_pair_similarity_loss(torch.cat([codes, torch.ones(1, 2)]), torch.cat([features, -torch.ones(1, 2)]))
    assert odd.item() == pytest.approx(1.0)


def test_cubic_penalty_is_the_mean_cubed_distance_of_magnitudes_from_one():
    assert cubic_penalty(torch.tensor([[0.5, -2.0, 1.0]])).item() == pytest.approx((0.125 + 1.0 + 0.0) / 3)


def test_training_fits_the_cosines_and_codes_keep_the_clusters(one_thread):
    train = feature_split(200, web=False)
    method = GreedyHash(n_bits=16, epochs=15, batch_size=32, lr=1e-2).fit(train)
    similarity = [h["similarity"] for h in method.history_]
    assert similarity[-1] < 0.5 * similarity[0]
    codes = method.encode(train)
    assert hb.evaluate(codes, codes, train.labels, train.labels, topk=50).map > 0.8


def test_centring_takes_the_common_component_out_of_inputs_and_targets(one_thread):
    train = feature_split(64, web=False)
    centred = GreedyHash(n_bits=8, epochs=1).fit(train)
    raw = GreedyHash(n_bits=8, epochs=1, centre=False).fit(train)
    np.testing.assert_allclose(centred.network_.input_shift.numpy(), train.features.mean(axis=0), rtol=1e-5)
    assert raw.network_.input_shift.abs().sum() == 0
    # the scale brings the (centred) inputs to unit root-mean-square value
    standardised = (torch.as_tensor(train.features) - centred.network_.input_shift) * centred.network_.input_scale
    assert standardised.square().mean().item() == pytest.approx(1.0, rel=1e-4)
