"""Certificates: issued once per completed enrollment (inside the completing transaction), read
by their learner, verified by anyone from the serial, revoked by admins, and the public keys
that let anyone check them offline."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg

from lms.context import AppContext
from lms.db.queries import ReadConn
from lms.db.queries import certificates as sql
from lms.db.queries.certificates import CertificateToStore
from lms.db.tables import Role
from lms.domain import audit
from lms.domain.auth.authentication import Principal
from lms.domain.certificates import credential, status_list
from lms.domain.certificates.keys import SigningKey, algorithm_of_jwk
from lms.domain.certificates.schemas import (
    Certificate,
    CertificateCourse,
    CertificateLearner,
    JwkSet,
    PublicJwk,
    Verification,
    VerifiedCertificate,
)
from lms.domain.certificates.view import CertificateView
from lms.domain.errors import Conflict, Invalid, NotFound
from lms.domain.events.log import record_event, record_events
from lms.invariants import present

# 192 bits from the OS's CSPRNG, as 48 hex digits: unguessable, and nothing public derives it.
SERIAL_BYTES = 24
SERIAL_PATTERN = re.compile(r"^[0-9a-f]{32,64}$")


def new_serial() -> str:
    return secrets.token_hex(SERIAL_BYTES)


def verify_url(ctx: AppContext, serial_hash: str) -> str:
    return f"{ctx.settings.base_url}/certificates/verify/{serial_hash}"


def signing_key(ctx: AppContext) -> SigningKey:
    return present(ctx.signing_key, "create_app loads the signing key")


def sign_new(
    ctx: AppContext,
    *,
    enrollment_id: uuid.UUID,
    course_id: uuid.UUID,
    learner_name: str,
    course_title: str,
    status_number: int,
) -> CertificateToStore:
    """A new certificate, signed: a fresh id and serial, issued now (whole seconds), its status
    list entry from `status_number` (certificate_status_seq's, never given twice)."""
    list_id, index = status_list.position(status_number)
    achievement = credential.Achievement(
        certificate_id=uuid.uuid4(),
        serial_hash=new_serial(),
        enrollment_id=enrollment_id,
        issued_at=datetime.now(UTC).replace(microsecond=0),
        learner_name=learner_name,
        course_id=course_id,
        course_title=course_title,
        status_list=list_id,
        status_index=index,
    )
    jws = credential.sign(
        achievement,
        signing_key(ctx),
        issuer_url=ctx.settings.base_url,
        issuer_name=ctx.settings.issuer_name,
    )
    return CertificateToStore(
        certificate_id=achievement.certificate_id,
        serial_hash=achievement.serial_hash,
        learner_name=learner_name,
        course_title=course_title,
        jws=jws,
        issued_at=achievement.issued_at,
        status_list=list_id,
        status_index=index,
    )


async def issue(
    ctx: AppContext,
    conn: asyncpg.Connection,
    facts: asyncpg.Record,
    events: list[tuple[str, dict[str, object]]] | None = None,
) -> asyncpg.Record:
    """Issue the certificate of a completed enrollment, inside the transaction that completed
    it (which holds the enrollment's lock). `facts` is that transaction's locked row: the
    enrollment, its course and creator, and the learner's name. `events`, the completion's
    own, are recorded with certificate.issued, before it, in one statement."""
    events = list(events or ())
    new = sign_new(
        ctx,
        enrollment_id=facts["enrollment_id"],
        course_id=facts["course_id"],
        learner_name=facts["learner_name"],
        course_title=facts["course_title"],
        status_number=await sql.next_status_number(conn),
    )
    row = await sql.insert(
        conn,
        certificate_id=new.certificate_id,
        user_id=facts["user_id"],
        course_id=facts["course_id"],
        enrollment_id=facts["enrollment_id"],
        serial_hash=new.serial_hash,
        learner_name=new.learner_name,
        course_title=new.course_title,
        creator_name=facts["creator_name"],
        jws=new.jws,
        issued_at=new.issued_at,
        status_list=new.status_list,
        status_index=new.status_index,
    )
    if row is None:  # issued meanwhile by another transaction: that one stands
        row = present(
            await sql.for_enrollment(conn, facts["enrollment_id"]),
            "this transaction holds the enrollment's lock",
        )
        if row["id"] is None:
            raise RuntimeError("the insert conflicted, so the enrollment has a certificate")
        await record_events(conn, events)
        return row
    events.append(("certificate.issued", certificate_event(ctx, row)))
    await record_events(conn, events)
    return row


def certificate_event(ctx: AppContext, row: Mapping[str, Any]) -> dict[str, object]:
    """What certificate.issued / .revoked tell integrators: ids, the public verification URL
    (what an xAPI `earned` statement points to), never the learner's email."""
    return {
        "certificateId": row["id"],
        "enrollmentId": row["enrollment_id"],
        "userId": row["user_id"],
        "courseId": row["course_id"],
        "verifyUrl": verify_url(ctx, row["serial_hash"]),
        "issuedAt": row["issued_at"],
        "status": row["status"],
    }


def credential_of(row: asyncpg.Record) -> str | None:
    """The row's VC-JWT, unless the certificate is revoked: a revoked certificate's answers
    carry no credential that would look valid to a verifier that skips the status check."""
    return row["jws"] if row["status"] == "VALID" else None


def to_certificate(ctx: AppContext, row: asyncpg.Record) -> Certificate:
    return Certificate(
        id=row["id"],
        serial_hash=row["serial_hash"],
        issued_at=row["issued_at"],
        enrollment_id=row["enrollment_id"],
        course=CertificateCourse(id=row["course_id"], title=row["course_title"]),
        learner=CertificateLearner(full_name=row["learner_name"]),
        creator_name=row["creator_name"],
        verify_url=verify_url(ctx, row["serial_hash"]),
        status=row["status"],
        revoked_at=row["revoked_at"],
        jws=credential_of(row),
    )


def to_view(ctx: AppContext, row: asyncpg.Record) -> CertificateView:
    return CertificateView(
        serial_hash=row["serial_hash"],
        learner_name=row["learner_name"],
        course_title=row["course_title"],
        creator_name=row["creator_name"],
        issued_at=row["issued_at"],
        status=row["status"],
        revoked_at=row["revoked_at"],
        verify_url=verify_url(ctx, row["serial_hash"]),
        issuer_name=ctx.settings.issuer_name,
        issuer_url=ctx.settings.base_url,
    )


async def by_id(
    db: asyncpg.Pool, ctx: AppContext, certificate_id: uuid.UUID | None
) -> Certificate | None:
    if certificate_id is None:
        return None
    row = await sql.by_id(db, certificate_id)
    return None if row is None else to_certificate(ctx, row)


async def mine(db: asyncpg.Pool, ctx: AppContext, principal: Principal) -> list[Certificate]:
    return [to_certificate(ctx, row) for row in await sql.of_user(db, principal.user_id)]


async def _of_enrollment(
    db: asyncpg.Pool, principal: Principal, enrollment_id: uuid.UUID
) -> asyncpg.Record:
    """The enrollment's certificate, for its learner and admins; 404 for anyone else (another
    learner's enrollment is private) and while the course is not completed."""
    row = await sql.for_enrollment(db, enrollment_id)
    if row is None or (row["owner_id"] != principal.user_id and principal.role != Role.ADMIN):
        raise NotFound("no such enrollment")
    if row["id"] is None:
        raise NotFound(
            "no certificate yet: it is issued when every lesson of the course is completed"
        )
    return row


async def of_enrollment(
    db: asyncpg.Pool, ctx: AppContext, principal: Principal, enrollment_id: uuid.UUID
) -> Certificate:
    return to_certificate(ctx, await _of_enrollment(db, principal, enrollment_id))


async def pdf_of_enrollment(
    db: asyncpg.Pool, ctx: AppContext, principal: Principal, enrollment_id: uuid.UUID
) -> tuple[bytes, str]:
    """(the certificate as a one-page PDF, a file name). Rendering takes tens of milliseconds
    of CPU, so it runs in a worker thread, off the event loop."""
    row = await _of_enrollment(db, principal, enrollment_id)
    body = await asyncio.to_thread(_render_pdf, to_view(ctx, row))
    return body, f"certificate-{row['serial_hash'][:12]}.pdf"


def _render_pdf(view: CertificateView) -> bytes:
    # Imported on first use, in the worker thread: reportlab, Pillow and the fonts add about
    # 14 MB to a process, which API workers that never print a certificate need not carry.
    from lms.domain.certificates import pdf

    return pdf.render_pdf(view)


def find_by_serial(reads: ReadConn, serial_hash: str) -> Awaitable[asyncpg.Record | None] | None:
    """The row of a serial for public verification: the statement's own awaitable (no coroutine
    of ours in between: every verification passes here, and each frame is one more that the
    statement's resumption goes through), or None when the text cannot be a serial at all.
    `reads` may be the read replicas: a certificate issued or revoked a moment ago may take up
    to LMS_REPLICA_MAX_LAG seconds to show."""
    serial = serial_hash.strip().lower()
    if not SERIAL_PATTERN.match(serial):
        return None
    return sql.by_serial(reads, serial)


def verification_of(ctx: AppContext, row: asyncpg.Record) -> Verification:
    """The public verification answer of a certificate's row (find_by_serial)."""
    return Verification(
        valid=row["status"] == "VALID",
        certificate=VerifiedCertificate(
            serial_hash=row["serial_hash"],
            issued_at=row["issued_at"],
            learner_name=row["learner_name"],
            course_title=row["course_title"],
            course_id=row["course_id"],
            creator_name=row["creator_name"],
            status=row["status"],
            revoked_at=row["revoked_at"],
            verify_url=verify_url(ctx, row["serial_hash"]),
            jws=credential_of(row),
        ),
    )


async def revoke(
    db: asyncpg.Pool, ctx: AppContext, admin: Principal, certificate_id: uuid.UUID, reason: str
) -> Certificate:
    reason = reason.strip()
    if not reason:
        raise Invalid("reason must not be blank: say why the certificate is revoked")
    async with db.acquire() as conn, conn.transaction():
        before = await sql.by_id(conn, certificate_id, lock=True)
        if before is None:
            raise NotFound("no such certificate")
        row = await sql.revoke(conn, certificate_id, reason)
        if row is None:
            raise Conflict("the certificate is revoked already")
        await record_event(
            conn,
            "certificate.revoked",
            certificate_event(ctx, row) | {"reason": reason, "revokedAt": row["revoked_at"]},
        )
        await audit.record(
            conn,
            actor_id=admin.user_id,
            action="certificate.revoke",
            target_type="certificate",
            target_id=certificate_id,
            before={"status": before["status"]},
            after={"status": row["status"], "reason": reason},
        )
    return to_certificate(ctx, row)


async def register_signing_key(ctx: AppContext, conn: asyncpg.Pool) -> None:
    """Publish this process's public key in the JWK set (once per key: rotation adds a row)."""
    key = signing_key(ctx)
    await sql.register_signing_key(conn, key.kid(ctx.settings.base_url), key.public_jwk)


def _jwk(kid: str, public_jwk: dict[str, str]) -> PublicJwk:
    """The published form of a stored key: its public members, `kid`, `use` and the algorithm
    it signs with (Ed25519 rows from before RS256 keep saying EdDSA)."""
    members = {name: public_jwk[name] for name in ("crv", "x", "y", "n", "e") if name in public_jwk}
    return PublicJwk(
        kty=public_jwk["kty"], kid=kid, use="sig", alg=algorithm_of_jwk(public_jwk), **members
    )


async def jwk_set(db: asyncpg.Pool, ctx: AppContext) -> JwkSet:
    """Every key registered by any API process (old ones included), and always this process's
    own, so what it signs is verifiable whatever happened to the table."""
    keys = {row["kid"]: _jwk(row["kid"], row["public_jwk"]) for row in await sql.signing_keys(db)}
    own = signing_key(ctx)
    kid = own.kid(ctx.settings.base_url)
    keys.setdefault(kid, _jwk(kid, own.public_jwk))
    return JwkSet(keys=list(keys.values()))
