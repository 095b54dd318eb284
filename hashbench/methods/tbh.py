"""TBH: auto-encoding twin-bottleneck hashing.

Yuming Shen, Jie Qin, Jiaxin Chen, Mengyang Yu, Li Liu, Fan Zhu, Fumin Shen, Ling Shao.
"Auto-Encoding Twin-Bottleneck Hashing". CVPR 2020.

An auto-encoder on features with two bottlenecks. The encoder (``d -> middle_width``, ReLU) feeds

- a binary bottleneck ``b`` of ``n_bits`` stochastic binary neurons: ``b = [sigmoid(logit) > u]``
  with ``u ~ U(0, 1)`` while training and ``u = 0.5`` when encoding; the gradient passes straight
  through the threshold and the sigmoid (d b / d logit = p (1 - p));
- a continuous bottleneck ``z`` (``continuous_width`` units, sigmoid).

In each mini-batch the codes build the adjacency ``A_ij = (1 - hamming(b_i, b_j) / n_bits) ** 1.4``
(self-connected, differentiable through ``b``); one graph-convolution layer decodes the continuous
bottleneck, ``z' = sigmoid(D^-1/2 A D^-1/2 z W)``, and a decoder (``middle_width``, ReLU, then
``d``) reconstructs the features. Two discriminators regularise the bottlenecks adversarially: one
tells the codes from a Bernoulli(0.5) prior, the other tells ``z'`` from a uniform prior on
[0, 1]. Codes: ``sign(logit)`` in eval mode.

Losses, at the scale of the authors' release (ymcidence/TBH, ``train/tbh_train.py``; the paper
could not be checked here):

- ``reconstruction``: half the squared error summed over the batch and the features
  (``tf.nn.l2_loss``), so it grows with batch size and feature width;
- ``critic``: each discriminator's binary cross-entropy, mean over the batch, prior samples labelled
  1 and the encoder's outputs 0; the discriminators minimise the sum of both;
- the encoder/decoder minimise ``reconstruction - adversarial_weight * (critic terms)`` (the
  release's minimax form, weight 1): only the encoder-output halves of the critic terms depend on
  it, and they are reported as ``code_adversarial`` and ``continuous_adversarial`` (each
  ``-BCE(D(output), 0)``, i.e. ``mean log(1 - D(output))``). Against a reconstruction summed over
  400 x 4,096 values, the adversarial terms weigh little: the codes are shaped mostly by what the
  graph lets the decoder reconstruct.

Schedule: ``steps`` optimiser steps on mini-batches of ``batch_size`` drawn from an endless stream
of shuffled passes (every batch full, as the release's repeated ``tf.data`` stream), each step one
encoder/decoder update and one discriminator update from the same forward pass. For ``history_``
and the training callback an epoch is one pass's worth of steps (``ceil(n / batch_size)``), the
last epoch taking what is left.

Free choices and defaults (hyper-parameters of :class:`TBH`):

- Presets: ``"paper"`` = the release's 100,000 steps of 400 at ``lr=1e-4`` (about 800 passes over
  its 50,000 CIFAR-10 items; 8,000 passes over mosaic's 5,000) with its widths (below); ``"quick"``
  = 2,000 steps of 200 at ``lr=7e-4`` with half the widths (512 / 256). Both are our choice: the
  shortest schedule tried whose codes pass the conformance check's 20% distinct codes, and widths
  that halve its cost (a step is matrix products near the CPU's peak; on the check's data, 16 bits,
  half the release's widths gave as many distinct codes as the full widths and nearly their MAP@100,
  a quarter of them fewer distinct codes). TBH learns slowly and its early codes are cluster-like;
  on the conformance data (16 bits) the share of distinct codes grows with the steps, faster at a
  higher learning rate: at 3e-4 it passed 20% only after about 2,700 steps of 200 (0.22 after
  3,000, MAP@100 0.90; fewer items per step or a quarter of the widths stayed below 20%), at 7e-4
  after about 1,800 (0.22 after 2,000, MAP@100 0.93). On mosaic (32 bits, seeds 0 and 1) 2,000
  steps at 7e-4 scored MAP@1000 0.734 and 0.735 against 0.733 and 0.717 for 3,000 at 3e-4, with as
  many distinct codes, and on the fc7-like check set left 15% distinct codes against 13%.
  Thresholds at 0.5 in training, centred and scaled inputs, a hidden
  discriminator layer: none moved the share of distinct codes by more than a few points. On mosaic's
  fc7 the quick preset lands below LSH, and the release's widths gain a little in twice the time. Along
  the paper preset on mosaic (32 bits, seed 0) MAP@1000 rose from 0.70 after 1,000 steps to 0.76
  after 5,000 and 0.78 after 10,000, then stayed within 0.01 of that to the end (0.785 after
  100,000, a little below LSH's 0.793), its share of distinct codes growing from 9% to 20%; the
  quick preset gives 0.721 there (0.709 at 3,000 steps of 3e-4). On the
  globally pooled mosaic features (one component shared by every item) the quick codes stay
  cluster-like (far below LSH at 32 and 64 bits, few distinct codes, a typical bit set for a quarter
  or three quarters of the items): the raw features, as the release reads them, are dominated by
  that shared component, which ``centre=True`` removes (below).
- ``lr=None``: the preset's; Adam with Keras's defaults otherwise (epsilon 1e-7), for
  encoder/decoder and discriminators alike.
- Layers start as Keras's ``Dense`` (the release's framework): Glorot-uniform weights, zero biases.
- ``middle_width``, ``continuous_width``: the preset's; 1,024 and 512 at the paper preset, the
  release's sizes for 4096-d features, kept as they are for other feature widths.
- ``discriminator_width=None``: logistic discriminators (one linear layer, as the release);
  an integer adds a hidden ReLU layer of that width.
- ``stochastic_neurons=True``: thresholds drawn from U(0, 1) while training (stochastic neurons);
  False thresholds at 0.5 in training too (as the release, whose U(0, 1) draw is commented out).
- ``adjacency_power=1.4``; ``adversarial_weight=1.0`` (release). A heavier adversary breaks the
  minimax: at weights 1e3 and 1e5 (mosaic, quick, 32 bits) every bit ends constant.
- ``centre=False``: features are used as given, as the release's fc7 (no centring or scaling).
  ``True`` subtracts the training mean (stored as ``input_shift_``) from every input, in
  training and encoding, and the reconstruction target is the centred feature. It is what
  features dominated by one shared component need: on the pooled mosaic features at the quick
  preset, 32 and 64 bits, centred inputs brought MAP@1000 close to LSH's and many more distinct
  codes, against far below LSH as given; on fc7 at 32 bits centring moved MAP@1000 by about as
  much as another seed does. Scaling the centred inputs to unit RMS as well moved neither
  noticeably.
- The decoder ends in a ReLU, as the release's, when every input is non-negative (CNN
  activations after a ReLU, uncentred); otherwise it ends linear, since a ReLU cannot reproduce
  negative targets.

Measured MAP, code health and seconds, ``centre=True`` beside the default: ``docs/methods/tbh.md``.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from hashbench._validation import check_positive_int
from hashbench.datasets.base import Split
from hashbench.methods._cnn import standardisation
from hashbench.methods._torch import TorchHasher, Update, adam, encode_in_batches, endless_batches

#: the release's optimiser is Keras's Adam, whose epsilon default differs from torch's 1e-8
KERAS_ADAM_EPSILON = 1e-7


def stochastic_binary(logits: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """0/1 codes ``[sigmoid(logits) > thresholds]`` whose gradient is that of ``sigmoid(logits)``."""
    prob = torch.sigmoid(logits)
    hard = (prob > thresholds).to(prob.dtype)
    return prob + (hard - prob).detach()


def hamming_adjacency(bits: torch.Tensor, power: float) -> torch.Tensor:
    """``(1 - hamming / n_bits) ** power`` between all rows of a 0/1 code matrix."""
    hamming = bits @ (1 - bits).T + (1 - bits) @ bits.T
    return (1 - hamming / bits.shape[1]).clamp(min=0) ** power


def symmetric_normalised(adjacency: torch.Tensor) -> torch.Tensor:
    inv_sqrt_degree = adjacency.sum(dim=1).clamp(min=1e-8).rsqrt()
    return inv_sqrt_degree[:, None] * adjacency * inv_sqrt_degree[None, :]


def discriminator(width_in: int, hidden: int | None) -> nn.Module:
    """A logistic discriminator (as the release) or, with ``hidden`` units, one ReLU layer first (as the paper)."""
    if hidden is None:
        return nn.Linear(width_in, 1)
    return nn.Sequential(nn.Linear(width_in, hidden), nn.ReLU(), nn.Linear(hidden, 1))


class TwinBottleneckAutoEncoder(nn.Module):
    def __init__(
        self, n_features: int, n_bits: int, middle_width: int, continuous_width: int, power: float, relu_output: bool
    ):
        super().__init__()
        self.power = power
        self.encoder = nn.Sequential(nn.Linear(n_features, middle_width), nn.ReLU())
        self.binary_head = nn.Linear(middle_width, n_bits)
        self.continuous_head = nn.Sequential(nn.Linear(middle_width, continuous_width), nn.Sigmoid())
        self.graph_convolution = nn.Linear(continuous_width, continuous_width)
        self.decoder = nn.Sequential(
            nn.Linear(continuous_width, middle_width),
            nn.ReLU(),
            nn.Linear(middle_width, n_features),
            nn.ReLU() if relu_output else nn.Identity(),
        )

    def code_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.binary_head(self.encoder(x))

    def forward(self, x: torch.Tensor, thresholds: torch.Tensor):
        """Codes (0/1), the graph-decoded continuous bottleneck and the reconstruction."""
        hidden = self.encoder(x)
        bits = stochastic_binary(self.binary_head(hidden), thresholds)
        graph = symmetric_normalised(hamming_adjacency(bits, self.power))
        decoded = torch.sigmoid(graph @ self.graph_convolution(self.continuous_head(hidden)))
        return bits, decoded, self.decoder(decoded)


def keras_initialised(network: nn.Module) -> None:
    """Every linear layer started as Keras's ``Dense`` starts (the release's): Glorot-uniform
    weights, zero biases."""
    for layer in network.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


def looks_like_prior(logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def looks_like_encoder(logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


class TBH(TorchHasher):
    """Twin-bottleneck hashing (Shen et al., CVPR 2020); see the module docstring."""

    name = "tbh"
    input_kind = "features"
    uses_aux = False
    citation = "Shen, Qin, Chen, Yu, Liu, Zhu, Shen, Shao. Auto-Encoding Twin-Bottleneck Hashing. CVPR 2020"
    paper_preset_affordable = False  # 100,000 steps of 400 whatever the training set's size
    presets = {
        "paper": {"steps": 100_000, "batch_size": 400, "lr": 1e-4, "middle_width": 1024, "continuous_width": 512},
        "quick": {"steps": 2000, "batch_size": 200, "lr": 7e-4, "middle_width": 512, "continuous_width": 256},
    }

    def __init__(
        self,
        n_bits: int = 32,
        *,
        seed: int = 0,
        device: str = "cpu",
        preset: str = "paper",
        steps: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        middle_width: int | None = None,
        continuous_width: int | None = None,
        discriminator_width: int | None = None,
        adjacency_power: float = 1.4,
        adversarial_weight: float = 1.0,
        stochastic_neurons: bool = True,
        centre: bool = False,
    ):
        super().__init__(n_bits, seed=seed, device=device)
        self.preset = preset
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.middle_width = middle_width
        self.continuous_width = continuous_width
        self.discriminator_width = discriminator_width
        self.adjacency_power = adjacency_power
        self.adversarial_weight = adversarial_weight
        self.stochastic_neurons = stochastic_neurons
        self.centre = centre

    def _resolve_settings(self, train: Split) -> dict:
        settings = super()._resolve_settings(train)
        for key in ("steps", "middle_width", "continuous_width"):
            check_positive_int(settings[key], key)
        return settings

    def _build(self, train: Split) -> None:
        self.input_shift_ = standardisation(self._train_tensor("features"), centre=self.centre)[0].to(self.device_)
        self.autoencoder_ = TwinBottleneckAutoEncoder(
            train.features.shape[1], self.n_bits, self.settings_["middle_width"], self.settings_["continuous_width"],
            self.adjacency_power,
            relu_output=bool((train.features >= 0).all()) and not self.centre,
        ).to(self.device_)  # fmt: skip
        self.code_discriminator_ = discriminator(self.n_bits, self.discriminator_width).to(self.device_)
        self.continuous_discriminator_ = discriminator(self.settings_["continuous_width"], self.discriminator_width).to(
            self.device_
        )
        self.networks_ = {
            "autoencoder": self.autoencoder_,
            "code_discriminator": self.code_discriminator_,
            "continuous_discriminator": self.continuous_discriminator_,
        }
        for network in self.networks_.values():
            keras_initialised(network)

    def _steps_per_epoch(self) -> int:
        return -(-len(self._train) // self.settings_["batch_size"])

    def _n_epochs(self) -> int:
        return -(-self.settings_["steps"] // self._steps_per_epoch())

    def _epoch(self, epoch: int) -> dict[str, torch.Tensor]:
        """The next ``_steps_per_epoch()`` steps of the stream (fewer in the last epoch)."""
        if epoch == 1:
            self._train_tensors["batches"] = endless_batches(
                len(self._train), self.settings_["batch_size"], self.generator_
            )
        per_epoch = self._steps_per_epoch()
        count = min(per_epoch, self.settings_["steps"] - (epoch - 1) * per_epoch)
        return self._steps(itertools.islice(self._train_tensors["batches"], count), epoch)

    def _updates(self) -> list[Update]:
        """Per batch one encoder/decoder step, then one discriminator step."""
        settings = {"lr": self.settings_["lr"], "eps": KERAS_ADAM_EPSILON}
        discriminators = [self.code_discriminator_, self.continuous_discriminator_]
        return [
            Update(adam(self.autoencoder_.parameters(), **settings), self._autoencoder_loss),
            Update(
                adam([p for d in discriminators for p in d.parameters()], **settings),
                lambda terms: terms["code_critic"] + terms["continuous_critic"],
            ),
        ]

    def _autoencoder_loss(self, terms: dict) -> torch.Tensor:
        adversarial = terms["code_adversarial"] + terms["continuous_adversarial"]
        return terms["reconstruction"] + self.adversarial_weight * adversarial

    def _loss_terms(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder/decoder terms (reconstruction, adversarial) and discriminator (critic) terms, at
        the release's reductions (module docstring). The critic terms see detached encoder outputs,
        so each term trains only its own side."""
        x = self._train_tensor("features")[rows.to(self.device_)] - self.input_shift_
        n = len(x)
        thresholds = (
            self._uniform((n, self.n_bits))
            if self.stochastic_neurons
            else torch.full((n, self.n_bits), 0.5, device=x.device)
        )
        bits, decoded, reconstruction = self.autoencoder_(x, thresholds)
        code_prior = (self._uniform((n, self.n_bits)) < 0.5).float()
        continuous_prior = self._uniform((n, self.settings_["continuous_width"]))
        judge_codes, judge_continuous = self.code_discriminator_, self.continuous_discriminator_
        return {
            "reconstruction": 0.5 * (reconstruction - x).pow(2).sum(),
            "code_adversarial": -looks_like_encoder(judge_codes(bits)),
            "continuous_adversarial": -looks_like_encoder(judge_continuous(decoded)),
            "code_critic": looks_like_prior(judge_codes(code_prior)) + looks_like_encoder(judge_codes(bits.detach())),
            "continuous_critic": looks_like_prior(judge_continuous(continuous_prior))
            + looks_like_encoder(judge_continuous(decoded.detach())),
        }

    def _encode(self, split: Split):
        self.autoencoder_.eval()
        features = split.features
        # sigmoid(logit) > 0.5 exactly when logit > 0: the logits are the real-valued codes
        return encode_in_batches(
            lambda rows: self.autoencoder_.code_logits(self._tensor(features[rows]) - self.input_shift_), len(features)
        )
