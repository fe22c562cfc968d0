"""Signatures: HMAC-SHA256 over "<timestamp>." + body, checked in constant time with a tolerance."""

import hashlib
import hmac

from webhooks.signing import delivery_headers, sign, signature_header, verify

SECRET = "whsec_test-secret"
BODY = b'{"workflow_run_id":"r1","data":{"status":"succeeded"}}'
NOW = 1_800_000_000


def test_scheme_is_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), b"1800000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == expected
    assert signature_header(SECRET, NOW, BODY) == f"t={NOW},v1={expected}"


def test_verifies_with_the_right_secret_only():
    header = signature_header(SECRET, NOW, BODY)
    assert verify(SECRET, header, BODY, now=NOW + 10)
    assert not verify("whsec_another", header, BODY, now=NOW + 10)


def test_changed_body_fails():
    header = signature_header(SECRET, NOW, BODY)
    assert not verify(SECRET, header, BODY.replace(b"succeeded", b"failed"), now=NOW)
    assert not verify(SECRET, header, BODY + b" ", now=NOW)


def test_timestamp_outside_tolerance_fails():
    header = signature_header(SECRET, NOW, BODY)
    assert verify(SECRET, header, BODY, now=NOW + 300)
    assert not verify(SECRET, header, BODY, now=NOW + 301)
    assert not verify(SECRET, header, BODY, now=NOW - 301)
    assert verify(SECRET, header, BODY, now=NOW + 3600, tolerance=3600)


def test_a_changed_timestamp_breaks_the_signature():
    digest = sign(SECRET, NOW, BODY)
    assert not verify(SECRET, f"t={NOW + 5},v1={digest}", BODY, now=NOW)


def test_any_matching_v1_is_accepted_and_unknown_schemes_ignored():
    good = sign(SECRET, NOW, BODY)
    assert verify(SECRET, f"t={NOW},v1={'0' * 64},v1={good},v9=zzz", BODY, now=NOW)


def test_malformed_headers_fail():
    good = sign(SECRET, NOW, BODY)
    for header in ["", "garbage", f"v1={good}", f"t={NOW}", f"t=abc,v1={good}",
                   f"t={NOW},t={NOW},v1={good}", f"t={NOW},v1=é{good}", None]:
        assert not verify(SECRET, header, BODY, now=NOW)


def test_delivery_headers():
    headers = delivery_headers(secret=SECRET, delivery_id="d-1", body=BODY, timestamp=NOW)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "Keyflow-Webhooks/1"
    assert headers["X-Keyflow-Event"] == "run.finished"
    assert headers["X-Keyflow-Delivery"] == "d-1"
    assert verify(SECRET, headers["X-Keyflow-Signature"], BODY, now=NOW)
    assert SECRET not in "".join(headers.values())
