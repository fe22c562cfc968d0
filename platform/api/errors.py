"""Domain errors and their one mapping to Dify's error body: {"status", "code", "message"}."""

from __future__ import annotations

import logging

from django.http import JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a client can act on. Subclasses set the defaults; instances may override."""

    status = 400
    code = "invalid_param"
    message = "The request is invalid."

    def __init__(self, message: str | None = None, *, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None):
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        # Response headers that go with the error, e.g. Retry-After on a 429.
        self.headers = dict(headers or {})
        super().__init__(self.message)


class NotFound(ApiError):
    status = 404
    code = "not_found"
    message = "Not found."


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"
    message = "Access token is invalid."


class Forbidden(ApiError):
    status = 403
    code = "forbidden"
    message = "You do not have access to this resource."


def error_body(status: int, code: str, message: str) -> dict:
    return {"status": status, "code": code, "message": message}


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JsonResponse:
    """A plain Django response with Dify's error body, for code that runs outside DRF views."""
    response = JsonResponse(error_body(status, code, message), status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


_DRF_CODES = {
    drf_exceptions.NotAuthenticated: (401, "unauthorized"),
    drf_exceptions.AuthenticationFailed: (401, "unauthorized"),
    drf_exceptions.PermissionDenied: (403, "forbidden"),
    drf_exceptions.NotFound: (404, "not_found"),
    drf_exceptions.MethodNotAllowed: (405, "method_not_allowed"),
    drf_exceptions.NotAcceptable: (406, "not_acceptable"),
    drf_exceptions.UnsupportedMediaType: (415, "unsupported_media_type"),
    drf_exceptions.ParseError: (400, "invalid_param"),
    drf_exceptions.Throttled: (429, "too_many_requests"),
    drf_exceptions.ValidationError: (400, "invalid_param"),
}


def _validation_message(detail) -> str:
    """Flatten DRF's nested validation errors into one readable line naming the fields."""
    parts: list[str] = []

    def walk(value, path: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{path}.{key}" if path and key != "non_field_errors" else (path or key))
        elif isinstance(value, list):
            for item in value:
                walk(item, path)
        else:
            text = str(value)
            parts.append(f"{path}: {text}" if path and path != "non_field_errors" else text)

    walk(detail, "")
    return "; ".join(parts) or "The request is invalid."


def api_exception_handler(exc, context):
    """DRF exception handler: every error leaves as Dify's error body."""
    if isinstance(exc, ApiError):
        return Response(error_body(exc.status, exc.code, exc.message), status=exc.status, headers=exc.headers)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django logs it and answers 500
    status, code = next(
        ((s, c) for klass, (s, c) in _DRF_CODES.items() if isinstance(exc, klass)),
        (response.status_code, "invalid_param"),
    )
    detail = getattr(exc, "detail", None)
    if isinstance(exc, drf_exceptions.ValidationError):
        message = _validation_message(detail)
    else:
        message = str(detail) if detail is not None else str(exc)
    response.data = error_body(status, code, message)
    response.status_code = status
    return response
