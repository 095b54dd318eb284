"""UH-BDNN: unsupervised hashing with a binary deep neural network.

Thanh-Toan Do, Anh-Dzung Doan, Ngai-Man Cheung. "Learning to Hash with Binary Deep Neural
Network". ECCV 2016.

A network ``d -> h2 -> h3 -> n_bits`` (sigmoid on the hidden layers, identity on the code layer)
gives the real-valued codes ``H``; a linear layer ``n_bits -> d`` reconstructs the features from the
binary codes ``B``. The objective over the ``m`` training items is

    J = 1/(2m) ||X - W4 B - b4||^2 + lambda1/2 sum_l ||W_l||^2 + lambda2/(2m) ||H - B||^2
        + lambda3/2 ||H^T H / m - I||^2 + lambda4/(2m) ||H^T 1||^2

(reconstruction, weight decay over all four weight matrices, binary, independence, balance), with
``B`` in {-1, +1}^(m x n_bits). It is minimised by alternating two steps, ``B`` initialised by ITQ:

- network step (``B`` fixed): a fresh L-BFGS run (``lbfgs_iterations``; the first, which fits the
  network to the ITQ codes, ``initial_lbfgs_iterations``; strong-Wolfe line search, torch defaults
  otherwise) on the full training set; the new weights are kept only if ``J`` fell;
- ``B`` step (network fixed): the terms with ``B`` separate per item, and per bit ``b_k`` the
  objective is minimised exactly by ``b_k = sign(w_k^T r_k + lambda2 h_k)`` (``w_k`` the decoder's
  column ``k``, ``r_k`` the item's residual without bit ``k``): discrete cyclic coordinate descent
  over the bits, starting from the current ``B`` and flipping a bit only where that lowers ``J``,
  until a sweep changes nothing (at most ``B_SWEEPS`` sweeps).

Both steps keep ``J`` from rising, so the objective after every alternation is at most its value at
the ITQ codes with the network fitted to them (the first network step); ``objective_`` holds ``J``
after each step and ``codes_`` the final ``B``. One alternation is one epoch (``history_``, training callback). Codes:
``[H >= 0]`` (the release's test codes).

Free choices and defaults (hyper-parameters of :class:`UHBDNN`):

- Features are rescaled to [0, 1] as the authors' release does (``utils/rescale_0_1.m``): minus
  each dimension's training minimum, divided by one scalar, the largest per-dimension range; the
  lambdas act on that scale. ITQ (hashbench's registered ``itq``, same ``seed``) runs on the
  rescaled features (it centres them itself).
- ``hidden_sizes=None``: the paper's two hidden layers for its code lengths (8, 16, 24, 32 bits:
  (90, 20), (90, 30), (100, 40), (120, 50)); for other lengths ``h3 = round(1.25 n_bits + 10)``,
  ``h2 = h3 + 70`` (which reproduces the paper's 8- and 32-bit sizes), e.g. (160, 90) at 64 bits.
- ``lambdas=(1e-5, 5e-2, 1e-2, 1e-6)``: lambda1..lambda4 (the release's ``runHash.m`` has
  lambda4 = 5e-7).
- Layers start as the release's (``learnDeepNN.m``): the leading eigenvectors of each layer
  input's second-moment matrix, zero biases, and the decoder at the first columns of the identity
  (see ``BinaryDeepNetwork.initialise_from``). On the [0, 1]-rescaled CNN features of mosaic
  (per-dimension standard deviation ~0.05) torch's default start left the code layer nearly
  constant after the quick preset (every bit constant); the eigenvector start follows the
  directions the features vary in.
- The release restarts each ``B`` step from all-zero codes (10 sweeps) and accepts what it reaches,
  and stops the alternations at the first fall of a validation MAP on Euclidean neighbours; here
  ``B`` steps are warm-started and monotone, and every alternation runs.
- Presets: ``"paper"`` = 10 alternations of 400 L-BFGS iterations (the paper states neither; the
  release runs at most 20 alternations of 400); ``"quick"`` = 5 alternations of 20. At both, the
  first network step runs ``initial_lbfgs_iterations=400``: the release's one 400-iteration fit
  to the ITQ codes before its alternations (``learn_all.m``). ``epochs``, ``lbfgs_iterations``
  and ``initial_lbfgs_iterations`` given explicitly override the preset. The iterations matter:
  on mosaic at 32 bits, MAP@1000 after 3 alternations of 400 iterations, or 10 of 50, was higher
  than after the quick preset's alternations of 20, and nearer ITQ's, as the network's code layer
  comes closer to the codes B.
- Why the first fit is long at every preset: on features whose variance lives in a few
  directions the eigenvector start leaves the code layer almost constant over the items (the
  rows beyond the input's effective rank see next to no variation, and each sigmoid layer
  shrinks what there is). On mosaic-pooled (globally pooled CNN features, effective rank 3.5) the
  code units' standard deviation over the training items started at 4e-4 (median over 64 bits),
  against B's +-1, and a first fit of 20 iterations did not leave that start: at the quick
  preset, 32 and 64 bits, many bits stayed constant, few codes were distinct and MAP@1000 fell far
  below ITQ's and LSH's. With the 400-iteration first fit no bit is constant, more codes are
  distinct, the final ``J`` is lower and MAP@1000 rises most of the way to theirs (the paper
  preset, unchanged, a little further).
  On the fc7 mosaic (quick preset) the long first fit removed the few constant bits and raised
  MAP@1000 at 32 and 64 bits, for a quick fit about twice as long at 32 bits.

Measured MAP, code health and seconds: ``docs/methods/uh-bdnn.md``.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

from hashbench._validation import check_positive_int
from hashbench.datasets.base import Split
from hashbench.errors import InvalidInputError
from hashbench.methods._torch import STATISTICS_ROWS, TorchHasher, check_finite_terms, encode_in_batches
from hashbench.registry import create_method

PAPER_HIDDEN_SIZES = {8: (90, 20), 16: (90, 30), 24: (100, 40), 32: (120, 50)}
#: most sweeps over the bits in one B step (the release's fixed count)
B_SWEEPS = 10


def default_hidden_sizes(n_bits: int) -> tuple[int, int]:
    if n_bits in PAPER_HIDDEN_SIZES:
        return PAPER_HIDDEN_SIZES[n_bits]
    last = round(1.25 * n_bits + 10)
    return last + 70, last


class BinaryDeepNetwork(nn.Module):
    """The encoder ``x -> H`` and the decoder ``B -> x`` of UH-BDNN."""

    def __init__(self, n_features: int, hidden_sizes: tuple[int, ...], n_bits: int):
        super().__init__()
        widths = [n_features, *hidden_sizes]
        hidden = [layer for a, b in itertools.pairwise(widths) for layer in (nn.Linear(a, b), nn.Sigmoid())]
        self.encoder = nn.Sequential(*hidden, nn.Linear(widths[-1], n_bits))
        self.decoder = nn.Linear(n_bits, n_features)

    @torch.no_grad()
    def initialise_from(self, inputs: torch.Tensor) -> None:
        """The release's start: each encoder layer's weight rows are the leading eigenvectors of
        its input's (uncentred) second-moment matrix on the training items, biases zero; the
        decoder maps bit k to feature k (the first columns of the identity), bias zero. A layer
        wider than its input keeps torch's initialisation in the rows beyond the input width."""
        dtype = self.decoder.weight.dtype
        layer_input = inputs.double()
        for module in self.encoder:
            if isinstance(module, nn.Linear):
                moments = layer_input.T @ layer_input / len(layer_input)
                _, vectors = torch.linalg.eigh(moments)
                leading = vectors.flip(1)[:, : module.out_features].T  # (k, d_in), largest eigenvalue first
                # the sign of an eigenvector is arbitrary: make its largest entry positive
                largest = leading.abs().argmax(dim=1)
                leading = leading * leading[torch.arange(len(leading)), largest].sign()[:, None]
                module.weight[: len(leading)] = leading.to(dtype)
                module.bias.zero_()
            layer_input = module(layer_input.to(dtype)).double()
        self.decoder.weight.copy_(torch.eye(*self.decoder.weight.shape))
        self.decoder.bias.zero_()


