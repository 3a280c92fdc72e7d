"""Readers for the real VALUE data formats and the builders that turn them into examples."""
