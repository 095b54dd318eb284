"""Sub-commands on methods and codes: ``list``, ``evaluate`` (score saved codes) and ``check``
(the conformance suite)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hashbench.cli.options import key_values, topk_argument
from hashbench.errors import HashbenchError


def add_commands(subparsers) -> None:
    listing = subparsers.add_parser("list", help="list registered methods and datasets")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(func=cmd_list)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="score saved codes (MAP@k, P@k) against ground-truth labels",
        description="Score query codes against database codes. Codes files are hashbench codes "
        "(.codes.npz from BinaryCodes.save or a run) or .npy arrays of -1/+1 or 0/1 values.",
    )
    evaluate.add_argument("query_codes", type=Path)
    evaluate.add_argument("db_codes", type=Path)
    evaluate.add_argument(
        "--labels",
        nargs="+",
        required=True,
        metavar="SOURCE",
        help="a dataset name or file (its query and database labels are used), or two .npy files: "
        "QUERY_LABELS DB_LABELS",
    )
    evaluate.add_argument(
        "--topk", type=topk_argument, default=1000, help="rank cut-off k of MAP@k, or 'all' for MAP@all (default 1000)"
    )
    evaluate.add_argument("--protocol", default="official", help="official (default), deephash or tie_aware")
    evaluate.add_argument("--normalise", help="override the protocol's AP normaliser: retrieved, min-r-k, relevant")
    evaluate.add_argument("--ties", help="override its tie order: stable, optimistic, pessimistic, expected")
    evaluate.add_argument("--no-relevant", help="override its rule for queries without relevant items: skip, zero")
    evaluate.add_argument("--json", action="store_true", help="print all scores as JSON")
    evaluate.set_defaults(func=cmd_evaluate)

    check = subparsers.add_parser(
        "check",
        help="run the conformance suite on a method (built-in or --plugin)",
        description="Train the method (its quick preset) on a small built-in dataset and check its "
        "contracts: registration, parameters, named errors, schedule, time budget, callback, "
        "determinism, per-item codes, code health, MAP above random codes, feature scale. Exit 0 "
        "when every check passes, 1 otherwise, one line per failure.",
    )
    check.add_argument("method", help="a registered method name")
    check.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="a hyper-parameter (repeatable); VALUE is read as a Python literal, else as a string",
    )  # fmt: skip
    check.set_defaults(func=cmd_check)


def cmd_list(args) -> None:
    from hashbench.registry import list_datasets, list_methods

    methods = {
        name: {
            "input": cls.input_kind,
            "uses_aux": cls.uses_aux,
            "citation": cls.citation,
        }
        for name, cls in list_methods().items()
    }
    datasets = {name: entry.description for name, entry in list_datasets().items()}
    if args.json:
        print(json.dumps({"methods": methods, "datasets": datasets}, indent=2))
        return
    width = max(map(len, methods), default=6)
    print(f"{'method':<{width}}  {'input':<8}  {'aux':<3}  citation")
    for name, info in methods.items():
        aux = "yes" if info["uses_aux"] else "no"
        print(f"{name:<{width}}  {info['input']:<8}  {aux:<3}  {info['citation']}")
    print()
    width = max(map(len, datasets), default=7)
    print(f"{'dataset':<{width}}  description")
    for name, description in datasets.items():
        print(f"{name:<{width}}  {description}")


def load_codes(path: Path):
    from hashbench.codes import BinaryCodes

    if not path.is_file():
        raise HashbenchError(f"codes file {str(path)!r} does not exist")
    if path.suffix == ".npy":
        return BinaryCodes.coerce(np.load(path), str(path))
    return BinaryCodes.load(path)


def cmd_evaluate(args) -> None:
    from hashbench.datasets import load_dataset
    from hashbench.metrics import evaluate

    query_codes, db_codes = load_codes(args.query_codes), load_codes(args.db_codes)  # before a dataset build
    if len(args.labels) == 1:
        dataset = load_dataset(args.labels[0])
        query_labels, db_labels = dataset.query.labels, dataset.database.labels
    elif len(args.labels) == 2:
        query_labels, db_labels = (np.load(p) for p in args.labels)
    else:
        raise HashbenchError("--labels takes one dataset or two .npy files (query, database)")
    scores = evaluate(
        query_codes,
        db_codes,
        query_labels,
        db_labels,
        topk=args.topk,
        protocol=args.protocol,
        normalise=args.normalise,
        ties=args.ties,
        no_relevant=args.no_relevant,
    )
    if args.json:
        print(json.dumps(scores.to_dict(), indent=2))
    else:
        print(scores.summary())


def cmd_check(args) -> int:
    from hashbench.checks import check_method

    failures = check_method(args.method, **key_values(args.param, "--param"))
    for failure in failures:
        print(f"FAIL {failure}")
    print(f"{args.method}: {'all checks passed' if not failures else f'{len(failures)} check(s) failed'}")
    return 1 if failures else 0
