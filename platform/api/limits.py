"""Request size and shape limits, enforced before any view or parser sees the request.

- A body announced larger than KEYFLOW_MAX_BODY_BYTES is refused with 413.
- On the APIs (/v1/, /api/), JSON nested deeper than KEYFLOW_MAX_JSON_DEPTH is refused with
  400. Python's json module recurses once per level and raises RecursionError on very deep
  input, which nothing downstream expects: the depth is measured here by a flat scan first.

Both answer with Dify's error body. Headers are bounded by the HTTP server (uvicorn/h11
refuses a request head over 16 KiB with a 400), before Django runs.
"""

from __future__ import annotations

import re
from itertools import accumulate

from django.conf import settings

from api.errors import error_response

API_PATH_PREFIXES = ("/v1/", "/api/")

# Escapes first (a backslash and the character after it), then strings, which then hold no
# escaped quote: both patterns match in linear time whatever the input.
_JSON_ESCAPE = re.compile(r"\\.", re.DOTALL)
_JSON_STRING = re.compile(r'"[^"]*"')
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth_exceeds(body: bytes, limit: int, encoding: str = "utf-8") -> bool:
    """True when `body`, read as JSON, opens more than `limit` arrays/objects at once.

    Flat and linear (a few C-speed passes), so it cannot recurse however deep the input is.
    It reads the body in the charset the parser will use (a UTF-16 or EBCDIC body would hide
    its brackets from a byte scan). It agrees with the parser on every valid prefix; where
    the input stops being JSON the parser stops too, so what follows cannot make it recurse.
    """
    try:
        text = body.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return False  # the parser refuses it before reading any structure
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", _JSON_ESCAPE.sub("", text)))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit


def _content_length(request) -> int | None:
    """The announced body size: 0 when absent, None when it is not a size at all."""
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


class RequestLimitsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        length = _content_length(request)
        if length is None:
            return error_response(400, "invalid_param", "Content-Length is not a valid size.")
        limit = settings.KEYFLOW_MAX_BODY_BYTES
        if length > limit:
            return error_response(
                413, "request_too_large", f"The request body is larger than {limit} bytes."
            )
        if length and request.path.startswith(API_PATH_PREFIXES):
            depth = settings.KEYFLOW_MAX_JSON_DEPTH
            encoding = request.encoding or settings.DEFAULT_CHARSET
            if json_depth_exceeds(request.body, depth, encoding):
                return error_response(
                    400, "invalid_param", f"The JSON body is nested deeper than {depth} levels."
                )
        return self.get_response(request)
