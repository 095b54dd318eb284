"""A generated multi-label dataset whose features have the statistics of CNN fc7 activations.

    load_dataset("fc7-like")                                   # 2,000 / 500 / 8,000 items, 512-d
    load_dataset("fc7-like", n_train=1000, n_features=256, seed=3)

It is built in memory in a second from a seed, identically on every machine (NumPy's generator
and float64 arithmetic only), so it serves as held-out data on which no method's defaults were
tuned: the conformance suite trains every method's default preset on a small one
(:mod:`hashbench.checks`), and the regression tests of SSDH and DeepBit run on the default size.

The model, for ``n_classes`` classes and ``n_features`` features:

- labels: each item has ``1 + Poisson(1)`` classes (at most 4, drawn without replacement), about
  two on average, as COCO's images;
- a latent vector of ``latent_dim`` entries per item: the sum of its classes' prototypes
  (N(0, 1) entries) divided by the square root of their number, plus N(0, ``noise``^2) noise;
- features: ``scale * ReLU(z A + b)``, a random layer of a ReLU network on the latent vector, with
  ``A`` of N(0, 1 / latent_dim) entries, one offset ``b`` per feature from N(-0.3, 1) (features
  with a positive offset fire for most items, as the common units of a CNN layer, the others
  rarely) and a log-normal scale per item (sigma 0.3), as image contrast scales activations;
- aux: the labels as a detector sees them (10% of the objects missed, 3% of the absent ones seen;
  a seen object has its score, U(0.5, 1), as COCO's detections kept above 0.5), then ``n_tags``
  user tags (NUS-WIDE's aux), each drawn with a rate per class from U(0, 0.2) averaged over the
  item's classes;
- a labelled web split of ``n_web`` single-label items from the same model (for WSIH).

Free choices (default): ``n_classes=10``, ``n_features=512``, ``n_tags=0`` (COCO's aux: the
detections alone), ``latent_dim=64``, ``noise=1.0``, the sizes ``n_train=2000``, ``n_query=500``,
``n_database=8000``, ``n_web=500``, and ``seed=0``. At the defaults (``hashbench datasets describe
fc7-like``) 56% of the feature values are zero, the median cosine similarity of two training
items is 0.51 (5th percentile 0.38) and the variance is spread over many directions (effective
rank 74, the top 10 principal components hold 50%): the statistics of VGG16 fc7 and of the mosaic
set's fc7 features, with no component shared by all items.
"""

from __future__ import annotations

import numpy as np

from hashbench._validation import check_positive_int
from hashbench.datasets.base import HashingDataset, Split
from hashbench.errors import InvalidInputError
from hashbench.registry import register_dataset

MAX_LABELS = 4
OFFSET_MEAN, OFFSET_STD = -0.3, 1.0
SCALE_SIGMA = 0.3
MISSED, FALSE_DETECTIONS = 0.1, 0.03
MAX_TAG_RATE = 0.2
MIN_SCORE = 0.5


def fc7_like_dataset(
    *,
    n_train: int = 2000,
    n_query: int = 500,
    n_database: int = 8000,
    n_web: int = 500,
    n_classes: int = 10,
    n_features: int = 512,
    n_tags: int = 0,
    latent_dim: int = 64,
    noise: float = 1.0,
    seed: int = 0,
) -> HashingDataset:
    """The dataset of the module docstring."""
    for name, value in (("n_train", n_train), ("n_query", n_query), ("n_database", n_database), ("n_web", n_web),
                        ("n_features", n_features), ("latent_dim", latent_dim)):  # fmt: skip
        check_positive_int(value, name)
    if isinstance(n_tags, bool) or not isinstance(n_tags, int) or n_tags < 0:
        raise InvalidInputError(f"n_tags must be an integer >= 0, got {n_tags!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < MAX_LABELS:
        raise InvalidInputError(f"n_classes must be an integer >= {MAX_LABELS}, got {n_classes!r}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise InvalidInputError(f"noise must be a number >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(0.0, 1.0, (n_classes, latent_dim))
    layer = rng.normal(0.0, 1.0 / np.sqrt(latent_dim), (latent_dim, n_features))
    offsets = rng.normal(OFFSET_MEAN, OFFSET_STD, n_features)
    tag_rates = rng.uniform(0.0, MAX_TAG_RATE, (n_classes, n_tags))

    def split(n: int, name: str, single_label: bool = False) -> Split:
        counts = np.ones(n, int) if single_label else np.minimum(1 + rng.poisson(1.0, n), MAX_LABELS)
        labels = np.zeros((n, n_classes), np.uint8)
        for row, count in enumerate(counts):
            labels[row, rng.choice(n_classes, count, replace=False)] = 1
        latent = labels @ prototypes / np.sqrt(counts)[:, None] + rng.normal(0.0, noise, (n, latent_dim))
        scale = rng.lognormal(0.0, SCALE_SIGMA, (n, 1))
        features = scale * np.maximum(latent @ layer + offsets, 0.0)
        seen = rng.random(labels.shape)
        detected = np.where(labels == 1, seen >= MISSED, seen < FALSE_DETECTIONS)
        scores = detected * rng.uniform(MIN_SCORE, 1.0, labels.shape)
        tags = rng.random((n, n_tags)) < labels @ tag_rates / counts[:, None]
        aux = np.hstack([scores, tags]).astype(np.float32)
        return Split(features.astype(np.float32), labels, aux, name=name)

    train, query, database = split(n_train, "train"), split(n_query, "query"), split(n_database, "database")
    web = split(n_web, "web", single_label=True)
    names = [f"class{c}" for c in range(n_classes)]
    return HashingDataset(
        "fc7-like",
        train,
        query,
        database,
        web=Split(web.features, web.labels, name="web"),
        label_names=names,
        aux_names=names + [f"tag{t}" for t in range(n_tags)],
        info={"generator": "hashbench.datasets.synthetic.fc7_like_dataset", "seed": seed},
    )


def build_fc7_like(*, data_dir=None, **options) -> HashingDataset:
    """The registry's builder: generated in memory, so ``data_dir`` (a cache folder) is ignored."""
    return fc7_like_dataset(**options)


register_dataset(
    "fc7-like",
    build_fc7_like,
    "generated multi-label set with fc7-like features (sparse, non-negative, median cosine 0.49): "
    "2,000 / 500 / 8,000 items, 512-d, 10 classes",
)
