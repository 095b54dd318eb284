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
from pathlib import Path

import numpy as np

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
