import numpy as np
import pytest
import torch

from hashbench.datasets.base import HashingDataset, Split
from hashbench.errors import InvalidInputError
from hashbench.methods.wsih import WSIH, relation_target
from tests.methods.feature_deep_checks import (
    check_nan_is_reported_with_epoch_and_term,
    feature_split,
    parameter_gradients,
)

SMALL = dict(n_bits=8, web_epochs=3, web_batch_size=60, epochs=3, batch_size=40, lr=1e-3)


@pytest.fixture
def make_method():
    return lambda **overrides: WSIH(**{**SMALL, **overrides})


def test_without_a_web_split_the_error_names_it(make_method):
    with pytest.raises(InvalidInputError, match="`web`"):
        make_method().fit(feature_split(web=False))
    unlabelled = Split(feature_split().web.features, name="web")
    with pytest.raises(InvalidInputError, match="labels in the `web` split"):
        make_method().fit(Split(feature_split().features, name="train", web=unlabelled))


def test_a_dataset_hands_its_web_split_to_training(make_method, one_thread):
    train = feature_split()
    web, train.web = train.web, None
    dataset = HashingDataset(
        "toy", train, feature_split(20, seed=1, web=False), feature_split(30, seed=2, web=False), web=web
    )
    assert make_method().fit(dataset.train).encode(dataset.query).n_bits == 8


def test_layer_widths_scale_with_the_feature_width():
    assert WSIH(n_bits=32).layer_widths(4096) == {"block1": 4096, "block2": 2048, "block3": 1024, "decoder": 1024}
    assert WSIH(n_bits=32).layer_widths(256) == {"block1": 256, "block2": 128, "block3": 64, "decoder": 64}
    assert WSIH(n_bits=64).layer_widths(256)["block3"] == 128  # never below 2 n_bits
    assert WSIH(n_bits=32, width_scale=0.5).layer_widths(256)["block1"] == 2048


def test_relation_target_mixes_first_and_second_order_similarity():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    s = 2 * torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(x, dim=1).T - 1
    torch.testing.assert_close(relation_target(x), 1.2 * (0.7 * s + 0.3 * s @ s / 3))


def test_prototypes_are_class_means_of_the_frozen_first_block(make_method, one_thread):
    train = feature_split()
    method = make_method().fit(train)
    network = method.network_.eval()
    with torch.no_grad():
        first = network.block1(torch.as_tensor(train.web.features))
    labels = train.web.labels.astype(bool)
    expected = torch.stack([first[labels[:, c]].mean(dim=0) for c in range(labels.shape[1])])
    torch.testing.assert_close(network.prototypes, expected)
    assert all(not p.requires_grad for block in (network.block1, network.block2) for p in block.parameters())


def test_each_loss_term_sends_a_gradient(make_method, one_thread):
    train = feature_split()
    method = make_method().fit(train)
    x, web_x = torch.as_tensor(train.features[:40]), torch.as_tensor(train.web.features[:40])
    web_labels = torch.as_tensor(train.web.labels[:40], dtype=torch.float32)
    trained = torch.nn.ModuleList([method.network_.block3, method.network_.code, method.decoder_])
    for term in ("relation", "quantisation", "reconstruction"):
        assert parameter_gradients(trained, method._target_loss_terms(x)[term]) > 0, term
    for term in ("web_classification", "web_similarity", "web_balance", "web_decorrelation"):
        terms = method._web_loss_terms(web_x, web_labels)
        assert parameter_gradients(method.network_, terms[term]) > 0, term


def test_losses_decrease_in_both_stages(one_thread):
    method = WSIH(**{**SMALL, "web_epochs": 15, "epochs": 20}).fit(feature_split())
    web = [sum(v for k, v in h.items() if k.startswith("web_")) for h in method.history_ if "web_similarity" in h]
    target = [h["relation"] + h["quantisation"] + h["reconstruction"] for h in method.history_ if "relation" in h]
    assert web[-1] < 0.9 * web[0] and target[-1] < 0.9 * target[0]


def test_codes_do_not_depend_on_batch_mates(make_method, one_thread):
    train = feature_split()
    method = make_method().fit(train)
    np.testing.assert_array_equal(method.encode(train).unpack()[:7], method.encode(train.subset(np.arange(7))).unpack())


def test_nan_names_epoch_and_term(make_method, one_thread):
    check_nan_is_reported_with_epoch_and_term(make_method(), "_web_loss_terms", "web_similarity")
