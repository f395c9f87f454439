"""Benchmarks of shared/BENCHMARKS.md: graphad against its peers, side by side (`python -m
benchmarks --help`). Not part of the test suite; tests/test_benchmarks_smoke.py keeps it alive.
"""
