import numpy as np
import pytest
import torch

import hashbench as hb
from hashbench.checks import check_set
from hashbench.datasets.base import Split
from hashbench.methods.ssdh import (
    SSDH,
    DistanceThresholds,
    cosine_distances,
    fit_half_gaussians,
    pairwise_loss,
    pseudo_similarity,
)


def half_gaussian_distances(mode=0.6, sigma_left=0.05, sigma_right=0.12, n=200_000, seed=0):
    """Distances whose histogram is two half Gaussians joined at ``mode`` (equal mass each side)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([mode - np.abs(rng.normal(0, sigma_left, n)), mode + np.abs(rng.normal(0, sigma_right, n))])


def test_thresholds_from_a_hand_made_histogram():
    thresholds = fit_half_gaussians(half_gaussian_distances(), alpha=2.0, bins=200)
    assert thresholds.mode == pytest.approx(0.6, abs=0.01)
    assert thresholds.sigma_left == pytest.approx(0.05, rel=0.1)
    assert thresholds.sigma_right == pytest.approx(0.12, rel=0.1)
    assert thresholds.similar_below == pytest.approx(0.5, abs=0.02)
    assert thresholds.dissimilar_above == pytest.approx(0.84, abs=0.03)


def test_degenerate_distances_are_an_error():
    with pytest.raises(hb.InvalidInputError, match="both sides"):
        fit_half_gaussians(np.full(100, 0.3))


def test_pseudo_similarity_marks_close_far_and_unknown_pairs():
    thresholds = DistanceThresholds(mode=0.5, sigma_left=0.1, sigma_right=0.1, alpha=2.0)  # 0.3 and 0.7
    distances = torch.tensor(
        [[0.0, 0.1, 0.5, 0.9], [0.1, 0.0, 0.65, 0.75], [0.5, 0.65, 0.0, 0.29], [0.9, 0.75, 0.29, 0.0]]
    )
    expected = torch.tensor([[0, 1, 0, -1], [1, 0, 0, -1], [0, 0, 0, 1], [-1, -1, 1, 0]], dtype=torch.float32)
    torch.testing.assert_close(pseudo_similarity(distances, thresholds), expected)


def test_cosine_distances():
    features = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    torch.testing.assert_close(cosine_distances(features)[0], torch.tensor([0.0, 0.0, 1.0, 2.0]))


def test_pairwise_loss_is_zero_for_agreeing_codes_and_otherwise_has_a_gradient():
    codes = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]])
    similarity = torch.tensor([[0.0, 1.0, -1.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    assert pairwise_loss(codes, similarity).item() == 0.0
    relaxed = torch.tensor([[0.5, -0.2], [0.1, 0.3], [0.2, 0.4]], requires_grad=True)
    pairwise_loss(relaxed, similarity).backward()
    assert relaxed.grad.abs().sum() > 0
    assert pairwise_loss(relaxed, torch.zeros(3, 3)).item() == 0.0
    # a mean over all nine entries: two known pairs (both orders) of squared errors (h.h/r - S)^2
    inner = relaxed.detach() @ relaxed.detach().T / 2
    expected = ((inner[0, 1] - 1) ** 2 * 2 + (inner[0, 2] + 1) ** 2 * 2) / 9
    assert pairwise_loss(relaxed.detach(), similarity).item() == pytest.approx(expected.item())


def noisy_clusters(n=300, n_clusters=10, dim=32, seed=0) -> Split:
    """Non-negative features of overlapping clusters: unimodal cosine distances, like CNN features."""
    rng = np.random.default_rng(seed)
    centres = rng.random((n_clusters, dim))
    cluster = rng.integers(0, n_clusters, n)
    features = np.abs(centres[cluster] + rng.normal(0, 0.25, (n, dim)))
    return Split(features=features.astype(np.float32), labels=np.eye(n_clusters, dtype=np.uint8)[cluster], name="train")


def test_loss_decreases_and_codes_keep_the_structure(one_thread):
    train = noisy_clusters()
    # about 3% of the pairs here are known, so the mean over all entries needs a large step
    method = SSDH(n_bits=16, frozen_backbone=True, epochs=15, batch_size=64, lr=10.0).fit(train)
    losses = [h["pairwise"] for h in method.history_]
    assert losses[-1] < 0.9 * losses[0]
    codes = method.encode(train)
    assert hb.evaluate(codes, codes, train.labels, train.labels, topk=50).map > 0.5


def test_on_features_sharing_one_direction_the_loss_prefers_every_bit_equal():
    """The documented cause of SSDH's collapse on pooled CNN features: the few items far from the
    shared direction are dissimilar to (almost) all others, and the paper's loss is then lowest
    when every bit splits those items from the rest."""
    rng = np.random.default_rng(0)
    n, dim, hubs, bits = 300, 16, 15, 16
    common = rng.uniform(0.5, 1.5, dim)
    features = common * (1 + 0.1 * rng.normal(size=(n, 1))) + 0.1 * rng.normal(size=(n, dim))
    features[:hubs] = 0.3 * common + rng.uniform(0, 1.5, (hubs, dim))
    features = torch.as_tensor(np.maximum(features, 0), dtype=torch.float32)
    distances = cosine_distances(features)
    upper = torch.triu_indices(n, n, 1)
    similarity = pseudo_similarity(distances, fit_half_gaussians(distances[upper[0], upper[1]].numpy()))
    dissimilar = torch.triu(similarity == -1, 1)
    assert dissimilar.sum() > 0 and bool(dissimilar[hubs:, hubs:].sum() == 0)  # every one touches a hub
    one_split = torch.where(torch.arange(n) < hubs, -1.0, 1.0)[:, None].expand(n, bits)
    hyperplanes = torch.sign(
        (features - features.mean(0)) @ torch.randn(dim, bits, generator=torch.Generator().manual_seed(0))
    )
    assert pairwise_loss(one_split, similarity) < 0.2 * pairwise_loss(hyperplanes, similarity)


def fc7_like_maps(method, dataset) -> tuple[float, dict]:
    """MAP@1000 and code statistics of a fitted ``method``'s database codes on ``dataset``."""
    query, database = method.encode(dataset.query), method.encode(dataset.database)
    scores = hb.evaluate(query, database, dataset.query.labels, dataset.database.labels, topk=1000)
    return scores.map, hb.code_stats(database)


