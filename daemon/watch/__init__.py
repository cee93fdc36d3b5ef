"""Watching the root: filesystem events, settling files, and turning events into work."""
