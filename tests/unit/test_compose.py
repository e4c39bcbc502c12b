"""docker-compose.yml and the Dockerfile: the one-host topology starts in order, checks its own
health, scales its CPU workers, and runs the GPU worker on the gpu image with an NVIDIA device.

Parsed, not run (no Docker daemon needed); where `docker compose` is installed, its own check of
the file runs too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import ctranslate2
import pytest
import yaml

from lms.cli import build_parser
from lms.settings import specs

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
APP_SERVICES = ("api", "worker", "worker-gpu")

Service = dict[str, Any]


@pytest.fixture(scope="module")
def services() -> dict[str, Service]:
    compose = yaml.safe_load(COMPOSE.read_text())
    result: dict[str, Service] = compose["services"]
    return result


def _stages() -> dict[str, list[str]]:
    """The Dockerfile's stages: name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        found = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?$", line, re.IGNORECASE)
        if found:
            current = [line]
            stages[found.group(2) or f"stage{len(stages)}"] = current
        else:
            current.append(line)
    return stages


def test_the_services(services: dict[str, Service]) -> None:
    assert set(services) == {"postgres", "nats", "migrate", "api", "worker", "worker-gpu"}


def test_every_long_running_service_checks_its_health(services: dict[str, Service]) -> None:
    for name in ("postgres", "nats", *APP_SERVICES):
        test = services[name]["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"}, name
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])


