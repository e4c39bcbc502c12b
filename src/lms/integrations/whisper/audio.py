"""Media to samples: the first audio stream as 16 kHz mono float32, with PyAV."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import av.container
import av.error
import numpy as np
from numpy.typing import NDArray

from lms.integrations.media import MediaRefused, open_media
from lms.integrations.whisper.errors import AudioError, UnsupportedMedia

Audio = NDArray[np.float32]

SAMPLE_RATE = 16_000  # what every Whisper model is trained on; decode_audio resamples to it
# Samples resampled at once: one resampler call per ~30 s of audio instead of one per frame.
_RESAMPLE_BATCH = 500_000


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
