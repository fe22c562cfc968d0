"""Chat and completion apps: their model configuration compiles into a small workflow graph
(inputs -> llm -> end), so they run through the same executor, credential resolution,
events and usage accounting as workflows."""

from __future__ import annotations

from collections.abc import Mapping

from workflows.errors import GraphInvalid

CONFIG_FIELDS = {
    "provider", "model", "system_prompt", "prompt", "parameters", "history_messages", "variables",
    "opening_statement", "suggested_questions",
}
QUERY_VARIABLE = "query"
QUERY_MAX_LENGTH = 32_000


def _problem(message: str) -> GraphInvalid:
    return GraphInvalid(f"model_config: {message}")


def compile_model_config(*, mode: str, config: object) -> dict:
    """The graph a chat or completion app runs, or GraphInvalid naming what is wrong."""
    from workflows.models import App

    if not isinstance(config, Mapping):
        raise _problem("must be an object.")
    unknown = set(config) - CONFIG_FIELDS
    if unknown:
        raise _problem(f"unknown field(s) {', '.join(sorted(map(str, unknown)))}.")
    for name in ("provider", "model"):
        if not isinstance(config.get(name), str) or not config.get(name):
            raise _problem(f"{name} is required.")
    variables = config.get("variables", [])
    if not isinstance(variables, list):
        raise _problem("variables must be a list.")
    history = config.get("history_messages", 10)
    if not isinstance(history, int) or isinstance(history, bool) or not 0 <= history <= 100:
        raise _problem("history_messages must be an integer from 0 to 100.")
    messages = []
    system_prompt = config.get("system_prompt", "")
    if not isinstance(system_prompt, str):
        raise _problem("system_prompt must be a string.")
    if system_prompt:
        messages.append({"role": "system", "text": system_prompt})
    if mode == App.Mode.CHAT:
        if any(isinstance(v, Mapping) and v.get("name") == QUERY_VARIABLE for v in variables):
            raise _problem(f'a chat app cannot declare a variable named "{QUERY_VARIABLE}" (it is the user\'s message).')
        variables = [*variables, {"name": QUERY_VARIABLE, "type": "paragraph", "required": True,
                                  "max_length": QUERY_MAX_LENGTH, "label": "Query"}]
        messages.append({"role": "user", "text": "{{ inputs.query }}"})
    elif mode == App.Mode.COMPLETION:
        prompt = config.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _problem("prompt is required: a template over the inputs, e.g. {{ inputs.query }}.")
        messages.append({"role": "user", "text": prompt})
    else:
        raise _problem(f"mode {mode!r} has no model configuration.")
    llm = {"id": "llm", "type": "llm", "title": "LLM", "provider": config["provider"],
           "model": config["model"], "messages": messages}
    if config.get("parameters"):
        llm["parameters"] = config["parameters"]
    graph = {
        "nodes": [
            {"id": "inputs", "type": "start", "title": "Inputs", "variables": variables},
            llm,
            {"id": "answer", "type": "end", "title": "Answer",
             "outputs": [{"name": "answer", "value_selector": "llm.text"}]},
        ],
        "edges": [{"source": "inputs", "target": "llm"}, {"source": "llm", "target": "answer"}],
    }
    from workflows.services import graph_check

    graph_check(graph)
    return graph


def app_variables(config: Mapping) -> list[dict]:
    return [v for v in (config or {}).get("variables", []) if isinstance(v, Mapping)]
