"""HTTPS deliveries connect to the checked address yet verify the certificate for the URL's
host name (so pinning the address against DNS rebinding does not weaken TLS)."""

from __future__ import annotations

import datetime
import functools
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.webhooks.conftest import run_body
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_deliver, webhook_delivery_schedule

HOST = "hooks.tls.test"


def _certificate(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return cert_path, key_path


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.hosts.append(self.headers["Host"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, format, *args):  # noqa: A002
        pass


@pytest.fixture
def tls_receiver(tmp_path, monkeypatch):
    """An HTTPS receiver on 127.0.0.1 whose certificate names HOST; HOST resolves to it and
    the webhook client trusts that certificate."""
    cert_path, key_path = _certificate(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.hosts = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    real_resolve = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        if host in (HOST, "other.tls.test"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real_resolve(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    trusting = ssl.create_default_context(cafile=str(cert_path))
    monkeypatch.setattr(httpx, "Client", functools.partial(httpx.Client, verify=trusting))
    yield server
    server.shutdown()
    server.server_close()


def test_https_verifies_the_host_name_not_the_address(make_run, tls_receiver, allow_private):
    port = tls_receiver.server_address[1]
    run = make_run(f"https://{HOST}:{port}/hook")
    delivery = webhook_deliver(delivery_id=webhook_delivery_schedule(run=run, body=run_body(run)).id)
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    assert tls_receiver.hosts == [f"{HOST}:{port}"]


def test_https_certificate_for_another_name_is_refused(make_run, tls_receiver, allow_private):
    allow_private.KEYFLOW_WEBHOOK_MAX_ATTEMPTS = 1
    port = tls_receiver.server_address[1]
    run = make_run(f"https://other.tls.test:{port}/hook")
    delivery = webhook_deliver(delivery_id=webhook_delivery_schedule(run=run, body=run_body(run)).id)
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert "CERTIFICATE_VERIFY_FAILED" in delivery.history[0]["error"]
    assert tls_receiver.hosts == []
