"""LAGNH's networks and graph algebra (see ``hashbench.methods.lagnh`` for the method).

Everything here works on one set of nodes at a time (a training mini-batch, or a batch of items
being encoded) and is shared by the two variants; a :class:`Rules` object carries each place
where the paper's equations and the authors' release differ.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: floor for degrees, attention sums and kernel widths, so all-zero aux rows give no NaN
EPS = 1e-8


@dataclass(frozen=True)
class Rules:
    """The structural choices that tell the paper's equations from the authors' release."""

    normalise_projections: bool  # L2-normalise x-bar and y-bar before attention and fusion
    attention_norm: str  # "sum": Eq. 2's division by the weight sum; "l2": each row L2-normalised
    aux_similarity: str  # "inner": Eq. 4's y_i^T y_j; "cosine": relu(cos(y_i, y_j))
    fusion_weights_aux: bool  # False: S = mu S^v + S^a (Eq. 5); True: S = S^v + mu S^a (release)
    graph_norm: str  # "symmetric": D^-1/2 S D^-1/2 (Eq. 6-7); "row": D^-1 S (release)
    loss_form: str  # "frobenius": squared norms / sums per node; "mean": MSE / mean forms (release)


PAPER_RULES = Rules(False, "sum", "inner", False, "symmetric", "frobenius")
RELEASED_RULES = Rules(True, "l2", "cosine", True, "row", "mean")


@dataclass
class Propagation:
    """What one forward pass over a set of nodes produces (graphs are before normalisation)."""

    z: torch.Tensor
    x_att: torch.Tensor
    hidden: torch.Tensor
    graphs: dict[str, torch.Tensor]
    degrees: torch.Tensor
    sigma2: torch.Tensor


class Generator(nn.Module):
    """Projections (d -> d', c -> d'), cross-modal attention, graph construction, two-layer GCN,
    plus the heads that read the codes: the aux classifier (Eq. 11) and an optional feature decoder."""

    def __init__(
        self,
        n_features: int,
        n_aux: int | None,
        n_bits: int,
        *,
        proj_dim: int,
        hidden: int,
        dropout: float,
        rules: Rules,
        attention: bool,
        gcn_graph: str,
        mu: float,
        sigma: float | str,
        bandwidth_quantile: float,
        decoder: bool,
    ):
        super().__init__()
        self.rules, self.attention, self.gcn_graph = rules, attention, gcn_graph
        self.mu, self.sigma, self.bandwidth_quantile = mu, sigma, bandwidth_quantile
        self.project_x = nn.Linear(n_features, proj_dim)
        self.project_y = nn.Linear(n_aux, proj_dim) if n_aux is not None else None
        self.gc1 = nn.Linear(proj_dim, hidden, bias=False)
        self.gc2 = nn.Linear(hidden, n_bits, bias=False)
        for layer in (self.gc1, self.gc2):
            nn.init.xavier_normal_(layer.weight)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(n_bits, n_aux) if n_aux is not None else None
        self.decoder = (
            nn.Sequential(nn.Linear(n_bits, hidden), nn.ReLU(), nn.Linear(hidden, n_features)) if decoder else None
        )

    # --- node representations --------------------------------------------------------------------
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x_bar = self.project_x(x)
        return F.normalize(x_bar, dim=1, eps=EPS) if self.rules.normalise_projections else x_bar

    def attend(self, x_bar, y_cols, y_self=None) -> torch.Tensor:
        """Eq. 1-2: x_bar plus an attention-weighted mix of the columns' y_bar = project_y(y)
        (and, when ``y_self`` is given, of each row's own y_bar as one more column).

        Products with y_bar go through the c-dimensional aux rows when c < d' (x_bar . y_bar_j =
        [x_bar W, x_bar . b] . [y_j, 1]), which turns the two n x n x d' products into
        n x n x (c + 1) ones. The weights' normalisation (a row sum or norm) and the columns'
        norms are applied to the n x (c + 1) mix, not to the n x n weights; under Eq. 2 the row
        sum is the mix's last column."""
        if not self.attention or y_cols is None:
            return x_bar
        project = self.project_y
        through_aux = y_cols.shape[1] < project.out_features
        col_norms = project(y_cols).norm(dim=1, keepdim=True).clamp_min(EPS)
        x_unit = x_bar / x_bar.norm(dim=1, keepdim=True).clamp_min(EPS)
        if through_aux:
            left = torch.cat([x_unit @ project.weight, x_unit @ project.bias[:, None]], 1)
            keys = cols = torch.cat([y_cols, y_cols.new_ones(len(y_cols), 1)], 1)
        else:
            left, keys = x_unit, project(y_cols)
            cols = torch.cat([keys, keys.new_ones(len(keys), 1)], 1)
        weights = F.relu(left @ (keys / col_norms).T)  # cosines clipped at 0: (n, n_cols)
        if self.rules.normalise_projections:  # mix the unit-length y_bar
            cols = cols / col_norms
        mix = weights @ cols  # (n, m + 1); the last column sums the weights (over 1 / norms if unit)
        self_weight = y_bar_self = None
        if y_self is not None:
            y_bar_self = project(y_self)
            self_weight = F.relu(F.cosine_similarity(x_bar, y_bar_self, dim=1, eps=EPS))
            if self.rules.normalise_projections:
                y_bar_self = F.normalize(y_bar_self, dim=1, eps=EPS)
        if self.rules.attention_norm == "sum":
            total = weights.sum(1) if self.rules.normalise_projections else mix[:, -1]
            total = total if self_weight is None else total + self_weight
            scale = total.clamp_min(EPS)
        else:
            total = weights.square().sum(1)
            total = total if self_weight is None else total + self_weight.square()
            scale = total.sqrt().clamp_min(EPS)
        mix = mix / scale[:, None]
        mixed = mix[:, :-1] @ project.weight.T + mix[:, -1:] * project.bias if through_aux else mix[:, :-1]
        if self_weight is not None:
            mixed = mixed + (self_weight / scale)[:, None] * y_bar_self
        return x_bar + mixed

    # --- graphs ----------------------------------------------------------------------------------
    def similarities(self, squared_distances, y, y_cols, sigma2) -> dict[str, torch.Tensor]:
        """S^v (Eq. 3), S^a (Eq. 4) and the augmented S (Eq. 5) between rows and columns."""
        graphs = {"visual": torch.exp(squared_distances * (-0.5 / sigma2))}
        if y is not None:
            graphs["aux"] = aux_similarity(y, y_cols, self.rules)
        graphs["augmented"] = self.fuse(graphs)
        return graphs

    def self_similarities(self, x_att, y) -> dict[str, torch.Tensor]:
        """The diagonal of ``similarities`` (each node with itself), row-wise."""
        graphs = {"visual": torch.ones(len(x_att), device=x_att.device, dtype=x_att.dtype)}
        if y is not None:
            graphs["aux"] = aux_self_similarity(y, self.rules)
        graphs["augmented"] = self.fuse(graphs)
        return graphs

    def fuse(self, graphs: dict[str, torch.Tensor]) -> torch.Tensor:
        if "aux" not in graphs:
            return graphs["visual"]
        if self.rules.fusion_weights_aux:
            return graphs["visual"] + weighted(self.mu, graphs["aux"])
        return weighted(self.mu, graphs["visual"]) + graphs["aux"]

    def bandwidth(self, squared: torch.Tensor) -> torch.Tensor:
        """sigma^2: fixed, or half a quantile of the squared distances between distinct nodes of
        the set, each pair i < j once ("median": the median, so the median pair gets exp(-1);
        "quantile": ``bandwidth_quantile``, so that share of the pairs gets exp(-1) or more); never
        differentiated. (The distances are symmetric, so the pairs j > i give the quantile that all
        off-diagonal entries give, from half the entries.)"""
        if not isinstance(self.sigma, str):
            return torch.tensor(float(self.sigma) ** 2, device=squared.device)
        n = len(squared)
        if n < 2:
            return squared.new_tensor(1.0)
        quantile = 0.5 if self.sigma == "median" else self.bandwidth_quantile
        with torch.no_grad():
            pairs = squared.flatten().take(upper_triangle(n, squared.device))
            return (lower_quantile(pairs, quantile) / 2).clamp_min(EPS)

    # --- forward passes ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> Propagation:
        """One graph over the given nodes (a training batch, or a batch in ``encode_mode="batch"``)."""
        x_att = self.attend(self.embed(x), y)
        squared = squared_distances(x_att, x_att)
        sigma2 = self.bandwidth(squared)
        graphs = self.similarities(squared, y, y, sigma2)
        graph = graphs[self.gcn_graph]
        degrees = graph.sum(1)
        dropped = self.dropout(x_att)
        if self.gc1.out_features < self.gc1.in_features:  # A (X W1) = (A X) W1, the narrower product
            hidden = F.relu(propagate(graph, self.gc1(dropped), degrees, self.rules))
        else:
            hidden = F.relu(self.gc1(propagate(graph, dropped, degrees, self.rules)))
        z = propagate(graph, self.gc2(self.dropout(hidden)), degrees, self.rules)
        return Propagation(z, x_att, hidden, graphs, degrees, sigma2)

    def forward_against(self, x: torch.Tensor, y: torch.Tensor | None, ref: Reference) -> torch.Tensor:
        """Each row's node joined to the fixed reference nodes only: its code does not depend on
        the other rows. The references keep the attentive features, first-layer outputs and
        degrees they have in their own graph; the row aggregates from them and from itself."""
        x_att = self.attend(self.embed(x), ref.y, y)
        to_refs = self.similarities(squared_distances(x_att, ref.x_att), y, ref.y, ref.sigma2)[self.gcn_graph]
        to_self = self.self_similarities(x_att, y)[self.gcn_graph]
        degrees = to_refs.sum(1) + to_self
        adjacency = normalise(to_refs, degrees, ref.degrees, self.rules)
        self_weight = normalise(to_self[:, None], degrees, degrees[:, None], self.rules, diagonal=True)
        hidden = F.relu(self.gc1(adjacency @ ref.x_att + self_weight * x_att))
        return adjacency @ ref.messages + self_weight * self.gc2(hidden)


