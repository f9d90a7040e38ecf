"""Shared timing helper for the benchmarks: warm up, then the median of repeats."""

import time

import numpy as np


def median_seconds(fn, repeats=5, warmup=2):
    """Median wall time of `fn()` (which must block until its result is ready)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))
