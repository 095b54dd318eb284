"""LAGNH: retrieval quality (variants, fairness baselines, Table 5 ablations, seeds, encode modes)
and speed at MS-COCO-like scale.

    .venv/bin/python benchmarks/bench_lagnh.py                                  # everything, mosaic
    .venv/bin/python benchmarks/bench_lagnh.py --preset quick --epochs 20 --parts map ablations encode seeds
    .venv/bin/python benchmarks/bench_lagnh.py --parts speed --speed-epochs 2

Parts (``--parts``, default all):
- ``map``: MAP@1000 (official protocol) of LAGNH (paper, released) vs ITQ, itq-aux, aux-only at
  ``--bits``; LAGNH with ``--preset`` and ``--epochs`` (default: the paper's COCO settings, 300 epochs).
- ``ablations``: every Table 5 variant at 32 bits (paper variant, same epochs).
- ``seeds``: MAP spread over seeds 0, 1, 2 at 32 bits (``--variants``).
- ``encode``: MAP of both encode modes of one fitted model (32 bits), and the fraction of code bits
  that flip when the database is encoded in a shuffled order.
- ``curve``: MAP (32 bits) after each epoch in ``--curve-epochs`` of one run per variant.
- ``speed``: 5,000 x 4,096 features, 80-d aux, batch 1,024, 32 bits, ``--threads`` threads:
  seconds per epoch of each variant (mean over ``--speed-epochs`` epochs after a warm-up epoch),
  FLOPs per epoch counted from the layer sizes, the ``torch.matmul`` GFLOP/s measured in the same
  run and the achieved fraction; 300 epochs extrapolated; seconds to encode 113,287 + 5,000 items.

``--dataset synthetic`` uses the structured stand-in of ``bench_shallow.py`` (512-d, 5,000 train /
1,000 query / 20,000 database); the speed part always draws 4,096-d data from the same model.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from bench_shallow import official_map as score, structured_dataset
from threadpoolctl import threadpool_limits

import hashbench as hb
from hashbench.methods._torch import minibatches
from hashbench.methods.lagnh import LAGNH

BASELINES = ["itq", "itq-aux", "aux-only"]
ABLATIONS = {
    "LAGNH-no-aux": dict(use_aux=False),
    "LAGNH-no-att": dict(attention=False),
    "LAGNH-only-Sv": dict(gcn_graph="visual"),
    "LAGNH-only-Sa": dict(gcn_graph="aux"),
    "LAGNH-recons-ZtZ": dict(recon_target="inner-product"),
    "LAGNH-recons-feat": dict(recon_target="features"),
    "LAGNH-recons-S": dict(recon_target="augmented"),
    "LAGNH-recons-Sv": dict(recon_target="visual"),
    "LAGNH-recons-Sa (published)": dict(),
}
SPEED_SIZES = dict(n_train=5000, n_features=4096, n_aux=80, batch_size=1024, n_bits=32)
ENCODE_ITEMS = 113_287 + 5_000


_FITTED: dict = {}


def lagnh(dataset, n_bits: int, seed: int, training: dict, **options) -> LAGNH:
    """A fitted LAGNH, shared between parts (the 32-bit seed-0 models serve every part);
    ``training`` holds the preset and epochs of every MAP part."""
    defaults = LAGNH().get_params()
    options = {**training, **options}
    key = (n_bits, seed, tuple(sorted((k, v) for k, v in options.items() if defaults[k] != v)))
    if key not in _FITTED:
        start = time.perf_counter()
        _FITTED[key] = LAGNH(n_bits, seed=seed, **options).fit(dataset.train)
        print(f"    fitted LAGNH {n_bits} bits seed {seed} {options} in {time.perf_counter() - start:.0f} s", flush=True)
    return _FITTED[key]


def fitted_map(make, dataset) -> str:
    try:
        method = make()
    except hb.InvalidInputError as error:
        return f"n/a ({error})"
    return f"{score(method, dataset):.4f}"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}\n| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |", flush=True)


def map_part(dataset, bits, released_bits, seed, training) -> None:
    makers = {
        "LAGNH (paper)": lambda b: lagnh(dataset, b, seed, training),
        "LAGNH (released)": lambda b: lagnh(dataset, b, seed, training, variant="released"),
        **{name: (lambda b, name=name: hb.create_method(name, n_bits=b, seed=seed).fit(dataset.train)) for name in BASELINES},
    }
    rows = []
    for label, make in makers.items():
        cells = []
        for n_bits in bits:
            if label == "LAGNH (released)" and n_bits not in released_bits:
                cells.append("not run")
                continue
            start = time.perf_counter()
            cells.append(fitted_map(lambda: make(n_bits), dataset))
            print(f"  {label} {n_bits} bits: {cells[-1]} ({time.perf_counter() - start:.0f} s)", flush=True)
        rows.append([label, *cells])
    print_table(f"MAP@1000 on {dataset.name}, seed {seed}", ["method", *(f"{b} bits" for b in bits)], rows)


def ablation_part(dataset, seed, training) -> None:
    rows = []
    for label, options in ABLATIONS.items():
        rows.append([label, fitted_map(lambda: lagnh(dataset, 32, seed, training, **options), dataset)])
        print(f"  {label}: {rows[-1][1]}", flush=True)
    print_table(f"Table 5 ablations, 32 bits, {dataset.name}", ["variant", "MAP@1000"], rows)


def seed_part(dataset, training, variants) -> None:
    rows = []
    for variant in variants:
        maps = [float(fitted_map(lambda: lagnh(dataset, 32, seed, training, variant=variant), dataset)) for seed in (0, 1, 2)]
        rows.append(
            [variant, " / ".join(f"{m:.4f}" for m in maps), f"{statistics.mean(maps):.4f}", f"{max(maps) - min(maps):.4f}"]
        )
        print(f"  {variant}: {rows[-1]}", flush=True)
    print_table("Seeds 0, 1, 2 at 32 bits", ["variant", "MAP per seed", "mean", "max - min"], rows)


def flipped_fraction(method, split, seed: int) -> float:
    """Fraction of code bits that differ between encoding ``split`` in file order and in a
    shuffled order (codes put back in file order before comparing)."""
    order = np.random.default_rng(seed).permutation(len(split))
    in_order = method.encode(split).to_signs()
    shuffled = np.empty_like(in_order)
    shuffled[order] = method.encode(split.subset(order)).to_signs()
    return float((in_order != shuffled).mean())


def encode_part(dataset, seed, training) -> None:
    rows = []
    for variant in ("paper", "released"):
        method = lagnh(dataset, 32, seed, training, variant=variant)
        for mode in ("inductive", "batch"):
            method.set_params(encode_mode=mode)
            rows.append([variant, mode, f"{score(method, dataset):.4f}", f"{flipped_fraction(method, dataset.database, seed):.4f}"])
            print(f"  {rows[-1]}", flush=True)
        method.set_params(encode_mode="inductive")
    print_table("Encode modes, 32 bits", ["variant", "encode_mode", "MAP@1000", "bits flipped (shuffled db)"], rows)


def curve_part(dataset, seed, training, checkpoints: list[int], variants) -> None:
    """MAP after chosen epochs of one training run per variant (32 bits), through the epoch callback."""
    rows = []
    for variant in variants:
        maps = {}

        def record(epoch, method, maps=maps):
            if epoch in checkpoints:
                maps[epoch] = score(method, dataset)
                print(f"  {variant} epoch {epoch}: {maps[epoch]:.4f}", flush=True)

        options = {**training, "epochs": max(checkpoints)}
        LAGNH(32, seed=seed, variant=variant, **options).fit(dataset.train, callback=record)
        rows.append([variant, *(f"{maps[e]:.4f}" for e in checkpoints)])
    print_table("MAP@1000 along training, 32 bits", ["variant", *(f"epoch {e}" for e in checkpoints)], rows)


# --- speed -------------------------------------------------------------------------------------------
def forward_flops(n: int, d: int, c: int, p: int, h: int, r: int) -> int:
    """Multiply-adds x 2 of one forward pass over an n-node batch. Per node: the projections, the
    GCN layers, the classifier and the discriminator (r -> 64 -> 32 -> 1). Per pair: squared
    distances and the first propagation (d' each), attention scores and mixing through the aux
    width (c each), S^a (c), the second propagation and cos(Z, Z) (r each). Element-wise work is
    not counted."""
    per_node = d * p + c * p + p * c + p * h + h * r + r * c + 2 * (r * 64 + 64 * 32 + 32)
    per_pair = 2 * p + 3 * c + 2 * r
    return 2 * (n * per_node + n * n * per_pair)


def training_flops_per_epoch(method: LAGNH, batch_sizes: list[int], d: int, c: int) -> float:
    """Backward ~ twice the forward, less the input gradient of the first layer (the features
    need none); one forward + backward per generator step."""
    total = 0
    for n in batch_sizes:
        forward = forward_flops(n, d, c, method.proj_dim, method.hidden_, method.n_bits)
        total += method.generator_steps_ * (3 * forward - 2 * n * d * method.proj_dim)
    return float(total)


def matmul_gflops(repeats: int = 20) -> float:
    """torch.matmul throughput on the largest layer's shape (1,024 x 4,096 times 4,096 x 512)."""
    a, b = torch.randn(1024, 4096), torch.randn(4096, 512)
    torch.matmul(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    return repeats * 2 * 1024 * 4096 * 512 / (time.perf_counter() - start) / 1e9


def epoch_seconds(method: LAGNH, train, n_epochs: int) -> list[float]:
    stamps = [time.perf_counter()]
    method.set_params(epochs=n_epochs + 1).fit(train, callback=lambda epoch, m: stamps.append(time.perf_counter()))
    return list(np.diff(stamps)[1:])  # the first epoch warms up


def speed_part(seed: int, n_epochs: int, threads: int) -> None:
    sizes = SPEED_SIZES
    data = structured_dataset(sizes["n_train"], 1, 8000, sizes["n_features"], seed)
    batch_sizes = [len(b) for b in minibatches(sizes["n_train"], sizes["batch_size"], torch.Generator())]
    rows, fitted = [], {}
    for variant in ("paper", "released"):
        method = LAGNH(sizes["n_bits"], seed=seed, variant=variant, batch_size=sizes["batch_size"])
        gflops_before = matmul_gflops()
        seconds = epoch_seconds(method, data.train, n_epochs)
        gflops = (gflops_before + matmul_gflops()) / 2
        per_epoch = statistics.mean(seconds)
        flops = training_flops_per_epoch(method, batch_sizes, sizes["n_features"], sizes["n_aux"])
        achieved = flops / per_epoch / 1e9
        rows.append(
            [
                variant,
                " / ".join(f"{s:.2f}" for s in seconds),
                f"{per_epoch:.2f}",
                f"{flops / 1e9:.0f}",
                f"{achieved:.1f}",
                f"{gflops:.1f}",
                f"{achieved / gflops:.0%}",
                f"{300 * per_epoch / 60:.1f}",
            ]
        )
        fitted[variant] = method
        print(f"  {rows[-1]}", flush=True)
    print_table(
        f"Training speed, 5,000 x 4,096, 80-d aux, batch 1,024, 32 bits, {threads} threads",
        ["variant", "s per epoch", "mean s", "GFLOP/epoch", "achieved GFLOP/s", "matmul GFLOP/s", "fraction", "300 epochs (min)"],
        rows,
    )
    encode_rows = []
    for variant, method in fitted.items():
        for mode in ("inductive", "batch"):
            method.set_params(encode_mode=mode)
            encode_rows.append([variant, mode, f"{encode_seconds(method, data.database, ENCODE_ITEMS):.1f}"])
            print(f"  {encode_rows[-1]}", flush=True)
    print_table(f"Encoding {ENCODE_ITEMS:,} items ({threads} threads)", ["variant", "encode_mode", "seconds"], encode_rows)


def encode_seconds(method, split, n_items: int) -> float:
    """Seconds to encode ``n_items`` items, taken as repeated passes over ``split`` (the codes'
    cost does not depend on which items they are)."""
    total, done = 0.0, 0
    while done < n_items:
        part = split if n_items - done >= len(split) else split.subset(np.arange(n_items - done))
        start = time.perf_counter()
        method.encode(part)
        total += time.perf_counter() - start
        done += len(part)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mosaic", help="registered name, .npz path, or 'synthetic'")
    parser.add_argument("--parts", nargs="+", default=["map", "ablations", "seeds", "encode", "curve", "speed"])
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--preset", default=None, help="LAGNH preset for the MAP parts (default: the paper's COCO settings)")
    parser.add_argument("--epochs", type=int, default=None, help="LAGNH epochs for the MAP parts (default: the preset's)")
    parser.add_argument("--speed-epochs", type=int, default=2, help="timed epochs per variant after one warm-up")
    parser.add_argument("--released-bits", type=int, nargs="+", help="code lengths of the released variant (default: --bits)")
    parser.add_argument("--variants", nargs="+", default=["paper", "released"], help="variants of the seeds and curve parts")
    parser.add_argument("--curve-epochs", type=int, nargs="+", default=[10, 50, 100, 300])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="BLAS / torch threads (default 2)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    training = {"preset": args.preset, "epochs": args.epochs}
    with threadpool_limits(args.threads):
        if set(args.parts) - {"speed"}:
            dataset = (
                structured_dataset(5000, 1000, 20_000, 512, args.seed)
                if args.dataset == "synthetic"
                else hb.load_dataset(args.dataset)
            )
            print(f"dataset {dataset.name}: train {len(dataset.train)}, query {len(dataset.query)}, "
                  f"database {len(dataset.database)}; LAGNH preset {args.preset}, epochs {args.epochs}", flush=True)
        if "map" in args.parts:
            map_part(dataset, args.bits, args.released_bits or args.bits, args.seed, training)
        if "ablations" in args.parts:
            ablation_part(dataset, args.seed, training)
        if "seeds" in args.parts:
            seed_part(dataset, training, args.variants)
        if "encode" in args.parts:
            encode_part(dataset, args.seed, training)
        if "curve" in args.parts:
            curve_part(dataset, args.seed, {"preset": args.preset}, sorted(args.curve_epochs), args.variants)
        if "speed" in args.parts:
            speed_part(args.seed, args.speed_epochs, args.threads)


if __name__ == "__main__":
    main()
