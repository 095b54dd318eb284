"""``hashbench prepare PROTOCOL``: one standard protocol's data file from its source's original files.

Reads the source (:mod:`hashbench.datasets.sources`), draws the protocol's split
(:mod:`hashbench.datasets.protocols`), extracts each item's features once (items in several splits,
such as training images inside the database, are not extracted twice), resumably, and writes the
common data file. ``info`` records the provenance: the protocol and its sizes as drawn, the seed,
the SHA-256 of every source file read (the images themselves are not hashed), the backbone and its
weights file (name, URL, SHA-256), the image preprocessing, the images that failed to decode, and
split overlaps. Beside the common keys, ``{split}_index`` holds each row's item number in the
source's order (see ``sources``), so the split lists can be recovered and compared.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from hashbench.datasets.base import HashingDataset, Split
from hashbench.datasets.protocols import check_disjoint, draw_split, protocol
from hashbench.datasets.sources import SOURCES
from hashbench.errors import InvalidInputError


def read_source(protocol_id: str, root, *, image_root=None, download: bool = False):
    spec = protocol(protocol_id)
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(f"--root {str(root)!r} is not a folder")
    reader = SOURCES[spec.source]
    if spec.draw == "lists":
        return reader(root, spec.source, image_root)
    if spec.source == "cifar10":
        return reader(root, download=download)
    return reader(root)


def prepare_protocol(
    protocol_id: str,
    root,
    out,
    *,
    extractor_factory,
    work_dir,
    seed: int = 0,
    query_size: int | None = None,
    train_size: int | None = None,
    image_root=None,
    download: bool = False,
    provenance: dict | None = None,
    features_dtype=np.float32,
    **extract_options,
) -> HashingDataset:
    """Build ``protocol_id``'s data file at ``out``.

    ``extractor_factory(resize)`` gives the Extractor for the protocol's resize mode;
    ``provenance`` (the backbone's record, see ``extract_models.weights_provenance``; the factory may fill
    it in) is stored in ``info``.
    ``query_size`` / ``train_size`` override the protocol's sizes (see ``protocols``).
    """
    from hashbench.datasets import save_dataset
    from hashbench.datasets.extract import extract_all

    spec = protocol(protocol_id)
    source = read_source(protocol_id, root, image_root=image_root, download=download)
    rows = draw_split(spec, source.labels, source.subsets, seed, query_size=query_size, train_size=train_size)
    overlaps = check_disjoint(spec, rows)
    if spec.draw == "lists" and overlaps["query&database"]:
        warnings.warn(
            f"{spec.id}: the lists put {overlaps['query&database']} queries in the database too; kept as "
            "listed (recorded in info['split_overlaps'])",
            stacklevel=2,
        )
    needed = np.unique(np.concatenate(list(rows.values())))
    extractor = extractor_factory(spec.resize)
    result = extract_all([source.items[i] for i in needed], extractor, Path(work_dir), **extract_options)
    position = np.full(len(source.items), -1)
    position[needed] = np.arange(len(needed))
    ok = np.zeros(len(source.items), bool)
    ok[needed] = result["ok"]
    splits, extra, skipped, sizes = {}, {}, {}, {}
    for name, index in rows.items():
        kept = index[ok[index]]
        skipped[name] = int(len(index) - len(kept))
        sizes[name] = len(kept)
        splits[name] = Split(result["features"][position[kept]], source.labels[kept], None, name=name)
        extra[f"{name}_index"] = kept
    standard = query_size is None and train_size is None
    expected = {k: v for k, v in spec.expected.items() if v is not None}
    differs = {k: (sizes[k], v) for k, v in expected.items() if sizes[k] != v}
    if standard and differs:
        warnings.warn(
            f"{spec.id}: split sizes differ from the protocol's (prepared, expected): {differs}", stacklevel=2
        )
    info = {
        "source": str(Path(root).resolve()),
        "protocol": spec.id,
        "protocol_spec": spec.describe(),
        "standard_sizes": standard and not differs,
        "split_sizes": sizes,
        "seed": seed,
        "query_size": query_size,
        "train_size": train_size,
        "split_overlaps": overlaps,
        "source_files": source.checksums(Path(root)),
        "source_info": source.info,
        "backbone": dict(provenance or {}),
        "preprocessing": repr(extractor.preprocess),
        "topk": spec.topk,
        "skipped_images": skipped,
    }
    dataset = HashingDataset(spec.id, **splits, label_names=source.label_names, info=info)
    save_dataset(dataset, out, extra=extra, features_dtype=features_dtype)
    return dataset
