"""Bad input at scale, sent to the real web server: oversized bodies, JSON nested deep enough
to crash a recursive parser, invalid UTF-8, huge headers. Each gets a 4xx (with Dify's JSON
body wherever the application answers) and never a 5xx or a hang."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from django.conf import settings
from django.test import Client

pytestmark = pytest.mark.e2e

DIFY_KEYS = {"status", "code", "message"}


def assert_dify_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == DIFY_KEYS and body["status"] == status, body
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.fixture(scope="module")
def http(service_target):
    with httpx.Client(base_url=service_target.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def app_auth(service_target):
    return {"Authorization": f"Bearer {service_target.app_keys['workflow']}"}


@pytest.fixture(scope="module")
def management_auth(service_target):
    return {"Authorization": f"Bearer {service_target.management_token}"}


def deep_json(depth: int) -> str:
    return '{"inputs": ' + "[" * depth + "]" * depth + ', "user": "u"}'


# --- Body size -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/workflows/run", "/api/apps", "/admin/login/"])
def test_a_body_over_the_limit_is_refused_with_413(http, app_auth, path):
    body = b'{"user": "' + b"x" * settings.KEYFLOW_MAX_BODY_BYTES + b'"}'
    response = http.post(path, content=body, headers={**app_auth, "Content-Type": "application/json"})
    message = assert_dify_error(response, 413, "request_too_large")["message"]
    assert str(settings.KEYFLOW_MAX_BODY_BYTES) in message


def test_a_body_just_under_the_limit_reaches_the_api(http, app_auth):
    padding = settings.KEYFLOW_MAX_BODY_BYTES - 200
    body = '{"inputs": {"text": "' + "x" * padding + '"}, "user": "u", "response_mode": "async"}'
    response = http.post("/v1/workflows/run", content=body,
                         headers={**app_auth, "Content-Type": "application/json"})
    # Past the size limit, the API's own validation answers (inputs are limited too).
    body = assert_dify_error(response, 400)
    assert body["code"] != "request_too_large", body


# --- JSON depth ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/workflows/run", "/v1/chat-messages", "/api/apps"])
def test_json_nested_deeper_than_the_limit_is_a_400_not_a_recursion_error(http, service_target, path):
    key = service_target.app_keys["chat" if "chat" in path else "workflow"]
    token = service_target.management_token if path.startswith("/api/") else key
    # 100 000 levels: far beyond Python's recursion limit, so a recursive parser would crash.
    response = http.post(path, content=deep_json(100_000),
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    body = assert_dify_error(response, 400, "invalid_param")
    assert f"deeper than {settings.KEYFLOW_MAX_JSON_DEPTH}" in body["message"]


def test_deep_json_is_refused_before_authentication(http):
    response = http.post("/v1/workflows/run", content=deep_json(5_000),
                         headers={"Content-Type": "application/json"})
    assert_dify_error(response, 400, "invalid_param")


def test_json_at_the_depth_limit_is_parsed(http, app_auth):
    response = http.post("/v1/workflows/run", content=deep_json(settings.KEYFLOW_MAX_JSON_DEPTH - 1),
                         headers={**app_auth, "Content-Type": "application/json"})
    body = assert_dify_error(response, 400)
    assert "deeper than" not in body["message"]  # refused for what it says, not for its depth


def test_brackets_inside_strings_do_not_count_as_nesting(http, app_auth):
    text = "[{" * 10_000 + '\\"' + "]}" * 10_000
    response = http.post("/v1/workflows/run", content='{"inputs": {"text": "' + text + '"}, "user": "u"}',
                         headers={**app_auth, "Content-Type": "application/json"})
    assert response.status_code != 500
    assert "deeper than" not in response.json()["message"]


def test_deep_json_in_another_charset_is_measured_in_that_charset(http, app_auth):
    """A UTF-16 body hides its brackets from a byte scan; the parser decodes it as declared."""
    response = http.post(
        "/v1/workflows/run", content=deep_json(50_000).encode("utf-16"),
        headers={**app_auth, "Content-Type": "application/json; charset=utf-16"},
    )
    assert_dify_error(response, 400, "invalid_param")


# --- Encoding --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/workflows/run", "/v1/chat-messages", "/api/apps"])
def test_invalid_utf8_in_a_body_is_a_400(http, service_target, path):
    token = service_target.management_token if path.startswith("/api/") else (
        service_target.app_keys["chat" if "chat" in path else "workflow"])
    response = http.post(path, content=b'{"user": "\xff\xfe\xc3(", "query": "\xed\xa0\x80"}',
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert_dify_error(response, 400, "invalid_param")


@pytest.mark.parametrize("target", [
    "/v1/conversations?user=%FF%FE&last_id=%C3%28",
    "/v1/conversations/%FF%FE/name",
    "/v1/workflows/run/%ED%A0%80",
    "/api/credentials/%FF",
    "/api/runs?user=%FF&status=%C0%AF",
])
def test_invalid_utf8_in_a_url_never_makes_a_5xx(http, service_target, target):
    token = service_target.management_token if target.startswith("/api/") else service_target.app_keys["chat"]
    method = "POST" if target.endswith("/name") else "GET"
    response = http.request(method, target, headers={"Authorization": f"Bearer {token}"},
                            json={"user": "u", "name": "n"} if method == "POST" else None)
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert set(response.json()) == DIFY_KEYS


# --- Headers ---------------------------------------------------------------------------------


def raw_request(base_url: str, head: bytes, timeout: float = 10) -> tuple[int, bytes, float]:
    """Send a request head as is; (status, raw answer, seconds taken)."""
    host, port = base_url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and len(answer) > 12:
                break
    return int(answer.split(b" ", 2)[1]), answer, time.monotonic() - started


def test_a_64_kib_header_is_refused_by_the_server_at_once(service_target):
    """uvicorn (h11) refuses a request head over 16 KiB (--h11-max-incomplete-event-size)
    with a plain-text 400 before Django runs: no hang, no 5xx."""
    head = (b"GET /v1/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 64 * 1024
            + b"\r\n\r\n")
    status, _answer, seconds = raw_request(service_target.base_url, head)
    assert 400 <= status < 500 and seconds < 5


def test_many_headers_adding_up_to_64_kib_are_refused_too(service_target):
    lines = b"".join(b"X-H%d: %s\r\n" % (n, b"b" * 1000) for n in range(64))
    status, _answer, seconds = raw_request(
        service_target.base_url, b"GET /v1/info HTTP/1.1\r\nHost: 127.0.0.1\r\n" + lines + b"\r\n")
    assert 400 <= status < 500 and seconds < 5


@pytest.mark.parametrize("header", [
    b"Authorization: Bearer app-\xff\xfe\xc3(",
    b"Authorization: Bearer kf-\x80\x81",
    b"Authorization: \xf0\x9f\x94\x91 \xf0\x9f\x94\x91",
    b"Idempotency-Key: \xff" + b"k" * 8000,
    b"Content-Type: application/json; charset=\xff\xfe",
])
def test_invalid_bytes_in_headers_never_make_a_5xx(service_target, header):
    status, answer, _seconds = raw_request(
        service_target.base_url,
        b"POST /v1/workflows/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n" + header
        + b"\r\nConnection: close\r\n\r\n{}")
    assert 400 <= status < 500, answer[:500]


def test_a_large_but_accepted_header_gets_the_apis_json_answer(http):
    response = http.get("/v1/info", headers={"Authorization": "Bearer app-" + "x" * 8000})
    assert_dify_error(response, 401, "unauthorized")


def test_a_malformed_content_length_is_refused(service_target):
    status, _answer, _seconds = raw_request(
        service_target.base_url,
        b"POST /v1/workflows/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 12abc\r\n\r\n")
    assert 400 <= status < 500


# --- Django's own error answers --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/no-such-endpoint", "/api/no-such-endpoint", "/v1/"])
def test_unknown_api_urls_answer_a_json_404(http, path):
    assert_dify_error(http.get(path), 404, "not_found")


def test_unknown_urls_elsewhere_keep_djangos_html(http):
    response = http.get("/no-such-page")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")


def test_a_disallowed_host_is_a_json_400_on_the_apis_and_html_elsewhere(http):
    api = http.get("/v1/info", headers={"Host": "evil.example.com"})
    assert_dify_error(api, 400, "invalid_param")
    admin = http.get("/admin/login/", headers={"Host": "evil.example.com"})
    assert admin.status_code == 400 and admin.headers["content-type"].startswith("text/html")


# --- In process: what the server cannot be made to do from outside --------------------------


def test_an_unhandled_error_in_an_api_view_is_dify_s_500_body(db, monkeypatch, service_target):
    from workflows import service_api

    def broken(self, request):
        raise RuntimeError("boom")

    monkeypatch.setattr(service_api.AppInfoApi, "get", broken)
    client = Client(raise_request_exception=False)
    response = client.get("/v1/info", HTTP_AUTHORIZATION=f"Bearer {service_target.app_keys['workflow']}")
    assert response.status_code == 500
    assert response.json() == {"status": 500, "code": "internal_server_error", "message": "Internal Server Error"}


@pytest.mark.parametrize("path,json_body", [("/api/tenant", True), ("/admin/login/", False)])
def test_an_unhandled_error_before_any_view_is_json_on_the_apis_only(db, monkeypatch, path, json_body):
    from tenants.middleware import TenantRoutingMiddleware

    def broken(self, request):
        raise RuntimeError("boom")

    monkeypatch.setattr(TenantRoutingMiddleware, "process_request", broken)
    response = Client(raise_request_exception=False).get(path, HTTP_HOST="localhost")
    assert response.status_code == 500
    if json_body:
        assert response.json()["code"] == "internal_server_error"
    else:
        assert response["Content-Type"].startswith("text/html")


def test_a_content_length_that_is_not_a_size_is_a_json_400(db):
    # uvicorn refuses it itself (above); another server might pass it on to Django.
    response = Client().generic("POST", "/v1/workflows/run", b"{}", content_type="application/json",
                                CONTENT_LENGTH="-5")
    assert_dify_error(response, 400, "invalid_param")
