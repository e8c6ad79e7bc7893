"""Benchmarks: authnode measured against floors taken in the same run (see README.md)."""
