"""The mosaic backbones' exact integer forward pass."""

import numpy as np
import pytest
import torch

from hashbench.datasets import backbone_exact
from hashbench.datasets.backbone import BACKBONES, BackboneFactory
from hashbench.datasets.backbone_shipped import load_shipped_backbone
from hashbench.errors import InvalidInputError


def random_state(kind: str, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return BACKBONES[kind]().state_dict()


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 56, 56), dtype=np.uint8)


def test_quantised_weights_are_8_bit_integers_times_a_power_of_two_per_row():
    state = backbone_exact.quantise_weights(random_state("fc7"))
    for key, weight in state.items():
        if key.endswith(".weight"):
            scale = torch.exp2(backbone_exact.weight_exponents(weight)).view(-1, *[1] * (weight.dim() - 1))
            integers = weight.double() / scale
            assert torch.equal(integers, integers.round()) and integers.abs().max() <= 127, key
            assert integers.abs().reshape(len(weight), -1).amax(1).min() > 63, key  # the smallest exponent fits
    again = backbone_exact.quantise_weights(state)
    assert all(torch.equal(state[k], again[k]) for k in state)


@pytest.mark.parametrize("kind", ["fc7", "pooled"])
def test_exact_pass_follows_the_float_network_up_to_the_activation_rounding(kind):
    state = random_state(kind)
    pixels = images(32)
    steps = backbone_exact.ExactBackbone.calibrate(state, pixels)
    exact = backbone_exact.ExactBackbone(state, steps).features(pixels)
    network = BackboneFactory(backbone_exact.quantise_weights(state))()
    with torch.no_grad():
        floats = network(torch.from_numpy(pixels).float() / 255)
    assert exact.shape == floats.shape and exact.dtype == torch.float32
    assert torch.corrcoef(torch.stack([exact.ravel(), floats.ravel()]))[0, 1] > 0.999
    assert (exact - floats).abs().max() <= 0.05 * floats.abs().max()


@pytest.mark.parametrize("kind", ["fc7", "pooled"])
def test_exact_pass_gives_the_same_bits_whatever_the_batch(kind):
    # Kernels sum in orders that depend on the batch shape; exact sums make that irrelevant.
    trained = load_shipped_backbone(kind)
    model = trained.exact()
    pixels = images(24, seed=1)
    whole = model.features(pixels)
    one_by_one = torch.cat([model.features(pixels[i : i + 1]) for i in range(len(pixels))])
    odd = torch.cat([model.features(pixels[:7]), model.features(pixels[7:])])
    assert torch.equal(whole, one_by_one) and torch.equal(whole, odd)
    probabilities = model.probabilities(pixels)
    assert torch.allclose(probabilities.sum(1), torch.ones(len(pixels), dtype=torch.float64))


def test_every_partial_sum_of_a_layer_stays_exact_in_float32():
    model = load_shipped_backbone("fc7").exact()
    for layer in [*(m for m in model.layers if isinstance(m, backbone_exact._IntegerLayer)), model.head]:
        per_channel = layer.weight[0, 0].numel()
        largest = backbone_exact.PIXEL_OFFSET_LIMIT if layer.step is None else 255
        assert layer.chunk * per_channel * largest * 127 < 2**24
        if layer.single_pass:  # then the bias is added inside the float32 kernel too
            assert largest * 127 * layer.weight[0].numel() + layer.bias.abs().max() < 2**24


def test_steps_that_do_not_fit_the_network_are_refused():
    state = random_state("fc7")
    with pytest.raises(InvalidInputError, match="activation steps"):
        backbone_exact.ExactBackbone(state, np.ones(2))
