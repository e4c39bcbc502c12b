"""Request and response bodies of /auth and /user-auth."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from msgspec import Meta

from lms.api.schemas import CamelStruct, Page, RowStruct
from lms.api.text import BIDI_CONTROLS, CONTROLS, LINE_PATTERN, PLAIN_TEXT_PATTERN
from lms.domain.auth.passwords import MIN_PASSWORD_LENGTH
from lms.domain.auth.policy import MAX_PASSWORD_LENGTH

# The wire forms lms.domain.auth.policy accepts, stated so the OpenAPI document says them: the
# services still normalise (lower case) and check what a pattern cannot (a number's plan).
Text200 = Annotated[
    str, Meta(min_length=1, max_length=200, pattern=LINE_PATTERN, examples=["Ada Lovelace"])
]
Text100 = Annotated[str, Meta(min_length=1, max_length=100, pattern=LINE_PATTERN)]
RoleName = Literal["LEARNER", "CREATOR", "ADMIN"]
Otp = Annotated[
    str,
    Meta(pattern=r"^[0-9]{6}$", description="the 6-digit code that was sent", examples=["042917"]),
]
Password = Annotated[
    str, Meta(max_length=MAX_PASSWORD_LENGTH, examples=["correct horse battery staple"])
]
NewPassword = Annotated[
    str,
    Meta(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        description=f"at least {MIN_PASSWORD_LENGTH} characters, not a common or guessable "
        "password, not containing the email address or username",
        examples=["violet tractor mango harbour"],
    ),
]
_NOT_IN_ADDRESS = CONTROLS + BIDI_CONTROLS
EmailText = Annotated[
    str,
    Meta(
        max_length=320,
        # No control or bidirectional formatting character (an address that displays as another).
        pattern=rf"^[^@\s{_NOT_IN_ADDRESS}]{{1,64}}@[^@\s{_NOT_IN_ADDRESS}]+\.[^@\s.{_NOT_IN_ADDRESS}]{{2,}}$",
        description="an email address (compared in lower case)",
        examples=["ada@example.com"],
    ),
]
PhoneText = Annotated[
    str,
    Meta(
        max_length=32,
        pattern=r"^\+[0-9][0-9 ().-]{5,30}$",
        description="an international number, E.164 (+14155550123) or grouped "
        "(+1 (415) 555-0123); it must exist in its country's numbering plan",
        examples=["+14155550123"],
    ),
]
Username = Annotated[
    str,
    Meta(
        min_length=3,
        max_length=50,
        pattern=r"^[A-Za-z0-9_.-]{3,50}$",
        description="3-50 of a-z 0-9 _ . - (compared in lower case)",
        examples=["ada_lovelace"],
    ),
]


class User(RowStruct):
    id: uuid.UUID
    email: str
    phone_number: str | None
    name: str | None
    username: str | None
    full_name: str | None
    country: str | None
    state: str | None
    zip: str | None
    email_verified: bool
    phone_verified: bool
    is_profile_complete: bool
    is_active: bool
    role: RoleName
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


class UserPage(Page[User]):
    """A page of users, newest first."""

    items: list[User]


class Tokens(CamelStruct):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user: User


class RegisterRequest(CamelStruct):
    email: EmailText
    phone_number: PhoneText | None = None
    password: NewPassword | None = None


class RegisterResponse(CamelStruct):
    user_id: uuid.UUID
    email: str
    next: Literal["verify-email"] = "verify-email"


class VerifyEmailRequest(CamelStruct):
    email: EmailText
    otp: Otp


class VerifyEmailResponse(CamelStruct):
    verified: bool
    profile_token: str
    next: Literal["complete-profile", "login"]


class VerifyPhoneRequest(CamelStruct):
    phone_number: PhoneText
    otp: Otp


class VerifyPhoneResponse(CamelStruct):
    phone_verified: bool


class CompleteProfileRequest(CamelStruct):
    username: Username
    password: NewPassword
    full_name: Text200
    country: Text100
    state: Text100
    zip: Annotated[str, Meta(min_length=1, max_length=20, pattern=LINE_PATTERN)]
    name: Annotated[str, Meta(max_length=100, pattern=PLAIN_TEXT_PATTERN)] | None = None
    phone_number: PhoneText | None = None


class LoginRequest(CamelStruct):
    """Either `email` or `username` (not both), with the password."""

    json_schema_extra: ClassVar[dict[str, Any]] = {
        "oneOf": [
            {"required": [name], "properties": {name: {"type": "string"}}}
            for name in ("email", "username")
        ]
    }

    password: Password
    email: EmailText | None = None
    username: Username | None = None


class RefreshRequest(CamelStruct):
    refresh_token: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=200,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="the refreshToken of the last Tokens",
        ),
    ]


class ResendOtpRequest(CamelStruct):
    email: EmailText
    channel: Literal["email", "sms"] = "email"


class ForgotPasswordRequest(CamelStruct):
    email: EmailText


class ResetPasswordRequest(CamelStruct):
    email: EmailText
    otp: Otp
    new_password: NewPassword


class Accepted(CamelStruct):
    accepted: bool = True


class PasswordReset(CamelStruct):
    password_reset: bool = True
