"""CLI commands that turn results into the paper's tables and figures: report, plot, reproduce."""


def add_commands(subparsers) -> None:
    """Add the report sub-commands to the ``hashbench`` parser."""
