"""The command-line tools: `hamgr` (`main`), `hactl` and `store-ctl`, and the demo cluster.

`main` is the `hamgr` command (validate-config, agent, store, store-ctl, certs, healthcheck),
which starts the agent's processes; `certs` and `healthcheck` are two of its sub-commands and
`storectl` is ``hamgr store-ctl``. `hactl` is the operator CLI over the agents' REST APIs, with
one module per larger command (`ctl_editconfig`, `ctl_pick`, `ctl_query`, `ctl_remove`,
`ctl_restart`, `ctl_topology`, `ctl_version`). `demo` runs a real 3-member cluster on this
machine (`python -m hamgr.cli.demo`), `demostop` stops it in order; `localcluster` is the one
builder of such local clusters (configuration files, certificates, agent processes and their
PIDs), used by the demo and by the tests' and benchmarks' clusters (tests/ha/agentcluster.py,
bench/hacluster.py).

May import: every other part of hamgr (hamgr.agent to run it, hamgr.fencer for the demo's stop).
Nothing in hamgr imports it but the `python -m hamgr` entry point.
"""