def test_the_nats_health_check_can_run_in_its_image(services: dict[str, Service]) -> None:
    # The plain nats image has no shell and no HTTP client; the alpine one has busybox wget.
    nats = services["nats"]
    test = nats["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert test[1] == "wget"
    assert nats["image"].startswith("nats:")
    assert nats["image"].endswith("-alpine")
    url = test[-1]
    port = re.search(r":(\d+)/healthz$", url)
    assert port, url
    command = nats["command"]
    assert command[command.index("--http_port") + 1] == port.group(1)
    assert "--jetstream" in command


def test_the_services_start_in_order(services: dict[str, Service]) -> None:
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["command"] == ["lms", "migrate"]
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["nats"] == {"condition": "service_healthy"}, name


def test_cpu_workers_scale(services: dict[str, Service]) -> None:
    # `docker compose up --scale worker=N`: N containers need N names and no shared host port.
    for name in ("worker", "worker-gpu"):
        assert "container_name" not in services[name]
        assert "ports" not in services[name]
    assert "profiles" not in services["worker"]
    assert all("container_name" not in s for s in services.values())
    # The one host port is the API's.
    published = {n: s["ports"] for n, s in services.items() if "ports" in s}
    assert published == {"api": ["8000:8000"]}


def test_the_gpu_worker(services: dict[str, Service]) -> None:
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["target"] == "gpu"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    assert device.get("count", 0) == "all" or device.get("count", 0) >= 1 or device["device_ids"]
    command = gpu["command"]
    assert command[command.index("--device") + 1] == "cuda"
    assert gpu["environment"]["LMS_WHISPER_DEVICE"] == "cuda"
    # The CPU services build the default target, the CPU image.
    for name in ("migrate", "api", "worker"):
        assert services[name]["build"] == ".", name


def test_the_commands_and_variables_are_lms_ones(services: dict[str, Service]) -> None:
    parser = build_parser()
    known = {spec.env for _, spec in specs()}
    for name in ("migrate", *APP_SERVICES):
        command = services[name]["command"]
        assert command[0] == "lms"
        parser.parse_args(command[1:])
        assert set(services[name]["environment"]) <= known, name


def test_the_dockerfile_targets() -> None:
    stages = _stages()
    assert {"build", "build-gpu", "runtime", "gpu", "cpu"} <= set(stages)
    # `docker build .` (and compose's `build: .`) builds the last stage: the CPU image.
    assert list(stages)[-1] == "cpu"
    assert not any("nvidia" in line.lower() for line in stages["cpu"] + stages["build"])


def test_the_gpu_image_carries_cublas_where_the_loader_looks() -> None:
    stages = _stages()
    base = re.match(r"FROM\s+python:(\d+\.\d+)-", stages["runtime"][0])
    assert base, stages["runtime"][0]
    python = f"python{base.group(1)}"
    assert any(line.endswith("--group gpu") for line in stages["build-gpu"])
    assert "COPY --from=build-gpu /app /app" in stages["gpu"]
    (env,) = [line for line in stages["gpu"] if "LD_LIBRARY_PATH=" in line]
    library_path = re.search(r"LD_LIBRARY_PATH=(\S+)", env)
    assert library_path
    # The folder where the nvidia-cublas-cu12 wheel puts libcublas.so.12, in the image's venv.
    assert library_path.group(1).split(":") == [
        f"/app/.venv/lib/{python}/site-packages/nvidia/cublas/lib"
    ]
    assert any("ctypes.CDLL('libcublas.so.12')" in line for line in stages["gpu"])
    # The wheel is in the gpu dependency group, pinned, and locked.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (cublas,) = [r for r in project["dependency-groups"]["gpu"] if "cublas" in r]
    assert re.match(r"nvidia-cublas-cu12==12\.", cublas)
    assert 'name = "nvidia-cublas-cu12"' in (ROOT / "uv.lock").read_text()


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    compose = _compose_command()
    if compose is None:
        pytest.skip("neither docker compose nor docker-compose is installed")
    env = {"LMS_JWT_SECRET": "x" * 32, "PATH": "/usr/bin:/bin"}
    for profile in ([], ["--profile", "gpu"]):
        subprocess.run(
            [*compose, "-f", str(COMPOSE), *profile, "config", "--quiet"],
            env=env,
            check=True,
            timeout=60,
            cwd=tmp_path,
        )


# The kernel cache and cuBLAS: what issue 20 measured on an H200.

CUDA_CACHE_MAX = 4 * 1024**3  # the most the NVIDIA driver takes for CUDA_CACHE_MAXSIZE


def gpu_image_env() -> dict[str, str]:
    """The ENV of the Dockerfile's gpu stage."""
    env: dict[str, str] = {}
    for line in _stages()["gpu"]:
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def test_the_gpu_image_keeps_compiled_kernels_in_a_large_cache() -> None:
    env = gpu_image_env()
    # CTranslate2 ships PTX for sm_90 GPUs; the driver's JIT cache keeps what it compiled.
    assert env["CUDA_CACHE_PATH"] == "/cuda-cache"
    assert int(env["CUDA_CACHE_MAXSIZE"]) == CUDA_CACHE_MAX
    # Writable by the worker's user (a named volume mounted there takes the folder's owner).
    assert any(
        line.startswith("RUN ")
        and "mkdir -p /cuda-cache" in line
        and "chown lms /cuda-cache" in line
        for line in _stages()["gpu"]
    )


def test_the_gpu_worker_mounts_the_kernel_cache(services: dict[str, Service]) -> None:
    cache = gpu_image_env()["CUDA_CACHE_PATH"]
    mounts = dict(v.split(":", 1)[::-1] for v in services["worker-gpu"]["volumes"])
    volume = mounts[cache]
    compose = yaml.safe_load(COMPOSE.read_text())
    assert volume in compose["volumes"]  # a named volume: it outlives the container
    # Only the GPU worker compiles kernels.
    for name in ("api", "worker", "migrate"):
        assert all(cache not in v for v in services[name].get("volumes", [])), name
    # Healthy (the metrics port open) only once the worker has warmed up: see
    # tests/integration/transcripts/test_worker_startup.py for that order.
    health = " ".join(services["worker-gpu"]["healthcheck"]["test"])
    port = services["worker-gpu"]["environment"]["LMS_WORKER_METRICS_PORT"]
    assert f"'127.0.0.1', {port}" in health


def _cublas_major_ctranslate2_loads() -> str:
    """The libcublas.so.N the installed CTranslate2 opens at its first matrix product (with
    dlopen: it is in the library's strings, not its ELF dependencies)."""
    package = Path(ctranslate2.__file__).parent
    libraries = [
        p
        for folder in (package, package.parent / "ctranslate2.libs")
        if folder.is_dir()
        for p in folder.iterdir()
        if p.name.startswith("libctranslate2")
    ]
    assert libraries, f"no libctranslate2 beside {package}"
    found = {m for lib in libraries for m in re.findall(rb"libcublas\.so\.(\d+)", lib.read_bytes())}
    assert len(found) == 1, found
    return found.pop().decode()


def test_the_gpu_image_brings_the_cublas_ctranslate2_loads() -> None:
    # CTranslate2 4.8.5 loads libcublas.so.12; the H200 host of issue 20 had only CUDA 13's
    # cuBLAS 13 and worked only through a compatibility link. The image must bring the very
    # major version CTranslate2 asks for: this fails if either side changes alone.
    major = _cublas_major_ctranslate2_loads()
    assert major == "12"
    stages = _stages()
    assert any(f"ctypes.CDLL('libcublas.so.{major}')" in line for line in stages["gpu"])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (cublas,) = [r for r in project["dependency-groups"]["gpu"] if "cublas" in r]
    assert cublas.startswith(f"nvidia-cublas-cu{major}=={major}.")
    lock = (ROOT / "uv.lock").read_text()
    assert re.search(rf'name = "nvidia-cublas-cu{major}"\nversion = "{major}\.', lock)
    library_path = gpu_image_env()["LD_LIBRARY_PATH"]
    assert library_path.endswith("/site-packages/nvidia/cublas/lib")
