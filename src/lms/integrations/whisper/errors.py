"""Transcription errors, told apart by the worker: retry, fail at once, or refuse to start."""

from __future__ import annotations


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
