"""Thin handlers for certificates: the learner's own, public verification (JSON or a printable
page), the PDF, the JWK set that verifies them offline, the revocation status lists, and admin
revocation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_404_NOT_FOUND

from lms.api.answers import ANSWER, Answer, Incoming, constant_headers, respond
from lms.api.answers import preferred as preferred_media
from lms.api.dependencies import Ctx, Db
from lms.api.openapi import BAD, BEARER, CONFLICT, FORBIDDEN, NOT_FOUND, UNAUTHORIZED, errors
from lms.api.security import PUBLIC, requires
from lms.context import AppContext
from lms.db.replicas import ReplicaReads
from lms.domain.auth.authentication import Principal
from lms.domain.auth.permissions import Permission
from lms.domain.certificates import html_page, published, services
from lms.domain.certificates.schemas import (
    UNKNOWN_SERIAL,
    Certificate,
    JwkSet,
    NotVerified,
    Revocation,
    Verification,
)
from lms.domain.certificates.status_list import STATUS_LIST_MAX_AGE

AnyRequest = Request[Any, Any, Any]
PrincipalRequest = Request[Principal, Any, Any]
JSON = "application/json"
HTML = "text/html"
PDF = "application/pdf"
# After a revocation, `valid: true` is answered nowhere past LMS_VERIFY_MAX_LAG (capped by
# LMS_REPLICA_MAX_LAG) + VERIFY_MAX_AGE seconds: a replica serves verification only while it has
# replayed what the primary wrote that many seconds ago (verification_reads), and a cache
# (browser, CDN) keeps an answer at most max-age. The README states that bound.
VERIFY_MAX_AGE = 25
VERIFY_CACHE = f"public, max-age={VERIFY_MAX_AGE}"
# The page is self-contained: inline styles and an inline SVG, nothing else may load or run.
PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def verification_reads(ctx: AppContext) -> ReplicaReads:
    """Where verification reads (the controller and the hot lane alike): a replica at most
    LMS_VERIFY_MAX_LAG seconds behind the primary, else the primary."""
    return ctx.replica_reads(max_lag=ctx.settings.verify_max_lag_seconds)


_VERIFY_HEADERS = constant_headers(("Cache-Control", VERIFY_CACHE), ("Vary", "Accept"))
_PAGE_HEADERS = constant_headers(
    *_VERIFY_HEADERS,
    ("Content-Security-Policy", PAGE_POLICY),
    ("Referrer-Policy", "no-referrer"),
)
_ENCODER = msgspec.json.Encoder()


async def verification(
    ctx: AppContext, incoming: Incoming, _caller: Principal | None, *, serial_hash: str
) -> Answer:
    """GET /certificates/verify/{serial_hash}, whole (the handler and the hot lane both answer
    with it): JSON, or the printable page for a caller preferring text/html. Anyone may ask: no
    token is read (`_caller`)."""
    # Public: a read replica serves it when fresh enough (the primary otherwise).
    found = services.find_by_serial(verification_reads(ctx), serial_hash)
    row = None if found is None else await found
    status = HTTP_200_OK if row is not None else HTTP_404_NOT_FOUND
    if preferred_media(incoming.header("accept"), (JSON, HTML)) == HTML:
        view = None if row is None else services.to_view(ctx, row)
        page = html_page.verification_page(view, serial_hash)
        return Answer(status, page.encode(), _PAGE_HEADERS, HTML)
    answer = UNKNOWN_SERIAL if row is None else services.verification_of(ctx, row)
    return Answer(status, _ENCODER.encode(answer), _VERIFY_HEADERS)


# A status list as a VC-JWT (the default: it carries its own proof) or as JSON.
VC_JWT = "application/vc+jwt"
STATUS_LIST_TYPES = [
    VC_JWT,
    "application/jwt",
    "application/vc",
    "application/vc+ld+json",
    "application/ld+json",
    JSON,
]
STATUS_LIST_CACHE = f"public, max-age={STATUS_LIST_MAX_AGE}"


def preferred(request: AnyRequest, offered: list[str]) -> str:
    return str(request.accept.best_match(offered, default=offered[0]) or offered[0])


@dataclass
class StatusListOperation(Operation):
    """The status list route's 200 in both forms (a handler documents one media type)."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get(str(HTTP_200_OK))
        content = getattr(ok, "content", None)
        if content is None:
            return
        content["application/json"] = OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.OBJECT,
                description="the BitstringStatusListCredential as JSON (W3C VCDM 2.0); its "
                "proof is the VC-JWT form of the same credential",
                required=["@context", "id", "type", "issuer", "validFrom", "credentialSubject"],
                properties={
                    "@context": Schema(
                        type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING)
                    ),
                    "id": Schema(type=OpenAPIType.STRING),
                    "type": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING)),
                    "issuer": Schema(type=OpenAPIType.STRING),
                    "validFrom": Schema(type=OpenAPIType.STRING),
                    "validUntil": Schema(type=OpenAPIType.STRING),
                    "credentialSubject": Schema(
                        type=OpenAPIType.OBJECT,
                        required=["id", "type", "statusPurpose", "encodedList"],
                        properties={
                            "id": Schema(type=OpenAPIType.STRING),
                            "type": Schema(type=OpenAPIType.STRING),
                            "statusPurpose": Schema(type=OpenAPIType.STRING),
                            "encodedList": Schema(type=OpenAPIType.STRING),
                            "ttl": Schema(type=OpenAPIType.INTEGER),
                        },
                    ),
                },
            )
        )


