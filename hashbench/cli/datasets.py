"""CLI commands for datasets: ``hashbench datasets describe`` and ``hashbench datasets backbone``.

    hashbench datasets describe mosaic [--data-dir DIR] [--out samples.png] [-o size=tiny]

prints the split sizes, label cardinality, label frequencies, aux precision / recall and feature
statistics, and writes a PNG grid of sample images annotated with their true and aux labels. The
statistics of the train split's features (see :mod:`hashbench.datasets.statistics`) are also
stored in the dataset's ``info["feature_statistics"]``.

    hashbench datasets backbone --features fc7 [--out FILE]

retrains the mosaic backbone that the package ships (see :mod:`hashbench.datasets.mosaic`) with
the items, epochs and seed it was shipped with, and writes it (by default over the shipped file).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hashbench.cli.options import add_data_dir, key_values
from hashbench.datasets.statistics import TooFewItemsError, feature_statistics

SAMPLE_GRID = (4, 6)


def add_commands(subparsers) -> None:
    """Add the dataset sub-commands to the ``hashbench`` parser."""
    datasets = subparsers.add_parser("datasets", help="inspect datasets")
    commands = datasets.add_subparsers(dest="datasets_command", metavar="COMMAND", required=True)
    describe = commands.add_parser(
        "describe",
        help="sizes, label statistics, aux quality, feature statistics and a PNG of samples",
        description="Describe a registered dataset (built and cached on first use) or a data file.",
    )
    describe.add_argument("dataset", help="a registered name (e.g. mosaic) or a data file / folder")
    add_data_dir(describe)
    describe.add_argument("--out", type=Path, default=None, help="PNG of sample images (default: DATASET-samples.png)")
    describe.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="builder option of a registered dataset, e.g. -o size=tiny (repeatable)",
    )
    describe.set_defaults(func=cmd_describe)
    backbone = commands.add_parser(
        "backbone",
        help="retrain a shipped mosaic backbone (hashbench/data/mosaic_backbone_FEATURES.npz)",
        description="Train the mosaic backbone the package ships, with the seed, items and epochs it was "
        "shipped with, and write it (by default over the shipped file).",
    )
    backbone.add_argument("--features", choices=("fc7", "pooled"), default="fc7")
    backbone.add_argument("--out", type=Path, default=None, help="where to write it (default: the shipped file)")
    backbone.set_defaults(func=cmd_backbone)


def cmd_backbone(args) -> None:
    from hashbench.datasets.backbone_shipped import shipped_backbone_path, write_shipped_backbone

    trained = write_shipped_backbone(args.features, args.out)
    print(f"wrote {args.out or shipped_backbone_path(args.features)}: {json.dumps(trained.meta)}")


def cmd_describe(args) -> None:
    from hashbench.datasets import load_dataset

    options = key_values(args.option, "dataset option")
    if args.data_dir is not None:
        options["data_dir"] = args.data_dir
    dataset = load_dataset(args.dataset, **options)
    print(describe_text(dataset))
    split = dataset.query
    if split.images is None:
        print("\nno images stored: no sample picture written")
        return
    out = args.out or Path(f"{Path(dataset.name).name}-samples.png")
    save_sample_grid(dataset, split, out)
    print(f"\nsample images with true and aux labels: {out}")


def describe_text(dataset) -> str:
    splits = dataset.splits()
    lines = [f"dataset {dataset.name} (fingerprint {dataset.fingerprint})"]
    if "image_source" in dataset.info:
        lines.append(f"images: {dataset.info['image_source']}")
    lines += [
        "",
        f"{'split':<9} {'rows':>7} {'features':>8} {'labels':>6} {'aux':>5} {'labels/item':>11} {'images':>6}",
    ]
    for name, split in splits.items():
        width = lambda a: "-" if a is None else str(a.shape[1])  # noqa: E731
        cardinality = "-" if split.labels is None else f"{split.labels.sum(1).mean():.3f}"
        images = "yes" if split.images is not None else "no"
        lines.append(
            f"{name:<9} {len(split):>7} {width(split.features):>8} {width(split.labels):>6} {width(split.aux):>5}"
            f" {cardinality:>11} {images:>6}"
        )
    lines += ["", "label frequency (fraction of items holding the label):"]
    labelled = {n: s for n, s in splits.items() if s.labels is not None}
    n_labels = next(iter(labelled.values())).labels.shape[1]
    label_names = dataset.label_names or [f"label {i}" for i in range(n_labels)]
    lines.append(f"  {'label':<16}" + "".join(f"{n:>10}" for n in labelled))
    for i, label in enumerate(label_names):
        lines.append(f"  {label:<16}" + "".join(f"{s.labels[:, i].mean():>10.3f}" for s in labelled.values()))
    lines += ["", aux_summary(dataset), "", "features:"]
    with_features = {n: s for n, s in splits.items() if s.features is not None}
    for name, split in with_features.items():
        f = split.features
        lines.append(
            f"  {name:<9} mean {f.mean():.4f}  std {f.std():.4f}  min {f.min():.4f}  max {f.max():.4f}"
            f"  zeros {np.mean(f == 0):.3f}  mean row norm {np.linalg.norm(f, axis=1).mean():.3f}"
        )
    if not with_features:
        lines.append("  none stored (images only)")
    lines += ["", statistics_summary(dataset)]
    return "\n".join(lines)


def statistics_summary(dataset) -> str:
    """The train features' statistics as text; they are also stored in ``info["feature_statistics"]``."""
    if dataset.train.features is None:
        return "feature statistics: none, the train split stores no features (images only)"
    try:
        stats = feature_statistics(dataset.train)
    except TooFewItemsError as error:
        return f"feature statistics: none ({error})"
    dataset.info["feature_statistics"] = stats
    return (
        f"feature statistics of the train split ({stats['items']} items, {stats['pairs']} pairs):\n"
        f"  variance share of the top 3 / top 10 principal components {stats['top3_variance_share']:.3f}"
        f" / {stats['top10_variance_share']:.3f}, effective rank {stats['effective_rank']:.2f}\n"
        f"  pairwise cosine median {stats['median_cosine']:.3f}, 5th percentile {stats['p5_cosine']:.3f};"
        f" fraction of zeros {stats['zero_fraction']:.3f}"
    )


