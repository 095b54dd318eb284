"""Reading users' data files into the common format, and writing it.

The common format is one ``.npz`` (or a folder of ``.npy`` files, one array per file named by its
key) with keys ``{train,query,database}_{features,labels,aux}``, optional ``web_*``,
``{split}_images`` (uint8 (n, C, H, W) or (n, H, W)), ``label_names``, ``aux_names`` and ``info``
(a JSON string). ``features`` are (n, d) floats, ``labels`` (n, c) 0/1 multi-hot, ``aux`` (n, c_aux).
Query and database labels are required (evaluation needs them); train labels and every ``aux`` are
optional.

Other names are accepted for the same arrays, in any of the forms ``{split}_{kind}``,
``{kind}_{split}`` or the two run together (case-insensitive):
- splits: train = ``train``/``tr``/``training``; query = ``query``/``test``/``te``/``val``/``q``;
  database = ``database``/``db``/``retrieval``/``ret``/``base``;
- kinds: features = ``features``/``feature``/``feat``/``data``/``x``/``i`` (the ``I_tr`` of
  cross-modal hashing code); labels = ``labels``/``label``/``l``/``y``; aux = ``aux``/``tag``/``tags``/``t``.
So ``I_tr/L_tr/T_tr``, ``XTrain/LTrain``, ``train_data/train_L`` and the official LAGNH code's
``{train,val,retrieval}_{feature,label,tag}`` all load.

MATLAB ``.mat`` files: v5 and earlier through ``scipy.io.loadmat``, v7.3 (HDF5) through ``h5py``,
whose arrays come out transposed and are turned back. Stored transposed data are detected per split:
when features, labels and aux agree on their row count only after transposing some of them, those
are transposed (and ``info["transposed"]`` lists them).

HashNet-style list files: a folder holding ``train.txt``, ``test.txt`` (or ``query.txt``) and
``database.txt``, each line ``image/path.jpg 0 1 0 ...`` (the path, then the multi-hot labels), with
the features of the listed images, in the same order, in ``train.npy``, ``test.npy`` ... beside
them, and optionally their aux in ``train_aux.npy`` ... . The image paths are kept in
``info["image_paths"]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hashbench.datasets.base import SPLIT_NAMES, ArrayImages, HashingDataset, Split
from hashbench.errors import InvalidInputError

ALL_SPLITS = (*SPLIT_NAMES, "web")
KINDS = ("features", "labels", "aux", "images")
SPLIT_ALIASES = {
    "train": ("train", "tr", "training"),
    "query": ("query", "test", "te", "val", "q"),
    "database": ("database", "db", "retrieval", "ret", "base"),
    "web": ("web",),
}
KIND_ALIASES = {
    "features": ("features", "feature", "feat", "data", "x", "i"),
    "labels": ("labels", "label", "l", "y"),
    "aux": ("aux", "tag", "tags", "t"),
    "images": ("images", "image", "pixels"),
}
NAME_KEYS = ("label_names", "aux_names")
LIST_FILE_SPLITS = {"train": ("train",), "query": ("test", "query"), "database": ("database", "db")}


def _alias_table() -> dict[str, str]:
    table = {}
    for split, split_names in SPLIT_ALIASES.items():
        for kind, kind_names in KIND_ALIASES.items():
            for s in split_names:
                for k in kind_names:
                    for key in (f"{s}{k}", f"{k}{s}"):
                        table.setdefault(key, f"{split}_{kind}")
    return table


_ALIASES = _alias_table()


def canonical_key(key: str) -> str | None:
    """The common-format name of an array key (``I_tr`` -> ``train_features``), or None if unknown."""
    compact = key.lower().replace("_", "")
    if key in NAME_KEYS or key in ("info", "meta") or key.startswith("backbone."):
        return key
    return _ALIASES.get(compact)


def normalise_keys(arrays: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Rename recognised keys to the common names; two keys naming the same array is an error."""
    renamed, origin = {}, {}
    for key, value in arrays.items():
        canonical = canonical_key(key)
        if canonical is None:
            continue
        if canonical in renamed:
            raise InvalidInputError(f"{source}: keys {origin[canonical]!r} and {key!r} both name {canonical!r}")
        renamed[canonical], origin[canonical] = value, key
    return renamed


