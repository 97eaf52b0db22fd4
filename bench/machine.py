"""The CPU a benchmark ran on: model name, the ISA extensions that decide which kernels run, and
the CPU class its numbers belong to (results are kept in one table per class, never mixed).

  python bench/machine.py          # prints the one-line description every benchmark prints
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# Flags (as /proc/cpuinfo spells them) that change which INT8 / BF16 / FP32 kernels run.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")


def cpu_info(cpuinfo: str | None = None) -> tuple[str, set[str]]:
    """(model name, set of flags) from /proc/cpuinfo (or the given text); ('unknown', {}) elsewhere."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model or platform.processor() or "unknown", flags


def cpu_class(flags: set[str]) -> str:
    """'AMX' (AMX-INT8/BF16 tiles), 'AVX-512 VNNI', 'AVX2' (+FMA, no VNNI) or 'other'."""
    if "amx_int8" in flags:
        return "AMX"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "AVX-512 VNNI" if "avx512f" in flags else "AVX-VNNI"
    if "avx2" in flags:
        return "AVX2"
    return "other"


def describe_machine(cpuinfo: str | None = None) -> str:
    model, flags = cpu_info(cpuinfo)
    isa = " ".join(f for f in ISA_FLAGS if f in flags) or "none of " + " ".join(ISA_FLAGS)
    return f"CPU: {model} | class {cpu_class(flags)} | {os.cpu_count()} logical cores | ISA: {isa}"


if __name__ == "__main__":
    print(describe_machine())
