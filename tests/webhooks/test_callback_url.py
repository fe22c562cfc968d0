"""callback_url_check: only public http(s) URLs, unless private addresses are allowed."""

import socket

import pytest

from webhooks.services import InvalidCallbackUrl, callback_url_check

# Every refused address gets the same message (which kind it is would not help a client).
ADDRESS = "must go to a public address"

REFUSED = [
    ("ftp://hooks.example.com/x", "http or https"),
    ("https:///no-host", "no host"),
    ("http://", "no host"),
    ("https://user:pw@hooks.example.com/x", "user name or password"),
    ("https://token@hooks.example.com/x", "user name or password"),
    ("http://127.0.0.1:8000/hook", ADDRESS),
    ("http://localhost/hook", ADDRESS),
    ("http://[::1]/hook", ADDRESS),
    ("http://10.1.2.3/hook", ADDRESS),
    ("http://172.16.0.5/hook", ADDRESS),
    ("http://192.168.1.10/hook", ADDRESS),
    ("http://169.254.169.254/latest/meta-data/", ADDRESS),
    ("http://0.0.0.0/hook", ADDRESS),
    ("http://[::]/hook", ADDRESS),
    ("http://[::ffff:127.0.0.1]/hook", ADDRESS),
    ("http://[::ffff:169.254.169.254]/hook", ADDRESS),
    ("http://[64:ff9b::a9fe:a9fe]/hook", ADDRESS),
    ("http://[2002:7f00:1::]/hook", ADDRESS),
    ("http://[fe80::1]/hook", ADDRESS),
    ("http://[fd00::1]/hook", ADDRESS),
    ("http://224.0.0.1/hook", ADDRESS),
    ("http://100.64.0.1/hook", ADDRESS),
    ("http://0x7f.1/hook", ADDRESS),
    ("http://2130706433/hook", ADDRESS),
    ("https://hooks.keyflow-test.invalid/x", "could not be resolved"),
    ("https://hooks.example.com:99999/x", "invalid port"),
    ("https://hooks.example.com/a b", "spaces"),
    ("https://hooks.example.com/\nx", "spaces"),
    ("https://hooks.example.com/" + "a" * 2048, "longer than 2048"),
    ("", "non-empty"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_refused(url, reason, settings):
    settings.KEYFLOW_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(InvalidCallbackUrl) as refused:
        callback_url_check(url)
    error = refused.value
    assert (error.status, error.code) == (400, "invalid_callback_url")
    assert reason in error.message


def test_message_names_the_host_only(settings):
    settings.KEYFLOW_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(InvalidCallbackUrl) as refused:
        callback_url_check("http://10.9.8.7:9000/secret-path?token=t0ps3cret")
    assert "10.9.8.7" in refused.value.message
    for part in ("secret-path", "t0ps3cret", "9000"):
        assert part not in refused.value.message
    with pytest.raises(InvalidCallbackUrl) as refused:
        callback_url_check("https://admin:hunter2@hooks.example.com/x")
    assert "hunter2" not in refused.value.message and "admin" not in refused.value.message


def test_refused_when_any_address_is_private(settings, monkeypatch):
    settings.KEYFLOW_WEBHOOK_ALLOW_PRIVATE = False
    real = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        if host == "mixed.example.test":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.8", port)),
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(InvalidCallbackUrl, match="public address"):
        callback_url_check("https://mixed.example.test/hook")


@pytest.mark.parametrize(
    "url",
    ["https://93.184.216.34/hook", "http://93.184.216.34:8080/a?b=c", "https://[2606:4700::1111]/hook",
     "http://[::ffff:93.184.216.34]/hook"],
)
def test_public_literal_passes_without_network(url, settings, monkeypatch):
    settings.KEYFLOW_WEBHOOK_ALLOW_PRIVATE = False

    def no_network(*args, **kwargs):
        raise AssertionError("an address literal needs no lookup")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    assert callback_url_check(url) == url


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/hook", "http://localhost:9000/hook", "http://[::1]/hook",
     "http://10.1.2.3/hook", "http://192.168.1.10/hook", "http://[::ffff:127.0.0.1]/hook"],
)
def test_private_addresses_allowed_by_the_setting(url, settings):
    settings.KEYFLOW_WEBHOOK_ALLOW_PRIVATE = True
    assert callback_url_check(url) == url


def test_setting_still_refuses_what_is_not_an_address(settings):
    settings.KEYFLOW_WEBHOOK_ALLOW_PRIVATE = True
    for url in ("ftp://127.0.0.1/x", "http://u:p@127.0.0.1/x", "http://hooks.keyflow-test.invalid/x"):
        with pytest.raises(InvalidCallbackUrl):
            callback_url_check(url)
