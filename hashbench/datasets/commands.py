"""CLI commands for datasets: ``datasets describe``, ``prepare``."""


def add_commands(subparsers) -> None:
    """Add the dataset sub-commands to the ``hashbench`` parser."""
