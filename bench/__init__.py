"""Benchmarks (python -m bench.<name>; make bench)."""
