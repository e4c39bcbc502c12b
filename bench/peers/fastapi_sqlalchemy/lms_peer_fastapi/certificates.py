"""GET /certificates/verify/{serial_hash}: public verification (JSON)."""

from __future__ import annotations

import re

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select

from .config import SessionDep, SettingsDep
from .learning import credential_of, verify_url
from .models import Certificate
from .schemas import NotVerified, Verification, VerifiedCertificate

router = APIRouter()

SERIAL_PATTERN = re.compile(r"^[0-9a-f]{32,64}$")
# As lms.domain.certificates.controllers.VERIFY_CACHE.
HEADERS = {"Cache-Control": "public, max-age=25", "Vary": "Accept"}


@router.get("/certificates/verify/{serial_hash}", response_model=Verification)
async def verify(serial_hash: str, session: SessionDep, settings: SettingsDep) -> Response:
    serial = serial_hash.strip().lower()
    certificate = None
    if SERIAL_PATTERN.match(serial):
        certificate = await session.scalar(
            select(Certificate).where(Certificate.serial_hash == serial)
        )
    if certificate is None:
        return JSONResponse(NotVerified().model_dump(), status_code=404, headers=HEADERS)
    answer = Verification(
        valid=certificate.status == "VALID",
        certificate=VerifiedCertificate(
            serial_hash=certificate.serial_hash,
            issued_at=certificate.issued_at,
            learner_name=certificate.learner_name,
            course_title=certificate.course_title,
            course_id=certificate.course_id,
            creator_name=certificate.creator_name,
            status=certificate.status,
            revoked_at=certificate.revoked_at,
            verify_url=verify_url(settings, certificate.serial_hash),
            jws=credential_of(certificate),
        ),
    )
    return Response(
        answer.model_dump_json(by_alias=True), media_type="application/json", headers=HEADERS
    )
