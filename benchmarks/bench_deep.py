"""Deep baselines: fit and encode seconds, parameter counts and MAP@1000 on one dataset.

    pytest benchmarks/bench_deep.py --benchmark-only                               # small synthetic set, quick presets
    pytest benchmarks/bench_deep.py --benchmark-only --scale full --bench-preset paper   # 5,000 x 4,096 (MS-COCO-like)
    pytest benchmarks/bench_deep.py --benchmark-only --bench-dataset mosaic --bench-bits 32,64 -k "deepbit or ssdh"

Every method in METHODS (seed 0, ``--bench-preset`` and ``--bench-epochs``, on ``--bench-device``)
is fitted on the training split (the benchmarked time, one round), query and database are
encoded (timed) and the codes scored with ``hb.evaluate(..., topk=1000)`` (official protocol).
Methods that fine-tune a CNN (``input_kind == "images"``) run twice: on the images ("images",
skipped when the dataset has none) and as a code layer on the stored features ("frozen"). Data:
``--bench-dataset``, or the structured synthetic set of ``bench_shallow`` (1,000 / 200 / 4,000 x
512 at ``small``, 5,000 / 1,000 / 20,000 x 4,096 at ``full``). In-run baselines: LAGNH's fit with
the same preset and epochs (the unit of the paper's Table 4, whose MS-COCO ratios are stored
beside ours; target: slower than LAGNH, as there) and LSH's MAP at the same code length.
"""

from __future__ import annotations

import time

import pytest
import torch
from bench_shallow import official_map, structured_dataset

import hashbench as hb
from hashbench.reporting.paper import paper_seconds

METHODS = ("uh-bdnn", "tbh", "wsih", "deepbit", "ssdh", "sadh")
SIZES = {"small": (1000, 200, 4000, 512), "full": (5000, 1000, 20_000, 4096)}  # train, query, database, dims


def runs() -> list[tuple[str, str]]:
    """(method, mode) for each way a method runs."""
    registered = hb.list_methods()
    return [
        (name, mode)
        for name in METHODS
        if name in registered
        for mode in (("images", "frozen") if registered[name].input_kind == "images" else ("features",))
    ]


def settings(name: str, mode: str, training: dict, device: str) -> dict:
    """Keyword arguments of ``name``: the preset, the epochs under the name the method counts
    them with, the device, and the frozen backbone of the "frozen" mode."""
    accepted = hb.list_methods()[name]().get_params()
    options = {"preset": training["preset"], "device": device}
    if mode != "features":
        options["frozen_backbone"] = mode == "frozen"
    if training["epochs"] is not None:
        options[next(key for key in ("epochs", "iterations") if key in accepted)] = training["epochs"]
    return {key: value for key, value in options.items() if key in accepted}


@pytest.fixture(scope="module")
def device(request):
    return request.config.getoption("--bench-device")


@pytest.fixture(scope="module")
def dataset(request, scale):
    name = request.config.getoption("--bench-dataset")
    return hb.load_dataset(name) if name else structured_dataset(*SIZES[scale], seed=0)


@pytest.fixture(scope="module")
def references(dataset, training, device):
    """LAGNH's fit seconds and LSH's MAP per code length, each measured once."""
    lagnh_fit, lsh_maps = {}, {}

    def lagnh_seconds(n_bits: int) -> float:
        if n_bits not in lagnh_fit:
            method = hb.create_method("lagnh", n_bits=n_bits, seed=0, **settings("lagnh", "features", training, device))
            start = time.perf_counter()
            method.fit(dataset.train)
            lagnh_fit[n_bits] = time.perf_counter() - start
        return lagnh_fit[n_bits]

    def lsh_map(n_bits: int) -> float:
        if n_bits not in lsh_maps:
            lsh_maps[n_bits] = official_map(hb.create_method("lsh", n_bits=n_bits, seed=0).fit(dataset.train), dataset)
        return lsh_maps[n_bits]

    return lagnh_seconds, lsh_map


@pytest.mark.parametrize(("name", "mode"), runs(), ids=[f"{name}-{mode}" for name, mode in runs()])
def test_fit_encode_and_map(
    benchmark, record, fastest, threads, dataset, training, device, references, name, mode, n_bits
):
    if mode == "images" and dataset.train.images is None:
        pytest.skip(f"{dataset.name} has no images")
    lagnh_seconds, lsh_map = references
    benchmark.group = f"deep fit, {n_bits} bits"
    method = hb.create_method(name, n_bits=n_bits, seed=0, **settings(name, mode, training, device))
    try:
        benchmark.pedantic(method.fit, (dataset.train,), rounds=1, iterations=1)
    except hb.InvalidInputError as error:
        pytest.skip(f"{name} ({mode}) at {n_bits} bits: {error}")
    fit_seconds = fastest()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    query, database = method.encode(dataset.query), method.encode(dataset.database)
    encode_seconds = time.perf_counter() - start
    score = hb.evaluate(query, database, dataset.query.labels, dataset.database.labels, topk=1000).map
    ratio = fit_seconds / lagnh_seconds(n_bits)
    paper = paper_seconds("coco", name)
    paper_ratio = None if paper is None else paper[0] / paper_seconds("coco", "lagnh")[0]
    record(
        baseline="LAGNH's fit with the same preset and epochs (fit); LSH (MAP)",
        ratio=ratio,
        ratio_is="fit seconds / LAGNH's fit seconds",
        targets={"fit over LAGNH's (Table 4: every baseline is slower)": (ratio, ">=", 1.0)} if paper_ratio else {},
        dataset=dataset.name,
        mode=mode,
        training=training,
        device=device,
        fit_seconds=fit_seconds,
        encode_seconds=encode_seconds,
        parameters=method.n_parameters() if hasattr(method, "n_parameters") else {},
        map=score,
        map_over_lsh=score / lsh_map(n_bits),
        paper_fit_over_lagnh_coco=paper_ratio,
    )