def aux_summary(dataset) -> str:
    info = dataset.info
    if dataset.train.aux is None:
        return "aux: none"
    density = dataset.train.aux.astype(bool).sum(1).mean()
    text = f"aux: {dataset.train.aux.shape[1]} columns, {density:.2f} active per train item"
    if "aux_precision" in info:
        text += f"; vs true labels: precision {info['aux_precision']:.3f}, recall {info['aux_recall']:.3f}"
    return text


def sample_annotations(dataset, split, indices) -> list[tuple[str, str]]:
    """(true labels, aux labels) text per sample; detected classes that are not true labels end in '!'."""
    label_names = dataset.label_names or [str(i) for i in range(split.labels.shape[1])]
    aux_names = dataset.aux_names or ([] if split.aux is None else [str(i) for i in range(split.aux.shape[1])])
    detects_classes = aux_names == [f"detected {n}" for n in label_names]
    result = []
    for i in indices:
        true = [label_names[c] for c in np.flatnonzero(split.labels[i])]
        aux = [] if split.aux is None else [aux_names[c] for c in np.flatnonzero(split.aux[i])]
        if detects_classes:
            aux = [name.removeprefix("detected ") for name in aux]
            aux = [name if name in true else f"{name}!" for name in aux]
        shown = aux[:6]
        lines = [", ".join(shown[start : start + 3]) for start in range(0, len(shown), 3)]
        result.append((", ".join(true), "\n".join(lines) or "(none)"))
    return result


def save_sample_grid(dataset, split, out: Path, seed: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = SAMPLE_GRID
    count = min(rows * columns, len(split))
    indices = np.sort(np.random.default_rng(seed).choice(len(split), count, replace=False))
    pixels = split.images.load(indices)
    annotations = sample_annotations(dataset, split, indices)
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 3.4 * rows))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, index, image, (true, aux) in zip(np.ravel(axes), indices, pixels, annotations):
        ax.imshow(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"#{index}\ntrue: {true}", fontsize=7, loc="left")
        ax.text(0, -0.04, f"aux: {aux}", transform=ax.transAxes, fontsize=7, va="top", color="tab:blue")
    marked = any("!" in aux for _, aux in annotations)
    note = " (detections not among the true labels end in '!')" if marked else ""
    figure.suptitle(f"{dataset.name}: {split.name} samples, true labels and aux{note}", fontsize=9)
    figure.subplots_adjust(left=0.01, right=0.99, top=0.92, bottom=0.03, hspace=0.5, wspace=0.08)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
