"""Password, email, username and phone-number rules of sign-up (lms.domain.auth.policy)."""

from __future__ import annotations

import pytest

from lms.domain.auth.policy import (
    MAX_PASSWORD_LENGTH,
    normalize_email,
    normalize_phone,
    normalize_username,
    password_problem,
)

STRONG = "plum-orbit-cascade-91"


def test_a_strong_passphrase_is_accepted() -> None:
    assert password_problem(STRONG) is None
    assert password_problem("correct horse battery") is None
    assert password_problem(STRONG, email="ada@example.test", username="ada_l") is None


def test_length_bounds() -> None:
    assert password_problem("x7#kq2!mz") is not None  # 9 characters
    assert "at least 10" in (password_problem("x7#kq2!mz") or "")
    assert password_problem("x7#kq2!mzp") is None  # exactly 10
    at_max = ("Zq8!vB3#" * 40)[:MAX_PASSWORD_LENGTH]
    assert MAX_PASSWORD_LENGTH == 256
    assert password_problem(at_max) is None
    too_long = at_max + "w"
    assert "at most 256" in (password_problem(too_long) or "")


@pytest.mark.parametrize(
    "password",
    ["password123", "qwertyuiop", "iloveyou!!", "Password1234", "PASSWORD123", "qwertyuiop2024!"],
)
def test_common_passwords_are_refused(password: str) -> None:
    problem = password_problem(password)
    assert problem is not None and "common" in problem


@pytest.mark.parametrize("password", ["aaaaaaaaaaaa", "abababababab", "abcabcabcabc"])
def test_too_few_distinct_characters_are_refused(password: str) -> None:
    assert password_problem(password) is not None


@pytest.mark.parametrize("password", ["abcdefghijkl", "1234567890ab"])
def test_easily_guessed_patterns_are_refused_though_not_on_the_list(password: str) -> None:
    problem = password_problem(password)
    assert problem is not None and "weak" in problem


def test_the_email_local_part_and_username_are_refused_inside_the_password() -> None:
    problem = password_problem("xx-adalovelace-93", email="AdaLovelace@example.test")
    assert problem is not None and "email" in problem
    problem = password_problem("zz_Ada_L0ve_77", username="ada_l0ve")
    assert problem is not None and "username" in problem
    # Very short local parts and usernames are not held against the password.
    assert password_problem(STRONG, email="plu@example.test", username="plu") is None


def test_normalize_email() -> None:
    assert normalize_email("  Ada.Lovelace@Example.TEST ") == "ada.lovelace@example.test"
    assert normalize_email("a+tag@sub.example.org") == "a+tag@sub.example.org"
    for bad in ("not-an-email", "a@b", "a@@b.cd", "a b@c.de", "@example.test", "a@example.c", ""):
        assert normalize_email(bad) is None, bad
    assert normalize_email("a" * 65 + "@example.test") is None
    assert normalize_email("a@" + "b" * 320 + ".test") is None


def test_normalize_username() -> None:
    assert normalize_username("  Ada_L.ove-1 ") == "ada_l.ove-1"
    assert normalize_username("abc") == "abc"
    assert normalize_username("a" * 50) == "a" * 50
    for bad in ("ab", "a" * 51, "has space", "ada@home", "ünï", ""):
        assert normalize_username(bad) is None, bad


def test_normalize_phone_gives_e164() -> None:
    assert normalize_phone("+1 415 555 0123") == "+14155550123"
    assert normalize_phone(" +1 (415) 555-0123 ") == "+14155550123"
    assert normalize_phone("+14155550123") == "+14155550123"
    assert normalize_phone("+44 20 7946 0958") == "+442079460958"


@pytest.mark.parametrize(
    "number", ["12345", "+999", "abc", "+1 555 000", "", "4155550123", "+1 415 555 01234"]
)
def test_normalize_phone_refuses_what_is_not_an_international_number(number: str) -> None:
    assert normalize_phone(number) is None
