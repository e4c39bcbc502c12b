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
from lms.api.dependencies import Ctx, Db
from lms.api.openapi import BAD, BEARER, CONFLICT, FORBIDDEN, TOO_MANY, UNAUTHORIZED, errors
from lms.api.rate_limits import per_ip
from lms.api.security import PUBLIC, token_of_kind
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
    tags = ("auth",)

    @post(
        ["/auth/register", "/user-auth/register"],
        status_code=HTTP_201_CREATED,
        opt=PUBLIC_OPT,
        guards=[per_ip("register")],
        responses=errors(BAD, FORBIDDEN, CONFLICT, TOO_MANY),
        summary="Register with an email; a 6-digit code is mailed",
    )
    async def register(self, ctx: Ctx, db: Db, data: JSONBody[RegisterRequest]) -> RegisterResponse:
        return await signup.register(db, ctx, data)

    @post(
        ["/auth/verify-email", "/user-auth/verify-email-otp"],
        status_code=HTTP_200_OK,
        opt=PUBLIC_OPT,
        guards=[per_ip("verify-email")],
        responses=errors(BAD, FORBIDDEN, TOO_MANY),
        summary="Verify the email with its code; returns a profile token",
    )
    async def verify_email(
        self, ctx: Ctx, db: Db, data: JSONBody[VerifyEmailRequest]
    ) -> VerifyEmailResponse:
        return await signup.verify_email(db, ctx, data)

    @post(
        "/auth/verify-phone",
        status_code=HTTP_200_OK,
        opt=PUBLIC_OPT,
        security=BEARER,
        guards=[per_ip("verify-phone"), token_of_kind((PROFILE, ACCESS))],
        responses=errors(BAD, UNAUTHORIZED, CONFLICT, TOO_MANY),
        summary="Verify a phone number with its SMS code (profile or access token)",
    )
    async def verify_phone(
        self, request: PrincipalRequest, ctx: Ctx, db: Db, data: JSONBody[VerifyPhoneRequest]
    ) -> VerifyPhoneResponse:
        return await signup.verify_phone(db, ctx, request.user, data)

    @post(
        ["/auth/complete-profile", "/user-auth/complete-profile"],
        status_code=HTTP_200_OK,
        opt=PUBLIC_OPT,
        security=BEARER,
        guards=[per_ip("complete-profile"), token_of_kind((PROFILE,))],
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, CONFLICT, TOO_MANY),
        summary="Finish sign-up with the profile token; returns tokens, role LEARNER",
    )
    async def complete_profile(
        self, request: PrincipalRequest, ctx: Ctx, db: Db, data: JSONBody[CompleteProfileRequest]
    ) -> Tokens:
        return await signup.complete_profile(db, ctx, request.user, data, _client(request, ctx))

    @post(
        ["/auth/login", "/user-auth/login"],
        status_code=HTTP_200_OK,
        opt=PUBLIC_OPT,
        guards=[per_ip("login")],
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, TOO_MANY),
        summary="Log in with email or username and password",
    )
    async def login(
        self, request: AnyRequest, ctx: Ctx, db: Db, data: JSONBody[LoginRequest]
    ) -> Tokens:
        return await sessions.login(db, ctx, data, _client(request, ctx))

    @get(
        "/auth/me", security=BEARER, responses=errors(UNAUTHORIZED), summary="The caller's account"
    )
    async def me(self, request: PrincipalRequest, db: Db) -> User:
        return await sessions.me(db, request.user)

    @post(
        "/auth/refresh",
        status_code=HTTP_200_OK,
        opt=PUBLIC_OPT,
        guards=[per_ip("refresh")],
        responses=errors(BAD, UNAUTHORIZED, TOO_MANY),
        summary="Exchange a refresh token for new tokens (the old one stops working)",
    )
    async def refresh(
        self, request: AnyRequest, ctx: Ctx, data: JSONBody[RefreshRequest]
    ) -> Tokens:
        return await sessions.refresh(ctx, data.refresh_token, _client(request, ctx))

    @post(
        "/auth/logout",
        status_code=HTTP_204_NO_CONTENT,
        security=BEARER,
        responses=errors(BAD, UNAUTHORIZED),
        summary="End the login the refresh token belongs to (its access tokens too)",
    )
    async def logout(
        self, request: PrincipalRequest, ctx: Ctx, data: JSONBody[RefreshRequest]
    ) -> None:
        await sessions.logout(ctx, request.user, data.refresh_token)

    @post(
        "/auth/resend-otp",
        status_code=HTTP_202_ACCEPTED,
        opt=PUBLIC_OPT,
        guards=[per_ip("resend-otp")],
        responses=errors(BAD, TOO_MANY),
        summary="Send a fresh verification code (accepted whether or not the account exists)",
    )
    async def resend_otp(self, ctx: Ctx, db: Db, data: JSONBody[ResendOtpRequest]) -> Accepted:
        await signup.resend_code(db, ctx, data.email, data.channel)
        return Accepted()

    @post(
        "/user-auth/forgot-password",
        status_code=HTTP_202_ACCEPTED,
        opt=PUBLIC_OPT,
        guards=[per_ip("forgot-password")],
        responses=errors(BAD, TOO_MANY),
        summary="Mail a password-reset code if the account exists",
    )
    async def forgot_password(
        self, ctx: Ctx, db: Db, data: JSONBody[ForgotPasswordRequest]
    ) -> Accepted:
        await recovery.forgot_password(db, ctx, data.email)
        return Accepted()

    @post(
        "/user-auth/reset-password",
        status_code=HTTP_200_OK,
        opt=PUBLIC_OPT,
        guards=[per_ip("reset-password")],
        responses=errors(BAD, TOO_MANY),
        summary="Set a new password with the mailed code; ends every session",
    )
    async def reset_password(
        self, ctx: Ctx, db: Db, data: JSONBody[ResetPasswordRequest]
    ) -> PasswordReset:
        await recovery.reset_password(db, ctx, data)
        return PasswordReset()