@dataclass
class Reference:
    """The fixed training nodes every item is encoded against in ``encode_mode="inductive"``."""

    y: torch.Tensor | None
    x_att: torch.Tensor
    messages: torch.Tensor  # the references' second-layer inputs times W2: (n_reference, r)
    degrees: torch.Tensor
    sigma2: torch.Tensor

    @classmethod
    def build(cls, generator: Generator, x: torch.Tensor, y: torch.Tensor | None) -> Reference:
        out = generator(x, y)
        return cls(y, out.x_att, generator.gc2(out.hidden), out.degrees, out.sigma2)


def discriminator(n_bits: int) -> nn.Module:
    """Table 1: r -> 64 -> 32 -> 1 with ReLU; outputs a logit."""
    return nn.Sequential(nn.Linear(n_bits, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))


# --- graph algebra ---------------------------------------------------------------------------------
def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 from one matrix product (no square root taken and undone)."""
    norms = a.square().sum(1)[:, None] + b.square().sum(1)[None, :]
    return torch.addmm(norms, a, b.T, alpha=-2).clamp_min(0)


def lower_quantile(values: torch.Tensor, quantile: float) -> torch.Tensor:
    """The value of rank ``floor((n - 1) * quantile)`` (from 0) of a 1-d tensor of n values, as
    ``torch.quantile(..., interpolation="lower")``; at 0.5 the lower of the two middle values of an
    even count, as ``values.median()``. On the CPU by numpy's linear-time selection, many times
    faster there than a sort."""
    rank = int((len(values) - 1) * quantile)
    if values.device.type != "cpu":
        return values.kthvalue(rank + 1).values
    return values.new_tensor(np.partition(values.numpy(), rank)[rank])


@functools.cache
def upper_triangle(n: int, device: torch.device) -> torch.Tensor:
    """Flat indices of the entries (i, j), i < j, of an n x n matrix."""
    rows, cols = torch.triu_indices(n, n, 1, device=device)
    return rows * n + cols


def weighted(weight: float, graph: torch.Tensor) -> torch.Tensor:
    """weight * graph; a weight of 1 returns the graph itself (the same values, one pass fewer)."""
    return graph if weight == 1 else weight * graph


def propagate(graph: torch.Tensor, values: torch.Tensor, degrees: torch.Tensor, rules: Rules) -> torch.Tensor:
    """normalise(graph) @ values for a square graph over one node set, without forming the
    normalised n x n matrix: the degree scalings are applied to the n x m values instead."""
    scale = degrees.clamp_min(EPS)
    if rules.graph_norm == "row":
        return (graph @ values) / scale[:, None]
    scale = scale.rsqrt()[:, None]
    return scale * (graph @ (scale * values))


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a, dim=1, eps=EPS) @ F.normalize(b, dim=1, eps=EPS).T


def aux_similarity(y: torch.Tensor, y_cols: torch.Tensor, rules: Rules) -> torch.Tensor:
    if rules.aux_similarity == "inner":
        return y @ y_cols.T
    return F.relu(cosine(y, y_cols))


def aux_self_similarity(y: torch.Tensor, rules: Rules) -> torch.Tensor:
    if rules.aux_similarity == "inner":
        return y.square().sum(1)
    # cos(y, y) = 1 unless the row is all zero (then 0, as ``cosine`` gives)
    return (y.abs().sum(1) > 0).to(y.dtype)


def normalise(graph, row_degrees, col_degrees, rules: Rules, *, diagonal: bool = False) -> torch.Tensor:
    """D^-1/2 S D^-1/2 (symmetric) or D^-1 S (row); degrees floored at EPS (isolated nodes get
    zero rows, not NaN). ``diagonal``: ``graph`` is a column of self-weights, (n, 1)."""
    rows = row_degrees.clamp_min(EPS)
    if rules.graph_norm == "row":
        return graph / rows[:, None]
    cols = col_degrees.clamp_min(EPS)
    cols = cols if diagonal else cols[None, :]
    return graph * rows.rsqrt()[:, None] * cols.rsqrt()
