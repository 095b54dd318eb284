import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hashbench.datasets.base import Split
from hashbench.methods._torch import endless_batches
from hashbench.methods.tbh import TBH, hamming_adjacency, stochastic_binary
from tests.methods.feature_deep_checks import (
    check_nan_is_reported_with_epoch_and_term,
    feature_split,
    parameter_gradients,
)

SMALL = dict(n_bits=8, steps=9, batch_size=40, lr=1e-3, middle_width=32, continuous_width=16, discriminator_width=16)


@pytest.fixture
def make_method():
    return lambda **overrides: TBH(**{**SMALL, **overrides})


def test_stochastic_neurons_threshold_forward_and_pass_the_sigmoid_gradient_back():
    logits = torch.tensor([[-1.0, 0.2, 2.0]], requires_grad=True)
    bits = stochastic_binary(logits, torch.tensor([[0.1, 0.6, 0.5]]))
    assert bits.tolist() == [[1.0, 0.0, 1.0]]
    bits.sum().backward()
    prob = torch.sigmoid(logits.detach())
    torch.testing.assert_close(logits.grad, prob * (1 - prob))


def test_adjacency_is_one_minus_normalised_hamming_to_the_power():
    bits = torch.tensor([[1.0, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 0]])
    adjacency = hamming_adjacency(bits, 1.4)
    expected = torch.tensor([[1, 0.75**1.4, 0], [0.75**1.4, 1, 0.25**1.4], [0, 0.25**1.4, 1]])
    torch.testing.assert_close(adjacency, expected)


def test_each_loss_term_trains_its_own_side(make_method, one_thread):
    train = feature_split()
    method = make_method().fit(train)
    rows = torch.arange(len(train))
    discriminators = torch.nn.ModuleList([method.code_discriminator_, method.continuous_discriminator_])
    with method._fitting(train):
        for term in ("reconstruction", "code_adversarial", "continuous_adversarial"):
            assert parameter_gradients(method.autoencoder_, method._loss_terms(rows)[term]) > 0, term
        for term in ("code_critic", "continuous_critic"):
            terms = method._loss_terms(rows)
            method.autoencoder_.zero_grad()
            assert parameter_gradients(discriminators, terms[term]) > 0, term
            assert all(p.grad is None for p in method.autoencoder_.parameters()), term


def test_steps_run_in_epochs_of_one_pass_with_full_batches(one_thread):
    train, seen = feature_split(), []  # 120 items, batches of 40: 3 steps per epoch
    method = TBH(**{**SMALL, "steps": 8})
    counted = []
    original = method._batch_step
    method._batch_step = lambda rows, epoch: counted.append((epoch, len(rows))) or original(rows, epoch)
    method.fit(train, callback=lambda epoch, hasher: seen.append(epoch))
    assert seen == [1, 2, 3] and [h["epoch"] for h in method.history_] == [1, 2, 3]
    assert [epoch for epoch, _ in counted] == [1, 1, 1, 2, 2, 2, 3, 3]  # 8 steps, the last epoch shorter
    assert {size for _, size in counted} == {40}


def test_endless_batches_are_full_and_cover_each_pass():
    batches = endless_batches(10, 4, torch.Generator().manual_seed(0))
    drawn = torch.cat([next(batches) for _ in range(5)])  # 20 indices = two passes over 10 items
    assert sorted(drawn[:10].tolist()) == list(range(10)) and sorted(drawn[10:].tolist()) == list(range(10))
    assert len(next(endless_batches(3, 4, torch.Generator()))) == 3


