"""UH-BDNN: unsupervised hashing with a binary deep neural network.

Thanh-Toan Do, Anh-Dzung Doan, Ngai-Man Cheung. "Learning to Hash with Binary Deep Neural
Network". ECCV 2016.

A network ``d -> h2 -> h3 -> n_bits -> d`` (sigmoid on the hidden layers, identity on the code
layer and on the output layer) whose code layer ``H`` is pushed towards binary codes ``B``. The
objective over the ``m`` training items is

    1/(2m) ||X - X_hat||^2 + lambda1/2 sum_l ||W_l||^2 + lambda2/(2m) ||H - B||^2
    + lambda3/2 ||H^T H / m - I||^2 + lambda4/(2m) ||H^T 1||^2

(reconstruction, weight decay, binary, independence, balance), minimised by alternating the
network (L-BFGS on the full training set, ``B`` fixed) and ``B = sign(H)`` (network fixed), with
``B`` initialised by ITQ. Codes: ``sign(H)``.

Free choices and defaults (hyper-parameters of :class:`UHBDNN`):

- ``hidden_sizes=None``: the paper's two hidden layers for its code lengths (8, 16, 24, 32 bits:
  (90, 20), (90, 30), (100, 40), (120, 50)); for other lengths ``h3 = round(1.25 n_bits + 10)``,
  ``h2 = h3 + 70`` (which reproduces the paper's 8- and 32-bit sizes), e.g. (160, 90) at 64 bits.
- ``lambdas=(1e-5, 5e-2, 1e-2, 1e-6)``: the paper's lambda1..lambda4.
- Features are centred by the training mean (ITQ centres too); the network reconstructs the
  centred features. ITQ is hashbench's registered ``itq`` with the same ``seed``.
- ``lbfgs_iterations``: L-BFGS iterations per network update (the paper does not state it);
  L-BFGS with strong-Wolfe line search, learning rate 1, history 10 (torch defaults otherwise).
- Presets: ``"paper"`` = 10 alternations (the paper's T) of 50 L-BFGS iterations; ``"quick"`` =
  5 alternations of 20. One alternation is one epoch (``epochs``), for the training callback and
  ``history_``; ``epochs`` and ``lbfgs_iterations`` given explicitly override the preset.
"""

from __future__ import annotations

import torch
from torch import nn

from hashbench._validation import check_positive_int
from hashbench.datasets.base import Split
from hashbench.errors import InvalidInputError
from hashbench.methods._torch import TorchHasher, check_finite_terms, encode_in_batches
from hashbench.registry import create_method

PAPER_HIDDEN_SIZES = {8: (90, 20), 16: (90, 30), 24: (100, 40), 32: (120, 50)}


def default_hidden_sizes(n_bits: int) -> tuple[int, int]:
    if n_bits in PAPER_HIDDEN_SIZES:
        return PAPER_HIDDEN_SIZES[n_bits]
    last = round(1.25 * n_bits + 10)
    return last + 70, last


class BinaryDeepNetwork(nn.Module):
    def __init__(self, n_features: int, hidden_sizes: tuple[int, ...], n_bits: int):
        super().__init__()
        widths = [n_features, *hidden_sizes]
        hidden = [layer for a, b in zip(widths, widths[1:]) for layer in (nn.Linear(a, b), nn.Sigmoid())]
        self.encoder = nn.Sequential(*hidden, nn.Linear(widths[-1], n_bits))
        self.decoder = nn.Linear(n_bits, n_features)

    def forward(self, x: torch.Tensor):
        codes = self.encoder(x)
        return codes, self.decoder(codes)


