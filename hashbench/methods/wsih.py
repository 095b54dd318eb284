"""WSIH: webly supervised image hashing, learnt from labelled web images and unlabelled targets.

Hui Cui, Lei Zhu, Jingjing Li, Zheng Zhang, Weili Guan. "Webly Supervised Image Hashing with
Lightweight Semantic Transfer Network". ACM Multimedia (MM) 2022, doi:10.1145/3503161.3548342.
Implemented after the authors' release (github.com/christinecui/WSIH); the release's settings
and the choices left open are listed below.

Two stages, both on features:

1. **Prototype network on the labelled web split** (``train.web``: features plus one-hot labels of
   the web query). Blocks ``d -> w1`` (BN, ReLU), ``w1 -> w2`` (BN, ReLU, dropout 0.4),
   ``w2 -> w3`` (BN, ReLU), code layer ``w3 -> n_bits`` (BN, tanh) and a ``Linear(n_bits, c)``
   classifier. Loss: ``10 x`` cross-entropy against the web label, ``MSE(relu(cos(h_i, h_j)),
   k [y_i and y_j share a label])``, a bit-balance term (squared mean of each bit over the batch)
   and a bit-decorrelation term (``MSE(h^T h / n, I)``). Concept prototypes ``P``: per class, the
   mean first-block feature of that class's web items (eval mode).
2. **Hashing network on the target training split** (labels unused), initialised from stage 1,
   first two blocks frozen. After block 1 an attention over the prototypes:
   ``mask = tanh(f1 P^T / (2 w1))``, ``fused = 0.5 f1 + 0.5 (mask P) / rowsum(mask)``, then blocks
   2, 3 and the code layer; a decoder ``n_bits -> w_dec`` (ReLU) ``-> d``. Loss: ``10 x
   MSE(cos(h_i, h_j), 1.2 (0.7 S + 0.3 S S / n))`` with ``S = 2 cos(x_i, x_j) - 1`` in the batch,
   ``MSE(h, sign h)`` and ``MSE(decoder(h), x)``. Codes: ``sign(h)`` in eval mode, independent of
   batch mates.

Free choices and defaults (hyper-parameters of :class:`WSIH`):

- Layer widths scale with the input width ``d``: the release's widths for 4096-d fc7 features
  (``w1, w2, w3, w_dec = 4096, 2048, 1024, 1024``) times ``d / 4096``, rounded, and never below
  ``2 n_bits``; the attention's scale ``2 x 4096`` becomes ``2 w1``. ``width_scale`` overrides
  ``d / 4096``.
- ``similarity_scale=1.2`` (``k`` of stage 1; the release leaves it unstated, we use stage 2's
  target scale), ``classification_weight=10``, ``relation_weight=10``; balance, decorrelation,
  quantisation and reconstruction weights 1.
- Multi-hot web labels are turned into a uniform target distribution for the cross-entropy.
- Classes without web items get a zero prototype (they never attract attention).
- Frozen blocks stay in eval mode in stage 2 (batch-norm statistics and dropout fixed too).
- Features are used as given (the release feeds raw fc7 features). The relation target is then
  only as meaningful as their cosines (``benchmarks/bench_graphs.py``): on the conformance data
  and on the fc7-like mosaic no off-diagonal target exceeds 1; on the earlier mosaic of pooled
  CNN features, whose pairs were all nearly parallel (``S`` close to 1), 78% did, which no cosine
  of two codes can reach.
- ``lr=2e-4`` (Adam) in both stages.
- Presets: ``"paper"`` = 180 web epochs with batches of 8192 (near full batch on COCO's 8,000 web
  images), 50 target epochs with batches of 128; ``"quick"`` = 40 web epochs, 10 target epochs,
  same batch sizes. ``web_epochs``, ``web_batch_size``, ``epochs`` and ``batch_size`` given
  explicitly override the preset. The web epochs come first in ``history_`` and the training
  callback's epoch count, then the target epochs.

Measured MAP, code health and seconds: ``docs/methods/wsih.md``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hashbench._validation import check_positive_int
from hashbench.datasets.base import Split
from hashbench.errors import InvalidInputError
from hashbench.methods._torch import TorchHasher, Update, adam, encode_in_batches

RELEASE_WIDTHS = {"block1": 4096, "block2": 2048, "block3": 1024, "decoder": 1024}
RELEASE_FEATURE_WIDTH = 4096


def cosine_matrix(rows: torch.Tensor) -> torch.Tensor:
    unit = F.normalize(rows, dim=1)
    return unit @ unit.T


def relation_target(features: torch.Tensor) -> torch.Tensor:
    """``1.2 (0.7 S + 0.3 S S / n)`` with ``S = 2 cos - 1``: first- and second-order similarity."""
    similarity = 2 * cosine_matrix(features) - 1
    return 1.2 * (0.7 * similarity + 0.3 * similarity @ similarity / len(features))


def linear_block(width_in: int, width_out: int, activation: nn.Module | None = None) -> nn.Sequential:
    """Linear, batch norm, then ``activation`` (ReLU unless given)."""
    return nn.Sequential(nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out), activation or nn.ReLU())


class PrototypeNetwork(nn.Module):
    """Stage 1's network; stage 2 reuses it with prototype attention after block 1."""

    def __init__(self, n_features: int, n_bits: int, n_classes: int, widths: dict[str, int]):
        super().__init__()
        self.block1 = linear_block(n_features, widths["block1"])
        self.block2 = nn.Sequential(*linear_block(widths["block1"], widths["block2"]), nn.Dropout(0.4))
        self.block3 = linear_block(widths["block2"], widths["block3"])
        self.code = linear_block(widths["block3"], n_bits, nn.Tanh())
        self.classifier = nn.Linear(n_bits, n_classes)
        self.register_buffer("prototypes", torch.zeros(n_classes, widths["block1"]))
        self.attend = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.block1(x)
        if self.attend:
            first = self.fuse_with_prototypes(first)
        return self.code(self.block3(self.block2(first)))

    def fuse_with_prototypes(self, first: torch.Tensor) -> torch.Tensor:
        mask = torch.tanh(first @ self.prototypes.T / (2 * first.shape[1]))
        attended = (mask @ self.prototypes) / mask.sum(dim=1, keepdim=True).clamp(min=1e-8)
        return 0.5 * first + 0.5 * attended

    @torch.no_grad()
    def set_prototypes(self, web_features: torch.Tensor, web_labels: torch.Tensor) -> None:
        """Mean first-block feature of each class (multi-hot items count for each of their classes)."""
        first = self.block1(web_features)
        counts = web_labels.sum(dim=0).clamp(min=1)
        self.prototypes.copy_((web_labels.T @ first) / counts[:, None])
        self.attend = True