def dataset_from_arrays(
    arrays: dict[str, np.ndarray], name: str, source: str, info: dict | None = None
) -> HashingDataset:
    """Validate arrays in the common format (aliases allowed) and build a HashingDataset."""
    present = sorted(arrays)
    arrays = normalise_keys(arrays, source)
    info = {"source": source, **_stored_info(arrays), **(info or {})}
    required = [f"{s}_features" for s in SPLIT_NAMES] + ["query_labels", "database_labels"]
    missing = [
        k
        for k in required
        if k not in arrays and not (k.endswith("_features") and k.replace("_features", "_images") in arrays)
    ]
    if missing:
        raise InvalidInputError(
            f"{source}: missing {', '.join(repr(k) for k in missing)}; keys present: {', '.join(present) or '(none)'}"
        )
    backbone = _backbone_factory(arrays)
    splits, transposed = {}, []
    for split in ALL_SPLITS:
        if not any(f"{split}_{kind}" in arrays for kind in KINDS):
            continue
        matrices = _oriented({k: arrays.get(f"{split}_{k}") for k in ("features", "labels", "aux")}, split, source)
        transposed += [f"{split}_{k}" for k, flipped in matrices.items() if flipped[1]]
        images = arrays.get(f"{split}_images")
        splits[split] = Split(
            *(matrices[k][0] for k in ("features", "labels", "aux")),
            images=None if images is None else ArrayImages(_with_channel_axis(images, split), backbone),
            name=split,
        )
    if transposed:
        info["transposed"] = transposed
    names = {k: [str(n) for n in np.asarray(arrays[k]).ravel()] for k in NAME_KEYS if k in arrays}
    return HashingDataset(name, **splits, **names, info=info)


def _stored_info(arrays) -> dict:
    for key in ("info", "meta"):
        if key in arrays:
            try:
                stored = json.loads(str(np.asarray(arrays[key])))
            except ValueError:
                return {}
            return stored.get("info", stored) if key == "meta" else stored
    return {}


def _oriented(matrices: dict, split: str, source: str) -> dict:
    """(array, was_transposed) per kind, transposing where that makes the row counts agree."""
    arrays = {k: np.asarray(v) for k, v in matrices.items() if v is not None}
    shapes = {k: a.shape for k, a in arrays.items()}
    if any(a.ndim != 2 for a in arrays.values()):
        detail = ", ".join(f"{split}_{k}: {s}" for k, s in shapes.items())
        raise InvalidInputError(f"{source}: {split} arrays must be 2-D (rows x columns); got {detail}")
    result = dict.fromkeys(matrices, (None, False))
    if not arrays:
        return result
    reference = arrays.get("features", arrays.get("labels"))
    for n in (reference.shape[0], reference.shape[1]) if reference is not None else ():
        if all(n in a.shape for a in arrays.values()):
            for k, a in arrays.items():
                flip = a.shape[0] != n
                result[k] = (a.T if flip else a, flip)
            return result
    detail = ", ".join(f"{split}_{k}: {s}" for k, s in shapes.items())
    raise InvalidInputError(f"{source}: row counts differ within the {split} split ({detail})")


def _with_channel_axis(images, split) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.dtype != np.uint8 or images.ndim != 4:
        raise InvalidInputError(
            f"{split}_images must be uint8 (n, C, H, W) or (n, H, W), got {images.dtype} {images.shape}"
        )
    return images


def _backbone_factory(arrays):
    if any(k.startswith("backbone.") for k in arrays):
        from hashbench.datasets.backbone import BackboneFactory, arrays_to_state

        return BackboneFactory(arrays_to_state(arrays))
    return _missing_backbone


def _missing_backbone():
    raise InvalidInputError("this dataset file stores images but no backbone weights (keys 'backbone.*')")


# ---- readers -----------------------------------------------------------------------------------


def read_npz(path: Path) -> HashingDataset:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return dataset_from_arrays(arrays, path.stem, str(path))


def read_npy_folder(path: Path) -> HashingDataset:
    arrays = {f.stem: np.load(f, allow_pickle=False) for f in sorted(path.glob("*.npy"))}
    return dataset_from_arrays(arrays, path.name, str(path))


