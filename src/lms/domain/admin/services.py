"""Admin actions on users and runtime settings; each writes its audit row in the same
transaction."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
from msgspec import UNSET

from lms.context import AppContext
from lms.db.builder import transaction
from lms.db.queries import refresh_tokens, users
from lms.db.queries import system_settings as settings_sql
from lms.db.tables import Role
from lms.domain import audit
from lms.domain.admin.schemas import SystemSettingsOut, SystemSettingsUpdate, UserUpdate
from lms.domain.admin.system_settings import RuntimeSettings
from lms.domain.auth.authentication import Principal
from lms.domain.auth.schemas import User, UserPage
from lms.domain.errors import Conflict, Invalid, NotFound
from lms.domain.paging import after_position, time_id_page

_WORD = re.compile(r"[\w@.+-]+", re.UNICODE)


def prefix_tsquery(text: str | None) -> str | None:
    """'ada lov' -> 'ada:* & lov:*' (each word a prefix), with nothing a client could inject."""
    if not text:
        return None
    words = [re.sub(r"[^\w]", " ", w).split() for w in _WORD.findall(text.lower())]
    terms = [f"{part}:*" for word in words for part in word][:8]
    return " & ".join(terms) or None


async def list_users(
    ctx: AppContext, *, role: str | None, q: str | None, cursor: str | None, limit: int
) -> UserPage:
    after = after_position(ctx.secret, "users", cursor)
    rows = await users.list_page(role=role, tsquery=prefix_tsquery(q), after=after, limit=limit + 1)
    return time_id_page(
        rows, limit, page=UserPage, convert=User.from_row, secret=ctx.secret, scope="users"
    )


async def update_user(
    ctx: AppContext, admin: Principal, user_id: uuid.UUID, body: UserUpdate
) -> User:
    if body.role is UNSET and body.is_active is UNSET:
        raise Invalid("give role and/or isActive")
    if user_id == admin.user_id and (
        (body.role is not UNSET and body.role != Role.ADMIN) or body.is_active is False
    ):
        raise Conflict("admins cannot demote or deactivate themselves")
    async with transaction() as conn:
        before = await users.lock_for_admin(user_id)
        if before is None:
            raise NotFound("no such user")
        role = before["role"] if body.role is UNSET else body.role
        active = before["is_active"] if body.is_active is UNSET else body.is_active
        deactivating = before["is_active"] and not active
        after = await users.set_role_and_activity(
            user_id, role=role, is_active=active, bump_version=deactivating
        )
        if deactivating:
            await refresh_tokens.revoke_all_for_user(user_id)
        if role != before["role"]:
            await audit.record(
                conn,
                actor_id=admin.user_id,
                action="user.role_change",
                target_type="user",
                target_id=user_id,
                before={"role": before["role"]},
                after={"role": role},
            )
        if active != before["is_active"]:
            await audit.record(
                conn,
                actor_id=admin.user_id,
                action="user.activate" if active else "user.deactivate",
                target_type="user",
                target_id=user_id,
                before={"isActive": before["is_active"]},
                after={"isActive": active},
            )
    # Other processes hear it through NOTIFY; this one must not wait for its own echo.
    ctx.users.invalidate(user_id)
    return User.from_row(after)


def _as_on_the_wire(row: Mapping[str, Any], changed: dict[str, object]) -> dict[str, object]:
    """The changed settings as the API shows them (camelCase names, numbers), for the audit log."""
    shown = msgspec.to_builtins(SystemSettingsOut.of(RuntimeSettings.from_row(row)))
    names = {f.name: f.encode_name for f in msgspec.structs.fields(SystemSettingsOut)}
    return {names[column]: shown[names[column]] for column in changed}


async def get_settings(ctx: AppContext) -> SystemSettingsOut:
    return SystemSettingsOut.of(await ctx.system.get())


async def update_settings(
    ctx: AppContext, admin: Principal, body: SystemSettingsUpdate
) -> SystemSettingsOut:
    changes = body.changes()
    if not changes:
        raise Invalid("give at least one setting to change")
    async with transaction() as conn:
        before = await settings_sql.read(lock=True)
        after = await settings_sql.update(changes, admin.user_id)
        await audit.record(
            conn,
            actor_id=admin.user_id,
            action="settings.update",
            target_type="system_settings",
            target_id=1,
            before=_as_on_the_wire(before, changes),
            after=_as_on_the_wire(after, changes),
        )
    value = RuntimeSettings.from_row(after)
    ctx.system.store(value)
    return SystemSettingsOut.of(value)
