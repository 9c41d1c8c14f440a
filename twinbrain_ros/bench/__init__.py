"""Benchmarks: each prints one JSON line of measured numbers (`twinbrain-bench <name> --help`)."""
