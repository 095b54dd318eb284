import itertools

import numpy as np
import pytest
import torch

import hashbench as hb
from hashbench.datasets.base import Split
from hashbench.methods.uh_bdnn import (
    STATISTICS_ROWS,
    UHBDNN,
    BinaryDeepNetwork,
    coordinate_descent_codes,
    default_hidden_sizes,
    reconstruction_error,
    reconstruction_statistics,
)
from tests.methods.feature_deep_checks import (
    N_FEATURES,
    check_nan_is_reported_with_epoch_and_term,
    feature_split,
    parameter_gradients,
)

SMALL = dict(n_bits=8, epochs=3, lbfgs_iterations=10, initial_lbfgs_iterations=10, hidden_sizes=(24, 12))


def make_small(**overrides):
    return UHBDNN(**{**SMALL, **overrides})


@pytest.fixture
def make_method():
    return make_small


def test_hidden_sizes_follow_the_paper_and_extend_its_rule():
    assert [default_hidden_sizes(b) for b in (8, 16, 24, 32)] == [(90, 20), (90, 30), (100, 40), (120, 50)]
    assert default_hidden_sizes(64) == (160, 90)
    # the rule for other lengths reproduces the paper's 8- and 32-bit sizes
    assert (round(1.25 * 8 + 10) + 70, round(1.25 * 8 + 10)) == (90, 20)


def test_each_objective_term_sends_a_gradient_to_the_network(make_method, one_thread):
    train = feature_split()
    method = make_method().fit(train)
    with method._fitting(train):
        method._train_tensors["inputs"] = method._tensor(method._rescaled(train.features))
        terms = method._loss_terms(torch.arange(len(train)))
        for term in ("reconstruction", "weight_decay", "binary", "independence", "balance"):
            assert parameter_gradients(method.network_, terms[term]) > 0, term
            terms = method._loss_terms(torch.arange(len(train)))


def test_the_reconstruction_error_from_statistics_is_the_squared_error_and_its_gradient():
    generator = torch.Generator().manual_seed(0)
    n = 2 * STATISTICS_ROWS + 45  # statistics summed over three blocks of rows
    inputs = torch.rand(n, 20, generator=generator)
    codes = torch.randint(0, 2, (n, 6), generator=generator).float() * 2 - 1
    decoder = torch.nn.Linear(6, 20)
    direct = (decoder(codes) - inputs).pow(2).sum()
    expanded = reconstruction_error(decoder, reconstruction_statistics(inputs, codes))
    torch.testing.assert_close(expanded, direct, rtol=1e-5, atol=1e-4)
    by_statistics = torch.autograd.grad(expanded, list(decoder.parameters()))
    by_residual = torch.autograd.grad(direct, list(decoder.parameters()))
    for a, b in zip(by_statistics, by_residual):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_terms_over_all_items_equal_the_terms_of_every_row(make_method, one_thread):
    train = feature_split()
    method = make_method().fit(train)
    with method._fitting(train):
        method._train_tensors["inputs"] = method._tensor(method._rescaled(train.features))
        with torch.no_grad():
            every_row, all_items = method._loss_terms(torch.arange(len(train))), method._loss_terms()
    assert set(every_row) == set(all_items)
    for term in every_row:
        torch.testing.assert_close(all_items[term], every_row[term], rtol=1e-5, atol=1e-6)


def test_features_are_rescaled_to_the_unit_interval_by_one_scalar():
    train = feature_split()
    method = make_small().fit(train)
    rescaled = method._rescaled(train.features)
    assert rescaled.min() == 0.0 and rescaled.max() == pytest.approx(1.0)
    # one scalar for every dimension: ratios of ranges are kept
    ranges = np.ptp(train.features, axis=0)
    np.testing.assert_allclose(np.ptp(rescaled, axis=0), ranges / ranges.max(), rtol=1e-5)


def test_codes_do_not_depend_on_the_feature_scale(one_thread):
    train, query = feature_split(), feature_split(40, seed=1, web=False)
    codes = make_small().fit(train).encode(query)
    scale = np.float32(2.0**10)  # a power of two: the rescaled features are bitwise the same
    scaled = make_small().fit(Split(train.features * scale, train.labels, name="train"))
    assert scaled.encode(Split(query.features * scale, name="query")) == codes


def test_b_step_is_an_exact_coordinate_minimum_that_never_raises_the_objective():
    rng = np.random.default_rng(0)
    m, d, r, lambda2 = 30, 6, 4, 0.3
    x, decoder, bias = (
        torch.as_tensor(rng.normal(size=shape), dtype=torch.float32) for shape in ((m, d), (d, r), (d,))
    )
    real = torch.as_tensor(rng.normal(size=(m, r)), dtype=torch.float32)
    start = torch.where(torch.as_tensor(rng.normal(size=(m, r))) > 0, 1.0, -1.0)

    def objective(codes):  # per item: ||x - W4 b - b4||^2 + lambda2 ||h - b||^2
        return (x - codes @ decoder.T - bias).pow(2).sum(1) + lambda2 * (real - codes).pow(2).sum(1)

    codes = coordinate_descent_codes(start, x - start @ decoder.T - bias, decoder, real, lambda2)
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}
    assert (objective(codes) <= objective(start) + 1e-5).all()
    for k in range(r):  # no single flip lowers any item's objective
        flipped = codes.clone()
        flipped[:, k] *= -1
        assert (objective(flipped) >= objective(codes) - 1e-5).all()


