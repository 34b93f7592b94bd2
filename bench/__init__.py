"""Benchmarks of the appliance against the tools people would use (see README.md)."""
