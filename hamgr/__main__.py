"""`python -m hamgr`: the `hamgr` command (hamgr/cli/main.py)."""

import sys

from hamgr.cli.main import main

sys.exit(main())
