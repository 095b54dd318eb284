"""CLI commands of the benchmark runner: run, rescore, report, plot, reproduce."""


def add_commands(subparsers) -> None:
    """Add the runner's sub-commands to the ``hashbench`` parser."""
