"""Which characters input text may hold: one rule for every JSON string, query parameter, path and
header the API reads, and its statement as JSON Schema patterns for the OpenAPI document.

PostgreSQL text cannot hold NUL, UTF-8 cannot encode a lone surrogate, and the other control
characters are never meant in what people type but make log lines, mail headers and file names
lie. Free text (titles, descriptions, notes) keeps tab, line feed and carriage return; names,
identifiers and query parameters keep none of them.
"""

from __future__ import annotations

import re

# Character-class bodies, written with \\u escapes that Python's re and ECMA-262 (JSON Schema's
# pattern dialect) both read the same way.
CONTROLS = r"\u0000-\u001f\u007f-\u009f"
CONTROLS_BUT_WHITESPACE = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"
SURROGATES = r"\ud800-\udfff"

# What str.strip() removes, less the control characters refused anyway.
_SPACES_ONE_LINE = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_SPACES = r"\t\n\r" + _SPACES_ONE_LINE

# The patterns the OpenAPI document gives strings that declare nothing stricter (the rules the
# edge applies to every JSON string and every query parameter).
FREE_TEXT_PATTERN = f"^[^{CONTROLS_BUT_WHITESPACE}]*$"
PLAIN_TEXT_PATTERN = f"^[^{CONTROLS}]*$"
# For Meta(pattern=...): free text that is not blank (a title, a reason for a refusal), and one
# line that is not blank (a name, a country). Each class is disjoint from the next, so matching
# never backtracks.
WORDS_PATTERN = f"^[{_SPACES}]*[^{_SPACES}{CONTROLS}][^{CONTROLS_BUT_WHITESPACE}]*$"
LINE_PATTERN = f"^[{_SPACES_ONE_LINE}]*[^{_SPACES_ONE_LINE}{CONTROLS}][^{CONTROLS}]*$"

# Bidirectional formatting characters (Unicode's Bidi_Control): they reorder how the text around
# them is shown, so an address can display as another ("Trojan Source", CVE-2021-42574). An
# address needs none of them.
BIDI_CONTROLS = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# One line that is not blank and holds neither a control nor a bidirectional formatting
# character: an address (a bulk enrollment's row, JSON or CSV).
ADDRESS_PATTERN = (
    f"^[{_SPACES_ONE_LINE}]*[^{_SPACES_ONE_LINE}{CONTROLS}{BIDI_CONTROLS}]"
    f"[^{CONTROLS}{BIDI_CONTROLS}]*$"
)

_BAD_IN_FREE_TEXT = re.compile(f"[{CONTROLS_BUT_WHITESPACE}{SURROGATES}]")
_BAD_IN_ADDRESS = re.compile(f"[{CONTROLS}{BIDI_CONTROLS}{SURROGATES}]")
_BAD_IN_PLAIN_TEXT = re.compile(f"[{CONTROLS}{SURROGATES}]")


def bad_character(text: str, *, free_text: bool) -> str | None:
    """The first character `text` may not hold, written as U+XXXX, or None when it is clean.
    `free_text` admits tab, line feed and carriage return."""
    found = (_BAD_IN_FREE_TEXT if free_text else _BAD_IN_PLAIN_TEXT).search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def bad_in_address(text: str) -> str | None:
    """The first character ADDRESS_PATTERN refuses in `text`, as U+XXXX; None when none is."""
    found = _BAD_IN_ADDRESS.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"
