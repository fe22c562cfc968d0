"""Run the fake LLM provider as a process: `python -m fake_llm --port 0 --ready-file PATH`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from fake_llm.server import FakeLLMServer


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.verbose:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
        )

    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    server = FakeLLMServer(
        host=args.host, port=args.port, latency_ms=args.latency_ms, verbose=args.verbose
    ).start()
    try:
        if args.ready_file:
            _write_atomically(Path(args.ready_file), server.url)
        print(f"FAKE_LLM_URL={server.url}", flush=True)
        while not stop_requested:
            time.sleep(0.1)
    finally:
        server.stop()
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fake_llm",
        description="Fake OpenAI / Azure OpenAI / Anthropic provider on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--latency-ms", type=int, default=0, help="delay before every provider answer"
    )
    parser.add_argument("--ready-file", help="write the URL here once serving")
    parser.add_argument(
        "--verbose", action="store_true", help="log each call (key hash prefix only)"
    )
    return parser.parse_args(argv)


def _write_atomically(path: Path, text: str) -> None:
    # Whoever polls for the file must never read it half written.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())
