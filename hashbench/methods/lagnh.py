"""LAGNH: Lightweight Augmented Graph Network Hashing.

Hui Cui, Lei Zhu, Jingjing Li, Zhiyong Cheng and Zheng Zhang, "Two-pronged Strategy: Lightweight
Augmented Graph Network Hashing for Scalable Image Retrieval", ACM Multimedia (MM) 2021.

Per mini-batch: features x and aux semantics y are projected to d' (x-bar, y-bar); cross-modal
attention (Eq. 1-2) gives x_att; the visual graph S^v (Gaussian kernel on x_att, Eq. 3), the aux
graph S^a (Eq. 4) and the augmented graph S = mu S^v + S^a (Eq. 5) are built over the batch; a
two-layer GCN (Eq. 6-7) on the normalised graph outputs z. The generator minimises
``L_GAN + lambda1 L_recons + lambda2 L_quan + lambda3 L_cl`` (Eq. 12) with L_quan = ||sign(z) - z||^2
(Eq. 8), L_recons = ||k S^a - relu(cos(Z, Z))||^2 (Eq. 9), an adversarial term against a
discriminator that tells z from N(0, I) samples (Eq. 10) and a sigmoid cross-entropy of a linear
read-out of z against y (Eq. 11). Codes are sign(z) (Eq. 13).

Variants (``variant``)
- ``"paper"`` (default), the equations as printed: projections used as they are; Eq. 2 divides the
  attention-weighted sum by the weight sum; S^a = y_i^T y_j; S = mu S^v + S^a with mu = 1;
  symmetric normalisation D^-1/2 S D^-1/2; squared Frobenius norms and sums (see loss scale below);
  one discriminator step and one generator step per batch; no dropout; sigma by the quantile rule
  (below).
- ``"released"``, the authors' public code (notes in the project's reference material): x-bar and
  y-bar L2-normalised; attention rows L2-normalised instead of divided by their sum, fused =
  x-bar + A y-bar; kernel exp(-dist^2 / theta) with theta = 2 (sigma = 1); the fusion factor
  multiplies S^a and is 0, so only S^v reaches the GCN (``mu`` weighs S^a in this variant);
  S^a = relu(cos(y_i, y_j)); row normalisation D^-1 S; dropout 0.5 before each GC layer; mean
  (MSE) forms of every loss; per batch one discriminator step then 5 generator steps, each with a
  fresh forward pass (the discriminator step shares the first one's).
Both variants: d' = 512, hidden 1024 (COCO) / 2048 (NUS-WIDE), discriminator r -> 64 -> 32 -> 1,
Adam with lr 1e-4 for both networks, graphs rebuilt per mini-batch with gradients through them.

Table 5 ablations (hyper-parameters, not copies of the class)
- ``use_aux=False`` (LAGNH-no-aux): aux is never read. No attention, the GCN graph is S^v, the
  reconstruction target S^a is replaced by S^v (``recon_target`` "aux" and "augmented" both mean
  S^v; "inner-product" reconstructs k S^v), no L_cl. ``gcn_graph="aux"`` is then an error.
- ``attention=False`` (LAGNH-no-att): x_att = x-bar (the projection is kept, the GCN's input width
  stays d').
- ``gcn_graph``: "augmented" (S, published), "visual" (S^v only), "aux" (S^a only).
- ``recon_target``: "aux" (k S^a, published), "augmented" (k S), "visual" (k S^v),
  "inner-product" (||k S^a - Z^T Z||^2), "features" (||X - decoder(Z)||^2, decoder
  r -> hidden -> d with ReLU).

Presets (``preset``; explicit arguments win, a None argument takes the preset's value)
- "paper" (default), also named "coco": lambda1 = 100, lambda2 = 1, lambda3 = 1, k = 1, lr = 1e-4, 300 epochs, batch 1024,
  hidden 1024 (Section 4.2, Table 1);
- "nuswide": as "coco" but lambda3 = 0.1, batch 2048, hidden 2048;
- "quick": as "coco" but 65 epochs and hidden 512: for smoke runs and tests. With the quantile
  bandwidth (below), MAP@1000 on mosaic settles within the first 40 epochs at either width: along
  the quick schedule (32 bits, the run's seeds 0, 1, 2) its mean stayed between 0.8635 and 0.8672
  from epoch 40 to 80 (0.8657 at 65, 0.8655 at 80), against 0.8615 for the paper preset, and
  seed 0 alone, the quick run's cell, between 0.8627 and 0.8685 (0.8639 at 65). On the small
  conformance set (one batch per epoch) the share of distinct codes wavers around the check's 20%
  from epoch 30 on (0.19 to 0.25, 16 bits, seed 0: the codes follow the aux clusters); it stays
  above 20% from epoch 55 on (0.24 at 65). With the median bandwidth the quick preset needed
  120 epochs to avoid constant bits and still landed below the paper preset. The quick preset's measurements beside the
  paper preset's are on the method's page, ``docs/methods/lagnh.md``.
``mu``, ``sigma``, ``dropout`` and ``generator_steps`` default per variant (above). The values in
force are the fitted ``settings_`` dict (``settings_["lambda1"]``, ``settings_["mu"]``, ...).

Encoding (``encode_mode``)
- "inductive" (default): each item is encoded against a fixed reference set of ``n_reference``
  training nodes (default: the batch size, at most n), drawn from ``seed`` at fit time. The item
  attends over the references' y-bar and its own; its graph row links it to the references and to
  itself; the references keep the attentive features, first-layer outputs and degrees they have
  in their own graph. An item's code therefore never depends on the other items being encoded.
- "batch" (release): items in file order in batches of 256, each batch with its own graph, so a
  code depends on its batch mates.

Free choices the paper leaves open, and the defaults taken here
- Eq. 11 compares z (r values) with y (c values); like the release, a Linear(r, c) classifier
  reads z. Its targets are the aux values clipped to [0, 1]. Eq. 11's sign is read as a
  cross-entropy to minimise.
- Loss scale in the paper variant: each squared Frobenius norm and Eq. 11's sum is divided by the
  number of nodes in the batch (sum over a node's entries, mean over nodes), so lambda1..3 mean the
  same at any batch size; the adversarial terms are expectations (means).
- Generator's adversarial loss: the non-saturating form -log D(z) (Goodfellow et al. 2014) in both
  variants; the discriminator minimises BCE of N(0, I) samples (real) against z (fake).
- Reconstruction targets are fixed supervision (no gradient through them); the GCN graph itself
  carries gradients into the projections and attention.
- sigma ``"quantile"`` (paper variant): sigma^2 = half the ``bandwidth_quantile`` (default 0.01)
  of the squared distances between distinct nodes of the batch (per training batch; in inductive
  encoding, those of the reference set), so that share of the pairs weighs exp(-1) or more and S^v
  is sparse, not empty, at any feature scale. ``"median"`` takes the median instead; a number fixes
  sigma. The paper does not state its bandwidth. The median rule makes S^v dense (the median pair
  weighs exp(-1)), so each GC layer averages over much of the batch: on ``fc7-like`` the paper
  variant's codes then pass through phases where most bits are constant (L_recons stays at the
  value that identical z give), and where a fit stops in one they come out degenerate; on mosaic
  its MAP@1000 was lower at both presets, spread more over seeds and needed the whole paper
  schedule to settle. A fixed sigma small against the distances (``sigma=1`` on these features)
  leaves S^v near the identity: no such phases, but the GCN then reads S^a alone and the codes
  follow the aux clusters (``gcn_graph="aux"`` gives about the same loss). The quantile 0.01 was
  chosen between 0.01 and 0.1 (a neighbourhood the size of one of ten classes), which scored alike
  on mosaic and ``fc7-like``: at 0.1 the quick preset's share of distinct codes on the conformance
  check's data fell to the check's limit. Measurements of both rules: ``docs/methods/lagnh.md``.
- GC layers without bias, xavier-normal initialisation (as released); other layers PyTorch's
  default initialisation. No feature preprocessing (none is visible in the release).
- All-zero aux rows: such a node has S^a = 0 with every node (the release's cosine is taken as
  0), its y-bar is the projection's bias, and every norm, degree and attention sum is floored at
  1e-8, so no NaN arises; in the aux-only graph the node is isolated and gets z = 0, the all-ones
  code.
- ``n_reference`` = batch size: the reference graph then has the size of a training graph.

What the aux must carry: the paper variant trusts S^a twice (in the GCN graph and as the
reconstruction target), so its codes are as good as the aux graph's neighbours. On the mosaic's
detected objects, 78% of the training pairs that share an aux label share a true class (37% of all
pairs do), and the paper preset lands above LSH at 64 bits. (The observations in this paragraph
were made with the median bandwidth.) On ``mosaic-tags`` (same features; user
tags whose popular distractor words are shared by 26% of the pairs, class words by 8%) only 46% of
the pairs sharing a tag share a class, and the codes follow the tags: at 32 bits both presets land
far below LSH and ITQ, a little above the tags alone (``aux-only``). The quick preset's ablations
there: S^v as the GCN graph, S^v as the reconstruction target, both, and no aux at all each score
above the published graph and target; the released variant, which keeps S^a out of the graph and
bounds it by a cosine, scores highest, at LSH's level. Even without aux, the paper variant's codes
are cluster-like on these features (few distinct database codes, typical bits set for a quarter or
three quarters of the items); the paper's own no-aux ablation is near or below its LSH too (Table 5,
COCO 32 / 64 bits: 0.570 / 0.555, LSH 0.547 / 0.631). Measured MAP, code health and seconds, with
the quick preset on mosaic-tags and the released variant and no-aux ablation on mosaic:
``docs/methods/lagnh.md``.
"""