class CertificateController(Controller):
    path = "/certificates"
    tags = ("certificates",)

    @get(
        "/",
        security=BEARER,
        guards=[requires(Permission.DOWNLOAD_CERTIFICATES)],
        responses=errors(UNAUTHORIZED, FORBIDDEN),
        summary="The caller's certificates, newest first",
    )
    async def mine(self, request: PrincipalRequest, ctx: Ctx, db: Db) -> list[Certificate]:
        return await services.mine(db, ctx, request.user)

    @get(
        "/verify/{serial_hash:str}",
        opt={PUBLIC: True, ANSWER: verification},
        responses={
            HTTP_404_NOT_FOUND: ResponseSpec(
                data_container=NotVerified,
                description="No certificate has this serial",
                generate_examples=False,
            )
        },
        summary="Verify a certificate by its serial: JSON, or a printable page for Accept: "
        "text/html",
        description="Anyone may call it. A revoked certificate answers valid false with status "
        "REVOKED; an unknown serial 404 {valid: false}. No email or user id is disclosed. "
        f"Answers may be cached {VERIFY_MAX_AGE} s (Cache-Control); after a revocation none "
        "says valid true past min(LMS_REPLICA_MAX_LAG, LMS_VERIFY_MAX_LAG) + "
        f"{VERIFY_MAX_AGE} s, from a read replica or a cache.",
    )
    async def verify(
        self, request: AnyRequest, ctx: Ctx, serial_hash: FromPath[str]
    ) -> Response[Verification]:
        return await respond(request, ctx, serial_hash=serial_hash)

    @get(
        "/status/{list_id:int}",
        opt={PUBLIC: True},
        media_type=VC_JWT,
        operation_class=StatusListOperation,
        responses=errors(NOT_FOUND),
        summary="A revocation status list: the signed Bitstring Status List credential that "
        "certificates' credentialStatus names",
        description="W3C Bitstring Status List v1.0, statusPurpose revocation: bit "
        "statusListIndex is 1 once that certificate is revoked. A compact VC-JWT signed like "
        "the certificates (application/vc+jwt, also for application/jwt, */* or no Accept), or "
        "the same credential as JSON (Accept: application/json, application/ld+json, "
        f"application/vc). A revocation shows at once; copies may be reused for "
        f"{STATUS_LIST_MAX_AGE} s (Cache-Control). Unknown list: 404.",
    )
    async def status_list(
        self, request: AnyRequest, ctx: Ctx, db: Db, list_id: FromPath[int]
    ) -> Response[str]:
        found = await published.status_list_of(db, ctx, list_id)
        media_type = preferred(request, STATUS_LIST_TYPES)
        body = found.jwt if media_type in (VC_JWT, "application/jwt") else found.document
        headers = {"Cache-Control": STATUS_LIST_CACHE, "Vary": "Accept"}
        return Response(body, media_type=media_type, headers=headers)  # type: ignore[arg-type]


class EnrollmentCertificateController(Controller):
    path = "/enrollments"
    tags = ("certificates",)
    security = BEARER

    @get(
        "/{enrollment_id:uuid}/certificate",
        guards=[requires(Permission.DOWNLOAD_CERTIFICATES)],
        responses=errors(UNAUTHORIZED, FORBIDDEN, NOT_FOUND),
        summary="The enrollment's certificate (its learner, admins); Accept: application/pdf "
        "for a printable PDF",
        description="404 while the course is not completed, and for anyone else's enrollment.",
    )
    async def certificate(
        self, request: PrincipalRequest, ctx: Ctx, db: Db, enrollment_id: FromPath[uuid.UUID]
    ) -> Response[Certificate]:
        if preferred(request, [JSON, PDF]) == PDF:
            body, filename = await services.pdf_of_enrollment(db, ctx, request.user, enrollment_id)
            headers = {"Content-Disposition": f'inline; filename="{filename}"', "Vary": "Accept"}
            return Response(body, media_type=PDF, headers=headers)  # type: ignore[arg-type]
        certificate = await services.of_enrollment(db, ctx, request.user, enrollment_id)
        return Response(certificate, headers={"Vary": "Accept"})


class JwksController(Controller):
    path = "/.well-known/jwks.json"
    tags = ("certificates",)

    @get(
        "/",
        opt={PUBLIC: True},
        summary="The public keys (JWK set: RSA, P-256 or Ed25519, each with its alg) that verify "
        "certificates' VC-JWTs offline",
        description="Every key that ever signed a certificate stays in the set after a "
        "rotation. Each `kid` is the URI in the JWS header of the certificates it signed.",
    )
    async def jwks(self, ctx: Ctx, db: Db) -> Response[JwkSet]:
        return Response(
            await services.jwk_set(db, ctx), headers={"Cache-Control": "public, max-age=300"}
        )


class AdminCertificateController(Controller):
    path = "/admin/certificates"
    tags = ("admin",)
    security = BEARER
    guards = (requires(Permission.MANAGE_USERS),)

    @post(
        "/{certificate_id:uuid}/revoke",
        status_code=HTTP_200_OK,
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Revoke a certificate with a reason (audited); verification then says REVOKED",
    )
    async def revoke(
        self,
        request: PrincipalRequest,
        ctx: Ctx,
        db: Db,
        certificate_id: FromPath[uuid.UUID],
        data: JSONBody[Revocation],
    ) -> Certificate:
        return await services.revoke(db, ctx, request.user, certificate_id, data.reason)
