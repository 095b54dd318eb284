"""``python -m hashbench.cli``: the same as the ``hashbench`` command."""

import sys

from hashbench.cli import main

sys.exit(main())
