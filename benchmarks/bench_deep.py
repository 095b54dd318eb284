"""Deep baselines: MAP@1000, training and encoding seconds, and parameter counts on one dataset.

    .venv/bin/python benchmarks/bench_deep.py                                   # mosaic, 32 and 64 bits
    .venv/bin/python benchmarks/bench_deep.py --methods deepbit ssdh sadh --modes images --preset quick
    .venv/bin/python benchmarks/bench_deep.py --dataset path/to/data.npz --bits 16 32 64 128
    .venv/bin/python benchmarks/bench_deep.py --dataset conformance --modes features frozen --preset quick

Every method in METHODS (plus the LSH, ITQ and LAGNH references, those registered) is fitted on the training split
(seed 0), query and database are encoded, and the codes scored with ``hb.evaluate(...,
topk=1000, protocol="official")``; the database codes' health (``hb.code_stats``: constant bits,
distinct codes, mean |correlation| of bits) is printed beside. ``--dataset conformance`` is the
conformance suite's small clustered set (``hashbench.checks.conformance_dataset``). Methods that fine-tune a CNN (``input_kind == "images"``) run
twice: on the images ("images") and as a code layer on the stored features ("frozen"). Training
seconds cover ``fit`` (and are also given as a multiple of LAGNH's); encoding seconds cover query
plus database; parameters are each network's count (``n_parameters()``). ``--preset`` picks the named
training schedule of every method that has presets (default: each method's own default).
Torch and BLAS are limited to ``--threads`` threads; ``--device cuda`` times the GPU.
"""

from __future__ import annotations

import argparse
import time

import torch
from threadpoolctl import threadpool_limits

import hashbench as hb
from hashbench.checks import conformance_dataset

METHODS = ("uh-bdnn", "tbh", "wsih", "deepbit", "ssdh", "sadh")
REFERENCES = ("lsh", "itq", "lagnh")  # those registered run before METHODS; LAGNH's fit time is the ratio's unit


def variants(name: str) -> list[tuple[str, dict]]:
    """(mode, extra keyword arguments) for each way ``name`` runs."""
    if hb.list_methods()[name].input_kind == "images":
        return [("images", {"frozen_backbone": False}), ("frozen", {"frozen_backbone": True})]
    return [("features", {})]


def run_cell(dataset, name: str, n_bits: int, seed: int, options: dict) -> dict:
    method = hb.create_method(name, n_bits=n_bits, seed=seed, **options)
    start = time.perf_counter()
    method.fit(dataset.train)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    query, database = method.encode(dataset.query), method.encode(dataset.database)
    encode_seconds = time.perf_counter() - start
    scores = hb.evaluate(query, database, dataset.query.labels, dataset.database.labels, topk=1000, protocol="official")
    parameters = method.n_parameters() if hasattr(method, "n_parameters") else {}
    return {"map": scores.map, "fit": fit_seconds, "encode": encode_seconds, "parameters": parameters,
            "health": hb.code_stats(database)}


def health(cell: dict) -> str:
    stats = cell["health"]
    return (f"constant {stats['constant_bits']:.2f} distinct {stats['distinct_fraction']:.3f} "
            f"|corr| {stats['mean_abs_correlation']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mosaic", help="registered dataset name or .npz path (default: mosaic)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--bits", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default=None, help="named schedule, e.g. quick (default: each method's default)")
    parser.add_argument("--modes", nargs="+", default=["features", "images", "frozen"], help="which runs to do")
    parser.add_argument(
        "--references",
        nargs="*",
        default=[name for name in REFERENCES if name in hb.list_methods()],
        help="reference methods (default: lsh itq lagnh, those registered)",
    )
    parser.add_argument("--device", default="cpu", help="device of every method: cpu, cuda, auto (default cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch and BLAS threads (default 2)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    dataset = conformance_dataset() if args.dataset == "conformance" else hb.load_dataset(args.dataset)
    rows = []
    with threadpool_limits(args.threads):
        for name in (*args.references, *args.methods):
            for mode, options in variants(name):
                if mode not in args.modes and name not in args.references:
                    continue
                if args.preset is not None and "preset" in hb.list_methods()[name]().get_params():
                    options = {**options, "preset": args.preset}
                options = {**options, "device": args.device}
                cells = {}
                for n_bits in args.bits:
                    try:
                        cells[n_bits] = run_cell(dataset, name, n_bits, args.seed, options)
                    except hb.InvalidInputError as error:
                        cells[n_bits] = {"error": str(error)}
                    cell = cells[n_bits]
                    summary = cell.get("error") or (
                        f"MAP@1000 {cell['map']:.4f}  fit {cell['fit']:.1f} s  encode {cell['encode']:.1f} s  {health(cell)}"
                    )
                    print(f"  {name:8s} {mode:8s} {n_bits:4d} bits  {summary}", flush=True)
                rows.append((name, mode, cells))

    timed = 32 if 32 in args.bits else args.bits[0]
    print(f"\nMAP@1000 (official) on {args.dataset}, seed {args.seed}; seconds, code health and parameters at {timed} bits, "
          f"{args.threads} threads, device {args.device}, preset {args.preset or 'default'}")
    lagnh_fit = next((c[timed].get("fit") for n, _, c in rows if n == "lagnh"), None)
    print("| method | mode | " + " | ".join(f"MAP {b}" for b in args.bits)
          + " | fit s | fit / LAGNH fit | encode s | codes | parameters |")
    print("|---" * (len(args.bits) + 7) + "|")
    for name, mode, cells in rows:
        maps = [f"{c['map']:.4f}" if "map" in c else "n/a" for c in (cells[b] for b in args.bits)]
        cell = cells[timed]
        if "map" not in cell:
            print(f"| {name} | {mode} | " + " | ".join(maps) + f" | n/a | n/a | n/a | n/a | n/a ({cell['error']}) |")
            continue
        parameters = " + ".join(f"{k} {v:,}" for k, v in cell["parameters"].items()) or "-"
        if len(cell["parameters"]) > 1:
            parameters += f" = {sum(cell['parameters'].values()):,}"
        ratio = f"{cell['fit'] / lagnh_fit:.2f}" if lagnh_fit else "n/a"
        print(f"| {name} | {mode} | " + " | ".join(maps)
              + f" | {cell['fit']:.1f} | {ratio} | {cell['encode']:.2f} | {health(cell)} | {parameters} |")


if __name__ == "__main__":
    main()
