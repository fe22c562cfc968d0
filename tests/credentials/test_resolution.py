"""Who pays for a run: `credential_plan` at submission and `credential_resolve` in the worker.

Asserts on what a caller observes: the plan (source, id, fingerprint), the refusal's status,
code and message, rows in the database, and the key a worker would hand to the provider.
"""

import copy
import json
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import tenant_context

from credentials.resolution import (
    CredentialUnavailable,
    OverridePolicy,
    OverrideRefused,
    credential_plan,
    credential_resolve,
)
from credentials.services import (
    credential_delete,
    credential_disable,
    credential_fingerprint,
    credential_update,
)
from tests.conftest import canary_key
from workflows.examples import SUMMARIZER
from workflows.models import InlineCredential, WorkflowRun
from workflows.services import (
    app_create,
    app_credential_bind,
    app_key_issue,
    inline_credentials_destroy,
    workflow_run_submit,
)

KEY = canary_key()  # a one-off key; must never show up in a plan or a refusal
INLINE = OverridePolicy(allow_inline=True, inline_endpoint_hosts=frozenset({"llm.example.com"}))


def bind(bindings) -> uuid.UUID:
    """An app with these credentials bound to it, as the admin and the API store them."""
    app = app_create(name="Bound", graph=copy.deepcopy(SUMMARIZER))
    for provider, credential in bindings.items():
        app_credential_bind(app=app, provider=provider, credential=credential)
    return app.id


def plan(overrides=None, *, used=("openai",), user="u1", policy=None, bindings=None, app_id=None):
    if bindings:
        app_id = bind(bindings)
    return credential_plan(
        providers_used=used, overrides=overrides, user=user,
        policy=policy or OverridePolicy(), app_id=app_id,
    )


def refusal(overrides=None, **kwargs) -> OverrideRefused:
    with pytest.raises(OverrideRefused) as info:
        plan(overrides, **kwargs)
    return info.value


@pytest.fixture
def default(make_credential):
    return make_credential(name="Tenant default", is_default=True)


# --- resolution order ---------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [None, {}])
def test_no_override_uses_the_tenant_default(make_credential, default, overrides):
    make_credential(name="Another key")
    entry = plan(overrides)["openai"]
    assert entry.to_plan() == {
        "source": "default", "credential_id": str(default.id), "fingerprint": default.fingerprint,
    }


def test_app_binding_beats_the_default(make_credential, default):
    bound = make_credential(name="App key")
    entry = plan(bindings={"openai": bound})["openai"]
    assert (entry.source, entry.credential_id, entry.fingerprint) == (
        "app", str(bound.id), bound.fingerprint,
    )


@pytest.mark.parametrize("form", [str, lambda id_: {"credential_id": id_}], ids=["id", "object"])
def test_override_beats_app_and_default(make_credential, default, form):
    bound, chosen = make_credential(name="App key"), make_credential(name="Caller key")
    entry = plan({"openai": form(str(chosen.id))}, bindings={"openai": bound})["openai"]
    assert entry.to_plan() == {
        "source": "override", "credential_id": str(chosen.id), "fingerprint": chosen.fingerprint,
    }


def test_each_provider_resolves_on_its_own(make_credential, default):
    chosen = make_credential(name="Caller key")
    claude = make_credential(provider="anthropic", config={}, is_default=True)
    result = plan({"openai": str(chosen.id)}, used=("openai", "anthropic"))
    assert {p: (e.source, e.credential_id) for p, e in result.items()} == {
        "openai": ("override", str(chosen.id)), "anthropic": ("default", str(claude.id)),
    }


@pytest.mark.parametrize("base_url", [None, "https://LLM.example.com/v1"])
def test_inline_key_is_planned_by_fingerprint_only(make_credential, base_url):
    key = canary_key()
    stored = make_credential(secrets={"api_key": key})
    value = {"api_key": f"  {key} "} | ({"base_url": base_url} if base_url else {})
    entry = plan({"openai": value}, policy=INLINE)["openai"]
    assert (entry.source, entry.credential_id) == ("inline", None)
    assert entry.fingerprint == stored.fingerprint == credential_fingerprint(provider="openai", material=key)
    assert dict(entry.inline.secrets) == {"api_key": key}
    assert dict(entry.inline.config) == ({"base_url": base_url} if base_url else {})
    assert entry.to_plan("inline-row-id") == {
        "source": "inline", "credential_id": "inline-row-id", "fingerprint": stored.fingerprint,
    }
    for shown in (repr(entry), str(entry), repr(entry.inline), json.dumps(entry.to_plan())):
        assert key not in shown and key[-12:] not in shown


