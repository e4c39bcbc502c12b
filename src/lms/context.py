"""AppContext: the per-process services a request needs, built once by create_app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from litestar.di import Dependency

from lms.domain.admin.system_settings import SystemSettingsCache
from lms.domain.auth.user_state import UserAuthCache
from lms.messaging.dispatcher import OutboxDispatcher
from lms.notifications.listener import ChangeListener
from lms.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    users: UserAuthCache
    system: SystemSettingsCache
    listener: ChangeListener
    outbox: OutboxDispatcher | None = None  # needs the pool: made at startup

    @property
    def secret(self) -> str:
        assert self.settings.jwt_secret, "the JWT secret is resolved before the app is built"
        return self.settings.jwt_secret


# How handlers ask for it: `ctx: Ctx` (provided app-wide by create_app).
Ctx = Annotated[AppContext, Dependency(kind="named")]
