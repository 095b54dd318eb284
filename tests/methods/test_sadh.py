import numpy as np
import pytest

import hashbench as hb
from hashbench.methods.sadh import SADH, AnchorGraph, code_objective, discrete_codes, signs
from tests.methods.image_checks import image_split
from tests.methods.test_ssdh import noisy_clusters


@pytest.fixture
def graph():
    return AnchorGraph(noisy_clusters(200).features.astype(np.float64), n_anchors=30, n_neighbours=3, seed=0)


def test_anchor_graph_rows_link_to_few_anchors_and_sum_to_one(graph):
    assert graph.z.shape == (200, 30)
    assert (graph.z.getnnz(axis=1) == 3).all()
    np.testing.assert_allclose(graph.z.sum(axis=1), 1.0)
    # A 1 = 1, so the centred graph maps constant codes to zero
    assert np.abs(graph.centred_product(np.ones((200, 2)))).max() < 1e-10


def test_leading_eigenvectors_are_non_trivial_eigenvectors(graph):
    vectors = graph.leading_eigenvectors(4)
    product = graph.centred_product(vectors) + vectors.mean(axis=0)  # A v
    ratios = (product * vectors).sum(0) / (vectors * vectors).sum(0)
    np.testing.assert_allclose(product, vectors * ratios, atol=1e-8)
    assert np.abs(vectors.sum(axis=0)).max() < 1e-6  # orthogonal to the constant vector


def test_discrete_codes_are_binary_and_improve_on_their_start(graph):
    start = signs(graph.leading_eigenvectors(8))
    codes = discrete_codes(graph, start, decorrelation=1.0, iterations=50)
    assert set(np.unique(codes)) <= {-1.0, 1.0}
    assert code_objective(graph, codes, 1.0) <= code_objective(graph, start, 1.0)
    random = signs(np.random.default_rng(0).standard_normal((200, 8)))
    assert code_objective(graph, codes, 1.0) < code_objective(graph, random, 1.0)


def test_regression_loss_decreases_and_each_round_records_its_code_objective(one_thread):
    train = noisy_clusters(200)
    method = SADH(n_bits=8, frozen_backbone=True, outer_iterations=2, epochs=6, batch_size=32, n_anchors=30).fit(train)
    losses = [h["regression"] for h in method.history_]
    assert losses[5] < 0.8 * losses[0]
    assert len(method.code_objective_) == 2
    codes = method.encode(train)
    assert hb.evaluate(codes, codes, train.labels, train.labels, topk=50).map > 0.5


def test_regression_loss_sends_a_gradient_to_backbone_and_code_layer(one_thread):
    method = SADH(n_bits=8, outer_iterations=1, epochs=1, batch_size=32, n_anchors=24, backbone_lr=1e-3).fit(
        image_split(64)
    )
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0
        for module in method.networks_.values()
        for p in module.parameters()
    )


def test_more_bits_than_anchors_is_an_error():
    with pytest.raises(hb.InvalidInputError, match="more anchors than bits"):
        SADH(n_bits=32, n_anchors=20).fit(image_split(64))
