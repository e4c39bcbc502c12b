"""The real tiny.en model on the committed speech clip, media decoding, and media download."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import av
import faster_whisper
import huggingface_hub.constants
import numpy as np
import pytest

from lms.integrations.media import probe_video
from lms.integrations.safe_fetch import FetchPolicy
from lms.integrations.whisper import (
    AudioError,
    DownloadError,
    ModelUnavailable,
    Transcriber,
    TranscriptResult,
    choose_device,
    decode_audio,
    download,
)
from lms.netutil import free_port
from tests.support.wer import word_error_rate

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SPEECH = FIXTURES / "speech.mp4"
SPEECH_TEXT = (FIXTURES / "speech.txt").read_text().strip()
SLACK = 0.5  # seconds a word may stray outside its segment (DTW alignment is approximate)


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    # CPU whatever the machine has, so the numbers and the text do not depend on a GPU.
    model = Transcriber("default", choose_device("cpu"))
    model.load()
    return model


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return decode_audio(SPEECH)


@pytest.fixture(scope="module")
def result(transcriber: Transcriber, speech: np.ndarray) -> TranscriptResult:
    return transcriber.transcribe(speech)


def assert_well_formed(result: TranscriptResult) -> None:
    assert result.segments
    previous_end = 0.0
    for segment in result.segments:
        assert 0.0 <= segment.start < segment.end <= result.duration_seconds
        assert segment.start >= previous_end, "segments overlap or are out of order"
        previous_end = segment.end
        assert segment.text and segment.text == segment.text.strip()
        assert segment.words
        for word in segment.words:
            assert segment.start - SLACK <= word.start <= word.end <= segment.end + SLACK
            assert 0.0 <= word.probability <= 1.0
            assert word.word
    assert result.text == " ".join(s.text for s in result.segments)


def test_decode_audio_is_16khz_mono_float32(speech: np.ndarray) -> None:
    assert speech.dtype == np.float32
    assert speech.ndim == 1
    assert len(speech) / 16_000 == pytest.approx(probe_video(SPEECH).duration_seconds, abs=0.2)
    assert 0.01 < float(np.abs(speech).max()) <= 1.0


def test_the_words_spoken_are_transcribed(result: TranscriptResult) -> None:
    wer = word_error_rate(SPEECH_TEXT, result.text)
    assert wer < 0.2, f"WER {wer:.3f}: {result.text!r}"
    assert result.language == "en"
    assert result.language_probability is None  # English-only model: told, not detected


def test_segments_are_ordered_timed_and_hold_their_words(result: TranscriptResult) -> None:
    assert_well_formed(result)
    assert result.duration_seconds == pytest.approx(probe_video(SPEECH).duration_seconds, abs=0.2)
    assert result.segments[-1].end > result.duration_seconds / 2


def test_timing_is_reported(result: TranscriptResult) -> None:
    assert result.compute_seconds > 0
    assert result.realtime_factor == pytest.approx(result.duration_seconds / result.compute_seconds)


def test_the_batched_pipeline_works_on_cpu(transcriber: Transcriber, speech: np.ndarray) -> None:
    batched = transcriber.transcribe(speech, batched=True)
    wer = word_error_rate(SPEECH_TEXT, batched.text)
    assert wer < 0.2, f"WER {wer:.3f}: {batched.text!r}"
    assert batched.language == "en"
    assert_well_formed(batched)


def test_the_decoding_path_follows_the_setting(transcriber: Transcriber) -> None:
    # auto: the bench table's row (tests/unit/test_whisper_decoding.py pins it), sequential for
    # the bundled model on either device, whatever the length of the audio.
    assert not transcriber.batched
    on_gpu = Transcriber("default", choose_device("cuda", cuda_devices=1))  # never loaded
    assert not on_gpu.batched
    assert Transcriber("default", choose_device("cpu"), decoding="batched").batched
    assert not on_gpu.loaded


# Repeated speech: the case that lost seven windows in eight (issue 20). The sequential decoder's
# text for a window of repeated sentences compresses too well, so it falls back to sampling at
# up to temperature 1.0; a sample judged silent (no-speech probability over 0.6, average
# log-probability under -1) makes it skip the whole window, at random.
SKIPPING = {"no_speech_threshold": 0.0, "log_prob_threshold": 0.0}  # every window "silent"


@pytest.mark.slow
def test_repeated_speech_is_transcribed_in_full(
    transcriber: Transcriber, speech: np.ndarray
) -> None:
    result = transcriber.transcribe(np.tile(speech, 8))
    assert result.coverage.speech_seconds == pytest.approx(result.duration_seconds, rel=0.05)
    assert not result.coverage.short, result.coverage
    assert result.coverage.ratio >= 0.97
    assert result.coverage.longest_gap is None or result.coverage.gap_seconds < 3.0
    assert result.warning is None
    wer = word_error_rate(" ".join([SPEECH_TEXT] * 8), result.text)
    assert wer < 0.2, f"WER {wer:.3f}: {result.text!r}"
    assert_well_formed(result)


def test_a_decoding_that_skips_speech_is_decoded_again(speech: np.ndarray) -> None:
    # A first decoding that judges every window silent (made so by its thresholds, as sampling
    # makes it so by chance) drops all the speech; the second decoding cannot skip.
    skipping = Transcriber("default", choose_device("cpu"), first_pass=SKIPPING)
    audio = np.tile(speech, 3)
    result = skipping.transcribe(audio)
    assert result.redecoded
    assert not result.coverage.short, result.coverage
    assert result.warning is None
    wer = word_error_rate(" ".join([SPEECH_TEXT] * 3), result.text)
    assert wer < 0.2, f"WER {wer:.3f}: {result.text!r}"
    assert_well_formed(result)


def test_a_transcript_that_covers_the_speech_is_decoded_once(result: TranscriptResult) -> None:
    assert not result.redecoded
    assert result.coverage.ratio == 1.0
    assert result.coverage.speech_seconds > 10.0


def test_silence_gives_an_empty_transcript(transcriber: Transcriber) -> None:
    silent = transcriber.transcribe(np.zeros(16_000 * 3, dtype=np.float32))
    assert (silent.text, silent.segments, silent.duration_seconds) == ("", [], 3.0)


def test_stereo_arrays_are_refused(transcriber: Transcriber) -> None:
    with pytest.raises(AudioError, match="mono"):
        transcriber.transcribe(np.zeros((2, 16_000), dtype=np.float32))


def test_concurrent_first_use_loads_one_model(monkeypatch: pytest.MonkeyPatch) -> None:
    real = faster_whisper.WhisperModel
    made: list[object] = []

    def counting(*args: object, **kwargs: object) -> object:
        time.sleep(0.2)  # widen the window in which a second loader could slip in
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(faster_whisper, "WhisperModel", counting)
    fresh = Transcriber("default", choose_device("cpu", cpu_count=1))
    models: list[object] = []
    threads = [threading.Thread(target=lambda: models.append(fresh.load())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1
    assert all(m is made[0] for m in models)


def test_a_size_name_that_is_not_cached_says_it_is_not_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Offline and with an empty cache, as on this machine and on an air-gapped worker.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    transcriber = Transcriber("small", choose_device("cpu", cuda_devices=0))
    with pytest.raises(ModelUnavailable) as caught:
        transcriber.load()
    message = str(caught.value)
    assert message.startswith("model small is not available offline; set LMS_WHISPER_MODEL")
    assert "\n" not in message
    with pytest.raises(ModelUnavailable, match="not available offline"):
        Transcriber("no-such-size", choose_device("cpu", cuda_devices=0)).load()


def test_a_folder_without_a_model_cannot_be_loaded(tmp_path: Path) -> None:
    transcriber = Transcriber(str(tmp_path), choose_device("cpu", cuda_devices=0))
    with pytest.raises(ModelUnavailable, match=r"cannot load Whisper model .* on cpu \(int8\)"):
        transcriber.load()


def _without_audio(source: Path, target: Path) -> None:
    """Copy the video stream alone (no re-encoding) into a new MP4."""
    with av.open(str(source)) as inp, av.open(str(target), "w", format="mp4") as out:
        video_in = inp.streams.video[0]
        video_out = out.add_stream_from_template(video_in)
        for packet in inp.demux(video_in):
            if packet.dts is not None:
                packet.stream = video_out
                out.mux(packet)


def test_a_video_without_sound_is_an_audio_error(tmp_path: Path) -> None:
    silent_film = tmp_path / "silent.mp4"
    _without_audio(SPEECH, silent_film)
    assert not probe_video(silent_film).has_audio
    with pytest.raises(AudioError, match="no audio stream"):
        decode_audio(silent_film)


def test_a_file_that_is_not_media_is_an_audio_error() -> None:
    with pytest.raises(AudioError, match="not a media file"):
        decode_audio(FIXTURES / "not-a-video.txt")
    with pytest.raises(FileNotFoundError):
        decode_audio(FIXTURES / "no-such-file.mp4")


# Download, against a local HTTP server -------------------------------------------------------

SPEECH_BYTES = SPEECH.read_bytes()
LONG_BODY = b"\0" * 3_000_000


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/media/speech.mp4":
            self._answer(200, SPEECH_BYTES, length=True)
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/media/speech.mp4")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/unannounced.bin":
            self._answer(200, LONG_BODY, length=False)  # size known only by reading it all
        elif path == "/slow.mp4":
            self._answer(200, SPEECH_BYTES[:1000], length=False, then_wait=5.0)
        elif path == "/empty.mp4":
            self._answer(200, b"", length=True)
        else:
            self._answer(404, b"not found", length=True)

    def _answer(self, status: int, body: bytes, *, length: bool, then_wait: float = 0.0) -> None:
        self.send_response(status)
        if length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        time.sleep(then_wait)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _files(directory: Path) -> list[Path]:
    return sorted(directory.iterdir())


@pytest.fixture(scope="module")
def media_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def allowed(url: str) -> FetchPolicy:
    """The test server's own endpoint, allowed: the worker refuses loopback otherwise."""
    return FetchPolicy.from_entries([urlsplit(url).netloc.rpartition("@")[2]])


