"""`python -m hamgr.raft.sim --seeds N`: the core simulator (hamgr/raft/sim/cores.py) over N
seeds."""

import sys

from hamgr.raft.sim.cores import main

sys.exit(main())
