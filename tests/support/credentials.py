"""Checks of issued credentials against the standards, offline: the JWS taken apart, the JSON-LD
expanded by pyld through a loader that serves only the vendored contexts (tests/fixtures/ob3), no
term dropped on the way, and the official Open Badges 3.0 JSON Schema (vendored beside them)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonschema
from pyld import jsonld

ROOT = Path(__file__).resolve().parents[2]
CONTEXTS = ROOT / "tests" / "fixtures" / "ob3"
# 1EdTech's AchievementCredential schema (tests/fixtures/ob3/SOURCES.md says where it came from).
SCHEMA = CONTEXTS / "ob_v3p0_achievementcredential_schema.json"
CONTEXT_FILES = {
    "https://www.w3.org/ns/credentials/v2": "credentials-v2.json",
    "https://www.w3.org/2018/credentials/v1": "credentials-v1.json",
    "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json": "ob-v3p0-context-3.0.3.json",
    "https://www.w3.org/ns/credentials/status/v1": "vc-bitstring-status-list-v1.json",
}
# JWT claims beside the credential in a VC-JWT payload: not terms of the credential.
JWT_CLAIMS = {"iss", "jti", "sub", "nbf", "exp", "iat", "serialHash"}


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a compact JWS, unverified."""
    header, payload, _ = token.split(".")

    def decode(part: str) -> dict[str, Any]:
        return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))

    return decode(header), decode(payload)


def credential_of(payload: dict[str, Any]) -> dict[str, Any]:
    """The credential a VC-JWT payload carries (the payload less the JWT's own claims)."""
    return {name: value for name, value in payload.items() if name not in JWT_CLAIMS}


def load_document(url: str, options: object = None) -> dict[str, Any]:
    """pyld's document loader: the vendored contexts, and nothing from the network."""
    name = CONTEXT_FILES.get(url)
    if name is None:
        raise AssertionError(f"the credential names a context that is not vendored: {url}")
    document = json.loads((CONTEXTS / name).read_text())
    return {"contextUrl": None, "documentUrl": url, "document": document}


def _key_paths(node: Any, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key != "@context":
                found.add((*path, key))
                found |= _key_paths(value, (*path, key))
    elif isinstance(node, list):
        for value in node:
            found |= _key_paths(value, path)
    return found


def assert_expands(document: dict[str, Any]) -> list[Any]:
    """Expand `document` as JSON-LD and back: every property must be a term of its contexts (an
    undefined one is silently dropped by expansion, so the round trip would lose it)."""
    options = {"documentLoader": load_document}
    expanded: list[Any] = jsonld.expand(document, options)
    assert expanded, "nothing survived JSON-LD expansion"
    compacted = jsonld.compact(expanded, {"@context": document["@context"]}, options)
    lost = _key_paths(document) - _key_paths(compacted)
    assert not lost, f"properties that are no term of the credential's contexts: {sorted(lost)}"
    return expanded


def achievement_schema() -> dict[str, Any]:
    return dict(json.loads(SCHEMA.read_text()))


def assert_schema_valid(credential: dict[str, Any]) -> None:
    """The credential against 1EdTech's AchievementCredential JSON Schema."""
    schema = achievement_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    problems = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(credential)
    ]
    assert not problems, "\n".join(problems)


def assert_standard_credential(token: str) -> dict[str, Any]:
    """A certificate's VC-JWT checked against the standards; its payload."""
    header, payload = segments(token)
    assert set(header) == {"alg", "kid", "typ"}  # Open Badges 3.0 allows no other JOSE header
    assert header["typ"] == "JWT"
    credential = credential_of(payload)
    assert_expands(credential)
    assert_schema_valid(credential)
    return payload
