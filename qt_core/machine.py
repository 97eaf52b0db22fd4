"""The CPU this runs on: model name, the ISA extensions that decide which INT8 / BF16 / FP32
kernels run, and the CPU class results are kept apart by (benchmarks keep one table per class;
`qt-run verify` reports where it ran). One vocabulary for benchmarks and the runtime."""

from __future__ import annotations

import os
import platform
from pathlib import Path

#: Flags (as /proc/cpuinfo spells them) that change which kernels run, x86 then Arm.
X86_ISA = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")
ARM_ISA = ("asimd", "asimddp", "i8mm", "bf16", "sve", "sve2")


def read_cpu(cpuinfo: str | None = None) -> tuple[str, set[str]]:
    """(model name, set of flags) from /proc/cpuinfo (or the given text); ('unknown CPU', {}) elsewhere."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if not model and key in ("model name", "hardware", "cpu model"):
            model = value.strip()
        elif not flags and key in ("flags", "features"):
            flags = set(value.split())
    return model or platform.processor() or "unknown CPU", flags


def cpu_class(flags: set[str]) -> str:
    """'AMX' (AMX-INT8/BF16 tiles), 'AVX-512 VNNI', 'AVX-VNNI', 'AVX2' (+FMA, no VNNI), 'Arm' or 'other'."""
    if "amx_int8" in flags:
        return "AMX"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "AVX-512 VNNI" if "avx512f" in flags else "AVX-VNNI"
    if "avx2" in flags:
        return "AVX2"
    return "Arm" if "asimd" in flags else "other"


def isa_flags(flags: set[str]) -> list[str]:
    return [f for f in (*X86_ISA, *ARM_ISA) if f in flags]


def cpu_info(cpuinfo: str | None = None) -> dict:
    """This machine's CPU model, architecture, class and kernel-relevant ISA flags."""
    model, flags = read_cpu(cpuinfo)
    return {"model": model, "machine": platform.machine(), "class": cpu_class(flags), "isa": isa_flags(flags)}


def describe_machine(cpuinfo: str | None = None) -> str:
    """The one line every benchmark prints first."""
    info = cpu_info(cpuinfo)
    isa = " ".join(info["isa"]) or "none of " + " ".join(X86_ISA)
    return f"CPU: {info['model']} | class {info['class']} | {os.cpu_count()} logical cores | ISA: {isa}"
