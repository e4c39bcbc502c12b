"""Where the model runs: CPU or CUDA, the compute type and threads, and what a GPU host lacks."""

from __future__ import annotations

import ctypes
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import ctranslate2

Device = Literal["cpu", "cuda"]

# CTranslate2's compute types; checked here so that a typo fails at start with the list, not as
# an error from deep inside the first job.
_INT8_TYPES = ("int8", "int8_float32", "int8_float16", "int8_bfloat16")
_FLOAT_TYPES = ("float16", "bfloat16", "float32")
COMPUTE_TYPES = frozenset({"default", "auto", "int16", *_INT8_TYPES, *_FLOAT_TYPES})

# How to get what CTranslate2 needs on a GPU at run time, for the error that names it missing.
GPU_IMAGE_HINT = "run the gpu image (docker build --target gpu)"
_CUDA_LIBRARIES = {
    "libcublas": (
        "cuBLAS for CUDA 12",
        f"{GPU_IMAGE_HINT}, or install nvidia-cublas-cu12 (uv sync --group gpu) and put its"
        " nvidia/cublas/lib folder on LD_LIBRARY_PATH",
    ),
    "libcudnn": (
        "cuDNN 9 for CUDA 12",
        "this CTranslate2 build wants cuDNN, which the gpu image does not carry: install"
        " nvidia-cudnn-cu12 9.x and put its nvidia/cudnn/lib folder on LD_LIBRARY_PATH",
    ),
}
# CTranslate2 loads cuBLAS (and its other CUDA libraries) with dlopen on first use and says so
# when it cannot: "Library libcublas.so.12 is not found or cannot be loaded".
_MISSING_LIBRARY = re.compile(r"Library (\S+) is not found or cannot be loaded")
_CUDA_DRIVER = "libcuda.so.1"


@dataclass(frozen=True, slots=True)
class DeviceChoice:
    device: Device
    compute_type: str
    cpu_threads: int  # CTranslate2's intra_threads; 0 lets it pick (used on CUDA)
    reason: str  # one line for the worker's start-up log


def usable_cpus() -> int:
    """The cores this process may run on: its affinity mask, narrowed by a cgroup v2 CPU quota
    (a container started with --cpus 2 still sees every core of the host in its mask)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 here, or no quota
    return max(1, count)


def choose_device(
    requested: str,
    compute_type: str = "default",
    *,
    cuda_devices: int | None = None,
    cpu_count: int | None = None,
) -> DeviceChoice:
    """Where and how to run the model for LMS_WHISPER_DEVICE / LMS_WHISPER_COMPUTE_TYPE.

    "auto" takes CUDA with float16 when CTranslate2 sees a GPU, else the CPU with int8; "default"
    means that per-device type, anything else is passed to CTranslate2 as it is. A ValueError
    says why a request cannot be met.
    """
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"Whisper device must be auto, cpu or cuda, got {requested!r}")
    if compute_type not in COMPUTE_TYPES:
        allowed = ", ".join(sorted(COMPUTE_TYPES))
        raise ValueError(f"Whisper compute type must be one of {allowed}, got {compute_type!r}")
    if cuda_devices is None:
        cuda_devices = int(ctranslate2.get_cuda_device_count())
    if requested == "cuda" and cuda_devices < 1:
        raise ValueError(
            "Whisper device cuda was requested but CTranslate2 sees no CUDA device:"
            f" {_no_device()}; use auto or cpu"
        )
    device: Device = "cpu" if requested == "cpu" or cuda_devices < 1 else "cuda"
    if device == "cuda":
        # float16 halves the memory of float32 at the same accuracy, and tensor cores run it.
        default_type = "float16"
        # One process drives one GPU (device 0); more GPUs are used by more worker processes,
        # each given its own with CUDA_VISIBLE_DEVICES, so a crash or OOM takes one GPU's jobs.
        why = f"{cuda_devices} CUDA device(s) visible, using device 0"
        threads = 0  # the CPU does no model arithmetic here: keep CTranslate2's default
    else:
        # int8 is about twice as fast as float32 on CPU for a negligible loss in accuracy.
        default_type = "int8"
        why = "no CUDA device visible" if requested == "auto" else "cpu requested"
        # CTranslate2 would start 4 threads whatever the machine: one per usable core instead,
        # so a 2-core container is not oversubscribed and a 32-core node is not left idle.
        threads = max(1, cpu_count if cpu_count is not None else usable_cpus())
        why += f", {threads} thread(s)"
    chosen = default_type if compute_type == "default" else compute_type
    origin = "requested" if compute_type != "default" else f"default for {device}"
    return DeviceChoice(device, chosen, threads, f"{requested}: {why}; {chosen} ({origin})")


def _cuda_driver_loads() -> bool:
    try:
        ctypes.CDLL(_CUDA_DRIVER)
    except OSError:
        return False
    return True


def _no_device() -> str:
    """Why CTranslate2 sees no GPU: the driver library is missing, or no device is visible."""
    if not _cuda_driver_loads():
        return (
            f"the NVIDIA driver library {_CUDA_DRIVER} is not found (run on a host with an NVIDIA"
            " GPU and its driver; in a container, give it the GPU: docker run --gpus all, the"
            " compose gpu profile, nvidia.com/gpu on Kubernetes)"
        )
    return f"{_CUDA_DRIVER} loads but no GPU is visible (check CUDA_VISIBLE_DEVICES, nvidia-smi)"


def cuda_failure(exc: BaseException) -> str | None:
    """The operator's explanation of a CTranslate2 error on CUDA that needs something installed
    (a CUDA library it could not load, a driver too old for CUDA 12), or None for another."""
    message = str(exc)
    found = _MISSING_LIBRARY.search(message)
    if found is not None:
        library = found.group(1)
        missing = f"the CUDA library {library}"
        for prefix, (what, remedy) in _CUDA_LIBRARIES.items():
            if library.startswith(prefix):
                return f"{missing} ({what}) is not found or cannot be loaded: {remedy}"
        return f"{missing} is not found or cannot be loaded ({GPU_IMAGE_HINT})"
    if "driver version is insufficient" in message:
        return "the NVIDIA driver is too old for CUDA 12: upgrade the host's driver"
    return None
