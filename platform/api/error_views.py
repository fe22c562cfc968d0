"""Django's own error views (handler400/403/404/500 of both URL confs).

Errors that never reach a DRF view (an unknown URL, a disallowed Host header, an unhandled
exception in an async view) still answer Dify's JSON error body on the APIs; the admin keeps
Django's HTML pages.
"""

from __future__ import annotations

from django.views import defaults

from api.errors import error_response
from api.limits import API_PATH_PREFIXES


def _is_api(request) -> bool:
    return request.path.startswith(API_PATH_PREFIXES)


def bad_request(request, exception):
    if _is_api(request):
        return error_response(400, "invalid_param", "The request is invalid.")
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    if _is_api(request):
        return error_response(403, "forbidden", "You do not have access to this resource.")
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    if _is_api(request):
        return error_response(404, "not_found", "The requested URL was not found on the server.")
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return error_response(500, "internal_server_error", "Internal Server Error")
    return defaults.server_error(request)
