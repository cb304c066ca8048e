"""Benchmarks: scripts, not timed tests. Run from the repo root: python -m bench.<name>."""
