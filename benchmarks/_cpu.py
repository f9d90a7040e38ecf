"""The CPU every benchmark table names, and fresh worker processes (no TensorFlow import)."""

import json
import os
import subprocess
import sys


def cpu():
    """`model name` (family and model), the CPU count and whether AVX-512 is in the flags."""
    text = open("/proc/cpuinfo").read()
    fields = dict(line.split(":", 1) for line in text.splitlines()[:30] if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    family, model = fields.get("cpu family", "?"), fields.get("model", "?")
    name = f"{fields.get('model name', 'unknown CPU')} (family {family} model {model})"
    return f"{name}, {os.cpu_count()} CPUs, {'AVX-512' if ' avx512f' in text else 'AVX2 only'}"


ISAS = {"native": None, "avx2": "AVX2", "avx512_core": "AVX512_CORE"}


def isa_env(isa, bfloat16=False):
    """The variables that run a worker as on a CPU of `isa` (a key of `ISAS`).

    `"avx2"` limits oneDNN to AVX2 (`ONEDNN_MAX_CPU_ISA`); `"avx512_core"` to
    AVX-512 without VNNI and BF16 (Skylake-SP); `"native"` changes nothing.
    For `bfloat16` work, limiting oneDNN to AVX2 is not what an AVX2-only CPU
    does: TensorFlow hands bfloat16 ops to oneDNN only where the CPU has
    AVX-512F or AVX-NE-CONVERT (`IsBF16SupportedByOneDNNOnThisCPU`) and
    elsewhere runs its default kernels; on an AVX-512 CPU it still picks
    oneDNN, which has no bfloat16 convolution at AVX2 and fails. So
    `bfloat16=True` at `"avx2"` turns oneDNN off (`TF_ENABLE_ONEDNN_OPTS=0`):
    the default kernels an AVX2-only CPU runs its bfloat16 ops on.
    """
    if isa == "native":
        return {}
    if isa == "avx2" and bfloat16:
        return {"TF_ENABLE_ONEDNN_OPTS": "0"}
    return {"ONEDNN_MAX_CPU_ISA": ISAS[isa]}


def run_worker(script, flags, python=sys.executable, **env):
    """The JSON last line printed by `python script *flags` in a fresh process, on the CPU.

    TensorFlow's C++ logs are off there; `env` adds variables (e.g.
    `ONEDNN_MAX_CPU_ISA="AVX2"`, or `TF_USE_LEGACY_KERAS="1"` for a peer's
    `python`). A failed worker raises with the end of its stderr.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", **env}
    done = subprocess.run([str(python), script, *flags], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{script} {' '.join(flags)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
