"""Event-type patterns as in AMQP topic exchanges: words split by '.', `*` is exactly one word and
`#` is zero or more words (`lead.*` matches `lead.created`; `service.#` matches `service` and
`service.visit.completed`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

TopicMatcher = Callable[[str], bool]
_WORD = re.compile(r"^[^.*#\s]+$")


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a valid topic pattern, or None."""
    if not pattern:
        return "an event pattern cannot be empty"
    for word in pattern.split("."):
        if word not in ("*", "#") and not _WORD.match(word):
            return (
                f"invalid event pattern {pattern!r}: words are separated by '.', "
                "and '*' or '#' stand alone as a word"
            )
    return None


def compile_topic(pattern: str) -> TopicMatcher:
    """A matcher for one pattern; ValueError when the pattern is malformed."""
    problem = pattern_problem(pattern)
    if problem is not None:
        raise ValueError(problem)
    if "*" not in pattern and "#" not in pattern:
        return lambda event_type: event_type == pattern
    parts = []
    for word in pattern.split("."):
        if word == "*":
            parts.append(r"[^.]+\.")
        elif word == "#":
            parts.append(r"(?:[^.]+\.)*")
        else:
            parts.append(re.escape(word) + r"\.")
    # every word is followed by a dot in the regex; the subject gets one appended to match
    regex = re.compile("".join(parts))

    def match(event_type: str) -> bool:
        return regex.fullmatch(event_type + ".") is not None

    return match


def compile_topics(patterns: list[str]) -> TopicMatcher:
    """A matcher true when any of `patterns` matches."""
    matchers = [compile_topic(p) for p in patterns]
    if len(matchers) == 1:
        return matchers[0]
    return lambda event_type: any(m(event_type) for m in matchers)
