"""The CPU every benchmark table names, and fresh worker processes (no TensorFlow import)."""

import json
import os
import subprocess
import sys


def cpu():
    """`model name` and whether AVX-512 is in the flags, from /proc/cpuinfo."""
    text = open("/proc/cpuinfo").read()
    name = next(line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line)
    return f"{name}, {os.cpu_count()} CPUs, {'AVX-512' if ' avx512f' in text else 'AVX2 only'}"


def run_worker(script, flags, **env):
    """The JSON last line printed by `python script *flags` in a fresh process, on the CPU.

    TensorFlow's C++ logs are off there; `env` adds variables (e.g.
    `ONEDNN_MAX_CPU_ISA="AVX2"`).
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", **env}
    command = [sys.executable, script, *flags]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])
