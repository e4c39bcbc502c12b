"""Video storage: local files and signed URLs; Cloudinary through the real SDK against a local
server speaking its upload API (tests/support/cloudinary_server.py)."""

from __future__ import annotations

import hashlib
import json
import os
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
    assert not verify_media_signature(SECRET, key, exp, sig[:-1] + "A", now)
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
    for bad in (
        "https://k:s@demo",
        "cloudinary://demo",
        "cloudinary://k:s@demo?signature_algorithm=md5",
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
    assert stored.url == fake_cloud.delivery_url("lessons/abc/v1", asset.version, asset.format)
    assert not source.exists()
    [request] = fake_cloud.requests
    assert request["path"] == f"/v1_1/{fake_cloud.cloud_name}/video/upload"
    assert request["content_range"] == f"bytes 0-{len(VIDEO) - 1}/{len(VIDEO)}"
    assert request["fields"]["public_id"] == "lessons/abc/v1"
    assert request["fields"]["overwrite"] == "1"


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


def test_delivery_urls(tmp_path: Path, fake_cloud: CloudinaryServer) -> None:
    storage = CloudinaryVideoStorage(cloud_settings(tmp_path, fake_cloud.cloudinary_url()))
    base = f"https://res.cloudinary.com/{fake_cloud.cloud_name}/video/upload/v1/lessons/abc/v1"
    assert storage.playback_url("lessons/abc/v1") == f"{base}.mp4"
    assert storage.audio_url("lessons/abc/v1") == f"{base}.mp3"
    assert storage.upload_url == f"{fake_cloud.base_url}/v1_1/{fake_cloud.cloud_name}/video/upload"
    default = CloudinaryVideoStorage(cloud_settings(tmp_path, "cloudinary://k:s@demo"))
    assert default.upload_url == "https://api.cloudinary.com/v1_1/demo/video/upload"


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

    # Cloudinary's notification of that upload verifies with the same account.
    [note] = fake_cloud.notifications
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
    old = str(int(time.time()) - 7300)
    old_sig = hashlib.sha1(body + old.encode() + fake_cloud.api_secret.encode()).hexdigest()  # noqa: S324
    assert not storage.verify_notification(body, old, old_sig)
    assert storage.verify_notification(body, old, old_sig, max_age_seconds=8000)
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
