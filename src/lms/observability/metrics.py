"""Prometheus metrics. With several Granian workers, PROMETHEUS_MULTIPROC_DIR (set by `lms serve`)
makes every worker write its samples there and /metrics sums them, whichever worker answers."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector

from lms.observability.tally import TALLY

HTTP_REQUESTS = Counter(
    "lms_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "lms_http_request_duration_seconds",
    "Time from request start to the last body byte sent, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

OUTBOUND_MESSAGES = Counter(
    "lms_outbound_messages_total",
    "Mail and SMS delivery attempts, by channel and outcome (sent, retry, failed).",
    ["channel", "outcome"],
)
RATE_LIMITED = Counter(
    "lms_rate_limited_total",
    "Requests refused with 429, by what was limited.",
    ["limit"],
)

# PostgreSQL read replicas (LMS_DATABASE_REPLICA_URLS), as each API process's health check sees
# them; `replica` is host:port/database, never a password.
REPLICA_HEALTHY = Gauge(
    "lms_db_replica_healthy",
    "1 while the replica answers, is in recovery, streams from the primary and has replayed "
    "the primary's WAL position of at most LMS_REPLICA_MAX_LAG seconds ago, else 0 (its reads "
    "go to the primary).",
    ["replica"],
    multiprocess_mode="mostrecent",
)
REPLICA_LAG = Gauge(
    "lms_db_replica_lag_seconds",
    "How stale the replica's data may be, measured against the primary: seconds since the "
    "newest sample of the primary's WAL position it has replayed was taken (NaN while it "
    "cannot be reached or is behind every sample kept). Reported even while it is not "
    "streaming: it is then unhealthy whatever this says.",
    ["replica"],
    multiprocess_mode="mostrecent",
)
REPLICA_REFUSED_READS = Counter(
    "lms_db_replica_refused_reads_total",
    "Reads a replica's pooled connection turned down because its own server was not streaming "
    "or was behind the read's bound (behind a balancing address such as CloudNativePG's -ro "
    "Service: one pod); the primary answered them.",
    ["replica"],
)
ROUTED_READS = Counter(
    "lms_db_routed_reads_total",
    "Reads that may be a moment stale (anonymous catalog, course page, certificate "
    "verification), by where they ran: replica, or primary (no healthy replica, none "
    "configured, or the replica failed mid-read).",
    ["target"],
)

# Transcription, counted by the workers that do it.
TRANSCRIPTION_OUTCOMES = Counter(
    "lms_transcription_jobs_finished_total",
    "Transcription attempts by outcome (done, retry, failed, superseded).",
    ["outcome"],
)
TRANSCRIBED_AUDIO_SECONDS = Counter(
    "lms_transcribed_audio_seconds_total", "Seconds of audio transcribed."
)
TRANSCRIPTION_COMPUTE_SECONDS = Counter(
    "lms_transcription_compute_seconds_total",
    "Seconds spent in Whisper; rate(audio) / rate(compute) is the speed in audio seconds per "
    "second.",
)
TRANSCRIPTION_SPEED = Gauge(
    "lms_transcription_speed_ratio",
    "Seconds of audio per second of compute of the last job (the real-time factor).",
    multiprocess_mode="mostrecent",
)
# What share of the speech VAD found each stored transcript covers, and how often a short first
# decoding was decoded again (recovered, or still short: stored with a warning).
TRANSCRIPT_SPEECH_COVERAGE = Histogram(
    "lms_transcript_speech_coverage",
    "Share of the speech found by voice-activity detection that a transcript's segments cover.",
    buckets=(0.5, 0.8, 0.9, 0.95, 0.99, 1.0),
)
TRANSCRIPTION_REDECODES = Counter(
    "lms_transcription_redecodes_total",
    "Transcripts decoded a second time because the first covered too little of the speech, by "
    "outcome (recovered, still_short).",
    ["outcome"],
)
# The queue as the API sees it, refreshed on every scrape of /metrics.
JOBS_BY_STATUS = Gauge(
    "lms_transcription_jobs",
    "Transcription jobs by status (from PostgreSQL).",
    ["status"],
    multiprocess_mode="mostrecent",
)
QUEUE_DEPTH = Gauge(
    "lms_transcription_queue_depth",
    "Messages waiting in the JetStream consumer plus those delivered and not yet acked.",
    multiprocess_mode="mostrecent",
)

EVENTS_DISPATCHED = Counter(
    "lms_events_dispatched_total",
    "Events of the event log fanned out to the sinks (webhooks, xAPI).",
)
# Refreshed on every scrape of /metrics, like the transcription queue.
EVENTS_UNDISPATCHED = Gauge(
    "lms_events_undispatched",
    "Events recorded but not yet fanned out to the sinks (from PostgreSQL).",
    multiprocess_mode="mostrecent",
)
WEBHOOK_QUEUE_DEPTH = Gauge(
    "lms_webhook_queue_depth",
    "Webhook deliveries not yet acknowledged by their endpoint, by endpoint id (from PostgreSQL).",
    ["endpoint"],
    multiprocess_mode="mostrecent",
)
WEBHOOK_DELIVERIES = Counter(
    "lms_webhook_deliveries_total",
    "Webhook delivery attempts by endpoint id and outcome (delivered, failed).",
    ["endpoint", "outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "lms_webhook_delivery_latency_seconds",
    "Seconds from an event's recording to its delivery to an endpoint (2xx answer).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
)


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return DEFAULT_REGISTRY


def render() -> tuple[bytes, str]:
    """The exposition text and its content type, this process's tally added first."""
    TALLY.flush()
    return generate_latest(_registry()), CONTENT_TYPE_LATEST
