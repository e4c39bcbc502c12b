"""The two dependencies Litestar's DI gives handlers, provided app-wide by create_app: the
per-process context (`Ctx`, lms.context.AppContext) and the connection pool (`Db`). Here, at the
HTTP edge, so that lms.context (which every service imports) knows nothing about Litestar."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from litestar.di import Dependency
from litestar.params import SkipValidationMarker

from lms.context import AppContext

# How handlers ask for them: `ctx: Ctx`, `db: Db` (not validated per request).
Ctx = Annotated[AppContext, Dependency(kind="named"), SkipValidationMarker()]
Db = Annotated[asyncpg.Pool, Dependency(kind="named"), SkipValidationMarker()]
