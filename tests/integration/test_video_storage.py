"""Video storage: local files and signed URLs; Cloudinary through the real SDK against a local
server speaking its upload API and checking its delivery signatures and tokens
(tests/support/cloudinary_server.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from lms.integrations.cloudinary import (
    CloudinaryVideoStorage,
    parse_cloudinary_url,
    public_id_for,
)
from lms.integrations.storage import (
    LocalVideoStorage,
    StorageError,
    sign_media_path,
    validate_key,
    verify_media_signature,
)
from lms.integrations.storages import make_storage
from lms.settings import Settings
from tests.support.cloudinary_server import CloudinaryServer, start_cloudinary_server

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VIDEO = (FIXTURES / "tiny.mp4").read_bytes()
SECRET = secrets.token_urlsafe(48)
TOKEN_KEY = secrets.token_hex(32)  # an account's token key, as Cloudinary shows it: hex


@pytest.fixture(scope="module")
def cloud() -> Iterator[CloudinaryServer]:
    server = start_cloudinary_server()
    yield server
    assert server.server is not None
    server.server.shutdown()


@pytest.fixture
def fake_cloud(cloud: CloudinaryServer) -> CloudinaryServer:
    cloud.clear()
    cloud.signature_algorithm = "sha1"
    return cloud


def local_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", jwt_secret=SECRET, port=8123)


def cloud_settings(tmp_path: Path, url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", jwt_secret=SECRET, cloudinary_url=url)


def temp_copy(tmp_path: Path, data: bytes = VIDEO, name: str = "upload-1.part") -> Path:
    path = tmp_path / "tmp" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- local files ------------------------------------------------------------------------


async def test_local_save_moves_the_temp_file_under_media_dir(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    storage = LocalVideoStorage(settings)
    source = temp_copy(tmp_path)
    stored = await storage.save(source, key="lessons/abc/v1.mp4")
    target = settings.media_dir / "lessons" / "abc" / "v1.mp4"
    assert stored.provider == "local" and stored.key == "lessons/abc/v1.mp4"
    assert stored.url == "http://127.0.0.1:8123/media/lessons/abc/v1.mp4"
    assert not source.exists()
    assert target.read_bytes() == VIDEO
    assert storage.local_path("lessons/abc/v1.mp4") == target
    assert storage.audio_url("lessons/abc/v1.mp4") is None

    again = temp_copy(tmp_path, b"replacement")
    await storage.save(again, key="lessons/abc/v1.mp4")  # a new version replaces the file
    assert target.read_bytes() == b"replacement"


async def test_local_save_failure_is_a_storage_error(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    settings.media_dir.mkdir(parents=True)
    (settings.media_dir / "lessons").write_text("a file where a folder should be")
    source = temp_copy(tmp_path)
    with pytest.raises(StorageError, match="could not store"):
        await LocalVideoStorage(settings).save(source, key="lessons/abc/v1.mp4")
    assert not source.exists()


async def test_local_delete_is_idempotent_and_tidies_empty_folders(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    storage = LocalVideoStorage(settings)
    await storage.save(temp_copy(tmp_path), key="lessons/abc/v1.mp4")
    await storage.save(temp_copy(tmp_path), key="lessons/abc/v2.mp4")
    await storage.delete("lessons/abc/v1.mp4")
    assert not (settings.media_dir / "lessons/abc/v1.mp4").exists()
    assert (settings.media_dir / "lessons/abc/v2.mp4").exists()
    await storage.delete("lessons/abc/v2.mp4")
    await storage.delete("lessons/abc/v2.mp4")
    await storage.delete("lessons/never/was.mp4")
    assert not (settings.media_dir / "lessons").exists()
    assert settings.media_dir.is_dir()


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../escape.mp4",
        "lessons/../../escape.mp4",
        "lessons/a..b/v1.mp4",
        "/etc/passwd",
        "lessons\\abc\\v1.mp4",
        "lessons//v1.mp4",
        "lessons/./v1.mp4",
        ".hidden",
        "lessons/abc/",
        "lessons/ab c/v1.mp4",
        "lessons/é/v1.mp4",
        "x" * 513,
    ],
)
async def test_unsafe_keys_are_refused(tmp_path: Path, key: str) -> None:
    storage = LocalVideoStorage(local_settings(tmp_path))
    with pytest.raises(ValueError, match="storage key"):
        validate_key(key)
    with pytest.raises(ValueError, match="storage key"):
        await storage.save(temp_copy(tmp_path), key=key)
    with pytest.raises(ValueError, match="storage key"):
        await storage.delete(key)
    with pytest.raises(ValueError, match="storage key"):
        storage.playback_url(key)
    assert not (tmp_path / "escape.mp4").exists()


def test_signed_media_urls() -> None:
    key, exp, now = "lessons/abc/v1.mp4", 2_000_000_000, 1_900_000_000
    sig = sign_media_path(SECRET, key, exp)
    assert verify_media_signature(SECRET, key, exp, sig, now)
    assert not verify_media_signature(SECRET, key, exp + 1, sig, now)  # exp tampered
    assert not verify_media_signature(SECRET, "lessons/abc/v2.mp4", exp, sig, now)  # key
    # The first character, not the last: that one carries padding bits, and may be "A" already.
    other = ("B" if sig[0] == "A" else "A") + sig[1:]
    assert not verify_media_signature(SECRET, key, exp, other, now)
    assert not verify_media_signature("another secret " * 3, key, exp, sig, now)
    assert not verify_media_signature(SECRET, key, exp, sig, exp + 1)  # expired
    assert not verify_media_signature(SECRET, key, exp, "", now)


def test_local_playback_url_is_signed_for_the_ttl(tmp_path: Path) -> None:
    storage = LocalVideoStorage(local_settings(tmp_path))
    url = urlsplit(storage.playback_url("lessons/abc/v1.mp4", ttl_seconds=600))
    assert (url.scheme, url.netloc, url.path) == (
        "http",
        "127.0.0.1:8123",
        "/media/lessons/abc/v1.mp4",
    )
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    exp = int(query["exp"])
    assert time.time() + 600 <= exp <= time.time() + 660
    assert verify_media_signature(SECRET, "lessons/abc/v1.mp4", exp, query["sig"], time.time())


def test_make_storage_picks_the_backend(tmp_path: Path, fake_cloud: CloudinaryServer) -> None:
    assert isinstance(make_storage(local_settings(tmp_path)), LocalVideoStorage)
    chosen = make_storage(cloud_settings(tmp_path, fake_cloud.cloudinary_url()))
    assert isinstance(chosen, CloudinaryVideoStorage)
    assert chosen.provider == "cloudinary" and chosen.local_path("lessons/a/v1") is None


# --- Cloudinary -------------------------------------------------------------------------


def test_cloudinary_url_is_parsed_like_the_sdk(fake_cloud: CloudinaryServer) -> None:
    account = parse_cloudinary_url(fake_cloud.cloudinary_url())
    assert (account.cloud_name, account.api_key, account.api_secret) == (
        fake_cloud.cloud_name,
        fake_cloud.api_key,
        fake_cloud.api_secret,
    )
    assert account.upload_prefix == fake_cloud.base_url
    assert parse_cloudinary_url("cloudinary://k:s@demo").upload_prefix is None
    private = parse_cloudinary_url(
        "cloudinary://k:s@demo/cdn.example.com?signature_algorithm=sha256"
    )
    assert private.delivery["secure_distribution"] == "cdn.example.com"
    assert private.signature_algorithm == "sha256"
    assert private.auth_token_key is None
    tokens = parse_cloudinary_url(f"cloudinary://k:s@demo?auth_token[key]={TOKEN_KEY}")
    assert tokens.auth_token_key == TOKEN_KEY
    for bad in (
        "https://k:s@demo",
        "cloudinary://demo",
        "cloudinary://k:s@demo?signature_algorithm=md5",
        "cloudinary://k:s@demo?auth_token[key]=not-hex",
    ):
        with pytest.raises(ValueError, match="CLOUDINARY_URL"):
            parse_cloudinary_url(bad)
    assert public_id_for("lessons/abc/v1.mp4") == "lessons/abc/v1"
    assert public_id_for("lessons/abc/v1") == "lessons/abc/v1"


async def test_small_upload_is_one_signed_request(
    tmp_path: Path, fake_cloud: CloudinaryServer
) -> None:
    storage = CloudinaryVideoStorage(cloud_settings(tmp_path, fake_cloud.cloudinary_url()))
    source = temp_copy(tmp_path)
    stored = await storage.save(source, key="lessons/abc/v1.mp4")
    assert stored.provider == "cloudinary" and stored.key == "lessons/abc/v1"
    asset = fake_cloud.assets["lessons/abc/v1"]
    assert asset.data == VIDEO
    assert asset.type == "authenticated"  # never public: delivered only through signed URLs
    assert not source.exists()
    [request] = fake_cloud.requests
    assert request["path"] == f"/v1_1/{fake_cloud.cloud_name}/video/upload"
    assert request["content_range"] == f"bytes 0-{len(VIDEO) - 1}/{len(VIDEO)}"
    assert request["fields"]["public_id"] == "lessons/abc/v1"
    assert request["fields"]["type"] == "authenticated"
    assert request["fields"]["overwrite"] == "0"  # an upload never replaces a stored video
    # What is kept is a reference that plays nothing: Cloudinary's own secure_url for an
    # authenticated asset is signed for ever, so it is not what we store.
    assert stored.url == (
        f"https://res.cloudinary.com/{fake_cloud.cloud_name}/video/authenticated/"
        f"v{asset.version}/lessons/abc/v1.{asset.format}"
    )
    async with httpx.AsyncClient() as viewer:
        assert (await viewer.get(fake_cloud.local(stored.url))).status_code == 401


async def test_big_upload_goes_in_chunks_and_is_reassembled(
    tmp_path: Path, fake_cloud: CloudinaryServer
) -> None:
    data = os.urandom(300_000)
    settings = cloud_settings(tmp_path, fake_cloud.cloudinary_url())
    storage = CloudinaryVideoStorage(settings, chunk_size=64 * 1024)
    source = temp_copy(tmp_path, data)
    stored = await storage.save(source, key="lessons/big/v1.mp4")
    assert fake_cloud.assets[stored.key].data == data
    assert len(fake_cloud.requests) == 5  # ceil(300000 / 65536)
    assert len({r["upload_id"] for r in fake_cloud.requests}) == 1
    assert [r["content_range"] for r in fake_cloud.requests][:2] == [
        "bytes 0-65535/300000",
        "bytes 65536-131071/300000",
    ]
    assert fake_cloud.requests[-1]["content_range"] == "bytes 262144-299999/300000"
    assert not source.exists()


async def test_destroy_removes_and_is_idempotent(
    tmp_path: Path, fake_cloud: CloudinaryServer
) -> None:
    storage = CloudinaryVideoStorage(cloud_settings(tmp_path, fake_cloud.cloudinary_url()))
    stored = await storage.save(temp_copy(tmp_path), key="lessons/gone/v1.mp4")
    await storage.delete(stored.key)
    assert stored.key not in fake_cloud.assets
    await storage.delete("lessons/gone/v1.mp4")  # already gone: fine
    destroy = fake_cloud.requests[-1]
    assert destroy["path"].endswith("/video/destroy")
    assert destroy["fields"]["invalidate"] == "1"


async def test_delete_also_removes_a_public_asset_stored_before_delivery_was_authenticated(
    tmp_path: Path, fake_cloud: CloudinaryServer
) -> None:
    storage = CloudinaryVideoStorage(cloud_settings(tmp_path, fake_cloud.cloudinary_url()))
    await storage.save(temp_copy(tmp_path), key="lessons/old/v1.mp4")
    fake_cloud.assets["lessons/old/v1"].type = "upload"  # as uploads were made before
    await storage.delete("lessons/old/v1")
    assert fake_cloud.assets == {}
    assert [r["fields"]["type"] for r in fake_cloud.requests[1:]] == ["authenticated", "upload"]


async def test_bad_secret_is_a_storage_error_and_the_temp_file_goes(
    tmp_path: Path, fake_cloud: CloudinaryServer
) -> None:
    settings = cloud_settings(tmp_path, fake_cloud.cloudinary_url(secret="wrong-secret"))
    storage = CloudinaryVideoStorage(settings)
    source = temp_copy(tmp_path)
    with pytest.raises(StorageError, match="Invalid Signature"):
        await storage.save(source, key="lessons/abc/v1.mp4")
    assert not source.exists()
    assert fake_cloud.assets == {}
    with pytest.raises(StorageError):
        await storage.delete("lessons/abc/v1")


async def test_provider_failure_is_a_storage_error(
    tmp_path: Path, fake_cloud: CloudinaryServer
) -> None:
    storage = CloudinaryVideoStorage(cloud_settings(tmp_path, fake_cloud.cloudinary_url()))
    fake_cloud.fail_with = 503
    source = temp_copy(tmp_path)
    with pytest.raises(StorageError, match="lessons/abc/v1"):
        await storage.save(source, key="lessons/abc/v1.mp4")
    assert not source.exists()
    unreachable = "cloudinary://k:s@demo?upload_prefix=http://127.0.0.1:9"
    offline = CloudinaryVideoStorage(cloud_settings(tmp_path, unreachable), timeout=5)
    source = temp_copy(tmp_path)
    with pytest.raises(StorageError):
        await offline.save(source, key="lessons/abc/v1.mp4")
    assert not source.exists()


async def test_sha256_account_signs_with_sha256(
    tmp_path: Path, fake_cloud: CloudinaryServer
) -> None:
    fake_cloud.signature_algorithm = "sha256"
    url = fake_cloud.cloudinary_url() + "&signature_algorithm=sha256"
    storage = CloudinaryVideoStorage(cloud_settings(tmp_path, url))
    stored = await storage.save(temp_copy(tmp_path), key="lessons/abc/v1.mp4")
    assert fake_cloud.assets[stored.key].data == VIDEO
    assert len(fake_cloud.requests[0]["fields"]["signature"]) == 64


def test_api_urls(tmp_path: Path, fake_cloud: CloudinaryServer) -> None:
    storage = CloudinaryVideoStorage(cloud_settings(tmp_path, fake_cloud.cloudinary_url()))
    assert storage.upload_url == f"{fake_cloud.base_url}/v1_1/{fake_cloud.cloud_name}/video/upload"
    default = CloudinaryVideoStorage(cloud_settings(tmp_path, "cloudinary://k:s@demo"))
    assert default.upload_url == "https://api.cloudinary.com/v1_1/demo/video/upload"


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def with_query(url: str, **changes: str | None) -> str:
    """`url` with query parameters replaced (None: removed), as a viewer might edit it."""
    query = {k: v for k, v in {**query_of(url), **changes}.items() if v is not None}
    base = url.split("?")[0]
    return f"{base}?{'&'.join(f'{k}={v}' for k, v in query.items())}"


async def test_playback_is_a_signed_download_url_that_expires(
    tmp_path: Path, fake_cloud: CloudinaryServer
) -> None:
    """Without a token key: the API's private download URL, signed with the API secret and
    good until its expires_at."""
    storage = CloudinaryVideoStorage(cloud_settings(tmp_path, fake_cloud.cloudinary_url()))
    stored = await storage.save(temp_copy(tmp_path), key="lessons/abc/v1.mp4")
    await storage.save(temp_copy(tmp_path), key="lessons/other/v1.mp4")
    url = storage.playback_url(stored.key, ttl_seconds=600)
    assert url.startswith(f"{fake_cloud.base_url}/v1_1/{fake_cloud.cloud_name}/video/download?")
    query = query_of(url)
    assert query["public_id"] == "lessons/abc/v1" and query["type"] == "authenticated"
    assert time.time() + 600 <= int(query["expires_at"]) <= time.time() + 660
    async with httpx.AsyncClient() as viewer:
        played = await viewer.get(url)
        assert played.status_code == 200 and played.content == VIDEO
        refused = [
            with_query(url, signature=None),
            with_query(url, expires_at=str(int(query["expires_at"]) + 3600)),
            with_query(url, public_id="lessons/other/v1"),
            fake_cloud.local(stored.url),  # the stored reference plays nothing
        ]
        for bad in refused:
            assert (await viewer.get(bad)).status_code == 401, bad
        fake_cloud.clock_offset = 661  # past its expiry
        assert (await viewer.get(url)).status_code == 401
        # Minted per request: a new one plays again.
        assert (await viewer.get(storage.playback_url(stored.key))).status_code == 200
    # Without a token key there is no expiring way to stream HLS from the CDN.
    assert storage.streaming_url(stored.key) is None


async def test_token_key_gives_signed_cdn_urls_with_an_expiring_token(
    tmp_path: Path, fake_cloud: CloudinaryServer
) -> None:
    """With the account's token key: CDN delivery URLs signed (s--...--) and carrying a
    __cld_token__ whose ACL covers this video only, until it expires."""
    fake_cloud.auth_token_key = TOKEN_KEY
    url = fake_cloud.cloudinary_url(token_key=TOKEN_KEY)
    storage = CloudinaryVideoStorage(cloud_settings(tmp_path, url))
    stored = await storage.save(temp_copy(tmp_path), key="lessons/abc/v1.mp4")
    await storage.save(temp_copy(tmp_path), key="lessons/other/v1.mp4")
    playback = storage.playback_url(stored.key, ttl_seconds=600)
    match = re.fullmatch(
        rf"https://res\.cloudinary\.com/{fake_cloud.cloud_name}/video/authenticated/"
        r"s--[A-Za-z0-9_-]{8}--/v1/lessons/abc/v1\.mp4\?__cld_token__=(exp=(\d+)~acl=\S+~hmac=\w+)",
        playback,
    )
    assert match, playback
    expires = int(match[2])
    assert time.time() + 600 <= expires <= time.time() + 660
    acl = f"/{fake_cloud.cloud_name}/video/authenticated/*/lessons/abc/v1*"
    # Its ACL covers this one video (the fake server checks the token's HMAC on each request).
    assert f"acl={acl.replace('/', '%2f')}~" in match[1], match[1]
    stream = storage.streaming_url(stored.key, ttl_seconds=600)
    assert stream is not None and "/sp_auto/v1/lessons/abc/v1.m3u8?__cld_token__=" in stream
    path, token = playback.split("?")
    signature = re.search(r"/(s--[^/]+--)/", path)
    assert signature
    async with httpx.AsyncClient() as viewer:
        played = await viewer.get(fake_cloud.local(playback))
        assert played.status_code == 200 and played.content == VIDEO
        streamed = await viewer.get(fake_cloud.local(stream))
        assert streamed.status_code == 200
        assert streamed.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert streamed.text.startswith("#EXTM3U")
        refused = [
            path,  # no token
            f"{path}?{token.replace(f'exp={expires}', f'exp={expires + 3600}')}",
            f"{path.replace(signature[1], 's--AAAAAAAA--')}?{token}",
            f"{path.replace('lessons/abc/', 'lessons/other/')}?{token}",  # another video
            fake_cloud.local(stored.url),
        ]
        for bad in refused:
            assert (await viewer.get(fake_cloud.local(bad))).status_code == 401, bad
        fake_cloud.clock_offset = 661
        assert (await viewer.get(fake_cloud.local(playback))).status_code == 401
        assert (await viewer.get(fake_cloud.local(stream))).status_code == 401
        fresh = storage.playback_url(stored.key)
        assert (await viewer.get(fake_cloud.local(fresh))).status_code == 200


@pytest.mark.parametrize("token_key", [None, TOKEN_KEY], ids=["no-token-key", "token-key"])
async def test_the_workers_audio_url_is_signed(
    tmp_path: Path, fake_cloud: CloudinaryServer, token_key: str | None
) -> None:
    fake_cloud.auth_token_key = token_key
    url = fake_cloud.cloudinary_url(token_key=token_key)
    storage = CloudinaryVideoStorage(cloud_settings(tmp_path, url))
    stored = await storage.save(temp_copy(tmp_path), key="lessons/abc/v1.mp4")
    audio = storage.audio_url(stored.key)
    assert audio is not None and re.search(r"/video/authenticated/s--[^/]+--/v1/[^?]+\.mp3", audio)
    async with httpx.AsyncClient() as worker:
        assert (await worker.get(fake_cloud.local(audio))).status_code == 200
        unsigned = re.sub(r"s--[^/]+--/", "", audio.split("?")[0])
        assert (await worker.get(fake_cloud.local(unsigned))).status_code == 401


def test_local_storage_streams_nothing_extra(tmp_path: Path) -> None:
    assert LocalVideoStorage(local_settings(tmp_path)).streaming_url("lessons/abc/v1.mp4") is None


async def test_direct_upload_from_a_browser(tmp_path: Path, fake_cloud: CloudinaryServer) -> None:
    storage = CloudinaryVideoStorage(cloud_settings(tmp_path, fake_cloud.cloudinary_url()))
    hook = "https://lms.example.test/webhooks/cloudinary"
    direct = storage.direct_upload_params(
        "lessons/abc/v2", notification_url=hook, context={"lesson_id": "abc", "title": "A&B=C|D"}
    )
    assert direct.upload_url == storage.upload_url
    assert {"api_key", "timestamp", "public_id", "notification_url", "signature"} <= set(
        direct.params
    )
    assert "signature_algorithm" not in direct.params  # sha1 is the default
    assert direct.params["type"] == "authenticated"
    assert direct.params["overwrite"] == "false"
    async with httpx.AsyncClient() as browser:
        files = {"file": ("clip.mp4", VIDEO, "video/mp4")}
        response = await browser.post(direct.upload_url, data=direct.params, files=files)
        assert response.status_code == 200, response.text
        assert response.json()["public_id"] == "lessons/abc/v2"
        assert fake_cloud.assets["lessons/abc/v2"].data == VIDEO
        assert fake_cloud.assets["lessons/abc/v2"].context == {
            "lesson_id": "abc",
            "title": "A&B=C|D",
        }

        tampered = {**direct.params, "public_id": "lessons/other/v1"}
        response = await browser.post(direct.upload_url, data=tampered, files=files)
        assert response.status_code == 401
        assert "error" in response.json()
        assert "lessons/other/v1" not in fake_cloud.assets
        for changed in ({"overwrite": "true"}, {"type": "upload"}):
            response = await browser.post(
                direct.upload_url, data={**direct.params, **changed}, files=files
            )
            assert response.status_code == 401, changed
        # The same signed parameters again, with other bytes: the stored video stays.
        other = {"file": ("swap.mp4", b"not the reviewed video", "video/mp4")}
        again = await browser.post(direct.upload_url, data=direct.params, files=other)
        assert again.status_code == 200 and again.json()["existing"] is True
        assert fake_cloud.assets["lessons/abc/v2"].data == VIDEO

    # Cloudinary's notification of that upload verifies with the same account.
    note = fake_cloud.notifications[0]
    assert note.url == hook
    assert json.loads(note.body)["public_id"] == "lessons/abc/v2"
    headers = note.headers
    assert storage.verify_notification(
        note.body, headers["X-Cld-Timestamp"], headers["X-Cld-Signature"]
    )


async def test_direct_upload_with_sha256(tmp_path: Path, fake_cloud: CloudinaryServer) -> None:
    url = fake_cloud.cloudinary_url() + "&signature_algorithm=sha256"
    storage = CloudinaryVideoStorage(cloud_settings(tmp_path, url))
    direct = storage.direct_upload_params("lessons/abc/v3", notification_url="https://x.test/h")
    assert direct.params["signature_algorithm"] == "sha256"
    async with httpx.AsyncClient() as browser:
        files = {"file": ("clip.mp4", VIDEO, "video/mp4")}
        response = await browser.post(direct.upload_url, data=direct.params, files=files)
    assert response.status_code == 200, response.text


def test_verify_notification(tmp_path: Path, fake_cloud: CloudinaryServer) -> None:
    storage = CloudinaryVideoStorage(cloud_settings(tmp_path, fake_cloud.cloudinary_url()))
    body = b'{"notification_type":"upload","public_id":"lessons/abc/v1"}'
    now = str(int(time.time()))
    # As Cloudinary documents it: hex SHA-1 of body + timestamp + API secret (their choice).
    good = hashlib.sha1(body + now.encode() + fake_cloud.api_secret.encode()).hexdigest()  # noqa: S324
    assert storage.verify_notification(body, now, good)
    assert not storage.verify_notification(body + b" ", now, good)
    assert not storage.verify_notification(body, str(int(now) + 1), good)
    assert not storage.verify_notification(body, now, good.upper())
    assert not storage.verify_notification(body, now, "")
    assert not storage.verify_notification(body, "yesterday", good)

    def signed_at(stamp: int) -> tuple[str, str]:
        text = str(stamp)
        digest = hashlib.sha1(body + text.encode() + fake_cloud.api_secret.encode())  # noqa: S324
        return text, digest.hexdigest()

    # A few minutes, not Cloudinary's hour: a captured notification is soon worthless.
    assert storage.verify_notification(body, *signed_at(int(time.time()) - 240))
    assert not storage.verify_notification(body, *signed_at(int(time.time()) - 400))
    assert storage.verify_notification(
        body, *signed_at(int(time.time()) - 400), max_age_seconds=8000
    )
    # Nor from the future, beyond clock skew (it would outlive the replay record).
    assert storage.verify_notification(body, *signed_at(int(time.time()) + 30))
    assert not storage.verify_notification(body, *signed_at(int(time.time()) + 300))
    other = CloudinaryVideoStorage(
        cloud_settings(tmp_path, fake_cloud.cloudinary_url(secret="another-secret"))
    )
    assert not other.verify_notification(body, now, good)


async def test_save_of_an_empty_file_is_refused(
    tmp_path: Path, fake_cloud: CloudinaryServer
) -> None:
    storage = CloudinaryVideoStorage(cloud_settings(tmp_path, fake_cloud.cloudinary_url()))
    source = temp_copy(tmp_path, b"")
    with pytest.raises(StorageError, match="empty"):
        await storage.save(source, key="lessons/abc/v1.mp4")
    assert not source.exists()
    assert fake_cloud.requests == []
