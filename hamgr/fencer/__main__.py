"""`python -m hamgr.fencer --socket PATH --data-dir PGDATA`: the fencer process (process.py)."""

import sys

from hamgr.fencer.process import main

sys.exit(main())
