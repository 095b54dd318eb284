"""``hashbench prepare``: build the common data file from the real MS-COCO and NUS-WIDE datasets."""


def add_commands(subparsers) -> None:
    """Add the ``prepare`` sub-commands to the ``hashbench`` parser."""
