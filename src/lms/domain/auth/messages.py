"""The words of the mails and SMS that identity sends. An OTP message contains the code as its
only 6-digit number, so mail clients and tests can pick it out."""

from __future__ import annotations

from html import escape

from lms.integrations.mail import Email
from lms.integrations.sms import Sms

_PURPOSE_TEXT = {
    "VERIFY_EMAIL": ("Confirm your email address", "to confirm your email address"),
    "RESET_PASSWORD": ("Reset your password", "to reset your password"),
}


def _minutes(ttl_seconds: int) -> str:
    minutes = max(1, ttl_seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def otp_email(to: str, code: str, purpose: str, ttl_seconds: int) -> Email:
    subject, reason = _PURPOSE_TEXT[purpose]
    expires = _minutes(ttl_seconds)
    text = (
        f"Your code {reason} is {code}.\n\n"
        f"It expires in {expires} and works once. If you did not ask for it, ignore this message.\n"
    )
    html = (
        "<!doctype html><html><body style='font-family:sans-serif'>"
        f"<p>Your code {escape(reason)} is:</p>"
        f"<p style='font-size:28px;letter-spacing:4px'><strong>{code}</strong></p>"
        f"<p>It expires in {expires} and works once. "
        "If you did not ask for it, ignore this message.</p></body></html>"
    )
    return Email(to=to, subject=subject, text=text, html=html)


def otp_sms(to: str, code: str, ttl_seconds: int) -> Sms:
    return Sms(
        to=to, body=f"Your LMS verification code is {code}. It expires in {_minutes(ttl_seconds)}."
    )


def application_decision_email(to: str, name: str, approved: bool, notes: str | None) -> Email:
    if approved:
        subject = "You are now a creator"
        text = (
            f"Hello {name},\n\nYour creator application was approved: you can now create courses.\n"
        )
    else:
        subject = "Your creator application"
        text = f"Hello {name},\n\nYour creator application was not approved this time.\n"
    if notes:
        text += f"\nNotes from the reviewer:\n{notes}\n"
    html = (
        "<!doctype html><html><body style='font-family:sans-serif'>"
        + "".join(f"<p>{escape(p)}</p>" for p in text.strip().split("\n") if p)
        + "</body></html>"
    )
    return Email(to=to, subject=subject, text=text, html=html)
