"""receive_upload: streaming multipart reception on a tiny app, through the ASGI interface."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import msgspec
import pytest
from litestar import Litestar, Request, post
from litestar.datastructures import State
from litestar.params import FromQuery

from lms.api.uploads import receive_upload
from tests.conftest import http_client

BOUNDARY = "lms-test-boundary-7MA4YWxkTrZu0gW"
LIMIT = 1024 * 1024


@post("/upload", request_max_body_size=None)
async def upload_handler(
    request: Request[Any, Any, Any], limit: FromQuery[int] = LIMIT
) -> dict[str, Any]:
    tmp_dir: Path = request.app.state.tmp_dir
    received = await receive_upload(request, max_bytes=limit, tmp_dir=tmp_dir, max_field_bytes=1024)
    digest = None
    if received.path is not None:
        assert received.path.parent == tmp_dir
        digest = hashlib.sha256(received.path.read_bytes()).hexdigest()
    received.discard()
    return {
        "fields": received.fields,
        "size": received.size,
        "sha256": digest,
        "filename": received.filename,
    }


class Form(msgspec.Struct):
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    description: str = ""


@post("/upload-form", request_max_body_size=None)
async def form_handler(request: Request[Any, Any, Any]) -> dict[str, Any]:
    tmp_dir: Path = request.app.state.tmp_dir
    received = await receive_upload(request, max_bytes=LIMIT, tmp_dir=tmp_dir, form=Form)
    received.discard()
    return {"fields": received.fields}


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    return tmp_path / "uploads"  # made by receive_upload on first use


@pytest.fixture
async def client(tmp_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = Litestar(route_handlers=[upload_handler, form_handler], state=State({"tmp_dir": tmp_dir}))
    async with http_client(app) as test_client:
        yield test_client


def leftovers(tmp_dir: Path) -> list[str]:
    return os.listdir(tmp_dir) if tmp_dir.exists() else []


def multipart_body(fields: dict[str, str], file: bytes | None, filename: str = "clip.mp4") -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value.encode()
        + b"\r\n"
        for name, value in fields.items()
    ]
    if file is not None:
        parts.append(
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: video/mp4\r\n\r\n".encode()
            + file
            + b"\r\n"
        )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


class Chunked:
    """A request body without Content-Length (chunked on the wire) that counts what was read."""

    def __init__(self, body: bytes, chunk: int = 64 * 1024) -> None:
        self.body, self.chunk, self.sent = body, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), self.chunk):
            self.sent = start + self.chunk
            yield self.body[start : start + self.chunk]


MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def test_file_and_fields_arrive_intact(client: httpx.AsyncClient, tmp_dir: Path) -> None:
    video = os.urandom(900 * 1024) + b"\r\n--not-the-boundary\r\n" + os.urandom(1000)
    response = await client.post(
        "/upload",
        data={"title": "Leçon 1 — intro", "description": ""},
        files={"file": ("C:\\Users\\me\\clip.mp4", video, "video/mp4")},
    )
    assert response.status_code == 201, response.text
    assert response.json() == {
        "fields": {"title": "Leçon 1 — intro", "description": ""},
        "size": len(video),
        "sha256": hashlib.sha256(video).hexdigest(),
        "filename": "clip.mp4",
    }
    assert leftovers(tmp_dir) == []


async def test_chunked_body_within_the_limit(client: httpx.AsyncClient) -> None:
    video = os.urandom(LIMIT // 2)
    body = Chunked(multipart_body({"title": "streamed"}, video), chunk=7_777)
    response = await client.post("/upload", content=body, headers=MULTIPART)
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == hashlib.sha256(video).hexdigest()
    assert response.json()["fields"] == {"title": "streamed"}


async def test_no_file_part_is_the_callers_call(client: httpx.AsyncClient, tmp_dir: Path) -> None:
    response = await client.post(
        "/upload", content=multipart_body({"a": "1"}, None), headers=MULTIPART
    )
    assert response.status_code == 201
    assert response.json() == {"fields": {"a": "1"}, "size": 0, "sha256": None, "filename": None}
    assert leftovers(tmp_dir) == []


async def test_content_length_over_the_limit_is_413_before_reading(
    client: httpx.AsyncClient, tmp_dir: Path
) -> None:
    body = multipart_body({"title": "big"}, os.urandom(LIMIT))
    response = await client.post("/upload", content=body, headers=MULTIPART)
    assert response.status_code == 413
    assert response.json()["status_code"] == 413
    assert "limit" in response.json()["detail"]
    assert leftovers(tmp_dir) == []


async def test_chunked_body_over_the_limit_is_413_and_stops_reading(
    client: httpx.AsyncClient, tmp_dir: Path
) -> None:
    body = Chunked(multipart_body({"title": "endless"}, os.urandom(4 * LIMIT)))
    response = await client.post("/upload", content=body, headers=MULTIPART)
    assert response.status_code == 413
    assert body.sent <= LIMIT + 2 * body.chunk  # the rest was never asked for
    assert leftovers(tmp_dir) == []  # the temp file had been started, and is gone


async def test_honest_length_over_a_lower_limit_is_413(
    client: httpx.AsyncClient, tmp_dir: Path
) -> None:
    body = multipart_body({}, os.urandom(200_000))
    response = await client.post("/upload?limit=100000", content=body, headers=MULTIPART)
    assert response.status_code == 413
    assert leftovers(tmp_dir) == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"title": "x"}'),
        ("application/x-www-form-urlencoded", b"title=x"),
        ("video/mp4", b"\x00\x00\x00\x18ftypmp42"),
    ],
)
async def test_not_multipart_is_415(
    client: httpx.AsyncClient, content_type: str, body: bytes
) -> None:
    response = await client.post("/upload", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 415
    assert response.json() == {"status_code": 415, "detail": "expected a multipart/form-data body"}


async def test_missing_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/upload", content=b"raw bytes")
    assert response.status_code == 415


@pytest.mark.parametrize(
    "body",
    [
        multipart_body({"title": "x"}, b"partial video")[:-30],  # closing boundary cut off
        b"this is not multipart at all",
        f"--{BOUNDARY}\r\nno header end".encode(),
        f"--{BOUNDARY}\nContent-Disposition: form-data; name=a\n\nx\n--{BOUNDARY}--".encode(),
        b"",
    ],
)
async def test_malformed_multipart_is_400(
    client: httpx.AsyncClient, tmp_dir: Path, body: bytes
) -> None:
    response = await client.post("/upload", content=body, headers=MULTIPART)
    assert response.status_code == 400, response.text
    assert response.json()["status_code"] == 400
    assert leftovers(tmp_dir) == []


async def test_multipart_without_boundary_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/upload", content=b"x", headers={"Content-Type": "multipart/form-data"}
    )
    assert response.status_code == 400


async def test_two_file_parts_are_400(client: httpx.AsyncClient, tmp_dir: Path) -> None:
    body = multipart_body({}, b"first")[: -len(f"--{BOUNDARY}--\r\n")] + multipart_body({}, b"2")
    response = await client.post("/upload", content=body, headers=MULTIPART)
    assert response.status_code == 400
    assert "more than one" in response.json()["detail"]
    assert leftovers(tmp_dir) == []


async def test_oversized_text_field_is_413(client: httpx.AsyncClient, tmp_dir: Path) -> None:
    body = multipart_body({"description": "x" * 5000}, b"video")
    response = await client.post("/upload", content=body, headers=MULTIPART)
    assert response.status_code == 413
    assert "description" in response.json()["detail"]
    assert leftovers(tmp_dir) == []


async def test_field_that_is_not_utf8_is_400(client: httpx.AsyncClient, tmp_dir: Path) -> None:
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="title"\r\n\r\n'.encode()
        + b"\xff\xfe\r\n"
        + f"--{BOUNDARY}--\r\n".encode()
    )
    response = await client.post("/upload", content=body, headers=MULTIPART)
    assert response.status_code == 400


def part(name: str, value: bytes, content_type: str | None = None) -> bytes:
    header = f"Content-Type: {content_type}\r\n" if content_type else ""
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n{header}\r\n'.encode()
        + value
        + b"\r\n"
    )


@pytest.mark.parametrize(
    "body",
    [
        part("title", b"In\x00tro"),  # NUL: PostgreSQL text cannot hold it
        part("title", b"\x1b[31mred"),
        part("title", "\u0085".encode()),  # a C1 control, in UTF-8
        part("ti\x01tle", b"Intro"),  # in the field's name
        part("title", b"Intro", "text/plain; charset=no-such-charset"),
        part("title", b"\xed\xa0\x80"),  # a lone surrogate, UTF-8 encoded
    ],
    ids=["nul", "esc", "c1", "name", "charset", "surrogate"],
)
async def test_text_fields_hold_no_control_character(
    client: httpx.AsyncClient, tmp_dir: Path, body: bytes
) -> None:
    body += multipart_body({}, b"video")
    response = await client.post("/upload", content=body, headers=MULTIPART)
    assert response.status_code == 400, response.text
    assert response.json()["status_code"] == 400
    assert leftovers(tmp_dir) == []


async def test_free_text_fields_keep_tabs_and_line_breaks(client: httpx.AsyncClient) -> None:
    fields = {"title": "Intro", "description": "one\r\n\ttwo"}
    response = await client.post("/upload", content=multipart_body(fields, b"v"), headers=MULTIPART)
    assert response.status_code == 201, response.text
    assert response.json()["fields"] == fields


@pytest.mark.parametrize(
    ("fields", "key"),
    [({}, "form"), ({"title": ""}, "title"), ({"title": "t" * 21}, "title")],
    ids=["missing", "empty", "too-long"],
)
async def test_fields_are_checked_against_the_form(
    client: httpx.AsyncClient, tmp_dir: Path, fields: dict[str, str], key: str
) -> None:
    body = multipart_body(fields, b"video")
    response = await client.post("/upload-form", content=body, headers=MULTIPART)
    assert response.status_code == 400, response.text
    extra = response.json()["extra"]
    assert extra[0]["source"] == "body" and extra[0]["key"] == key, extra
    assert leftovers(tmp_dir) == []


async def test_a_form_that_fits_passes(client: httpx.AsyncClient) -> None:
    body = multipart_body({"title": "Intro", "extra": "ignored"}, b"video")
    response = await client.post("/upload-form", content=body, headers=MULTIPART)
    assert response.status_code == 201, response.text
    assert response.json()["fields"] == {"title": "Intro", "extra": "ignored"}