from __future__ import annotations

from collections import defaultdict
from operator import itemgetter

import numpy as np
import torch
import torch.nn.functional as F

from hashbench._validation import check_choice, check_positive_int, is_number
from hashbench.errors import InvalidInputError
from hashbench.methods._lagnh_net import (
    PAPER_RULES,
    RELEASED_RULES,
    Generator,
    Propagation,
    Reference,
    cosine,
    discriminator,
    weighted,
)
from hashbench.methods._torch import (
    TorchHasher,
    Update,
    adam,
    check_finite_terms,
    encode_in_batches,
)

COCO = dict(lambda1=100.0, lambda2=1.0, lambda3=1.0, k=1.0, lr=1e-4, epochs=300, batch_size=1024, hidden=1024)
PRESETS = {
    "paper": COCO,
    "coco": COCO,
    "nuswide": dict(lambda1=100.0, lambda2=1.0, lambda3=0.1, k=1.0, lr=1e-4, epochs=300, batch_size=2048, hidden=2048),
    "quick": dict(lambda1=100.0, lambda2=1.0, lambda3=1.0, k=1.0, lr=1e-4, epochs=65, batch_size=1024, hidden=512),
}
VARIANTS = {
    "paper": dict(rules=PAPER_RULES, mu=1.0, sigma="quantile", dropout=0.0, generator_steps=1),
    "released": dict(rules=RELEASED_RULES, mu=0.0, sigma=1.0, dropout=0.5, generator_steps=5),
}
GCN_GRAPHS = ("augmented", "visual", "aux")
RECON_TARGETS = ("aux", "augmented", "visual", "inner-product", "features")
ENCODE_MODES = ("inductive", "batch")
#: the bandwidths set from each batch's distances (any other sigma is a number)
SIGMA_RULES = ("median", "quantile")
#: the release encodes query and database sets in batches of this size, in file order
RELEASED_ENCODE_BATCH = 256
#: rows per chunk in inductive encoding (memory only: codes do not depend on it)
INDUCTIVE_CHUNK = 4096


