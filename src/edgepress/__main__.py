"""``python -m edgepress`` is the CLI."""

import sys

try:
    from .cli.main import main
except KeyboardInterrupt:  # Ctrl-C while the CLI's modules load: one line, not a traceback
    print("edgepress: error: interrupted (SIGINT) while starting: nothing was written",
          file=sys.stderr)
    sys.exit(130)

sys.exit(main())
