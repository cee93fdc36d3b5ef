"""crop."""