def test_objective_never_rises_and_ends_below_its_itq_start(one_thread):
    method = UHBDNN(**{**SMALL, "epochs": 5}).fit(feature_split())
    objective = method.objective_  # after each network step and each B step
    assert len(objective) == 10
    assert all(later <= earlier * (1 + 1e-6) for earlier, later in itertools.pairwise(objective))
    # objective_[0]: the network fitted to the ITQ codes, B still ITQ's
    assert objective[-1] < objective[0]
    totals = [sum(v for k, v in h.items() if k != "epoch") for h in method.history_]
    np.testing.assert_allclose(totals, objective[1::2], rtol=1e-5)


def test_a_network_step_that_does_not_lower_the_objective_is_undone(one_thread, monkeypatch):
    train = feature_split()
    original_step = torch.optim.LBFGS.step

    def worsening_step(optimiser, closure):
        original_step(optimiser, closure)
        with torch.no_grad():
            for group in optimiser.param_groups:
                for p in group["params"]:
                    p.add_(10.0)

    monkeypatch.setattr(torch.optim.LBFGS, "step", worsening_step)
    method = make_small(epochs=2).fit(train)
    torch.manual_seed(0)  # the seeded initialisation fit starts from
    initial = BinaryDeepNetwork(N_FEATURES, SMALL["hidden_sizes"], SMALL["n_bits"])
    initial.initialise_from(torch.as_tensor(method._rescaled(train.features)))
    for name, value in initial.state_dict().items():
        torch.testing.assert_close(method.network_.state_dict()[name], value)
    objective = method.objective_
    assert all(later <= earlier * (1 + 1e-6) for earlier, later in itertools.pairwise(objective))


def test_layers_start_from_eigenvectors_of_their_inputs_and_the_decoder_from_the_identity():
    torch.manual_seed(0)
    inputs = torch.rand(200, 6)
    network = BinaryDeepNetwork(6, (8, 5), 3)
    untouched = network.encoder[0].weight[6:].clone()
    network.initialise_from(inputs)
    network.requires_grad_(False)
    first = network.encoder[0]
    moments = (inputs.T @ inputs / 200).double()
    values, _vectors = torch.linalg.eigh(moments)
    rows = first.weight[:6].double()
    torch.testing.assert_close(rows @ moments, values.flip(0)[:, None] * rows, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(first.weight[6:], untouched)  # wider than its input: torch's rows kept
    assert all(float(r[r.abs().argmax()]) > 0 for r in rows)
    hidden = torch.sigmoid(first(inputs))
    second = network.encoder[2].weight.double()
    second_moments = (hidden.T @ hidden / 200).double()
    torch.testing.assert_close(
        second @ second_moments, torch.linalg.eigvalsh(second_moments).flip(0)[:5, None] * second, atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(network.decoder.weight, torch.eye(6, 3))
    assert all(float(m.bias.abs().sum()) == 0 for m in (*network.encoder[::2], network.decoder))


def test_codes_start_from_itq(one_thread):
    train = feature_split()
    # a heavy binary term, one alternation: the network fits the ITQ codes it starts from
    method = UHBDNN(**{**SMALL, "lambdas": (0.0, 10.0, 0.0, 0.0), "epochs": 1, "initial_lbfgs_iterations": 50}).fit(
        train
    )
    rescaled = method._rescaled(train.features)
    itq_codes = hb.create_method("itq", n_bits=8, seed=0).fit(rescaled).encode(rescaled).unpack()
    assert np.mean(method.encode(train).unpack() == itq_codes) > 0.95


def test_more_bits_than_features_is_rejected_by_name():
    with pytest.raises(hb.InvalidInputError, match="n_bits=17"):
        UHBDNN(**{**SMALL, "n_bits": 17}).fit(feature_split())


def test_nan_names_epoch_and_term(make_method, one_thread):
    check_nan_is_reported_with_epoch_and_term(make_method(), "_loss_terms", "independence")


def common_direction_split(n=400, dim=32, seed=0, spread=0.05) -> Split:
    """Non-negative features that are one shared vector plus small variation in three directions
    (like globally pooled CNN features: median cosine 0.998, effective rank 2.3)."""
    rng = np.random.default_rng(seed)
    common = rng.uniform(0.5, 1.5, dim)
    variation = (rng.normal(size=(n, 3)) * [1.0, 0.5, 0.25]) @ rng.normal(size=(3, dim))
    features = common * (1 + spread * rng.normal(size=(n, 1))) + spread * variation
    features = np.maximum(features, 0) + 0.001 * rng.random((n, dim))
    return Split(features.astype(np.float32), np.zeros((n, 1), np.uint8), name="train")


def test_quick_preset_keeps_every_bit_alive_on_features_sharing_one_direction(one_thread):
    train = common_direction_split()
    healthy = UHBDNN(n_bits=16, preset="quick", hidden_sizes=(32, 20)).fit(train)
    assert hb.code_stats(healthy.encode(train))["constant_bits"] <= 0.1
    # a first fit as short as the later ones does not leave the eigenvector start (19% constant)
    short = UHBDNN(n_bits=16, preset="quick", hidden_sizes=(32, 20), initial_lbfgs_iterations=20).fit(train)
    assert hb.code_stats(short.encode(train))["constant_bits"] > 0.1
