import math

import numpy as np
import pytest
import torch

import hashbench as hb
from hashbench.methods.cibhash import (
    CIBHash,
    augment_images,
    bernoulli_kl,
    dropout_view,
    gaussian_blur,
    nt_xent,
    random_resized_crops,
)
from tests.methods.image_checks import TinyBackbone, image_split

SMALL = {"n_bits": 8, "epochs": 2, "batch_size": 32, "hidden_width": 16}


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_nt_xent_on_a_hand_worked_pair_of_views():
    first = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    second = torch.tensor([[1.0, 1.0], [-1.0, 1.0]])
    # cosines: each first-view code matches its twin (1), item 0's codes are orthogonal to item 1's
    # except for first[1] . second[1] = -1; rows 0 and 2 see logits (0, 1, 0) with the 1 positive,
    # rows 1 and 3 see (0, 0, -1) with the -1 positive
    expected = (math.log(1 + 2 / math.e) + math.log(1 + 2 * math.e)) / 2
    assert nt_xent(first, second, temperature=1.0).item() == pytest.approx(expected)
    # a temperature of 1/2 doubles every logit
    at_half = (math.log(1 + 2 / math.e**2) + math.log(1 + 2 * math.e**2)) / 2
    assert nt_xent(first, second, temperature=0.5).item() == pytest.approx(at_half)


def test_nt_xent_is_lowest_when_views_agree_and_items_differ():
    agreeing = torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, 1.0, 1.0]])
    assert nt_xent(agreeing, agreeing, 0.3) < nt_xent(agreeing, agreeing.flip(0), 0.3)


def test_bernoulli_kl_on_hand_worked_probabilities_and_its_reference_held_fixed():
    logits = torch.zeros(1, 2, requires_grad=True)  # p = 1/2
    reference = torch.full((1, 2), math.log(1 / 3), requires_grad=True)  # sigmoid = 1/4
    kl = bernoulli_kl(logits, reference)
    assert kl.item() == pytest.approx(2 * (0.5 * math.log(2) + 0.5 * math.log(2 / 3)))  # = ln(4/3)
    kl.backward()
    assert reference.grad is None and logits.grad.abs().sum() > 0
    assert bernoulli_kl(reference.detach(), reference).item() == pytest.approx(0.0, abs=1e-7)
    # saturated probabilities stay finite
    assert torch.isfinite(bernoulli_kl(torch.tensor([[80.0]]), torch.tensor([[-80.0]])))


def test_augmented_views_stay_images_differ_per_image_and_repeat_with_the_seed():
    images = torch.rand(6, 1, 16, 16, generator=generator(1))
    twins = images[:1].repeat(6, 1, 1, 1)
    view = augment_images(twins, generator(0))
    assert view.shape == twins.shape and view.min() >= 0 and view.max() <= 1
    assert not torch.allclose(view[0], view[1])  # each image draws its own parameters
    torch.testing.assert_close(view, augment_images(twins, generator(0)))
    assert not torch.allclose(augment_images(images, generator(0)), augment_images(images, generator(1)))


def test_crops_and_blur_keep_a_blank_canvas_blank_and_blur_keeps_flat_images():
    assert augment_images(torch.zeros(4, 1, 12, 12), generator()).abs().max() == 0
    flat = torch.full((5, 3, 8, 8), 0.4)
    torch.testing.assert_close(gaussian_blur(flat, generator()), flat)
    torch.testing.assert_close(random_resized_crops(flat, generator()), flat)


def test_crops_keep_most_of_the_image():
    """A bright left half stays mostly left (mirrored views put it right): area >= 0.7."""
    images = torch.zeros(200, 1, 20, 20)
    images[..., :10] = 1.0
    views = random_resized_crops(images, generator())
    left, right = views[..., :10].mean(dim=(1, 2, 3)), views[..., 10:].mean(dim=(1, 2, 3))
    assert ((left - right).abs() > 0.6).all()
    assert 0.3 < ((right > left).float().mean()) < 0.7  # about half are mirrored


def test_dropout_view_zeroes_at_the_rate_and_keeps_the_expectation():
    features = torch.ones(400, 50)
    view = dropout_view(features, 0.5, generator())
    assert (view == 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert set(view.unique().tolist()) == {0.0, 2.0}
    assert view.mean().item() == pytest.approx(1.0, abs=0.05)


def test_image_mode_trains_the_encoder_on_a_frozen_backbone(one_thread):
    train = image_split(64)
    method = CIBHash(**SMALL).fit(train)
    start = TinyBackbone().state_dict()
    for key, value in method.network_.backbone.state_dict().items():
        torch.testing.assert_close(value, start[key])
    assert method.n_parameters()["code_layer"] == 16 * 16 + 16 + 16 * 8 + 8
    codes = method.encode(image_split(20, seed=2))
    assert codes.n_bits == 8 and len(codes) == 20


def test_feature_mode_needs_no_images(one_thread):
    method = CIBHash(**SMALL, frozen_backbone=True).fit(image_split(64, images=False))
    assert method.encode(image_split(20, seed=2, images=False)).n_bits == 8
    assert "backbone" not in method.n_parameters()


def test_image_mode_without_images_names_them_and_suggests_frozen_mode():
    with pytest.raises(hb.InvalidInputError, match=r"images.*train split has none.*frozen_backbone=True"):
        CIBHash(**SMALL).fit(image_split(32, images=False))


def test_stochastic_codes_change_training_but_not_determinism(one_thread):
    train = image_split(64, images=False)
    deterministic = CIBHash(**SMALL, frozen_backbone=True, seed=1).fit(train)
    stochastic = CIBHash(**SMALL, frozen_backbone=True, seed=1, stochastic=True).fit(train)
    again = CIBHash(**SMALL, frozen_backbone=True, seed=1, stochastic=True).fit(train)
    assert deterministic.history_ != stochastic.history_
    np.testing.assert_array_equal(stochastic.encode(train).unpack(), again.encode(train).unpack())


def test_paper_preset_trains_80_epochs_at_16_bits_and_bad_settings_are_named():
    split = image_split(32)
    assert CIBHash(n_bits=16)._resolve_settings(split)["epochs"] == 80
    assert CIBHash(n_bits=64)._resolve_settings(split)["epochs"] == 60
    for bad, name in [({"temperature": 0}, "temperature"), ({"feature_dropout": 1.0}, "feature_dropout"),
                      ({"beta": -1.0}, "beta"), ({"hidden_width": 0}, "hidden_width")]:  # fmt: skip
        with pytest.raises(hb.InvalidInputError, match=name):
            CIBHash(**{**SMALL, **bad}).fit(split)
