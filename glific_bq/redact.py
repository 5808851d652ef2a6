"""Masking secrets: the one home for what every log line, stored error and alert passes through
before it leaves the code that caught it (``glific_bq_watermarks.last_error``, run metadata, webhooks).

Anything shaped like a credential is masked: private keys, passwords in URLs, bearer/basic
tokens, ``password=…``-style pairs, long opaque strings of letters and digits (keys, tokens,
signatures). Errors are collapsed to one line and cut to a limit.
"""

from __future__ import annotations

import re

_SECRETS = (
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S), "[private key]"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@"), r"\1***@"),  # user:password@ in URLs
    (re.compile(r"(?i)\b(bearer|basic)\s+[a-z0-9._~+/=-]{8,}"), r"\1 ***"),
    (re.compile(
        r"(?i)([\"']?\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key(?:[_-]?id)?"
        r"|client[_-]?secret|authorization|sig|signature)[\"']?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&)]+)"
    ), r"\1***"),
    # long opaque strings with letters and digits: keys, tokens, signatures
    (re.compile(r"(?<![\w/.-])(?=[A-Za-z0-9+/_-]*\d)(?=[A-Za-z0-9+/_-]*[A-Za-z])[A-Za-z0-9+/_-]{40,}={0,2}"), "***"),
)

#: Longest error kept in ``glific_bq_watermarks`` and run metadata.
STORED_ERROR_CHARS = 2000


def safe_error(error: str | None, limit: int = STORED_ERROR_CHARS) -> str:
    """``error`` with anything shaped like a credential masked, on one line, cut to ``limit``."""
    if not error:
        return "(no error recorded)"
    for pattern, replacement in _SECRETS:
        error = pattern.sub(replacement, error)
    error = " ".join(error.split())
    return error if len(error) <= limit else error[: limit - 1].rstrip() + "…"


def describe(error: BaseException, limit: int = STORED_ERROR_CHARS) -> str:
    """An exception as stored and shown: its type and message, secrets masked."""
    return safe_error(f"{type(error).__name__}: {error}", limit=limit)
