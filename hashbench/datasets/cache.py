"""Where built datasets are cached, and how cache files are written and read safely.

The cache directory is, in order of precedence: the ``data_dir`` argument (the CLI's
``--data-dir``), the ``HASHBENCH_DATA_DIR`` environment variable, ``$XDG_CACHE_HOME/hashbench``,
``~/.cache/hashbench``. A cache file is named by the dataset and a hash of its build parameters
and the format version, is written to a temporary file and renamed into place (so concurrent
builds never leave a half-written file under the final name), and is rebuilt with a warning when it
cannot be read back whole (truncated or corrupted: zip CRC checks catch flipped bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from hashbench.errors import InvalidInputError

DATA_DIR_VARIABLE = "HASHBENCH_DATA_DIR"


def resolve_data_dir(data_dir=None) -> Path:
    """The cache directory to use (created if missing); see the module docstring for the precedence."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_VARIABLE)
    if data_dir is None:
        cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        data_dir = Path(cache_home) / "hashbench"
    path = Path(data_dir).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_key(params: dict) -> str:
    """A short stable hash of JSON-serialisable build parameters."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_npz_atomic(path: Path, arrays: dict[str, np.ndarray], *, compress: bool = False) -> None:
    """Write ``arrays`` to ``path`` via a temporary file in the same directory and an atomic rename."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            (np.savez_compressed if compress else np.savez)(file, **arrays)
        os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp creates 0600; a shared cache needs the usual mode
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def build_lock(path: Path | None):
    """Held while the cache file ``path`` is built, so that a second process that needs the same
    file (two workers of one run, two runs) waits for it instead of building it again; no lock
    for ``path=None`` (no cache)."""
    if path is None:
        return nullcontext()
    from filelock import FileLock

    return FileLock(f"{path}.lock")


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def read_npz_whole(path: Path) -> dict[str, np.ndarray] | None:
    """Every array of a cache file, or None (with a warning) when it is truncated or corrupted."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
        warnings.warn(f"cache file {path} is unreadable ({error}); rebuilding it", RuntimeWarning, stacklevel=3)
        return None


def default_output(name: str, data_dir=None) -> Path:
    """Where ``hashbench prepare NAME`` writes its dataset file."""
    return resolve_data_dir(data_dir) / f"{name}.npz"


def prepared_dataset(name: str):
    """A dataset builder that loads the file ``hashbench prepare NAME`` wrote to the data folder."""

    def build(data_dir=None):
        from hashbench.datasets.formats import read_path

        path = default_output(name, data_dir)
        if not path.is_file():
            raise InvalidInputError(
                f"dataset {name!r} is not prepared: no {path}; run `hashbench prepare {name} --root DIR` first "
                "(see the README's 'Real datasets' section)"
            )
        return read_path(path)

    return build
