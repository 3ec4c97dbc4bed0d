"""Tools for the store's fault tests: a linearizability checker and a fault-injecting TCP proxy."""