# --- refusals -----------------------------------------------------------------------------

ID = str(uuid.uuid4())  # a well-formed id; these refusals happen before any lookup
TWO = ("openai", "anthropic")


@pytest.mark.parametrize(
    ("overrides", "kwargs", "status", "code", "named"),
    [
        (["openai", ID], {}, 400, "invalid_param", None),
        ("openai=" + ID, {}, 400, "invalid_param", None),
        ({"openai": ID}, {"policy": OverridePolicy(allow_overrides=False)}, 403, "override_not_allowed", None),
        ({"bogus": ID}, {}, 400, "unknown_provider", "'bogus'"),
        ({"anthropic": ID}, {}, 400, "provider_not_used", "anthropic"),
        ({"anthropic": ID}, {"used": TWO, "policy": OverridePolicy(providers=frozenset({"openai"}))},
         403, "override_not_allowed", "anthropic"),
        ({"openai": "not-a-uuid"}, {}, 400, "invalid_param", "openai"),
        ({"openai": ""}, {}, 400, "invalid_param", "openai"),
        ({"openai": {"credential_id": 42}}, {}, 400, "invalid_param", "openai"),
        ({"openai": {"credential_id": None}}, {}, 400, "invalid_param", "openai"),
        ({"openai": {}}, {}, 400, "invalid_param", "openai"),
        ({"openai": [ID]}, {}, 400, "invalid_param", "openai"),
        ({"openai": 42}, {}, 400, "invalid_param", "openai"),
        ({"openai": None}, {}, 400, "invalid_param", "openai"),
        ({"openai": True}, {}, 400, "invalid_param", "openai"),
        ({"openai": {"credential_id": ID, "base_url": "https://evil.example/v1"}}, {"policy": INLINE},
         403, "credential_redirect_forbidden", "openai"),
        ({"openai": {"credential_id": ID, "api_key": KEY}}, {"policy": INLINE},
         403, "credential_redirect_forbidden", "openai"),
        ({"openai": {"api_key": KEY}}, {}, 403, "inline_key_not_allowed", "openai"),
        ({"openai": {"api_key": KEY, "base_url": "https://evil.example/v1"}}, {"policy": INLINE},
         403, "endpoint_not_allowed", "evil.example"),
        ({"openai": {"api_key": KEY, "base_url": "https://llm.example.com.evil.example/v1"}},
         {"policy": INLINE}, 403, "endpoint_not_allowed", "openai"),
        ({"openai": {"api_key": KEY, "base_url": "https://llm.example.com/v1"}},
         {"policy": OverridePolicy(allow_inline=True)}, 403, "endpoint_not_allowed", "openai"),
        ({"openai": {"api_key": 123}}, {"policy": INLINE}, 400, "invalid_param", "api_key"),
        ({"openai": {"api_key": KEY + " x"}}, {"policy": INLINE}, 400, "invalid_param", "api_key"),
        ({"openai": {"api_key": "  "}}, {"policy": INLINE}, 400, "invalid_param", "api_key"),
        ({"openai": {"base_url": "https://llm.example.com/v1"}}, {"policy": INLINE},
         400, "invalid_param", "api_key"),
        ({"openai": {"api_key": KEY, "region": "eu"}}, {"policy": INLINE}, 400, "invalid_param", "region"),
        ({"openai": {"api_key": KEY, "base_url": "ftp://llm.example.com/"}}, {"policy": INLINE},
         400, "invalid_param", "base_url"),
    ],
)
def test_refusals(alpha, overrides, kwargs, status, code, named):
    error = refusal(overrides, **kwargs)
    assert (error.status, error.code) == (status, code)
    if named:
        assert named in error.message
    assert KEY not in error.message and KEY[-12:] not in error.message


def test_other_tenants_id_answers_exactly_like_a_missing_id(make_credential, tenant_b):
    with tenant_context(tenant_b):
        theirs = make_credential(name="Beta key")
    their_id, missing_id = str(theirs.id), str(uuid.uuid4())

    def answer(credential_id):
        error = refusal({"openai": credential_id})
        return error.status, error.code, error.message

    cross = answer(their_id)
    assert cross[:2] == (400, "credential_not_found")
    assert "openai" in cross[2] and their_id in cross[2]
    missing = answer(missing_id)
    assert missing[:2] == cross[:2]
    assert missing[2].replace(missing_id, "<id>") == cross[2].replace(their_id, "<id>")
    with tenant_context(tenant_b):
        credential_delete(credential=theirs)
    assert answer(their_id) == cross  # now truly missing everywhere: byte-identical


