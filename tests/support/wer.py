"""Word error rate: word-level Levenshtein distance over the reference's length."""

from __future__ import annotations

import re

# Letters, digits and in-word apostrophes ("don't") survive; every other character separates.
_NOT_WORD = re.compile(r"[^\w']+|(?<!\w)'|'(?!\w)")


def words(text: str) -> list[str]:
    """Lower-cased words with the punctuation stripped."""
    return [w for w in _NOT_WORD.split(text.lower().replace("_", " ")) if w]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / words in the reference; 0.0 is a perfect match,
    and it can pass 1.0 when the hypothesis adds many words."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 0.0 if not hyp else float(len(hyp))
    # One row of the edit-distance table at a time: row[j] = distance(ref[:i], hyp[:j]).
    row = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        diagonal, row[0] = row[0], i
        for j, hyp_word in enumerate(hyp, start=1):
            substitution = diagonal + (ref_word != hyp_word)
            diagonal = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, substitution)
    return row[-1] / len(ref)
