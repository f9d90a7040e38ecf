"""The CPU every benchmark table names (no TensorFlow import)."""

import os


def cpu():
    """`model name` and whether AVX-512 is in the flags, from /proc/cpuinfo."""
    text = open("/proc/cpuinfo").read()
    name = next(line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line)
    return f"{name}, {os.cpu_count()} CPUs, {'AVX-512' if ' avx512f' in text else 'AVX2 only'}"
