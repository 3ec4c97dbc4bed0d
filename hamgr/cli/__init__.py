"""The command-line tools: `hamgr` (`main`), `hactl` and `store-ctl`, and the demo cluster.

`main` is the `hamgr` command (validate-config, agent, store, store-ctl, certs, healthcheck),
which starts the agent's processes; `certs` and `healthcheck` are two of its sub-commands and
`storectl` is ``hamgr store-ctl``. `hactl` is the operator CLI over the agents' REST APIs: its
parser, with one module per command or pair of commands (`ctl_list`, `ctl_switch`, `ctl_pause`,
`ctl_show`, `ctl_editconfig`, `ctl_restart`, `ctl_reinit`, `ctl_members`, `ctl_topology`,
`ctl_query`, `ctl_version`, `ctl_remove`), which share `ctl_client` (the HTTP client),
`ctl_output` (the tables) and `ctl_pick` (which member a command means). `demo` runs a real
3-member cluster on this machine (`python -m hamgr.cli.demo`), `demostop` stops it in order;
`localcluster` is the one builder of such local clusters (configuration files, certificates,
agent processes and their PIDs), used by the demo and by the tests' and benchmarks' clusters
(tests/ha/agentcluster.py, bench/hacluster.py).

May import: every other part of hamgr (hamgr.agent to run it, hamgr.fencer for the demo's stop).
Nothing in hamgr imports it but the `python -m hamgr` entry point.
"""
