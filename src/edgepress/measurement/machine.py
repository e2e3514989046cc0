"""The machine and library versions a measurement was taken on."""

from __future__ import annotations

import os
import platform
from functools import cache
from importlib import metadata

from ..version import __version__

# ISA features that decide which kernels a runtime can use
_ISA = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
        "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve",
        "bf16", "dotprod")


@cache
def machine_info() -> dict:
    """``{"cpu", "cores", "isa", "os"}`` of this machine."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                generic = ("", platform.machine(), platform.processor())
                if key in ("model name", "hardware", "cpu model") and cpu in generic:
                    cpu = value.strip()
                elif key in ("flags", "features"):
                    flags |= set(value.split())
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count() or 1, "isa": [f for f in _ISA if f in flags],
            "os": platform.platform(), "arch": platform.machine()}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@cache
def versions() -> dict:
    """Versions of edgepress and the libraries behind a figure (None when not installed)."""
    return {"edgepress": __version__, "torch": _version("torch"), "onnx": _version("onnx") or "",
            "onnxruntime": _version("onnxruntime") or "", "executorch": _version("executorch"),
            "numpy": _version("numpy")}