class LAGNH(TorchHasher):
    name = "lagnh"
    input_kind = "features"
    uses_aux = True
    citation = "Cui, Zhu, Li, Cheng, Zhang, ACM MM 2021"
    presets = PRESETS

    def __init__(
        self,
        n_bits: int = 32,
        *,
        seed: int = 0,
        device: str = "cpu",
        variant: str = "paper",
        preset: str = "paper",
        use_aux: bool = True,
        attention: bool = True,
        gcn_graph: str = "augmented",
        recon_target: str = "aux",
        lambda1: float | None = None,
        lambda2: float | None = None,
        lambda3: float | None = None,
        k: float | None = None,
        mu: float | None = None,
        sigma: float | str | None = None,
        bandwidth_quantile: float = 0.01,
        lr: float | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        hidden: int | None = None,
        encode_mode: str = "inductive",
        proj_dim: int = 512,
        dropout: float | None = None,
        generator_steps: int | None = None,
        n_reference: int | None = None,
    ):
        super().__init__(n_bits, seed=seed, device=device)
        self.variant = variant
        self.preset = preset
        self.use_aux = use_aux
        self.attention = attention
        self.gcn_graph = gcn_graph
        self.recon_target = recon_target
        self.lambda1 = lambda1
        self.lambda2 = lambda2
        self.lambda3 = lambda3
        self.k = k
        self.mu = mu
        self.sigma = sigma
        self.bandwidth_quantile = bandwidth_quantile
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.hidden = hidden
        self.encode_mode = encode_mode
        self.proj_dim = proj_dim
        self.dropout = dropout
        self.generator_steps = generator_steps
        self.n_reference = n_reference

    def fit(self, train, y=None, *, callback=None):
        # The no-aux ablation neither needs nor reads aux semantics, so this instance (not the
        # class, which the runner reads to pass aux) says whether the input checks ask for them.
        self.uses_aux = bool(self.use_aux)
        return super().fit(train, y, callback=callback)

    # --- settings --------------------------------------------------------------------------------
    def _resolve_settings(self, train) -> dict:
        """The preset's and the variant's values for the hyper-parameters left None, validated."""
        check_choice(self.variant, VARIANTS, "variant")
        settings = super()._resolve_settings(train)
        check_choice(self.gcn_graph, GCN_GRAPHS, "gcn_graph")
        check_choice(self.recon_target, RECON_TARGETS, "recon_target")
        check_choice(self.encode_mode, ENCODE_MODES, "encode_mode")
        variant = VARIANTS[self.variant]
        self.rules_ = variant["rules"]
        settings.update({key: value for key, value in variant.items() if key != "rules" and settings[key] is None})
        for key in ("lambda1", "lambda2", "lambda3", "k", "mu", "dropout"):
            check_non_negative(settings[key], key)
        if settings["dropout"] >= 1:
            raise InvalidInputError(f"dropout must be in [0, 1), got {settings['dropout']!r}")
        sigma = settings["sigma"]
        if not ((isinstance(sigma, str) and sigma in SIGMA_RULES) or (is_number(sigma) and sigma > 0)):
            raise InvalidInputError(f"sigma must be a number > 0, 'median' or 'quantile', got {sigma!r}")
        quantile = settings["bandwidth_quantile"]
        if not (is_number(quantile) and 0 < quantile < 1):
            raise InvalidInputError(f"bandwidth_quantile must be a number in (0, 1), got {quantile!r}")
        for key in ("hidden", "generator_steps", "proj_dim"):
            check_positive_int(settings[key], key)
        settings["n_reference"] = min(
            len(train), settings["batch_size"] if self.n_reference is None else self.n_reference
        )
        check_positive_int(settings["n_reference"], "n_reference")
        self._resolve_ablation()
        return settings

    def _resolve_ablation(self) -> None:
        """Which graph the GCN reads and which one L_recons rebuilds, after ``use_aux``."""
        self.attention_ = bool(self.attention and self.use_aux)
        if self.use_aux:
            self.gcn_graph_ = self.gcn_graph
            recon_graphs = {"aux": "aux", "augmented": "augmented", "visual": "visual", "inner-product": "aux"}
        elif self.gcn_graph == "aux":
            raise InvalidInputError("gcn_graph='aux' needs aux semantics; it cannot be combined with use_aux=False")
        else:
            self.gcn_graph_ = "visual"
            recon_graphs = dict.fromkeys(("aux", "augmented", "visual", "inner-product"), "visual")
        self.recon_graph_ = recon_graphs.get(self.recon_target)  # None: features are reconstructed

    # --- training --------------------------------------------------------------------------------
    def _build(self, train) -> None:
        reference = np.sort(self._rng().choice(len(train), self.settings_["n_reference"], replace=False))
        self.reference_features_ = train.features[reference]
        self.reference_aux_ = train.aux[reference] if self.use_aux else None
        net = self._build_generator(train.features.shape[1], train.aux.shape[1] if self.use_aux else None)
        self.networks_ = {"generator": net, "discriminator": discriminator(self.n_bits).to(self.device_)}

    def _updates(self) -> list[Update]:
        """The discriminator's Adam (Eq. 10), then the generator's (Eq. 12), both at ``lr``."""
        net, critic = self.networks_["generator"], self.networks_["discriminator"]
        weights = self.loss_weights()
        return [
            Update(adam(critic.parameters(), lr=self.settings_["lr"]), itemgetter("discriminator")),
            Update(
                adam(net.parameters(), lr=self.settings_["lr"]),
                lambda terms: sum(weights[term] * value for term, value in terms.items()),
            ),
        ]

    def _build_generator(self, n_features: int, n_aux: int | None) -> Generator:
        return Generator(
            n_features,
            n_aux,
            self.n_bits,
            proj_dim=self.proj_dim,
            hidden=self.settings_["hidden"],
            dropout=self.settings_["dropout"],
            rules=self.rules_,
            attention=self.attention_,
            gcn_graph=self.gcn_graph_,
            mu=self.settings_["mu"],
            sigma=self.settings_["sigma"],
            bandwidth_quantile=self.settings_["bandwidth_quantile"],
            decoder=self.recon_target == "features",
        ).to(self.device_)

    def _batch_step(self, rows: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        """One discriminator step, then ``generator_steps`` generator steps (fresh forward each);
        returns each loss term (generator terms averaged over the steps), detached. A non-finite
        term stops training before any step uses it, naming the epoch and the term."""
        net, critic = self.networks_["generator"], self.networks_["discriminator"]
        critic_update, generator_update = self.updates_
        rows = rows.to(self.device_)
        x = self._train_tensor("features")[rows]
        y = self._train_tensor("aux")[rows] if self.use_aux else None
        n_steps = self.settings_["generator_steps"]
        sums = defaultdict(float)
        for step in range(n_steps):
            out = net(x, y)
            if step == 0:
                prior = torch.randn(len(x), self.n_bits, generator=self.generator_).to(self.device_)
                critic_terms = {"discriminator": discriminator_loss(critic, prior, out.z.detach())}
                check_finite_terms(critic_terms, epoch, self.method_name)
                critic_update.step(critic_terms)
            terms = self.generator_losses(out, x, y)
            check_finite_terms(terms, epoch, self.method_name)
            generator_update.step(terms)
            for term, value in terms.items():
                sums[term] = sums[term] + value.detach() / n_steps
        return {**sums, "discriminator": critic_terms["discriminator"].detach()}

    def loss_weights(self) -> dict[str, float]:
        """Eq. 12's weight of each generator loss term."""
        return {
            "gan": 1.0,
            "recons": self.settings_["lambda1"],
            "quan": self.settings_["lambda2"],
            "cl": self.settings_["lambda3"],
        }

    def generator_losses(self, out: Propagation, x, y) -> dict[str, torch.Tensor]:
        """The unweighted generator terms of Eq. 12 for one forward pass (no "cl" without aux)."""
        net, critic = self.networks_["generator"], self.networks_["discriminator"]
        z = out.z
        if self.recon_graph_ is None:
            recons = self._squared_error(net.decoder(z), x)
        else:
            predicted = z @ z.T if self.recon_target == "inner-product" else F.relu(cosine(z, z))
            recons = self._squared_error(
                predicted, weighted(self.settings_["k"], out.graphs[self.recon_graph_].detach())
            )
        terms = {
            "gan": F.binary_cross_entropy_with_logits(critic(z), torch.ones(len(z), 1, device=z.device)),
            "recons": recons,
            "quan": self._squared_error(z, torch.sign(z).detach()),
        }
        if y is not None:
            cross_entropy = F.binary_cross_entropy_with_logits(net.classifier(z), y.clamp(0, 1), reduction="none")
            terms["cl"] = self._per_node(cross_entropy)
        return terms

    def _squared_error(self, predicted, target) -> torch.Tensor:
        """``_per_node`` of the squared differences, in one fused pass each way."""
        total = F.mse_loss(predicted, target, reduction="sum")
        return total / len(predicted) if self.rules_.loss_form == "frobenius" else total / predicted.numel()

    def _per_node(self, values: torch.Tensor) -> torch.Tensor:
        """Paper: sum of a node's entries, mean over nodes; release: mean of all entries."""
        if self.rules_.loss_form == "frobenius":
            return values.sum() / len(values)
        return values.mean()

    # --- encoding --------------------------------------------------------------------------------
    def _encode(self, split) -> np.ndarray:
        check_choice(self.encode_mode, ENCODE_MODES, "encode_mode")
        net = self.networks_["generator"]
        net.eval()

        def rows(indices):
            x = self._tensor(split.features[indices])
            return x, self._tensor(split.aux[indices]) if self.use_aux else None

        if self.encode_mode == "batch":
            return encode_in_batches(lambda idx: net(*rows(idx)).z, len(split), RELEASED_ENCODE_BATCH)
        with torch.no_grad():
            reference = Reference.build(
                net,
                self._tensor(self.reference_features_),
                self._tensor(self.reference_aux_) if self.use_aux else None,
            )
        return encode_in_batches(lambda idx: net.forward_against(*rows(idx), reference), len(split), INDUCTIVE_CHUNK)


def discriminator_loss(critic, prior: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Eq. 10 for the discriminator: N(0, I) samples are real, GCN outputs are fake."""
    real, fake = critic(prior), critic(z)
    return F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros_like(fake)
    )


def check_non_negative(value, name: str) -> float:
    if not is_number(value) or not value >= 0:
        raise InvalidInputError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)