def coordinate_descent_codes(
    codes: torch.Tensor,
    residual: torch.Tensor,
    decoder_weight: torch.Tensor,
    real_codes: torch.Tensor,
    binary_weight: float,
) -> torch.Tensor:
    """The B step: minimise ``||r||^2 + lambda2 ||H - B||^2`` per item over ±1 codes by exact
    per-bit updates, from ``codes``. ``residual`` is ``X - W4 B - b4`` at ``codes`` (updated in
    place, as rank-one updates that allocate no m x d temporary), ``decoder_weight`` is W4 (d x r).
    A bit flips only where that lowers the objective."""
    codes = codes.clone()
    for _ in range(B_SWEEPS):
        flipped = 0
        for k in range(codes.shape[1]):
            column = decoder_weight[:, k]
            residual.addr_(codes[:, k], column)  # the residual without bit k
            score = residual @ column + binary_weight * real_codes[:, k]
            best = torch.where(score > 0, 1.0, torch.where(score < 0, -1.0, codes[:, k]))
            flipped += int((best != codes[:, k]).sum())
            codes[:, k] = best
            residual.addr_(best, column, alpha=-1)
        if not flipped:
            break
    return codes


def reconstruction_statistics(inputs: torch.Tensor, codes: torch.Tensor) -> dict[str, torch.Tensor]:
    """What ``||X - B W^T - 1 b^T||^2`` needs of the inputs X (m x d) and codes B (m x r), in
    float64: ||X||^2, X^T 1, X^T B, B^T B, B^T 1 and m; summed over blocks of rows, so that no
    float64 copy of X is made."""
    b = codes.double()
    x_norm, x_sum, xb = 0.0, 0.0, 0.0
    for block, b_block in zip(inputs.split(STATISTICS_ROWS), b.split(STATISTICS_ROWS)):
        x = block.double()
        x_norm, x_sum, xb = x_norm + x.pow(2).sum(), x_sum + x.sum(0), xb + x.T @ b_block
    return {"x_norm": x_norm, "x_sum": x_sum, "xb": xb, "bb": b.T @ b, "b_sum": b.sum(0), "m": len(inputs)}


