"""Argument checks shared by every module: each raises InvalidInputError naming the argument."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import numpy as np

from hashbench.errors import InvalidInputError, UnknownNameError


def is_number(value) -> bool:
    """A real number (numpy's included), not a bool."""
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as int, or raise if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_matrix(array, name: str, *, finite: bool = True, allow_empty: bool = False) -> np.ndarray:
    """Return ``array`` as a 2-D numeric ndarray; reject other shapes, empty input and NaN/inf."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise InvalidInputError(f"{name} must be a 2-D array (rows x columns), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise InvalidInputError(f"{name} must be numeric, got dtype {array.dtype}")
    if not allow_empty and array.shape[0] == 0:
        raise InvalidInputError(f"{name} has zero rows")
    if finite and np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise InvalidInputError(f"{name} contains NaN or inf values (in {bad} of {array.shape[0]} rows)")
    return array


def check_binary_labels(labels, name: str) -> np.ndarray:
    """Return multi-hot labels as a uint8 (n, c) array; reject values other than 0 and 1."""
    labels = check_matrix(labels, name)
    if not ((labels == 0) | (labels == 1)).all():  # much faster than np.isin on large label sets
        raise InvalidInputError(f"{name} must hold only 0 and 1 (multi-hot), found other values")
    return labels.astype(np.uint8, copy=False)


def check_same_rows(arrays: dict[str, np.ndarray | None]) -> None:
    """Raise if the given arrays (None entries ignored) do not all have the same number of rows."""
    rows = {name: len(a) for name, a in arrays.items() if a is not None}
    if len(set(rows.values())) > 1:
        detail = ", ".join(f"{name}: {n}" for name, n in rows.items())
        raise InvalidInputError(f"row counts differ ({detail})")


def check_choice(value: str, choices: Iterable[str], name: str) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise raise, suggesting the closest."""
    choices = sorted(choices)
    if value in choices:
        return value
    raise UnknownNameError(unknown_name_message(name, value, choices))


def unknown_name_message(kind: str, value: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(str(value), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {value!r}.{hint} Known: {', '.join(known) or '(none)'}"