class UHBDNN(TorchHasher):
    """Unsupervised hashing with a binary deep neural network (Do et al., ECCV 2016); see the module docstring."""

    name = "uh-bdnn"
    input_kind = "features"
    uses_aux = False
    citation = "Do, Doan, Cheung. Learning to Hash with Binary Deep Neural Network. ECCV 2016"
    max_bits_per_feature = 1  # B starts from ITQ, whose PCA gives at most d directions
    presets = {
        "paper": {"epochs": 10, "lbfgs_iterations": 50},
        "quick": {"epochs": 5, "lbfgs_iterations": 20},
    }

    def __init__(
        self,
        n_bits: int = 32,
        *,
        seed: int = 0,
        device: str = "cpu",
        preset: str = "paper",
        epochs: int | None = None,
        lbfgs_iterations: int | None = None,
        hidden_sizes: tuple[int, ...] | None = None,
        lambdas: tuple[float, float, float, float] = (1e-5, 5e-2, 1e-2, 1e-6),
    ):
        super().__init__(n_bits, seed=seed, device=device)
        self.preset = preset
        self.epochs = epochs
        self.lbfgs_iterations = lbfgs_iterations
        self.hidden_sizes = hidden_sizes
        self.lambdas = lambdas

    def _resolve_settings(self, train: Split) -> dict:
        settings = super()._resolve_settings(train)
        check_positive_int(settings["lbfgs_iterations"], "lbfgs_iterations")
        if len(self.lambdas) != 4:
            raise InvalidInputError(f"lambdas must hold 4 weights (lambda1..lambda4), got {self.lambdas!r}")
        return settings

    def _build(self, train: Split) -> None:
        itq = create_method("itq", n_bits=self.n_bits, seed=self.seed).fit(train.features)
        self.mean_ = train.features.mean(axis=0)
        self.centred_ = self._tensor(train.features - self.mean_)
        self.targets_ = self._tensor(itq.encode(train.features).to_signs())
        hidden = default_hidden_sizes(self.n_bits) if self.hidden_sizes is None else tuple(self.hidden_sizes)
        self.network_ = BinaryDeepNetwork(self.centred_.shape[1], hidden, self.n_bits).to(self.device_)
        self.networks_ = {"network": self.network_}

    def _updates(self) -> list:
        return []  # each alternation runs its own L-BFGS (``_epoch``)

    def _epoch(self, epoch: int) -> dict:
        """One alternation: L-BFGS on the network with B fixed, then B = sign(H)."""
        optimiser = torch.optim.LBFGS(
            self.network_.parameters(), max_iter=self.settings_["lbfgs_iterations"], line_search_fn="strong_wolfe"
        )
        everything = torch.arange(len(self.centred_))

        def objective():
            optimiser.zero_grad(set_to_none=True)
            terms = self._loss_terms(everything)
            check_finite_terms(terms, epoch, self.method_name)
            loss = sum(terms.values())
            loss.backward()
            return loss

        optimiser.step(objective)
        with torch.no_grad():
            terms = self._loss_terms(everything)
            self.targets_.copy_(torch.where(self.network_.encoder(self.centred_) >= 0, 1.0, -1.0))
        return terms

    def _loss_terms(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """The objective's terms, weights applied, for the network on the training items ``rows``
        with their current codes B."""
        weight_decay, binary, independence, balance = self.lambdas
        x, targets = self.centred_[rows], self.targets_[rows]
        m = len(x)
        codes, reconstruction = self.network_(x)
        identity = torch.eye(self.n_bits, device=x.device)
        weights = [p for name, p in self.network_.named_parameters() if name.endswith("weight")]
        return {
            "reconstruction": (reconstruction - x).pow(2).sum() / (2 * m),
            "weight_decay": weight_decay / 2 * sum(w.pow(2).sum() for w in weights),
            "binary": binary / (2 * m) * (codes - targets).pow(2).sum(),
            "independence": independence / 2 * (codes.T @ codes / m - identity).pow(2).sum(),
            "balance": balance / (2 * m) * codes.sum(dim=0).pow(2).sum(),
        }

    def _encode(self, split: Split):
        self.network_.eval()
        centred = self._tensor(split.features - self.mean_)
        return encode_in_batches(lambda rows: self.network_.encoder(centred[rows]), len(centred))
