"""GET/HEAD /media/{key}: signed URLs, byte ranges and refusals, on a tiny app with the
controller."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from litestar import Litestar
from litestar.datastructures import State

from lms.domain.media.controllers import MediaController
from lms.integrations.storage import LocalVideoStorage, sign_media_path
from lms.settings import Settings
from tests.conftest import http_client

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VIDEO = (FIXTURES / "tiny.mp4").read_bytes()


@pytest.fixture(scope="module")
def media_app(settings: Settings) -> Litestar:
    return Litestar(route_handlers=[MediaController], state=State({"settings": settings}))


@pytest.fixture
async def media(media_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(media_app) as client:
        yield client


@pytest.fixture
async def stored_key(settings: Settings, tmp_path: Path) -> str:
    key = f"lessons/{uuid.uuid4()}/v1.mp4"
    source = tmp_path / "upload.part"
    shutil.copyfile(FIXTURES / "tiny.mp4", source)
    await LocalVideoStorage(settings).save(source, key=key)
    return key


def local_url(settings: Settings, key: str, ttl: int = 3600) -> str:
    """The playback URL, relative to the test client's base."""
    url = urlsplit(LocalVideoStorage(settings).playback_url(key, ttl_seconds=ttl))
    return f"{url.path}?{url.query}"


async def test_whole_file_is_streamed_with_headers(
    media: httpx.AsyncClient, settings: Settings, stored_key: str
) -> None:
    response = await media.get(local_url(settings, stored_key))
    assert response.status_code == 200
    assert response.content == VIDEO
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["content-length"] == str(len(VIDEO))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["cache-control"] == "private, max-age=3600"
    assert "content-range" not in response.headers


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, len(VIDEO) - 1),
        ("bytes=-500", len(VIDEO) - 500, len(VIDEO) - 1),
        ("bytes=7000-999999", 7000, len(VIDEO) - 1),  # an end past the file is clamped
        ("bytes=-999999", 0, len(VIDEO) - 1),  # a suffix longer than the file: all of it
    ],
)
async def test_single_ranges_answer_206(
    media: httpx.AsyncClient, settings: Settings, stored_key: str, header: str, start: int, end: int
) -> None:
    response = await media.get(local_url(settings, stored_key), headers={"Range": header})
    assert response.status_code == 206
    assert response.content == VIDEO[start : end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(VIDEO)}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("header", [f"bytes={len(VIDEO)}-", "bytes=999999-1000000", "bytes=-0"])
async def test_unsatisfiable_range_is_416(
    media: httpx.AsyncClient, settings: Settings, stored_key: str, header: str
) -> None:
    response = await media.get(local_url(settings, stored_key), headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(VIDEO)}"
    assert response.json()["status_code"] == 416


# Positions of thousands of digits: past every file (and past what int() converts, 4300 digits).
MANY = "9" * 5000


@pytest.mark.parametrize(
    ("header", "status", "start", "end"),
    [
        (f"bytes={MANY}-", 416, None, None),
        (f"bytes={MANY}-{MANY}9", 416, None, None),
        (f"bytes=0-{MANY}", 206, 0, len(VIDEO) - 1),
        (f"bytes=-{MANY}", 206, 0, len(VIDEO) - 1),
        (f"bytes={'0' * 5000}100-199", 206, 100, 199),
    ],
)
async def test_huge_range_positions_are_ranges_not_errors(
    media: httpx.AsyncClient,
    settings: Settings,
    stored_key: str,
    header: str,
    status: int,
    start: int | None,
    end: int | None,
) -> None:
    for method in ("GET", "HEAD"):
        response = await media.request(
            method, local_url(settings, stored_key), headers={"Range": header}
        )
        assert response.status_code == status, response.text[:200]
        if start is None or end is None:
            assert response.headers["content-range"] == f"bytes */{len(VIDEO)}"
        else:
            assert response.headers["content-range"] == f"bytes {start}-{end}/{len(VIDEO)}"
            if method == "GET":
                assert response.content == VIDEO[start : end + 1]


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=x-"])
async def test_unusable_range_headers_are_ignored(
    media: httpx.AsyncClient, settings: Settings, stored_key: str, header: str
) -> None:
    response = await media.get(local_url(settings, stored_key), headers={"Range": header})
    assert response.status_code == 200
    assert response.content == VIDEO


