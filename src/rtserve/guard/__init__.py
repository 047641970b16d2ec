"""guard layer."""
