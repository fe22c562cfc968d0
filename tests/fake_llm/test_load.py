"""Enough throughput and concurrency for benchmarks and e2e runs."""

import threading
import time

import openai

from fake_llm import FakeLLMServer

MESSAGES = [{"role": "user", "content": "load"}]


def test_sustains_hundreds_of_requests_per_second(openai_client, fake_llm):
    count = 400
    started = time.monotonic()
    for _ in range(count):
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    rate = count / (time.monotonic() - started)

    assert rate > 150, f"{rate:.0f} requests/s"
    assert len(fake_llm.calls()) == count


def test_serves_200_concurrent_streams(openai_key):
    streams = 200
    with FakeLLMServer() as server:
        # Each answer waits 300 ms: only concurrent serving finishes 200 of them quickly.
        server.add_fault(latency_ms=300)
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=openai_key, max_retries=0)
        texts: list[str] = []
        errors: list[Exception] = []
        lock = threading.Lock()

        def stream(index: int) -> None:
            try:
                chunks = client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": f"stream {index}"}],
                    stream=True,
                )
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                with lock:
                    texts.append(text)
            except Exception as error:  # collected and reported below
                with lock:
                    errors.append(error)

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(streams)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        elapsed = time.monotonic() - started

        assert errors == []
        assert sorted(texts) == sorted(f"Echo: stream {i}" for i in range(streams))
        assert elapsed < 5, f"{elapsed:.1f} s for {streams} concurrent streams"
        assert {c["status"] for c in server.calls()} == {200}
        assert all(c["completed"] for c in server.calls())
