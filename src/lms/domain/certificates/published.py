"""The revocation status lists as served at /certificates/status/:listId: built from the database
on every request (one small index read: the list's revoked entries), so a revocation shows the
moment it commits, in every process; signed again only when the list changed or its signature
grows old, so a verifier fetching the list costs one query and no signature. It reads the
primary, never a replica: a lagging replica would hide a revocation from the list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from lms.context import AppContext
from lms.db.queries import Conn
from lms.db.queries import certificates as sql
from lms.domain.certificates import status_list
from lms.domain.errors import NotFound
from lms.invariants import present

# Far past any list this service could fill, and inside PostgreSQL's integer.
MAX_LIST_ID = 1_000_000


@dataclass(frozen=True, slots=True)
class PublishedList:
    """One list in both of its forms, and what it was built from."""

    revoked: tuple[int, ...]
    signed_at: datetime
    kid: str
    jwt: bytes  # the VC-JWT (application/vc+jwt)
    document: bytes  # the same credential as JSON


# Per process: list id -> its last published form.
_published: dict[int, PublishedList] = {}


def _fresh(kept: PublishedList | None, revoked: tuple[int, ...], kid: str) -> bool:
    return (
        kept is not None
        and kept.revoked == revoked
        and kept.kid == kid
        and datetime.now(UTC) - kept.signed_at < status_list.RESIGN_AFTER
    )


def _publish(ctx: AppContext, list_id: int, revoked: tuple[int, ...]) -> PublishedList:
    key = present(ctx.signing_key, "create_app loads the signing key")
    base_url = ctx.settings.base_url
    signed_at = datetime.now(UTC).replace(microsecond=0)
    document: dict[str, Any] = status_list.credential(base_url, list_id, revoked, signed_at)
    return PublishedList(
        revoked=revoked,
        signed_at=signed_at,
        kid=key.kid(base_url),
        jwt=status_list.sign(document, key, base_url).encode(),
        document=msgspec.json.encode(document),
    )


async def status_list_of(conn: Conn, ctx: AppContext, list_id: int) -> PublishedList:
    """The list as it stands now; NotFound when no certificate has a bit in it (yet)."""
    found = None
    if 1 <= list_id <= MAX_LIST_ID:
        first_number = (list_id - 1) * status_list.LIST_SIZE
        found = await sql.revoked_in_list(conn, list_id, first_number)
    if found is None:
        raise NotFound("no such status list")
    revoked = tuple(found)
    key = present(ctx.signing_key, "create_app loads the signing key")
    kept = _published.get(list_id)
    if kept is not None and _fresh(kept, revoked, key.kid(ctx.settings.base_url)):
        return kept
    published = _publish(ctx, list_id, revoked)
    _published[list_id] = published
    return published
