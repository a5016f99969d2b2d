"""What this machine's processors do fast, and the numeric precision that follows from it.

Mixed precision pays only where the hardware computes in it natively. On CPUs, bf16 matrix
work is native with AMX (Intel Xeon since Sapphire Rapids), AVX512_BF16 (Intel Cooper Lake,
AMD Zen 4 and later) or the Arm bf16 extension; elsewhere PyTorch emulates it, and a BEVANet-S
training step was measured 11.5x slower in bf16 than in fp32 on an AVX2-only AMD EPYC. So
`precision: auto` picks bf16 only where it is native, and an explicit bf16 request on a CPU
without it is honoured with a warning.

This is also the one description of the machine that speed figures are reported with
(`machine`: CPU model and SIMD flags, cores, threads, GPU, library versions).
"""

from __future__ import annotations

import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # x86 AMX, x86 AVX-512, Arm (aarch64 'Features')
EMULATED_BF16_SLOWDOWN = "11.5x slower than fp32 for a BEVANet-S training step on an AVX2-only AMD EPYC"


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]

    @property
    def native_bf16(self) -> bool:
        return any(flag in self.flags for flag in NATIVE_BF16_FLAGS)

    def describe(self) -> str:
        simd = sorted(f for f in self.flags if f.startswith(("avx", "amx")) or f in ("bf16", "sve", "asimd"))
        return f"{self.model or 'unknown CPU'} ({', '.join(simd) or 'no AVX/AMX flags'})"


def parse_cpuinfo(text: str) -> CpuInfo:
    """The model name and feature flags of the first processor in /proc/cpuinfo text (x86
    'flags', Arm 'Features')."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model or platform.processor(), flags)


_CPU: Optional[CpuInfo] = None


def cpu_info() -> CpuInfo:
    """This machine's CPU (read once; no flags where /proc/cpuinfo is absent)."""
    global _CPU
    if _CPU is None:
        path = Path("/proc/cpuinfo")
        _CPU = parse_cpuinfo(path.read_text() if path.is_file() else "")
    return _CPU


MAX_DEFAULT_THREADS = 4


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. under `taskset`)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads() -> int:
    """The inference threads every tool and the node use unless told otherwise: half the cores
    this process may use, at least 1 and at most MAX_DEFAULT_THREADS. The other half stays for
    the camera driver, DDS, decoding and other work; a pool as large as the machine slows a
    batch-1 inference several times as soon as anything else runs (docs/deployment.md has the
    figures)."""
    return max(1, min(MAX_DEFAULT_THREADS, available_cores() // 2))


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else platform.processor(), else 'unknown'."""
    return cpu_info().model or "unknown"


def machine(device: str = "cpu") -> dict[str, Any]:
    """The machine a speed figure was taken on: torch and python versions, the CPU, its SIMD
    flags, the cores and torch's intra-op threads, the GPU where `device` is a CUDA device, and
    onnxruntime's version where it is installed."""
    import torch

    cpu = cpu_info()
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_simd": cpu.describe(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return env


_warned = False


def resolve_precision(
    requested: str, device_type: str, cpu: Optional[CpuInfo] = None, cuda_bf16: Optional[bool] = None
) -> str:
    """The precision to run in: `auto` becomes bf16 on a CPU with native bf16, else fp32, and
    bf16 on CUDA devices that support it, else fp16. Explicit choices are kept; bf16 on a CPU
    without native support warns once, naming the CPU and the measured cost."""
    global _warned
    if requested not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {requested!r}")
    if device_type == "cuda":
        if requested != "auto":
            return requested
        if cuda_bf16 is None:
            import torch

            cuda_bf16 = torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 else "fp16"
    cpu = cpu or cpu_info()
    if requested == "auto":
        return "bf16" if cpu.native_bf16 else "fp32"
    if requested == "bf16" and not cpu.native_bf16 and not _warned:
        _warned = True
        warnings.warn(
            f"bf16 requested on {cpu.describe()}, which has no native bf16 (none of "
            f"{', '.join(NATIVE_BF16_FLAGS)}): it is emulated there, measured "
            f"{EMULATED_BF16_SLOWDOWN}; use precision auto or fp32",
            RuntimeWarning,
            stacklevel=2,
        )
    return requested
