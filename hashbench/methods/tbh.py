"""TBH: auto-encoding twin-bottleneck hashing.

Yuming Shen, Jie Qin, Jiaxin Chen, Mengyang Yu, Li Liu, Fan Zhu, Fumin Shen, Ling Shao.
"Auto-Encoding Twin-Bottleneck Hashing". CVPR 2020.

An auto-encoder on features with two bottlenecks. The encoder (``d -> middle_width``, ReLU) feeds

- a binary bottleneck ``b`` of ``n_bits`` stochastic binary neurons: ``b = [sigmoid(logit) > u]``
  with ``u ~ U(0, 1)`` while training and ``u = 0.5`` when encoding; the gradient passes straight
  through the threshold and the sigmoid (d b / d logit = p (1 - p));
- a continuous bottleneck ``z`` (``continuous_width`` units, linear).

In each mini-batch the codes build the adjacency ``A_ij = (1 - hamming(b_i, b_j) / n_bits) ** 1.4``
(self-connected, differentiable through ``b``); one graph-convolution layer decodes the continuous
bottleneck, ``z' = sigmoid(D^-1/2 A D^-1/2 z W)``, and a decoder (``middle_width``, ReLU, then
linear to ``d``) reconstructs the features. Two discriminators (``discriminator_width`` hidden
units) regularise the bottlenecks adversarially: one tells the codes from a Bernoulli(0.5)
prior, the other tells ``z'`` from a uniform prior on [0, 1]. Codes: ``sign(logit)`` in eval mode.

Free choices and defaults (hyper-parameters of :class:`TBH`):

- ``middle_width=1024``, ``continuous_width=512``: the paper's sizes for 4096-d features, kept as
  they are for other widths.
- ``discriminator_width=None``: logistic discriminators (one linear layer, as the release);
  an integer adds a hidden ReLU layer of that width (the paper's description).
- ``stochastic_neurons=True``: thresholds drawn from U(0, 1) while training (the paper's
  stochastic neurons); False thresholds at 0.5 in training too (as the release).
- ``adjacency_power=1.4``: the exponent of the paper's adjacency.
- ``adversarial_weight=1.0``: weight of the encoder's adversarial terms against the
  reconstruction term. The encoder uses the non-saturating GAN loss (targets "prior" for its own
  outputs) rather than the minimax form.
- The reconstruction term is half the squared error summed over features (``tf.nn.l2_loss``, as
  the release), averaged over the batch. Features are used as given (no scaling).
- The continuous discriminator sees the graph-convolved ``z'`` (its sigmoid output lies where the
  uniform prior does); the encoder's continuous bottleneck itself is linear.
- ``lr=1e-4`` (Adam, for encoder/decoder and discriminators alike); per mini-batch one
  encoder/decoder step then one discriminator step.
- Presets: ``"paper"`` = 100 epochs of batches of 400 (the training length is our choice: the
  release counts steps, not epochs); ``"quick"`` = 20 epochs of 400. ``epochs`` and
  ``batch_size`` given explicitly override the preset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hashbench.datasets.base import Split
from hashbench.methods._torch import TorchHasher, Update, encode_in_batches



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
    def __init__(self, n_features: int, n_bits: int, middle_width: int, continuous_width: int, power: float):
        super().__init__()
        self.power = power
        self.encoder = nn.Sequential(nn.Linear(n_features, middle_width), nn.ReLU())
        self.binary_head = nn.Linear(middle_width, n_bits)
        self.continuous_head = nn.Linear(middle_width, continuous_width)
        self.graph_convolution = nn.Linear(continuous_width, continuous_width)
        self.decoder = nn.Sequential(
            nn.Linear(continuous_width, middle_width), nn.ReLU(), nn.Linear(middle_width, n_features)
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
    presets = {
        "paper": {"epochs": 100, "batch_size": 400},
        "quick": {"epochs": 20, "batch_size": 400},
    }

    def __init__(
        self,
        n_bits: int = 32,
        *,
        seed: int = 0,
        device: str = "cpu",
        preset: str = "paper",
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float = 1e-4,
        middle_width: int = 1024,
        continuous_width: int = 512,
        discriminator_width: int | None = None,
        adjacency_power: float = 1.4,
        adversarial_weight: float = 1.0,
        stochastic_neurons: bool = True,
    ):
        super().__init__(n_bits, seed=seed, device=device)
        self.preset = preset
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.middle_width = middle_width
        self.continuous_width = continuous_width
        self.discriminator_width = discriminator_width
        self.adjacency_power = adjacency_power
        self.adversarial_weight = adversarial_weight
        self.stochastic_neurons = stochastic_neurons

    def _build(self, train: Split) -> None:
        self.autoencoder_ = TwinBottleneckAutoEncoder(
            train.features.shape[1], self.n_bits, self.middle_width, self.continuous_width, self.adjacency_power
        ).to(self.device_)
        self.code_discriminator_ = discriminator(self.n_bits, self.discriminator_width).to(self.device_)
        self.continuous_discriminator_ = discriminator(self.continuous_width, self.discriminator_width).to(self.device_)
        self.networks_ = {
            "autoencoder": self.autoencoder_,
            "code_discriminator": self.code_discriminator_,
            "continuous_discriminator": self.continuous_discriminator_,
        }

    def _updates(self) -> list[Update]:
        """Per batch one encoder/decoder step, then one discriminator step."""
        lr = self.settings_["lr"]
        discriminators = [self.code_discriminator_, self.continuous_discriminator_]
        return [
            Update(torch.optim.Adam(self.autoencoder_.parameters(), lr=lr), self._autoencoder_loss),
            Update(
                torch.optim.Adam([p for d in discriminators for p in d.parameters()], lr=lr),
                lambda terms: terms["code_critic"] + terms["continuous_critic"],
            ),
        ]

    def _autoencoder_loss(self, terms: dict) -> torch.Tensor:
        adversarial = terms["code_adversarial"] + terms["continuous_adversarial"]
        return terms["reconstruction"] + self.adversarial_weight * adversarial

    def _loss_terms(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder/decoder terms (reconstruction, adversarial) and discriminator (critic) terms.
        The critic terms see detached encoder outputs, so each term trains only its own side."""
        x = self._train_tensor("features")[rows.to(self.device_)]
        n = len(x)
        thresholds = (
            self._uniform((n, self.n_bits))
            if self.stochastic_neurons
            else torch.full((n, self.n_bits), 0.5, device=x.device)
        )
        bits, decoded, reconstruction = self.autoencoder_(x, thresholds)
        code_prior = (self._uniform((n, self.n_bits)) < 0.5).float()
        continuous_prior = self._uniform((n, self.continuous_width))
        judge_codes, judge_continuous = self.code_discriminator_, self.continuous_discriminator_
        return {
            "reconstruction": 0.5 * (reconstruction - x).pow(2).sum(dim=1).mean(),
            "code_adversarial": looks_like_prior(judge_codes(bits)),
            "continuous_adversarial": looks_like_prior(judge_continuous(decoded)),
            "code_critic": looks_like_prior(judge_codes(code_prior)) + looks_like_encoder(judge_codes(bits.detach())),
            "continuous_critic": looks_like_prior(judge_continuous(continuous_prior))
            + looks_like_encoder(judge_continuous(decoded.detach())),
        }

    def _encode(self, split: Split):
        self.autoencoder_.eval()
        features = self._tensor(split.features)
        # sigmoid(logit) > 0.5 exactly when logit > 0: the logits are the real-valued codes
        return encode_in_batches(lambda rows: self.autoencoder_.code_logits(features[rows]), len(features))
