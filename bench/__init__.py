"""Benchmarks (not tests): each script starts what it needs and prints its figures. See README.md."""
