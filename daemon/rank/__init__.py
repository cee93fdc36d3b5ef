"""The I/O half of core.rank: signals from the store, proposals, training, metrics and batch mode."""
