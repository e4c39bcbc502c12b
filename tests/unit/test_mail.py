"""The OTP mail and SMS texts, MIME building and SMTP URL parsing (lms.integrations.mail)."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage

import pytest

from lms.domain.auth.messages import application_decision_email, otp_email, otp_sms
from lms.integrations.mail import Email, LogMailer, SmtpMailer, build_message, make_mailer
from lms.integrations.sms import LogSmsSender, TwilioSmsSender, make_sms_sender

SIX_DIGITS = re.compile(r"(?<!\d)\d{6}(?!\d)")
SENDER = "LMS <no-reply@lms.example.test>"


@pytest.mark.parametrize("purpose", ["VERIFY_EMAIL", "RESET_PASSWORD"])
@pytest.mark.parametrize("code", ["042917", "000000", "999999"])
def test_otp_email_holds_the_code_as_its_only_six_digit_number(purpose: str, code: str) -> None:
    message = otp_email("ada@example.test", code, purpose, 600)
    assert message.to == "ada@example.test"
    assert message.subject and message.subject.strip() == message.subject
    assert SIX_DIGITS.findall(message.text) == [code]
    assert message.html is not None and code in message.html
    assert "10 minutes" in message.text


def test_otp_email_words_follow_the_purpose_and_lifetime() -> None:
    verify = otp_email("a@example.test", "123456", "VERIFY_EMAIL", 60)
    reset = otp_email("a@example.test", "123456", "RESET_PASSWORD", 3600)
    assert verify.subject != reset.subject
    assert "1 minute " in verify.text and "60 minutes" in reset.text
    # A lifetime of 100000 s (a 4-digit minute count) must not add a second 6-digit number.
    long_lived = otp_email("a@example.test", "123456", "VERIFY_EMAIL", 100_000)
    assert SIX_DIGITS.findall(long_lived.text) == ["123456"]


def test_otp_sms_holds_the_code_as_its_only_six_digit_number() -> None:
    sms = otp_sms("+14155550123", "314159", 600)
    assert sms.to == "+14155550123"
    assert SIX_DIGITS.findall(sms.body) == ["314159"]
    assert len(sms.body) <= 160  # one SMS segment


def test_decision_email_escapes_reviewer_notes_in_html() -> None:
    message = application_decision_email("a@example.test", "Ada", False, "<b>more</b> & detail")
    assert "<b>more</b>" in message.text
    assert message.html is not None and "&lt;b&gt;more&lt;/b&gt; &amp; detail" in message.html
    assert "<b>more</b>" not in message.html


def test_build_message_is_multipart_alternative_text_then_html() -> None:
    built = build_message(SENDER, otp_email("ada@example.test", "271828", "VERIFY_EMAIL", 600))
    assert built.get_content_type() == "multipart/alternative"
    parts = list(built.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert built["From"] == SENDER and built["To"] == "ada@example.test"
    assert built["Subject"] == "Confirm your email address"
    assert re.fullmatch(r"<[^<>@]+@lms\.example\.test>", str(built["Message-ID"]))
    # What goes over the wire parses back to the same parts.
    parsed = email.message_from_bytes(built.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    plain = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert SIX_DIGITS.findall(str(plain.get_content())) == ["271828"]
    assert "271828" in str(html.get_content())


def test_build_message_without_html_is_plain_text() -> None:
    built = build_message(SENDER, Email("b@example.test", "Hi", "Just text ✓"))
    assert built.get_content_type() == "text/plain" and not built.is_multipart()
    assert "Just text ✓" in str(built.get_content())


def test_smtp_url_with_credentials_port_and_starttls_off() -> None:
    mailer = SmtpMailer("smtp://user:p%40ss@mail.example.test:2525?starttls=false", SENDER)
    assert mailer.hostname == "mail.example.test" and mailer.port == 2525
    assert mailer.username == "user" and mailer.password == "p@ss"
    assert mailer.implicit_tls is False and mailer.start_tls is False
    assert mailer.verify_tls is True and mailer.sender == SENDER


def test_smtps_url_means_implicit_tls_on_465() -> None:
    mailer = SmtpMailer("smtps://smtp.example.test", SENDER)
    assert mailer.hostname == "smtp.example.test" and mailer.port == 465
    assert mailer.implicit_tls is True
    assert mailer.username is None and mailer.password is None


def test_smtp_url_defaults_and_options() -> None:
    plain = SmtpMailer("smtp://relay.example.test", SENDER)
    assert plain.port == 25 and plain.implicit_tls is False
    assert plain.start_tls is None  # STARTTLS when the server offers it
    forced = SmtpMailer("smtp://relay.example.test:587?starttls=TRUE&verify=false", SENDER)
    assert forced.port == 587 and forced.start_tls is True and forced.verify_tls is False
    tls_port = SmtpMailer("smtps://u:secret@smtp.example.test:2465", SENDER)
    assert tls_port.port == 2465 and tls_port.implicit_tls and tls_port.password == "secret"


def test_without_urls_messages_only_go_to_the_log() -> None:
    assert isinstance(make_mailer(None, SENDER), LogMailer)
    assert isinstance(make_mailer("smtp://h", SENDER), SmtpMailer)
    assert isinstance(make_sms_sender(None, None), LogSmsSender)
    sender = make_sms_sender("https://ACabc:tok%2Fen@api.example.test/base/", "+15005550006")
    assert isinstance(sender, TwilioSmsSender)
    assert sender.account_sid == "ACabc" and sender.auth_token == "tok/en"
    assert sender.messages_url == (
        "https://api.example.test/base/2010-04-01/Accounts/ACabc/Messages.json"
    )
    with pytest.raises(ValueError, match="account SID and auth token"):
        TwilioSmsSender("https://api.example.test", None)