def test_override_of_the_wrong_provider_is_refused(make_credential, default):
    claude = make_credential(provider="anthropic", config={})
    error = refusal({"openai": str(claude.id)})
    assert (error.status, error.code) == (400, "credential_provider_mismatch")
    assert "anthropic" in error.message and "openai" in error.message


def test_disabled_override_is_refused(make_credential, default):
    chosen = credential_disable(credential=make_credential())
    error = refusal({"openai": str(chosen.id)})
    assert (error.status, error.code) == (400, "credential_disabled")
    assert "openai" in error.message and str(chosen.id) in error.message


def test_an_end_users_own_key_serves_only_that_user(make_credential):
    mine = make_credential(owner="u1")
    error = refusal({"openai": str(mine.id)}, user="u2")
    assert (error.status, error.code) == (403, "credential_owner_mismatch")
    assert "openai" in error.message
    assert plan({"openai": str(mine.id)}, user="u1")["openai"].credential_id == str(mine.id)


@pytest.mark.parametrize("used", [("openai",), TWO])
def test_no_credential_at_all_is_refused(alpha, used):
    error = refusal(used=used)
    assert (error.status, error.code) == (400, "no_credential")
    assert "openai" in error.message


def test_a_disabled_default_is_no_default(default):
    credential_disable(credential=default)
    error = refusal()
    assert (error.status, error.code) == (400, "no_credential")


@pytest.mark.parametrize(("change", "status", "code"), [
    ("disable", 400, "credential_disabled"),
    ("owner", 403, "credential_owner_mismatch"),
])
def test_unusable_app_credential_never_falls_back_to_the_default(make_credential, default, change,
                                                                 status, code):
    bound = make_credential(name="App key", owner="u2" if change == "owner" else "")
    if change == "disable":
        credential_disable(credential=bound)
    error = refusal(bindings={"openai": bound})
    assert (error.status, error.code) == (status, code)
    assert "openai" in error.message and str(bound.id) in error.message


# --- query cost ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["default", "override", "app", "override+app+default"])
def test_planning_costs_one_query(make_credential, default, case):
    chosen = make_credential(name="Caller key")
    make_credential(provider="anthropic", config={}, is_default=True)
    app_id = bind({"openai": make_credential(name="App key"), "anthropic": make_credential(
        provider="anthropic", config={}, name="App's Claude")})
    kwargs = {
        "default": {},
        "override": {"overrides": {"openai": str(chosen.id)}},
        "app": {"app_id": app_id},
        "override+app+default": {"overrides": {"openai": str(chosen.id)}, "used": TWO, "app_id": app_id},
    }[case]
    with CaptureQueriesContext(connection) as queries:
        result = plan(**kwargs)
    assert len(queries) == 1, [q["sql"] for q in queries]
    assert "secrets" not in queries[0]["sql"]  # planning decrypts nothing
    assert result["openai"].source == {"default": "default", "app": "app"}.get(case, "override")


def test_another_apps_binding_is_not_this_apps(make_credential, default):
    bind({"openai": make_credential(name="Other app's key")})
    assert plan(app_id=bind({}))["openai"].credential_id == str(default.id)


def test_an_app_binding_serves_without_any_default(make_credential):
    bound = make_credential(name="App key")
    entry = plan(bindings={"openai": bound})["openai"]
    assert (entry.source, entry.credential_id) == ("app", str(bound.id))


# --- resolution in the worker -------------------------------------------------------------


def test_worker_gets_the_stored_key(make_credential, fake):
    key = canary_key()
    chosen = make_credential(secrets={"api_key": key})
    planned = plan({"openai": str(chosen.id)})["openai"].to_plan()
    credential = credential_resolve(provider="openai", planned=planned, user="u1")
    assert credential.credential_id == str(chosen.id)
    assert dict(credential.secrets) == {"api_key": key}
    assert dict(credential.config) == {"base_url": fake.url + "/v1"}


@pytest.mark.parametrize("change", ["disable", "delete", "owner"])
def test_worker_refuses_a_credential_changed_after_planning(make_credential, change):
    chosen = make_credential(owner="u1")
    chosen_id = str(chosen.id)  # delete() clears the instance's pk
    planned = plan({"openai": chosen_id}, user="u1")["openai"].to_plan()
    {
        "disable": lambda: credential_disable(credential=chosen),
        "delete": lambda: credential_delete(credential=chosen),
        "owner": lambda: credential_update(credential=chosen, owner="u3"),
    }[change]()
    with pytest.raises(CredentialUnavailable) as info:
        credential_resolve(provider="openai", planned=planned, user="u1")
    assert info.value.credential_id == chosen_id
    assert chosen_id in info.value.message


