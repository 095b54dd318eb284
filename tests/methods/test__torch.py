"""The training loop every torch method shares (``TorchHasher``), on a minimal method."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import hashbench as hb
from hashbench.methods import _torch
from hashbench.methods._torch import TorchHasher, Update
from tests.methods.feature_deep_checks import feature_split


class Linear(TorchHasher):
    """A tanh code layer pulled towards +-1; ``poison_at`` turns its loss NaN from that epoch on.
    (No ``name``: an unregistered class, so the registry-wide tests never see it.)"""

    presets = {"paper": {"epochs": 4, "batch_size": 32}, "quick": {"epochs": 2, "batch_size": 64}}

    def __init__(
        self, n_bits=8, *, seed=0, device="cpu", preset="paper", epochs=None, batch_size=None, lr=1e-2, poison_at=0
    ):
        super().__init__(n_bits, seed=seed, device=device)
        self.preset, self.epochs, self.batch_size, self.lr, self.poison_at = preset, epochs, batch_size, lr, poison_at

    def _build(self, train):
        self.layer_ = torch.nn.Linear(train.features.shape[1], self.n_bits)
        self.networks_ = {"layer": self.layer_}
        self.batches_ = []

    def _loss_terms(self, rows):
        self.batches_.append(len(rows))
        codes = torch.tanh(self.layer_(self._train_tensor("features")[rows]))
        poison = float("nan") if self.poison_at and len(self.history_) + 1 >= self.poison_at else 0.0
        return {"quantisation": (codes.abs() - 1).pow(2).mean(), "balance": codes.mean(dim=0).pow(2).sum() + poison}

    def _encode(self, split):
        with torch.no_grad():
            return self.layer_(self._tensor(split.features)).numpy()


def test_presets_fill_the_settings_and_explicit_arguments_win():
    train = feature_split()
    assert Linear().fit(train).settings_ == {**Linear().get_params(), "epochs": 4, "batch_size": 32}
    quick = Linear(preset="quick", epochs=3).fit(train)
    assert (quick.settings_["epochs"], quick.settings_["batch_size"]) == (3, 64)
    assert len(quick.history_) == 3 and quick.batches_ == [64, 56] * 3  # 120 rows: a last batch of 56 is kept
    with pytest.raises(hb.InvalidInputError, match=r"unknown preset 'paperr'. Did you mean 'paper'"):
        Linear(preset="paperr").fit(train)
    for bad in ({"epochs": 0}, {"batch_size": 2.5}, {"lr": -1.0}):
        with pytest.raises(hb.InvalidInputError, match=next(iter(bad))):
            Linear(**bad).fit(train)


def test_a_nan_term_stops_training_naming_epoch_and_term_before_any_step_uses_it():
    method = Linear(poison_at=2)
    with pytest.raises(hb.TrainingDivergedError, match="'balance' became nan at epoch 2"):
        method.fit(feature_split())
    assert len(method.history_) == 1 and np.isfinite(method.layer_.weight.detach().numpy()).all()


def test_callback_gets_increasing_epochs_and_a_model_that_encodes():
    train, seen = feature_split(), []
    method = Linear(epochs=3)
    method.fit(
        train, callback=lambda epoch, model: seen.append((epoch, model.encode(train).n_bits, model.layer_.training))
    )
    assert seen == [(1, 8, False), (2, 8, False), (3, 8, False)]  # encoding sees eval mode
    assert [h["epoch"] for h in method.history_] == [1, 2, 3]


def test_the_fitted_model_keeps_no_training_data_even_after_an_error():
    train = feature_split()
    fitted = Linear().fit(train)
    assert not hasattr(fitted, "_train") and not hasattr(fitted, "_train_tensors")
    failed = Linear(poison_at=1)
    with pytest.raises(hb.TrainingDivergedError):
        failed.fit(train)
    assert not hasattr(failed, "_train")


def test_subnormal_floats_flush_to_zero_while_fitting_only(monkeypatch):
    monkeypatch.setattr(_torch, "_subnormals_flushed_in_process", False)  # as in a library user's process
    torch.set_flush_denormal(False)  # an earlier test may have run the command line in this process
    subnormal = torch.tensor([1e-40])  # below float32's smallest normal number, about 1.2e-38
    seen = []

    class Probe(Linear):
        def _loss_terms(self, rows):
            seen.append(float(subnormal * 1.0))
            return super()._loss_terms(rows)

    Probe(epochs=1).fit(feature_split())
    assert seen and set(seen) == {0.0}
    assert float(subnormal * 1.0) > 0  # the flag is off again after fit
    with pytest.raises(hb.TrainingDivergedError):
        Linear(poison_at=1).fit(feature_split())
    assert float(subnormal * 1.0) > 0  # and after a failed fit


def test_same_seed_same_weights_and_every_random_draw_from_the_seed():
    train = feature_split()
    first, again, other = Linear(seed=1).fit(train), Linear(seed=1).fit(train), Linear(seed=2).fit(train)
    assert torch.equal(first.layer_.weight, again.layer_.weight)
    assert not torch.equal(first.layer_.weight, other.layer_.weight)
    assert torch.equal(first.generator_.get_state(), again.generator_.get_state())


def test_updates_step_on_their_own_objectives():
    class TwoOptimisers(Linear):
        def _updates(self):
            return [Update(torch.optim.SGD(self.layer_.parameters(), lr=0.0), lambda terms: terms["balance"])]

    method = TwoOptimisers(epochs=2).fit(feature_split())
    assert method.updates_[0].optimiser.state_dict()["param_groups"][0]["lr"] == 0.0
    start = TwoOptimisers(epochs=1)
    start.fit(feature_split())
    torch.testing.assert_close(method.layer_.weight, start.layer_.weight)  # lr 0: nothing moved


def test_the_command_line_flushes_subnormals_in_every_torch_thread():
    script = (
        "import torch, hashbench.cli as cli; cli.main(['list']); torch.set_num_threads(2); "
        "x = torch.full((1 << 16,), 1e-40); print(int((x * 1.0).count_nonzero()))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "0"  # flushed in both threads' halves of the product
