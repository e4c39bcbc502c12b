"""The API contract as data: every endpoint it names, with who may call it.

The contract is `../shared/spec/api-contract.md` when this checkout sits beside the shared
material (as in development and CI), else the copy shipped in `docs/api-contract.md`; a test
keeps the two identical. Endpoints come from the first cell of its tables (`METHOD /path`,
several separated by commas), from the Operations bullets, and from the `/user-auth` paragraph;
who may call one comes from the table's `who` column, the Admin section's rule (ADMIN only), or
the `/auth` twin of a `/user-auth` path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_CONTRACT = ROOT.parent / "shared" / "spec" / "api-contract.md"
SHIPPED_CONTRACT = ROOT / "docs" / "api-contract.md"

# Who may call, in the authorization matrix's terms.
PUBLIC = "anyone"
PROFILE_TOKEN = "profile token only"  # finishing sign-up: the access token does not do
PROFILE_OR_ACCESS = "profile or access token"
ANY_ROLE = "LEARNER"  # any signed-in user; the services decide enrolled/owner
CREATOR = "CREATOR"
ADMIN = "ADMIN"

# The contract's `who` phrases. A phrase missing here fails the test: say what it means.
WHO: dict[str, str] = {
    "anyone": PUBLIC,
    "anyone (published); owner, admin (any state)": PUBLIC,
    "as GET /courses/:id": PUBLIC,
    "Cloudinary": PUBLIC,  # authorized by Cloudinary's signature, not a token
    "Stripe": PUBLIC,  # authorized by Stripe's signature, not a token
    "profileToken": PROFILE_TOKEN,
    "profileToken or accessToken": PROFILE_OR_ACCESS,
    "any role": ANY_ROLE,
    "LEARNER": ANY_ROLE,  # the learner's right; a CREATOR or ADMIN gets 409 from the service
    "enrolled": ANY_ROLE,
    "enrolled, owner, ADMIN": ANY_ROLE,
    "the learner, ADMIN": ANY_ROLE,
    "owner": CREATOR,
    "owner, ADMIN": CREATOR,
    "owner (DRAFT), ADMIN": CREATOR,
    "CREATOR, ADMIN": CREATOR,
    "ADMIN": ADMIN,
}
# A /user-auth path behaves as its /auth twin.
USER_AUTH_TWINS = {
    "/user-auth/register": "/auth/register",
    "/user-auth/verify-email-otp": "/auth/verify-email",
    "/user-auth/complete-profile": "/auth/complete-profile",
    "/user-auth/login": "/auth/login",
}

_METHOD = r"(GET|POST|PUT|PATCH|DELETE)"
_PATH = r"/[\w\-./:]+"
# One path after one method or several joined by "/" ("GET/PATCH/DELETE /admin/webhooks/:id").
_ONE_METHOD = r"(?:GET|POST|PUT|PATCH|DELETE)"
_ENDPOINT = re.compile(rf"\b({_ONE_METHOD}(?:/{_ONE_METHOD})*) ({_PATH})")
_RUN = re.compile(rf"\b{_METHOD} ({_PATH}(?:, {_PATH})*)")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as the contract writes it: /courses/:id
    who: str

    @property
    def shape(self) -> str:
        return path_shape(self.path)


class ContractError(Exception):
    """The contract says something this parser cannot place: fix the parser or WHO."""


def path_shape(path: str) -> str:
    """A path with its parameters blanked: /courses/:id and /courses/{course_id:uuid} are one."""
    path = re.sub(r"\{[^}]+\}", "{}", path)
    path = re.sub(r":\w+", "{}", path)
    return path.rstrip("/") or "/"


def contract_path() -> Path:
    return SHARED_CONTRACT if SHARED_CONTRACT.is_file() else SHIPPED_CONTRACT


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def parse(text: str) -> list[Endpoint]:
    endpoints: list[Endpoint] = []
    section = ""
    header: list[str] = []
    for line in text.splitlines():
        if line.startswith("## "):
            section, header = line[3:].strip(), []
            continue
        if line.startswith("|"):
            cells = _cells(line)
            if not header:
                header = [c.lower() for c in cells]
                continue
            if set(line) <= set("|-: "):
                continue
            found = [
                (method, m.group(2))
                for m in _ENDPOINT.finditer(cells[0])
                for method in m.group(1).split("/")
            ]
            if not found:
                continue
            if "who" in header:
                phrase = cells[header.index("who")]
                if phrase not in WHO:
                    raise ContractError(f"unknown who {phrase!r} for {cells[0]}")
                who = WHO[phrase]
            elif section == "Admin":
                who = ADMIN  # "Every /admin path is ADMIN only"
            else:
                raise ContractError(f"no who for {cells[0]} in section {section!r}")
            endpoints += [Endpoint(method, path, who) for method, path in found]
            continue
        header = []
        for run in _RUN.finditer(line):
            method = run.group(1)
            for path in run.group(2).split(", "):
                if section == "Operations":
                    who = PUBLIC
                elif path.startswith("/user-auth/"):
                    twin = USER_AUTH_TWINS.get(path)
                    who = next((e.who for e in endpoints if e.path == twin), PUBLIC)
                else:
                    continue  # a path mentioned in prose, not an endpoint
                endpoints.append(Endpoint(method, path, who))
    return endpoints


def endpoints() -> list[Endpoint]:
    return parse(contract_path().read_text())