async def test_download_streams_into_a_file_the_worker_can_decode(
    media_server: str, tmp_path: Path
) -> None:
    policy = allowed(media_server)
    path = await download(
        f"{media_server}/media/speech.mp4?sig=abc", tmp_path, max_bytes=10**6, policy=policy
    )
    assert path.parent == tmp_path
    assert path.suffix == ""  # no name taken from the URL: the bytes decide what it is
    assert path.read_bytes() == SPEECH_BYTES
    assert len(decode_audio(path)) > 16_000 * 10
    redirected = await download(
        f"{media_server}/redirect", tmp_path, max_bytes=10**6, policy=policy
    )
    assert redirected.read_bytes() == SPEECH_BYTES
    assert _files(tmp_path) == sorted([path, redirected])


@pytest.mark.parametrize(
    ("path", "max_bytes", "message"),
    [
        ("/missing.mp4", 10**6, "answered HTTP 404"),
        ("/media/speech.mp4", 1000, "over the 1000 byte limit"),  # refused on Content-Length
        ("/unannounced.bin", 2_000_000, "over the 2000000 byte limit"),  # refused while reading
        ("/empty.mp4", 10**6, "is empty"),
    ],
)
async def test_download_failures_leave_nothing_behind(
    media_server: str, tmp_path: Path, path: str, max_bytes: int, message: str
) -> None:
    with pytest.raises(DownloadError, match=message):
        await download(
            f"{media_server}{path}", tmp_path, max_bytes=max_bytes, policy=allowed(media_server)
        )
    assert _files(tmp_path) == []


async def test_download_of_an_unreachable_or_odd_url(tmp_path: Path) -> None:
    url = f"http://user:secret@127.0.0.1:{free_port()}/x.mp4?token=t"
    with pytest.raises(
        DownloadError, match=r"could not download http://127\.0\.0\.1:\d+/x\.mp4 \(ConnectError"
    ) as caught:
        await download(url, tmp_path, max_bytes=10, policy=allowed(url))
    assert "secret" not in str(caught.value)
    assert "token" not in str(caught.value)
    with pytest.raises(DownloadError, match="not an http"):
        await download("file:///etc/passwd", tmp_path, max_bytes=10)
    assert _files(tmp_path) == []


async def test_a_cancelled_download_removes_its_file(media_server: str, tmp_path: Path) -> None:
    task = asyncio.create_task(
        download(
            f"{media_server}/slow.mp4", tmp_path, max_bytes=10**6, policy=allowed(media_server)
        )
    )
    for _ in range(200):
        if _files(tmp_path):
            break
        await asyncio.sleep(0.01)
    assert _files(tmp_path), "the download never started"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _files(tmp_path) == []