def test_weight_decay_not_the_loss_sets_the_code_layer_size(one_thread):
    """The cause of the paper schedule's collapse with the VGG solver's decay: at lr=2 SGD's
    weight_decay=5e-4 shrinks the code layer by 1% per step, faster than the pairwise loss (whose
    gradient scales with the few known pairs) holds it; without decay it keeps its size."""
    train = check_set().train
    settings = {"n_bits": 16, "frozen_backbone": True, "epochs": 8, "batch_size": 24}
    start = SSDH(**{**settings, "epochs": 1, "lr": 1e-12}).fit(train)
    decayed, kept = SSDH(**settings, weight_decay=5e-4).fit(train), SSDH(**settings).fit(train)
    size = {
        name: float(m.network_.code_layer.weight.detach().norm())
        for name, m in [("start", start), ("decayed", decayed), ("kept", kept)]
    }
    assert size["decayed"] < 0.1 * size["start"] and size["kept"] > 0.9 * size["start"]
    assert kept.history_[-1]["pairwise"] < 0.8 * decayed.history_[-1]["pairwise"]  # the decay costs the loss


@pytest.mark.slow
def test_paper_preset_on_fc7_like_features_keeps_the_codes_alive(one_thread):
    """The generated fc7-like set, on which the paper preset with weight_decay=5e-4 ended with one
    or two codes: at the defaults the codes are many, weakly correlated, and retrieve at LSH's
    level or better."""
    dataset = hb.load_dataset("fc7-like")
    ssdh_map, stats = fc7_like_maps(SSDH(n_bits=64, frozen_backbone=True).fit(dataset.train), dataset)
    lsh_map, _ = fc7_like_maps(hb.create_method("lsh", n_bits=64).fit(dataset.train), dataset)
    assert stats["distinct_fraction"] >= 0.2 and stats["mean_abs_correlation"] <= 0.5
    assert ssdh_map > lsh_map - 0.05
    collapsed_map, collapsed = fc7_like_maps(
        SSDH(n_bits=64, frozen_backbone=True, weight_decay=5e-4).fit(dataset.train), dataset
    )
    assert collapsed["distinct_fraction"] < 0.01 and collapsed_map < lsh_map - 0.2
