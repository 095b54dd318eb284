import numpy as np
import pytest
import torch

import hashbench as hb
from hashbench.methods.uh_bdnn import UHBDNN, default_hidden_sizes
from tests.methods.feature_deep_checks import (  # noqa: F401  (shared checks run for UH-BDNN)
    check_nan_is_reported_with_epoch_and_term,
    feature_split,
    one_thread,
    parameter_gradients,
)

SMALL = dict(n_bits=8, epochs=3, lbfgs_iterations=10, hidden_sizes=(24, 12))


@pytest.fixture
def make_method():
    return lambda **overrides: UHBDNN(**{**SMALL, **overrides})


def test_hidden_sizes_follow_the_paper_and_extend_its_rule():
    assert [default_hidden_sizes(b) for b in (8, 16, 24, 32)] == [(90, 20), (90, 30), (100, 40), (120, 50)]
    assert default_hidden_sizes(64) == (160, 90)
    # the rule for other lengths reproduces the paper's 8- and 32-bit sizes
    assert (round(1.25 * 8 + 10) + 70, round(1.25 * 8 + 10)) == (90, 20)


def test_each_objective_term_sends_a_gradient_to_the_network(make_method, one_thread):
    train = feature_split()
    method = make_method().fit(train)
    method.targets_ = torch.as_tensor(method.encode(train).to_signs(), dtype=torch.float32)
    terms = ("reconstruction", "weight_decay", "binary", "independence", "balance")
    for term in terms:
        assert parameter_gradients(method.network_, method._loss_terms(torch.arange(len(train)))[term]) > 0, term


def test_objective_decreases_over_the_alternations(one_thread):
    method = UHBDNN(**{**SMALL, "epochs": 5}).fit(feature_split())
    totals = [sum(v for k, v in h.items() if k != "epoch") for h in method.history_]
    assert all(later <= earlier * (1 + 1e-4) for earlier, later in zip(totals, totals[1:]))
    assert totals[-1] < 0.9 * totals[0]


def test_codes_start_from_itq(one_thread):
    train = feature_split()
    # only the binary term, one alternation: the network fits the ITQ codes it starts from
    method = UHBDNN(**{**SMALL, "lambdas": (0.0, 10.0, 0.0, 0.0), "epochs": 1, "lbfgs_iterations": 50}).fit(train)
    itq_codes = hb.create_method("itq", n_bits=8, seed=0).fit(train).encode(train).unpack()
    assert np.mean(method.encode(train).unpack() == itq_codes) > 0.95


def test_more_bits_than_features_is_rejected_by_name():
    with pytest.raises(hb.InvalidInputError, match="n_bits=17"):
        UHBDNN(**{**SMALL, "n_bits": 17}).fit(feature_split())


def test_nan_names_epoch_and_term(make_method, one_thread):
    check_nan_is_reported_with_epoch_and_term(make_method(), "_loss_terms", "independence")
