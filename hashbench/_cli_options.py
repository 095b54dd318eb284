"""Command-line option types shared by every sub-command."""

from __future__ import annotations

import argparse


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
