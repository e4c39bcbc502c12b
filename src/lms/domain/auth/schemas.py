"""Request and response bodies of /auth and /user-auth."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta

from lms.api.schemas import CamelStruct, Page, RowStruct

Text200 = Annotated[str, Meta(min_length=1, max_length=200)]
Text100 = Annotated[str, Meta(min_length=1, max_length=100)]
RoleName = Literal["LEARNER", "CREATOR", "ADMIN"]
Otp = Annotated[str, Meta(pattern=r"^[0-9]{6}$", description="the 6-digit code that was sent")]
Password = Annotated[str, Meta(max_length=256)]
EmailText = Annotated[str, Meta(max_length=320)]
PhoneText = Annotated[str, Meta(max_length=32, description="E.164, e.g. +14155550123")]


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
    password: Password | None = None


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
    username: Annotated[str, Meta(min_length=3, max_length=50, description="3-50 of a-z 0-9 _ . -")]
    password: Password
    full_name: Text200
    country: Text100
    state: Text100
    zip: Annotated[str, Meta(min_length=1, max_length=20)]
    name: Annotated[str, Meta(max_length=100)] | None = None
    phone_number: PhoneText | None = None


class LoginRequest(CamelStruct):
    password: Password
    email: EmailText | None = None
    username: Annotated[str, Meta(max_length=50)] | None = None


class RefreshRequest(CamelStruct):
    refresh_token: Annotated[str, Meta(min_length=1, max_length=200)]


class ResendOtpRequest(CamelStruct):
    email: EmailText
    channel: Literal["email", "sms"] = "email"


class ForgotPasswordRequest(CamelStruct):
    email: EmailText


class ResetPasswordRequest(CamelStruct):
    email: EmailText
    otp: Otp
    new_password: Password


class Accepted(CamelStruct):
    accepted: bool = True


class PasswordReset(CamelStruct):
    password_reset: bool = True
