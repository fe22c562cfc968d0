"""The `/_fake/` control endpoints: read the call record, reset, manage fault rules."""

from __future__ import annotations

from typing import Any

from fake_llm.calls import CallLog
from fake_llm.exchange import Exchange
from fake_llm.faults import FaultRule, FaultRuleError, FaultRules

PREFIX = "/_fake/"
CALL_FILTERS = ("key_sha256", "provider", "model", "since_seq")


def serve(exchange: Exchange, *, calls: CallLog, faults: FaultRules) -> None:
    path = exchange.path.rstrip("/")
    method = exchange.method
    if path == "/_fake/health":
        if method != "GET":
            return _method_not_allowed(exchange)
        exchange.send_json(
            200, {"status": "ok", "calls": calls.count(), "faults": len(faults.snapshot())}
        )
    elif path == "/_fake/calls":
        if method != "GET":
            return _method_not_allowed(exchange)
        try:
            filters = call_filters(exchange.query)
        except ValueError as error:
            return _bad_request(exchange, str(error))
        exchange.send_json(200, calls.select(**filters))
    elif path == "/_fake/reset":
        if method != "POST":
            return _method_not_allowed(exchange)
        calls.clear()
        faults.clear()
        exchange.send_json(200, {"status": "ok"})
    elif path == "/_fake/faults":
        if method == "GET":
            exchange.send_json(200, faults.snapshot())
        elif method == "POST":
            try:
                body = exchange.json_body()
                if not isinstance(body, dict):
                    raise FaultRuleError("the body must be a JSON object (a fault rule)")
                rule = FaultRule.from_dict(body)
            except (ValueError, TypeError) as error:
                return _bad_request(exchange, str(error))
            rule_id = faults.add(rule)
            exchange.send_json(201, {"id": rule_id})
        elif method == "DELETE":
            exchange.send_json(200, {"cleared": faults.clear()})
        else:
            _method_not_allowed(exchange)
    elif path.startswith("/_fake/faults/"):
        if method != "DELETE":
            return _method_not_allowed(exchange)
        rule_id = path.removeprefix("/_fake/faults/")
        if faults.remove(rule_id):
            exchange.send_json(200, {"removed": rule_id})
        else:
            exchange.send_json(404, {"error": f"no fault rule {rule_id}"})
    else:
        exchange.send_json(404, {"error": f"unknown control endpoint {exchange.path}"})


def call_filters(query: dict[str, str] | Any) -> dict[str, Any]:
    unknown = sorted(set(query) - set(CALL_FILTERS))
    if unknown:
        raise ValueError(f"unknown filter(s): {', '.join(unknown)}")
    filters: dict[str, Any] = {name: query[name] for name in CALL_FILTERS if name in query}
    if "since_seq" in filters:
        try:
            filters["since_seq"] = int(filters["since_seq"])
        except ValueError:
            raise ValueError("since_seq must be an integer") from None
    return filters


def _bad_request(exchange: Exchange, message: str) -> None:
    exchange.send_json(400, {"error": message})


def _method_not_allowed(exchange: Exchange) -> None:
    exchange.send_json(405, {"error": f"{exchange.method} is not allowed on {exchange.path}"})
