"""`python -m fake_llm` as its own process, the way the dev launcher and e2e tests start it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

import fake_llm
from fake_llm import FakeLLMClient, key_sha256

PLATFORM_DIR = Path(fake_llm.__file__).resolve().parents[1]


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PLATFORM_DIR)}
    return subprocess.Popen(
        [sys.executable, "-m", "fake_llm", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_process_prints_its_url_serves_and_exits_cleanly(tmp_path, stop_signal):
    ready_file = tmp_path / "fake-llm.url"
    process = start("--ready-file", str(ready_file))
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("FAKE_LLM_URL=http://127.0.0.1:")
        url = line.removeprefix("FAKE_LLM_URL=")
        assert ready_file.read_text() == url

        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-process-key", max_retries=0)
        answer = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "ping"}]
        )
        assert answer.choices[0].message.content == "Echo: ping"
        with FakeLLMClient(url) as control:
            assert control.calls()[0]["key_sha256"] == key_sha256("sk-process-key")

        process.send_signal(stop_signal)
        assert process.wait(timeout=5) == 0
        assert process.stderr.read() == ""  # quiet by default
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def test_verbose_process_logs_calls_with_the_key_hash_prefix_only():
    key = "sk-verbose-secret-key-123"
    process = start("--verbose", "--latency-ms", "50")
    try:
        url = process.stdout.readline().strip().removeprefix("FAKE_LLM_URL=")
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        started = time.monotonic()
        client.models.list()
        assert time.monotonic() - started >= 0.05
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        log = process.stderr.read()
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()

    assert key_sha256(key)[:12] in log
    assert key not in log
    assert key_sha256(key) not in log
