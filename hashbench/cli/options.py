"""Command-line options shared by the sub-commands: the same flag means the same thing everywhere."""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

from hashbench.errors import InvalidInputError
from hashbench.running.config import EXECUTORS


def list_option(cast=str):
    """An argparse action for list options: ``--bits 16 32``, ``--bits 16,32`` and mixes of both
    give ``[16, 32]``; each value is converted by ``cast`` (argparse's usage error when it cannot be)."""

    class CommaSeparated(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            items = [item for value in values for item in value.split(",") if item]
            try:
                setattr(namespace, self.dest, [cast(item) for item in items])
            except ValueError:
                raise argparse.ArgumentError(self, f"takes {cast.__name__} values, got {' '.join(values)!r}") from None

    return CommaSeparated


FILTERS = {
    "experiments": (str, "NAME", "only these experiments"),
    "methods": (str, "NAME", "only these methods (names or labels)"),
    "datasets": (str, "NAME", "only these datasets"),
    "bits": (int, "N", "only these code lengths (16 32 or 16,32)"),
    "seeds": (int, "S", "run these seeds instead of the config's (e.g. --seeds 0 1 for a spread)"),
}


def add_filters(parser: argparse.ArgumentParser, *names: str, **helps: str) -> None:
    """The matrix filters ``--experiments``, ``--methods``, ``--datasets``, ``--bits``, ``--seeds``
    (those in ``names``); ``helps`` replaces a filter's help text."""
    for name in names:
        cast, metavar, help_text = FILTERS[name]
        parser.add_argument(f"--{name}", nargs="+", action=list_option(cast), metavar=metavar,
                            help=helps.get(name, help_text))  # fmt: skip


def add_executor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executor", choices=EXECUTORS, help="override the config's executor")


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``: where built datasets are cached and prepared ones are read."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="cache of built datasets and home of prepared ones (default: $HASHBENCH_DATA_DIR or ~/.cache/hashbench)",
    )


def add_run_switches(parser: argparse.ArgumentParser) -> None:
    """``--force`` and ``--quiet``, as every command that runs cells reads them."""
    parser.add_argument("--force", action="store_true", help="recompute finished cells")
    parser.add_argument("--quiet", action="store_true", help="no progress bars; print only errors")


def topk_argument(text: str) -> int | None:
    """``--topk``: an integer, or "all" (None: the whole database)."""
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'all', got {text!r}") from None


def key_value(text: str, what: str = "option") -> tuple[str, object]:
    """``"KEY=VALUE"`` -> ``(KEY, value)``: the value read as JSON (``true``, ``[1, 2]``), else as a
    Python literal (``True``, ``(1.0, 2.0)``), else kept as a string (``quick``)."""
    key, separator, text_value = text.partition("=")
    if not separator or not key:
        raise InvalidInputError(f"{what} {text!r} must look like KEY=VALUE")
    try:
        return key, json.loads(text_value)
    except ValueError:
        pass
    try:
        return key, ast.literal_eval(text_value)
    except (ValueError, SyntaxError):
        return key, text_value


def key_values(texts: list[str], what: str = "option") -> dict:
    return dict(key_value(text, what) for text in texts)