class WSIH(TorchHasher):
    """Webly supervised image hashing (Cui et al., MM 2022); see the module docstring."""

    name = "wsih"
    input_kind = "features"
    uses_aux = False
    citation = (
        "Cui, Zhu, Li, Zhang, Guan. Webly Supervised Image Hashing with Lightweight Semantic Transfer Network. "
        "ACM MM 2022"
    )
    presets = {
        "paper": {"web_epochs": 180, "web_batch_size": 8192, "epochs": 50, "batch_size": 128},
        "quick": {"web_epochs": 40, "web_batch_size": 8192, "epochs": 10, "batch_size": 128},
    }

    def __init__(
        self,
        n_bits: int = 32,
        *,
        seed: int = 0,
        device: str = "cpu",
        preset: str = "paper",
        web_epochs: int | None = None,
        web_batch_size: int | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float = 2e-4,
        width_scale: float | None = None,
        similarity_scale: float = 1.2,
        classification_weight: float = 10.0,
        relation_weight: float = 10.0,
    ):
        super().__init__(n_bits, seed=seed, device=device)
        self.preset = preset
        self.web_epochs = web_epochs
        self.web_batch_size = web_batch_size
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.width_scale = width_scale
        self.similarity_scale = similarity_scale
        self.classification_weight = classification_weight
        self.relation_weight = relation_weight

    def layer_widths(self, n_features: int) -> dict[str, int]:
        """The release's widths scaled by ``width_scale`` (default ``d / 4096``), at least ``2 n_bits``."""
        scale = n_features / RELEASE_FEATURE_WIDTH if self.width_scale is None else self.width_scale
        return {name: max(round(width * scale), 2 * self.n_bits) for name, width in RELEASE_WIDTHS.items()}

    def _resolve_settings(self, train: Split) -> dict:
        settings = super()._resolve_settings(train)
        for key in ("web_epochs", "web_batch_size"):
            check_positive_int(settings[key], key)
        self._check_web_split(train)
        return settings

    def _build(self, train: Split) -> None:
        n_features, n_classes = train.features.shape[1], train.web.labels.shape[1]
        widths = self.layer_widths(n_features)
        self.network_ = PrototypeNetwork(n_features, self.n_bits, n_classes, widths).to(self.device_)
        self.decoder_ = nn.Sequential(
            nn.Linear(self.n_bits, widths["decoder"]), nn.ReLU(), nn.Linear(widths["decoder"], n_features)
        ).to(self.device_)
        self.networks_ = {"hashing_network": self.network_, "decoder": self.decoder_}

    def _updates(self) -> list[Update]:
        """Stage 1 trains the prototype network; stage 2 blocks 3, the code layer and the decoder
        (a fresh Adam, made when stage 2 starts)."""
        return [Update(adam(self.network_.parameters(), lr=self.settings_["lr"]), self._objective)]

    def _n_epochs(self) -> int:
        return self.settings_["web_epochs"] + self.settings_["epochs"]

    def _epoch(self, epoch: int) -> dict:
        web_epochs = self.settings_["web_epochs"]
        self.web_stage_ = epoch <= web_epochs
        if self.web_stage_:
            return self._batch_epoch(len(self._train.web), self.settings_["web_batch_size"], epoch)
        if epoch == web_epochs + 1:
            self._start_target_stage()
        # frozen blocks stay in eval mode: only the trained modules train
        self.network_.train()
        self.network_.block1.eval()
        self.network_.block2.eval()
        return super()._epoch(epoch)

    def _start_target_stage(self) -> None:
        network = self.network_
        network.eval()
        network.set_prototypes(self._train_tensor("web", "features"), self._train_tensor("web", "labels"))
        for parameter in (p for block in (network.block1, network.block2) for p in block.parameters()):
            parameter.requires_grad_(False)
        trained = [network.block3, network.code, self.decoder_]
        optimiser = adam([p for module in trained for p in module.parameters()], lr=self.settings_["lr"])
        self.updates_ = [Update(optimiser, self._objective)]

    def _loss_terms(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = rows.to(self.device_)
        if self.web_stage_:
            return self._web_loss_terms(
                self._train_tensor("web", "features")[rows], self._train_tensor("web", "labels")[rows]
            )
        return self._target_loss_terms(self._train_tensor("features")[rows])

    def _check_web_split(self, train: Split) -> None:
        web = train.web
        if web is None:
            raise InvalidInputError(
                "WSIH learns concept prototypes from a labelled web split, but the training split has no "
                "`web` split; use a dataset with one (its train split then carries it as `train.web`) or "
                "set Split(..., web=Split(web_features, web_labels, name='web'))"
            )
        if web.features is None or web.labels is None:
            raise InvalidInputError("WSIH needs features and labels in the `web` split")
        if web.features.shape[1] != train.features.shape[1]:
            raise InvalidInputError(
                f"the `web` split has {web.features.shape[1]}-d features but the training split "
                f"{train.features.shape[1]}-d"
            )
        if len(web) < 2:
            raise InvalidInputError(f"WSIH needs at least 2 rows in the `web` split, got {len(web)}")

    def _web_loss_terms(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stage 1 terms as they enter the loss (weights applied); prefixed ``web_``."""
        codes = self.network_(x)
        target_distribution = labels / labels.sum(dim=1, keepdim=True).clamp(min=1)
        share_a_label = (labels @ labels.T > 0).float()
        return {
            "web_classification": self.classification_weight
            * F.cross_entropy(self.network_.classifier(codes), target_distribution),
            "web_similarity": F.mse_loss(F.relu(cosine_matrix(codes)), self.similarity_scale * share_a_label),
            "web_balance": codes.mean(dim=0).pow(2).mean(),
            "web_decorrelation": F.mse_loss(codes.T @ codes / len(codes), torch.eye(self.n_bits, device=codes.device)),
        }

    def _target_loss_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stage 2 terms as they enter the loss (weights applied)."""
        codes = self.network_(x)
        return {
            "relation": self.relation_weight * F.mse_loss(cosine_matrix(codes), relation_target(x)),
            "quantisation": F.mse_loss(codes, torch.sign(codes)),
            "reconstruction": F.mse_loss(self.decoder_(codes), x),
        }

    def _encode(self, split: Split):
        self.network_.eval()
        features = self._tensor(split.features)
        return encode_in_batches(lambda rows: self.network_(features[rows]), len(features))
