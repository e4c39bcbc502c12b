"""Thin handlers for a lesson's transcript and captions and for transcript search in a course."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import FromPath, QueryParameter

from lms.api.dependencies import Db
from lms.api.openapi import BAD, BEARER, CONFLICT, FORBIDDEN, NOT_FOUND, UNAUTHORIZED, errors
from lms.domain.auth.authentication import Principal
from lms.domain.transcripts import services
from lms.domain.transcripts.schemas import SearchResults, Transcript

PrincipalRequest = Request[Principal, Any, Any]
SearchQuery = Annotated[
    str,
    QueryParameter(
        min_length=1,
        max_length=200,
        description='words to find (web search syntax: "a phrase", or, -not; English stemming)',
    ),
]
CAPTIONS_DESCRIPTION = (
    "409 while the lesson's transcriptStatus is not DONE (or the transcript on file is of an "
    "older video): captions are made from the finished transcript. Served inline with a file "
    "name made from the lesson title."
)


def captions_response(captions: services.Captions) -> Response[bytes]:
    return Response(
        content=captions.body.encode(),
        media_type=captions.media_type,
        headers={"Content-Disposition": f'inline; filename="{captions.filename}"'},
    )


class TranscriptController(Controller):
    # Any signed-in role may ask and the services decide (enrolled, owner, admin), so there is no
    # role guard: only the app's bearer authentication, which answers 401 without a token.
    path = "/"
    tags = ("lessons",)
    security = BEARER

    @get(
        "/lessons/{lesson_id:uuid}/transcript",
        responses=errors(UNAUTHORIZED, FORBIDDEN, NOT_FOUND),
        summary="The lesson's transcript with timed segments",
        description="For enrolled learners, the course's creator and admins. "
        "status is the lesson's transcriptStatus; until it is DONE, language is null, "
        'text "" and segments []. A transcript of an older video of the lesson is not shown.',
    )
    async def get_transcript(
        self, db: Db, request: PrincipalRequest, lesson_id: FromPath[uuid.UUID]
    ) -> Transcript:
        return await services.get_transcript(db, request.user, lesson_id)

    @get(
        "/lessons/{lesson_id:uuid}/captions.vtt",
        media_type="text/vtt",
        responses=errors(UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="WebVTT captions of the lesson (409 until its transcript is DONE)",
        description=CAPTIONS_DESCRIPTION,
    )
    async def captions_vtt(
        self, db: Db, request: PrincipalRequest, lesson_id: FromPath[uuid.UUID]
    ) -> Response[bytes]:
        return captions_response(await services.get_captions(db, request.user, lesson_id, "vtt"))

    @get(
        "/lessons/{lesson_id:uuid}/captions.srt",
        media_type="application/x-subrip",  # the response adds "; charset=utf-8"
        responses=errors(UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="SubRip captions of the lesson (409 until its transcript is DONE)",
        description=CAPTIONS_DESCRIPTION,
    )
    async def captions_srt(
        self, db: Db, request: PrincipalRequest, lesson_id: FromPath[uuid.UUID]
    ) -> Response[bytes]:
        return captions_response(await services.get_captions(db, request.user, lesson_id, "srt"))

    @get(
        "/courses/{course_id:uuid}/search",
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND),
        summary="Where in which lesson of the course words are spoken",
        description="For enrolled learners, the course's creator and admins. "
        "Searches the finished transcripts of the course's lessons; at most 100 "
        "segments, by lesson order then time.",
    )
    async def search(
        self, db: Db, request: PrincipalRequest, course_id: FromPath[uuid.UUID], q: SearchQuery
    ) -> SearchResults:
        return await services.search_course(db, request.user, course_id, q)