async def test_head_gives_size_and_type_without_body(
    media: httpx.AsyncClient, settings: Settings, stored_key: str
) -> None:
    response = await media.head(local_url(settings, stored_key))
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(VIDEO))
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["accept-ranges"] == "bytes"
    ranged = await media.head(local_url(settings, stored_key), headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert ranged.headers["content-range"] == f"bytes 0-9/{len(VIDEO)}"


async def test_missing_or_bad_signature_is_403(
    media: httpx.AsyncClient, settings: Settings, stored_key: str
) -> None:
    url = local_url(settings, stored_key)
    path, query = url.split("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    assert (await media.get(path)).status_code == 403
    assert (await media.get(path, params={"exp": params["exp"]})).status_code == 403
    assert (await media.get(path, params={"sig": params["sig"]})).status_code == 403
    sig = params["sig"]
    tampered = {"exp": params["exp"], "sig": ("B" if sig[0] == "A" else "A") + sig[1:]}
    assert (await media.get(path, params=tampered)).status_code == 403
    later = {"exp": str(int(params["exp"]) + 60), "sig": params["sig"]}
    assert (await media.get(path, params=later)).status_code == 403
    assert (await media.get(path, params={"exp": "soon", "sig": params["sig"]})).status_code == 403
    # A valid signature is for one key only.
    other = f"lessons/{uuid.uuid4()}/v1.mp4"
    response = await media.get(f"/media/{other}", params=params)
    assert response.status_code == 403
    assert response.json() == {
        "status_code": 403,
        "detail": "invalid or expired media URL signature",
    }
    assert (await media.head(path)).status_code == 403


@pytest.mark.parametrize("sig", ["é" * 43, "ü", "A" * 5000, "=" * 43])
async def test_a_signature_that_is_not_base64url_is_403(
    media: httpx.AsyncClient, settings: Settings, stored_key: str, sig: str
) -> None:
    # hmac.compare_digest refuses text that is not ASCII with a TypeError: it must never see it.
    exp = parse_qs(local_url(settings, stored_key).split("?")[1])["exp"][0]
    response = await media.get(f"/media/{stored_key}", params={"exp": exp, "sig": sig})
    assert response.status_code == 403, response.text
    assert response.json()["status_code"] == 403


async def test_expired_signature_is_403(
    media: httpx.AsyncClient, settings: Settings, stored_key: str
) -> None:
    assert settings.jwt_secret
    exp = int(time.time()) - 1
    sig = sign_media_path(settings.jwt_secret, stored_key, exp)
    response = await media.get(f"/media/{stored_key}", params={"exp": exp, "sig": sig})
    assert response.status_code == 403


async def test_unknown_key_is_404(media: httpx.AsyncClient, settings: Settings) -> None:
    key = f"lessons/{uuid.uuid4()}/v9.mp4"
    response = await media.get(local_url(settings, key))
    assert response.status_code == 404
    assert response.json()["status_code"] == 404
    assert (await media.head(local_url(settings, key))).status_code == 404


async def test_directory_is_not_served(
    media: httpx.AsyncClient, settings: Settings, stored_key: str
) -> None:
    directory = stored_key.rsplit("/", 1)[0]
    assert (await media.get(local_url(settings, directory))).status_code == 404


async def test_traversal_keys_are_refused_even_when_signed(
    media: httpx.AsyncClient, settings: Settings
) -> None:
    assert settings.jwt_secret
    secret_file = settings.data_dir / "outside-media.txt"
    secret_file.write_text("not media")
    exp = int(time.time()) + 600
    for key in ("../outside-media.txt", "lessons/../../outside-media.txt", ".hidden"):
        sig = sign_media_path(settings.jwt_secret, key, exp)
        # %2e%2e reaches the app as ".." (the client would otherwise fold "../" away).
        raw = key.replace("..", "%2e%2e")
        response = await media.get(f"/media/{raw}", params={"exp": exp, "sig": sig})
        assert response.status_code == 404, key
        assert b"not media" not in response.content
