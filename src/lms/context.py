"""AppContext: the per-process services a request needs, built once by create_app. Services import
it, so it imports nothing of HTTP (Litestar's `Ctx` / `Db` dependencies: lms.api.dependencies)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg

from lms.domain.auth.verified_tokens import VerifiedTokens
from lms.invariants import present
from lms.settings import Settings

if TYPE_CHECKING:  # types only: these modules import this one
    from lms.broker import BrokerConnection
    from lms.db.replicas import ReadReplicas, ReplicaReads
    from lms.domain.admin.system_settings import SystemSettingsCache
    from lms.domain.auth.session_state import SessionStateCache
    from lms.domain.auth.user_state import UserAuthCache
    from lms.domain.certificates.keys import SigningKey
    from lms.integrations.storage import VideoStorage
    from lms.integrations.stripe_gateway import StripeGateway
    from lms.messaging.dispatcher import OutboxDispatcher
    from lms.notifications.listener import ChangeListener

log = logging.getLogger("lms.context")


@dataclass
class AppContext:
    settings: Settings
    users: UserAuthCache
    system: SystemSettingsCache
    listener: ChangeListener
    sessions: SessionStateCache  # logins ended (refresh token families revoked)
    # Access tokens verified already (their signature is checked once per process).
    verified_tokens: VerifiedTokens = field(default_factory=VerifiedTokens)
    outbox: OutboxDispatcher | None = None  # needs the pool: made at startup
    storage: VideoStorage | None = None
    nats: BrokerConnection | None = None
    signing_key: SigningKey | None = None  # signs certificates (LMS_CERT_SIGNING_KEY)
    # Stripe (LMS_STRIPE_*); None: payments are not configured and checkout answers 503.
    payments: StripeGateway | None = None
    # The connection pool, started with the app; handlers get it as the `db` dependency and
    # hand it to the services, which never reach for a module-level one.
    db: asyncpg.Pool | None = None
    # The read replicas (LMS_DATABASE_REPLICA_URLS; none: every read goes to the primary), started
    # with the pool. Only a handler that asks for them reads them: see replica_reads().
    replicas: ReadReplicas | None = None

    async def publish_job(self, job_id: uuid.UUID) -> None:
        """After commit: hand a transcription job to NATS (the sweeper covers a failure)."""
        from lms.domain.transcripts.jobs import publish

        if self.nats is not None:
            await publish(self.nats, self.pool, job_id)

    async def delete_videos(self, keys: list[str]) -> None:
        """After commit: remove stored videos nothing refers to any more. A failure leaves an
        orphan file (logged), never a lesson without its video."""
        if self.storage is None:
            return
        for key in keys:
            try:
                await self.storage.delete(key)
            except Exception as exc:
                log.warning("could not delete stored video %s: %s", key, exc)

    @property
    def secret(self) -> str:
        if not self.settings.jwt_secret:
            raise RuntimeError("the JWT secret is resolved before the app is built")
        return self.settings.jwt_secret

    def replica_reads(self, max_lag: float | None = None) -> ReplicaReads:
        """For a read that may be up to LMS_REPLICA_MAX_LAG seconds stale (or `max_lag`, when
        fewer): a healthy read replica's answer, else the primary's. Never for a write, nor for
        a read that must see what the caller has just written (their drafts, their progress):
        those take `db`."""
        replicas = present(self.replicas, "the read replicas start with the pool")
        return replicas if max_lag is None else replicas.within(max_lag)

    @property
    def pool(self) -> asyncpg.Pool:
        """For the HTTP edge (guards, middleware), which Litestar's DI does not reach."""
        return present(self.db, "the pool starts with the app")
