"""Speech to text with faster-whisper on CTranslate2, one module per job (see each module)."""

from __future__ import annotations

from lms.integrations.whisper.audio import SAMPLE_RATE, Audio, decode_audio
from lms.integrations.whisper.decoding import Decoding, DecodingPlan
from lms.integrations.whisper.device import (
    COMPUTE_TYPES,
    GPU_IMAGE_HINT,
    Device,
    DeviceChoice,
    choose_device,
    cuda_failure,
    usable_cpus,
)
from lms.integrations.whisper.download import download
from lms.integrations.whisper.errors import (
    AudioError,
    DownloadError,
    DownloadRefused,
    ModelUnavailable,
    UnsupportedMedia,
    WhisperError,
)
from lms.integrations.whisper.models import DEFAULT_MODEL, resolve_model
from lms.integrations.whisper.results import Segment, TranscriptResult, Word
from lms.integrations.whisper.transcriber import Transcriber

__all__ = [
    "COMPUTE_TYPES",
    "DEFAULT_MODEL",
    "GPU_IMAGE_HINT",
    "SAMPLE_RATE",
    "Audio",
    "AudioError",
    "Decoding",
    "DecodingPlan",
    "Device",
    "DeviceChoice",
    "DownloadError",
    "DownloadRefused",
    "ModelUnavailable",
    "Segment",
    "Transcriber",
    "TranscriptResult",
    "UnsupportedMedia",
    "WhisperError",
    "Word",
    "choose_device",
    "cuda_failure",
    "decode_audio",
    "download",
    "resolve_model",
    "usable_cpus",
]
