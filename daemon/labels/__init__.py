"""The I/O half of core.labels: decisions from the user's moves, the session log, Finder tags, tidying."""