def read_mat(path: Path) -> HashingDataset:
    import h5py
    import scipy.io

    if h5py.is_hdf5(path):  # MATLAB v7.3
        arrays = _read_mat73(path)
    else:
        raw = scipy.io.loadmat(path)
        arrays = {k: v for k, v in raw.items() if not k.startswith("__") and isinstance(v, np.ndarray)}
    return dataset_from_arrays(_strings_as_names(arrays), path.stem, str(path))


def _read_mat73(path: Path) -> dict[str, np.ndarray]:
    import h5py

    arrays = {}
    with h5py.File(path, "r") as file:
        for key, item in file.items():
            if isinstance(item, h5py.Dataset) and item.dtype.kind in "biuf":
                arrays[key] = item[()].T  # HDF5 stores MATLAB's column-major arrays with the axes reversed
    return arrays


def _strings_as_names(arrays):
    """MATLAB char / cell arrays of names become flat lists of strings."""
    for key in NAME_KEYS:
        if key in arrays and arrays[key].dtype == object:
            arrays[key] = np.array([str(np.asarray(v).ravel()[0]) for v in arrays[key].ravel()])
        elif key in arrays and arrays[key].dtype.kind == "U":
            arrays[key] = np.array([s.strip() for s in np.atleast_1d(arrays[key]).ravel()])
    return arrays


def read_list_folder(path: Path) -> HashingDataset:
    arrays, paths = {}, {}
    for split, stems in LIST_FILE_SPLITS.items():
        stem = next((s for s in stems if (path / f"{s}.txt").is_file()), None)
        if stem is None:
            continue
        paths[split], arrays[f"{split}_labels"] = read_list_file(path / f"{stem}.txt")
        for kind, suffix in (("features", ""), ("aux", "_aux")):
            array_file = path / f"{stem}{suffix}.npy"
            if array_file.is_file():
                arrays[f"{split}_{kind}"] = np.load(array_file, allow_pickle=False)
    return dataset_from_arrays(arrays, path.name, str(path), info={"image_paths": paths})


def read_list_file(path: Path) -> tuple[list[str], np.ndarray]:
    """Image paths and multi-hot labels of a HashNet list file (``path 0 1 0 ...`` per line)."""
    image_paths, rows = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            rows.append([int(v) for v in fields[1:]])
        except ValueError:
            raise InvalidInputError(f"{path}:{number}: labels must be integers 0/1 after the image path") from None
        image_paths.append(fields[0])
    if len({len(r) for r in rows}) > 1:
        raise InvalidInputError(f"{path}: lines have different numbers of labels")
    return image_paths, np.array(rows).reshape(len(rows), -1)


def is_list_folder(path: Path) -> bool:
    return path.is_dir() and any((path / f"{s}.txt").is_file() for stems in LIST_FILE_SPLITS.values() for s in stems)


def read_path(path: Path) -> HashingDataset:
    """Read any supported file or folder."""
    if path.is_dir():
        return read_list_folder(path) if is_list_folder(path) else read_npy_folder(path)
    readers = {".npz": read_npz, ".mat": read_mat}
    if path.suffix.lower() not in readers:
        raise InvalidInputError(f"{path}: unsupported file type {path.suffix!r}; use .npz, .mat or a folder")
    return readers[path.suffix.lower()](path)


# ---- writer ------------------------------------------------------------------------------------


def dataset_to_arrays(dataset: HashingDataset, *, images: bool = False) -> dict[str, np.ndarray]:
    """The arrays of the common format for ``dataset`` (pixels and backbone weights if ``images``)."""
    arrays = {}
    for split_name, split in dataset.splits().items():
        for kind in ("features", "labels", "aux"):
            if getattr(split, kind) is not None:
                arrays[f"{split_name}_{kind}"] = getattr(split, kind)
        if images and split.images is not None:
            arrays[f"{split_name}_images"] = split.images.load(np.arange(len(split.images)))
            arrays.update(_backbone_arrays(split.images.backbone))
    for key in NAME_KEYS:
        if getattr(dataset, key) is not None:
            arrays[key] = np.array(getattr(dataset, key))
    arrays["info"] = np.array(json.dumps(dataset.info, default=str))
    return arrays


def _backbone_arrays(factory) -> dict[str, np.ndarray]:
    from hashbench.datasets.backbone import BackboneFactory, state_to_arrays

    return state_to_arrays(factory()) if isinstance(factory, BackboneFactory) else {}
