"""Fixtures for the tests and benchmarks (planted caches, tiny models); the package never
imports this: nothing here is needed to extract or probe."""
