"""AppContext: the per-process services a request needs, built once by create_app."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from litestar.di import Dependency
from litestar.params import SkipValidationMarker

from lms.domain.admin.system_settings import SystemSettingsCache
from lms.domain.auth.user_state import UserAuthCache
from lms.messaging.dispatcher import OutboxDispatcher
from lms.notifications.listener import ChangeListener
from lms.settings import Settings

if TYPE_CHECKING:
    from lms.broker import BrokerConnection
    from lms.domain.certificates.keys import SigningKey
    from lms.integrations.storage import VideoStorage

log = logging.getLogger("lms.context")


@dataclass
class AppContext:
    settings: Settings
    users: UserAuthCache
    system: SystemSettingsCache
    listener: ChangeListener
    outbox: OutboxDispatcher | None = None  # needs the pool: made at startup
    storage: VideoStorage | None = None
    nats: BrokerConnection | None = None
    signing_key: SigningKey | None = None  # signs certificates (LMS_CERT_SIGNING_KEY)

    async def publish_job(self, job_id: uuid.UUID) -> None:
        """After commit: hand a transcription job to NATS (the sweeper covers a failure)."""
        from lms.domain.transcripts.jobs import publish

        if self.nats is not None:
            await publish(self.nats, job_id)

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
        assert self.settings.jwt_secret, "the JWT secret is resolved before the app is built"
        return self.settings.jwt_secret


# How handlers ask for it: `ctx: Ctx` (provided app-wide by create_app; not validated per request).
Ctx = Annotated[AppContext, Dependency(kind="named"), SkipValidationMarker()]