def reconstruction_error(decoder: nn.Linear, statistics: dict[str, torch.Tensor]) -> torch.Tensor:
    """``||X - B W^T - 1 b^T||^2`` for the decoder's weight W (d x r) and bias b, expanded as
    ||X||^2 - 2<X^T B, W> - 2 (X^T 1).b + <W B^T B, W> + 2 (B^T 1).(W^T b) + m ||b||^2 and
    summed in float64 (the terms are large and nearly cancel); differentiable in W and b."""
    weight, bias, s = decoder.weight.double(), decoder.bias.double(), statistics
    error = (
        s["x_norm"]
        - 2 * (s["xb"] * weight).sum()
        - 2 * s["x_sum"] @ bias
        + ((weight @ s["bb"]) * weight).sum()
        + 2 * s["b_sum"] @ (weight.T @ bias)
        + s["m"] * bias @ bias
    )
    return error.to(decoder.weight.dtype)


class UHBDNN(TorchHasher):
    """Unsupervised hashing with a binary deep neural network (Do et al., ECCV 2016); see the module docstring."""

    name = "uh-bdnn"
    input_kind = "features"
    uses_aux = False
    citation = "Do, Doan, Cheung. Learning to Hash with Binary Deep Neural Network. ECCV 2016"
    max_bits_per_feature = 1  # B starts from ITQ, whose PCA gives at most d directions
    presets = {
        "paper": {"epochs": 10, "lbfgs_iterations": 400, "initial_lbfgs_iterations": 400},
        "quick": {"epochs": 5, "lbfgs_iterations": 20, "initial_lbfgs_iterations": 400},
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
        initial_lbfgs_iterations: int | None = None,
        hidden_sizes: tuple[int, ...] | None = None,
        lambdas: tuple[float, float, float, float] = (1e-5, 5e-2, 1e-2, 1e-6),
    ):
        super().__init__(n_bits, seed=seed, device=device)
        self.preset = preset
        self.epochs = epochs
        self.lbfgs_iterations = lbfgs_iterations
        self.initial_lbfgs_iterations = initial_lbfgs_iterations
        self.hidden_sizes = hidden_sizes
        self.lambdas = lambdas

    def _resolve_settings(self, train: Split) -> dict:
        settings = super()._resolve_settings(train)
        check_positive_int(settings["lbfgs_iterations"], "lbfgs_iterations")
        check_positive_int(settings["initial_lbfgs_iterations"], "initial_lbfgs_iterations")
        if len(self.lambdas) != 4:
            raise InvalidInputError(f"lambdas must hold 4 weights (lambda1..lambda4), got {self.lambdas!r}")
        return settings

    def _build(self, train: Split) -> None:
        self.minimum_ = train.features.min(axis=0)
        largest_range = float((train.features.max(axis=0) - self.minimum_).max())
        if not largest_range > 0:
            raise InvalidInputError("UH-BDNN needs training features that vary; every feature is constant")
        self.range_ = largest_range
        rescaled = self._rescaled(train.features)
        itq = create_method("itq", n_bits=self.n_bits, seed=self.seed).fit(rescaled)
        self._train_tensors["inputs"] = self._tensor(rescaled)
        self.codes_ = self._tensor(itq.encode(rescaled).to_signs())
        hidden = default_hidden_sizes(self.n_bits) if self.hidden_sizes is None else tuple(self.hidden_sizes)
        self.network_ = BinaryDeepNetwork(rescaled.shape[1], hidden, self.n_bits).to(self.device_)
        self.network_.initialise_from(self._train_tensors["inputs"])
        self.networks_ = {"network": self.network_}
        self.objective_ = []

    def _rescaled(self, features):
        return (features - self.minimum_) / self.range_

    def _updates(self) -> list:
        return []  # each alternation runs its own L-BFGS (``_epoch``)

    def _epoch(self, epoch: int) -> dict:
        """One alternation: the network step, then the B step; the terms at the end."""
        self._network_step(epoch)
        inputs = self._train_tensors["inputs"]
        with torch.no_grad():
            decoder = self.network_.decoder
            residual = inputs - decoder(self.codes_)
            real_codes = self.network_.encoder(inputs)
            self.codes_ = coordinate_descent_codes(self.codes_, residual, decoder.weight, real_codes, self.lambdas[1])
            terms = self._loss_terms()
        self.objective_.append(float(sum(terms.values())))
        return terms

    def _network_step(self, epoch: int) -> None:
        """A fresh L-BFGS on the network with B fixed; its result is kept only if J fell. The first
        one fits the network to the ITQ codes (``initial_lbfgs_iterations``), the later ones run
        ``lbfgs_iterations``."""
        with torch.no_grad():
            before = float(sum(self._loss_terms().values()))
        saved = copy.deepcopy(self.network_.state_dict())
        optimiser = torch.optim.LBFGS(
            self.network_.parameters(), max_iter=self._lbfgs_iterations(epoch), line_search_fn="strong_wolfe"
        )

        def objective():
            optimiser.zero_grad(set_to_none=True)
            terms = self._loss_terms()
            check_finite_terms(terms, epoch, self.method_name)
            loss = sum(terms.values())
            loss.backward()
            return loss

        optimiser.step(objective)
        with torch.no_grad():
            after = float(sum(self._loss_terms().values()))
        if not after < before:
            self.network_.load_state_dict(saved)
            after = before
        self.objective_.append(after)

    def _lbfgs_iterations(self, epoch: int) -> int:
        return self.settings_["initial_lbfgs_iterations" if epoch == 1 else "lbfgs_iterations"]

    def _loss_terms(self, rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The objective's terms, weights applied, for the network on the training items ``rows``
        (all of them when None) with their current codes B (``codes_``). Over all items the
        reconstruction term comes from statistics of X and B (:func:`reconstruction_error`), so
        the many evaluations of an L-BFGS run build no n x d tensor."""
        weight_decay, binary, independence, balance = self.lambdas
        x, targets = self._train_tensors["inputs"], self.codes_
        if rows is None:
            squared_error = reconstruction_error(self.network_.decoder, self._reconstruction_statistics())
        else:
            x, targets = x[rows], targets[rows]
            squared_error = (self.network_.decoder(targets) - x).pow(2).sum()
        m = len(x)
        codes = self.network_.encoder(x)
        identity = torch.eye(self.n_bits, device=x.device)
        weights = [p for name, p in self.network_.named_parameters() if name.endswith("weight")]
        return {
            "reconstruction": squared_error / (2 * m),
            "weight_decay": weight_decay / 2 * sum(w.pow(2).sum() for w in weights),
            "binary": binary / (2 * m) * (codes - targets).pow(2).sum(),
            "independence": independence / 2 * (codes.T @ codes / m - identity).pow(2).sum(),
            "balance": balance / (2 * m) * codes.sum(dim=0).pow(2).sum(),
        }

    def _reconstruction_statistics(self) -> dict[str, torch.Tensor]:
        """:func:`reconstruction_statistics` of the training inputs and the current codes B,
        computed again only when B has changed."""
        codes, statistics = self._train_tensors.get("reconstruction", (None, None))
        if codes is not self.codes_:
            statistics = reconstruction_statistics(self._train_tensors["inputs"], self.codes_)
            self._train_tensors["reconstruction"] = (self.codes_, statistics)
        return statistics

    def _encode(self, split: Split):
        self.network_.eval()
        features = split.features
        return encode_in_batches(
            lambda rows: self.network_.encoder(self._tensor(self._rescaled(features[rows]))), len(features)
        )