def test_losses_have_the_release_reductions(one_thread):
    train = feature_split()
    method = TBH(**{**SMALL, "stochastic_neurons": False}).fit(train)
    rows = torch.arange(40)
    with method._fitting(train):
        method.generator_ = torch.Generator().manual_seed(0)
        terms = method._loss_terms(rows)
        x = method._train_tensor("features")[rows]
        bits, _decoded, reconstruction = method.autoencoder_(x, torch.full((40, 8), 0.5))
    # half the squared error summed over the batch and the features (tf.nn.l2_loss)
    torch.testing.assert_close(terms["reconstruction"], 0.5 * ((reconstruction - x) ** 2).sum())
    # the encoder's side of the critic's cross-entropy, mean over the batch, with the minus sign
    logits = method.code_discriminator_(bits)
    torch.testing.assert_close(
        terms["code_adversarial"], -F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))
    )
    total = terms["reconstruction"] + terms["code_adversarial"] + terms["continuous_adversarial"]
    torch.testing.assert_close(method._autoencoder_loss(terms), total)


def test_decoder_ends_in_a_relu_only_for_non_negative_features(one_thread):
    train = feature_split()
    assert isinstance(TBH(**SMALL).fit(train).autoencoder_.decoder[-1], torch.nn.ReLU)
    signed = Split(train.features - train.features.mean(axis=0), train.labels, name="train")
    assert isinstance(TBH(**SMALL).fit(signed).autoencoder_.decoder[-1], torch.nn.Identity)


def test_centred_inputs_are_shifted_by_the_training_mean_in_training_and_encoding(one_thread):
    train = feature_split()
    method = TBH(**SMALL, centre=True).fit(train)
    mean = torch.tensor(train.features.mean(axis=0, dtype=np.float64), dtype=torch.float32)
    torch.testing.assert_close(method.input_shift_, mean)
    # centred targets have negative entries, which a final ReLU could not reproduce
    assert isinstance(method.autoencoder_.decoder[-1], torch.nn.Identity)
    rows = torch.arange(40)
    with method._fitting(train):
        method.generator_ = torch.Generator().manual_seed(0)
        terms = method._loss_terms(rows)
        method.generator_ = torch.Generator().manual_seed(0)
        thresholds = method._uniform((40, 8))
    x = torch.tensor(train.features[:40]) - mean
    with torch.no_grad():
        _, _, reconstruction = method.autoencoder_(x, thresholds)
        logits = method.autoencoder_.code_logits(torch.tensor(train.features) - mean)
    torch.testing.assert_close(terms["reconstruction"], 0.5 * ((reconstruction - x) ** 2).sum())
    np.testing.assert_array_equal(method.transform(train), np.where(logits.numpy() > 0, 1, -1))


def test_layers_start_as_keras_dense_layers(one_thread):
    method = TBH(**{**SMALL, "steps": 1, "lr": 1e-12}).fit(feature_split())  # (almost) no step taken
    layers = [m for network in method.networks_.values() for m in network.modules() if isinstance(m, torch.nn.Linear)]
    assert len(layers) == 10  # encoder, two heads, graph convolution, decoder (2), discriminators (2 x 2)
    for layer in layers:
        fan_out, fan_in = layer.weight.shape
        bound = (6 / (fan_in + fan_out)) ** 0.5  # Glorot-uniform
        largest = float(layer.weight.detach().abs().max())
        assert 0.8 * bound < largest <= bound
        assert float(layer.bias.detach().abs().max()) < 1e-9


def test_reconstruction_decreases_on_a_small_problem(one_thread):
    method = TBH(**{**SMALL, "steps": 45}).fit(feature_split())
    reconstruction = [h["reconstruction"] for h in method.history_]
    assert reconstruction[-1] < 0.75 * reconstruction[0]


def test_release_thresholds_train_deterministically_at_one_half(one_thread):
    train = feature_split()
    method = TBH(**SMALL, stochastic_neurons=False).fit(train)
    rows = torch.arange(len(train))
    with method._fitting(train):
        method.generator_ = torch.Generator().manual_seed(0)
        first = method._loss_terms(rows)["reconstruction"]
        method.generator_ = torch.Generator().manual_seed(1)
        second = method._loss_terms(rows)["reconstruction"]
    torch.testing.assert_close(first, second)


def test_nan_names_epoch_and_term(make_method, one_thread):
    check_nan_is_reported_with_epoch_and_term(make_method(), "_loss_terms", "continuous_adversarial")
