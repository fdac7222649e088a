"""Benchmarks run by ``recsys bench NAME``: each module defines ``run(config, quick, log) -> dict``."""