def test_worker_refuses_another_users_credential(make_credential):
    chosen = make_credential(owner="u1")
    planned = plan({"openai": str(chosen.id)}, user="u1")["openai"].to_plan()
    with pytest.raises(CredentialUnavailable) as info:
        credential_resolve(provider="openai", planned=planned, user="u2")
    assert info.value.credential_id == str(chosen.id)


@pytest.fixture
def app(alpha):
    return app_create(name="Summarizer", graph=copy.deepcopy(SUMMARIZER))


def submit(app, tenant, policy, overrides):
    token = app_key_issue(tenant=tenant, app=app, policy=policy).record
    return workflow_run_submit(
        app=app, token=token, inputs={"text": "Hello."}, user="u1", response_mode="blocking",
        credential_overrides=overrides,
    ).run


def test_inline_key_is_stored_encrypted_for_the_worker_then_gone(app, tenant_a):
    key = canary_key()
    run = submit(app, tenant_a, INLINE, {"openai": {"api_key": key, "base_url": "https://llm.example.com/v1"}})
    planned = WorkflowRun.objects.get(pk=run.pk).credential_plan["openai"]
    row = InlineCredential.objects.get(run=run)
    assert planned == {
        "source": "inline", "credential_id": str(row.id),
        "fingerprint": credential_fingerprint(provider="openai", material=key),
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM workflows_inlinecredential WHERE id = %s", [row.id])
        assert key not in cursor.fetchone()[0]
    credential = credential_resolve(provider="openai", planned=planned, user="u1")
    assert credential.credential_id is None
    assert dict(credential.secrets) == {"api_key": key}
    assert dict(credential.config) == {"base_url": "https://llm.example.com/v1"}
    assert inline_credentials_destroy(run_id=run.pk) == 1
    with pytest.raises(CredentialUnavailable) as info:
        credential_resolve(provider="openai", planned=planned, user="u1")
    assert info.value.credential_id == str(row.id)


def test_worker_refuses_an_expired_inline_key(app, tenant_a):
    run = submit(app, tenant_a, INLINE, {"openai": {"api_key": canary_key()}})
    InlineCredential.objects.filter(run=run).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(CredentialUnavailable):
        credential_resolve(provider="openai", planned=run.credential_plan["openai"], user="u1")


def test_refused_submission_stores_nothing(app, tenant_a, default):
    runs, keys = WorkflowRun.objects.count(), InlineCredential.objects.count()
    with pytest.raises(OverrideRefused) as info:
        submit(app, tenant_a, OverridePolicy(), {"openai": {"api_key": canary_key()}})
    assert info.value.code == "inline_key_not_allowed"
    assert (WorkflowRun.objects.count(), InlineCredential.objects.count()) == (runs, keys)


# --- policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [
    OverridePolicy(),
    OverridePolicy(allow_overrides=False),
    OverridePolicy(providers=frozenset()),
    OverridePolicy(providers=frozenset({"openai", "anthropic"}), allow_inline=True),
    INLINE,
])
def test_policy_round_trips(policy):
    assert OverridePolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy


def test_policy_defaults_allow_overrides_and_forbid_inline_keys():
    for policy in (OverridePolicy(), OverridePolicy.from_dict(None), OverridePolicy.from_dict({})):
        assert policy == OverridePolicy(
            allow_overrides=True, providers=None, allow_inline=False, inline_endpoint_hosts=frozenset(),
        )


@pytest.mark.parametrize(
    "policy",
    [
        {"allow_inline_keys": "false"},
        {"inline_endpoint_hosts": "llm.example.com"},
        {"override_providers": "openai"},
        {"override_providers": ["nope"]},
        {"inline_endpoint_hosts": None},
        {"allow_overrides": 1},
        {"surprise": True},
        ["not", "an", "object"],
    ],
)
def test_policy_values_of_the_wrong_type_are_refused_not_coerced(policy):
    from credentials.resolution import PolicyInvalid

    with pytest.raises(PolicyInvalid):
        OverridePolicy.from_dict(policy)


def test_policy_hosts_match_case_insensitively():
    policy = OverridePolicy(inline_endpoint_hosts=frozenset({"LLM.example.com"}))
    assert OverridePolicy.from_dict(policy.to_dict()) == policy
    assert policy.inline_endpoint_hosts == frozenset({"llm.example.com"})
