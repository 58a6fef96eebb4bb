"""Benchmarks: speed and memory measurements behind ``routelora bench``. Never imported by the core."""
