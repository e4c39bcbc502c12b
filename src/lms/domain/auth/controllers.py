"""/auth and its /user-auth twins: thin handlers over the sign-up, session and recovery services."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import JSONBody
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_204_NO_CONTENT,
)

from lms.api.client_ip import client_ip
from lms.api.openapi import BAD, BEARER, CONFLICT, FORBIDDEN, TOO_MANY, UNAUTHORIZED
from lms.api.rate_limits import per_ip
from lms.api.security import PUBLIC, token_of_kind
from lms.context import Ctx, Db
from lms.domain.auth import recovery, sessions, signup
from lms.domain.auth.authentication import Principal
from lms.domain.auth.schemas import (
    Accepted,
    CompleteProfileRequest,
    ForgotPasswordRequest,
    LoginRequest,
    PasswordReset,
    RefreshRequest,
    RegisterRequest,
    RegisterResponse,
    ResendOtpRequest,
    ResetPasswordRequest,
    Tokens,
    User,
    VerifyEmailRequest,
    VerifyEmailResponse,
    VerifyPhoneRequest,
    VerifyPhoneResponse,
)
from lms.domain.auth.sessions import ClientInfo
from lms.domain.auth.tokens import ACCESS, PROFILE

AnyRequest = Request[Any, Any, Any]
PrincipalRequest = Request[Principal, Any, Any]
PUBLIC_OPT = {PUBLIC: True}


def _client(request: AnyRequest, ctx: Ctx) -> ClientInfo:
    agent = request.headers.get("user-agent")
    return ClientInfo(
        client_ip(request, ctx.settings.trusted_proxies), agent[:300] if agent else None
    )


class AuthController(Controller):
    path = "/"
    tags = ["auth"]

    @post(["/auth/register", "/user-auth/register"], status_code=HTTP_201_CREATED, opt=PUBLIC_OPT,
          guards=[per_ip("register")], raises=[BAD, FORBIDDEN, CONFLICT, TOO_MANY], summary="Register with an email; a 6-digit code is mailed")  # fmt: skip
    async def register(self, ctx: Ctx, db: Db, data: JSONBody[RegisterRequest]) -> RegisterResponse:
        return await signup.register(db, ctx, data)

    @post(["/auth/verify-email", "/user-auth/verify-email-otp"], status_code=HTTP_200_OK, opt=PUBLIC_OPT,
          guards=[per_ip("verify-email")], raises=[BAD, FORBIDDEN, TOO_MANY], summary="Verify the email with its code; returns a profile token")  # fmt: skip
    async def verify_email(
        self, ctx: Ctx, db: Db, data: JSONBody[VerifyEmailRequest]
    ) -> VerifyEmailResponse:
        return await signup.verify_email(db, ctx, data)

    @post("/auth/verify-phone", status_code=HTTP_200_OK, opt=PUBLIC_OPT, security=BEARER,
          guards=[per_ip("verify-phone"), token_of_kind((PROFILE, ACCESS))], raises=[BAD, UNAUTHORIZED, CONFLICT, TOO_MANY], summary="Verify a phone number with its SMS code (profile or access token)")  # fmt: skip
    async def verify_phone(
        self, request: PrincipalRequest, ctx: Ctx, db: Db, data: JSONBody[VerifyPhoneRequest]
    ) -> VerifyPhoneResponse:
        return await signup.verify_phone(db, ctx, request.user, data)

    @post(["/auth/complete-profile", "/user-auth/complete-profile"], status_code=HTTP_200_OK, opt=PUBLIC_OPT,
          security=BEARER, guards=[per_ip("complete-profile"), token_of_kind((PROFILE,))],
          raises=[BAD, UNAUTHORIZED, FORBIDDEN, CONFLICT, TOO_MANY], summary="Finish sign-up with the profile token; returns tokens, role LEARNER")  # fmt: skip
    async def complete_profile(
        self, request: PrincipalRequest, ctx: Ctx, db: Db, data: JSONBody[CompleteProfileRequest]
    ) -> Tokens:
        return await signup.complete_profile(db, ctx, request.user, data, _client(request, ctx))

    @post(["/auth/login", "/user-auth/login"], status_code=HTTP_200_OK, opt=PUBLIC_OPT,
          guards=[per_ip("login")], raises=[BAD, UNAUTHORIZED, FORBIDDEN, TOO_MANY], summary="Log in with email or username and password")  # fmt: skip
    async def login(self, request: AnyRequest, ctx: Ctx, data: JSONBody[LoginRequest]) -> Tokens:
        return await sessions.login(ctx, data, _client(request, ctx))

    @get("/auth/me", security=BEARER, raises=[UNAUTHORIZED], summary="The caller's account")
    async def me(self, request: PrincipalRequest) -> User:
        return await sessions.me(request.user)

    @post("/auth/refresh", status_code=HTTP_200_OK, opt=PUBLIC_OPT, guards=[per_ip("refresh")],
          raises=[BAD, UNAUTHORIZED, TOO_MANY], summary="Exchange a refresh token for new tokens (the old one stops working)")  # fmt: skip
    async def refresh(
        self, request: AnyRequest, ctx: Ctx, data: JSONBody[RefreshRequest]
    ) -> Tokens:
        return await sessions.refresh(ctx, data.refresh_token, _client(request, ctx))

    @post("/auth/logout", status_code=HTTP_204_NO_CONTENT, security=BEARER,
          raises=[BAD, UNAUTHORIZED], summary="End the login the refresh token belongs to")  # fmt: skip
    async def logout(self, request: PrincipalRequest, data: JSONBody[RefreshRequest]) -> None:
        await sessions.logout(request.user, data.refresh_token)

    @post("/auth/resend-otp", status_code=HTTP_202_ACCEPTED, opt=PUBLIC_OPT, guards=[per_ip("resend-otp")],
          raises=[BAD, TOO_MANY], summary="Send a fresh verification code (accepted whether or not the account exists)")  # fmt: skip
    async def resend_otp(self, ctx: Ctx, db: Db, data: JSONBody[ResendOtpRequest]) -> Accepted:
        await signup.resend_code(db, ctx, data.email, data.channel)
        return Accepted()

    @post("/user-auth/forgot-password", status_code=HTTP_202_ACCEPTED, opt=PUBLIC_OPT,
          guards=[per_ip("forgot-password")], raises=[BAD, TOO_MANY], summary="Mail a password-reset code if the account exists")  # fmt: skip
    async def forgot_password(self, ctx: Ctx, data: JSONBody[ForgotPasswordRequest]) -> Accepted:
        await recovery.forgot_password(ctx, data.email)
        return Accepted()

    @post("/user-auth/reset-password", status_code=HTTP_200_OK, opt=PUBLIC_OPT,
          guards=[per_ip("reset-password")], raises=[BAD, TOO_MANY], summary="Set a new password with the mailed code; ends every session")  # fmt: skip
    async def reset_password(self, ctx: Ctx, data: JSONBody[ResetPasswordRequest]) -> PasswordReset:
        await recovery.reset_password(ctx, data)
        return PasswordReset()
