"""Benchmarks: run as scripts (python -m bench.NAME); results and machine size go to docs/benchmarks.md."""
