"""``python -m edgepress`` is the CLI."""

import sys

from .cli.main import main

sys.exit(main())
