"""SSDH's pseudo-similarity and WSIH's relation targets on a dataset: do they carry its semantics?

    .venv/bin/python benchmarks/bench_graphs.py                          # mosaic and the conformance data
    .venv/bin/python benchmarks/bench_graphs.py --datasets mosaic path/to/data.npz

SSDH (``hashbench.methods.ssdh``): the thresholds fitted on the training features (the method's own
estimate), then on the pairs of ``--items`` random training items: the share of pairs marked
similar (S = +1) and dissimilar (S = -1), and how often each kind shares a label, against random
pairs. Useful structure: similar pairs share labels far more often than random pairs, dissimilar
pairs far less. WSIH (``hashbench.methods.wsih``): the share of off-diagonal relation targets
``1.2 (0.7 S + 0.3 S^2 / n)`` above 1, over the batches of 128 of one shuffled pass (the paper
preset's batch), which no cosine of two codes can reach. Labels are used here only to judge the
graphs; neither method sees them.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import hashbench as hb
from hashbench.checks import conformance_dataset
from hashbench.methods.ssdh import SSDH, cosine_distances, pseudo_similarity
from hashbench.methods.wsih import relation_target

WSIH_BATCH = 128


def ssdh_statistics(train, items: int, seed: int) -> dict:
    features = torch.as_tensor(train.features, dtype=torch.float32)
    thresholds = SSDH(frozen_backbone=True, seed=seed)._estimate_thresholds(features)
    chosen = np.random.default_rng(seed).permutation(len(features))[:items]
    similarity = pseudo_similarity(cosine_distances(features[chosen]), thresholds).numpy()
    labels = train.labels[chosen].astype(np.float32)
    share = labels @ labels.T > 0
    pairs = ~np.eye(len(chosen), dtype=bool)

    def share_rate(mask):
        return float(share[mask].mean()) if mask.any() else float("nan")

    return {
        "mode": thresholds.mode, "similar_below": thresholds.similar_below, "dissimilar_above": thresholds.dissimilar_above,
        "similar": float((similarity[pairs] == 1).mean()), "dissimilar": float((similarity[pairs] == -1).mean()),
        "similar_share": share_rate(pairs & (similarity == 1)), "dissimilar_share": share_rate(pairs & (similarity == -1)),
        "random_share": share_rate(pairs),
    }  # fmt: skip


def wsih_above_one(train, seed: int) -> float:
    features = torch.as_tensor(train.features, dtype=torch.float32)
    order = torch.as_tensor(np.random.default_rng(seed).permutation(len(features)))
    off_diagonal = ~torch.eye(WSIH_BATCH, dtype=torch.bool)
    above = [
        (relation_target(features[order[start : start + WSIH_BATCH]])[off_diagonal] > 1).float().mean()
        for start in range(0, len(features) - WSIH_BATCH + 1, WSIH_BATCH)
    ]
    return float(torch.stack(above).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mosaic", "conformance"])
    parser.add_argument("--items", type=int, default=2000, help="training items whose pairs SSDH's statistics use")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        "| dataset | mode | S=+1 below | S=-1 above | S=+1 pairs | S=-1 pairs | share a label: S=+1 | S=-1 | random | WSIH targets > 1 |"
    )
    print("|---" * 10 + "|")
    for name in args.datasets:
        train = (conformance_dataset() if name == "conformance" else hb.load_dataset(name)).train
        s = ssdh_statistics(train, args.items, args.seed)
        print(
            f"| {name} | {s['mode']:.3f} | {s['similar_below']:.3f} | {s['dissimilar_above']:.3f} | "
            f"{s['similar']:.2%} | {s['dissimilar']:.2%} | {s['similar_share']:.2f} | {s['dissimilar_share']:.2f} | "
            f"{s['random_share']:.2f} | {wsih_above_one(train, args.seed):.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
