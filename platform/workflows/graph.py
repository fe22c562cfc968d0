"""Workflow graphs: parse and validate the JSON an app stores, and schedule its nodes in a run.

A graph is `{"nodes": [...], "edges": [...]}`; nodes are `start`, `llm`, `template`,
`if_else` and `end` (the fields of each are checked in the `_Parser` methods). Nodes read
each other's outputs as `<node_id>.<var>`: in Jinja templates (`{{ start.text }}`), in
if_else conditions and in end outputs (`"value_selector": "summarize.text"`).

Reference rule. A node may reference a node upstream of it on at least one path (an
ancestor) and only that node's declared outputs. An ancestor that sits on a branch the run
did not take is skipped, and the executor passes no variables for it: an unguarded template
reference to it fails the render ("'answer_fr' is undefined"), a condition reads it as empty,
so a node after a merge tests which branch ran:
`{{ answer_fr.text if answer_fr is defined else answer_en.text }}`. Validation does not try
to prove that such references are guarded.

Unknown fields are refused everywhere, so that a misspelt field is reported rather than
silently ignored.
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, ClassVar

from workflows.templating import (
    MAX_TEMPLATE_CHARS,
    TEMPLATE_GLOBALS,
    TEMPLATE_SPECIAL_NAMES,
    TemplateSyntaxIssue,
    template_references,
)

MAX_NODES = 200
MAX_EDGES = 1000
MAX_ISSUES = 50
MAX_TITLE_CHARS = 200
MAX_PROVIDER_CHARS = 64
MAX_MODEL_CHARS = 200
MAX_MESSAGES = 50
MAX_VARIABLES = 50
MAX_LABEL_CHARS = 200
MAX_OPTIONS = 100
MAX_OPTION_CHARS = 200
MAX_DECLARED_LENGTH = 100_000
MAX_CONDITIONS = 50
MAX_CONDITION_VALUE_CHARS = 1000
MAX_END_OUTPUTS = 50
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 200
MAX_TOKENS_LIMIT = 100_000
# Dify's defaults for text inputs that declare no max_length.
STRING_MAX_LENGTH = 48
PARAGRAPH_MAX_LENGTH = 10_000

NODE_TYPES = ("start", "llm", "template", "if_else", "end")
VARIABLE_TYPES = ("string", "paragraph", "number", "boolean", "select")
MESSAGE_ROLES = ("system", "user", "assistant")
OPERATORS = (
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "is_empty",
    "is_not_empty",
    "gt",
    "lt",
    "gte",
    "lte",
)
LOGICAL_OPERATORS = ("and", "or")
HANDLES = ("true", "false")
LLM_PARAMETERS = ("temperature", "max_tokens", "top_p", "stop")
# Ids a template could not reach as a variable: Jinja literals, operators, globals.
RESERVED_NODE_IDS = (
    TEMPLATE_GLOBALS
    | TEMPLATE_SPECIAL_NAMES
    | {"true", "false", "none", "not", "and", "or", "in", "is", "if", "else", "lipsum"}
)

_NODE_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_SELECTOR = re.compile(r"([a-z][a-z0-9_]{0,63})\.([A-Za-z_][A-Za-z0-9_]{0,63})")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_NUMERIC_OPERATORS = ("gt", "lt", "gte", "lte")
_TEXT_OPERATORS = ("contains", "not_contains", "starts_with", "ends_with")
_UNARY_OPERATORS = ("is_empty", "is_not_empty")


# --- Errors -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphIssue:
    node_id: str | None
    message: str

    def __str__(self) -> str:
        return f'node "{self.node_id}": {self.message}' if self.node_id else self.message


class GraphError(Exception):
    """A workflow graph that does not validate; `issues` lists every problem found."""

    def __init__(self, issues: list[GraphIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(map(str, issues)))


class InputError(Exception):
    """Run inputs that do not match the start node's variables."""

    def __init__(self, variable: str | None, message: str) -> None:
        self.variable = variable
        self.message = message
        super().__init__(message)


# --- The parsed graph -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Node:
    type: ClassVar[str]
    id: str
    title: str | None = None

    def output_names(self) -> frozenset[str]:
        raise NotImplementedError

    def _fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.title is not None:
            data["title"] = self.title
        data.update(self._fields())
        return data


@dataclass(frozen=True, kw_only=True)
class StartVariable:
    name: str
    type: str
    label: str | None = None
    required: bool = True
    default: Any = None
    max_length: int | None = None
    options: tuple[str, ...] = ()

    @property
    def effective_max_length(self) -> int | None:
        if self.type == "string":
            return self.max_length or STRING_MAX_LENGTH
        if self.type == "paragraph":
            return self.max_length or PARAGRAPH_MAX_LENGTH
        return None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.label is not None:
            data["label"] = self.label
        data["required"] = self.required
        if self.default is not None:
            data["default"] = self.default
        if self.max_length is not None:
            data["max_length"] = self.max_length
        if self.options:
            data["options"] = list(self.options)
        return data


@dataclass(frozen=True, kw_only=True)
class StartNode(Node):
    type: ClassVar[str] = "start"
    variables: tuple[StartVariable, ...] = ()

    def output_names(self) -> frozenset[str]:
        return frozenset(variable.name for variable in self.variables)

    def _fields(self) -> dict[str, Any]:
        return {"variables": [variable.to_dict() for variable in self.variables]}


@dataclass(frozen=True)
class LlmMessage:
    role: str
    text: str


@dataclass(frozen=True, kw_only=True)
class LlmNode(Node):
    type: ClassVar[str] = "llm"
    provider: str
    model: str
    messages: tuple[LlmMessage, ...]
    parameters: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def output_names(self) -> frozenset[str]:
        return frozenset({"text"})

    def _fields(self) -> dict[str, Any]:
        parameters = {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in self.parameters.items()
        }
        return {
            "provider": self.provider,
            "model": self.model,
            "messages": [{"role": m.role, "text": m.text} for m in self.messages],
            "parameters": parameters,
        }


@dataclass(frozen=True, kw_only=True)
class TemplateNode(Node):
    type: ClassVar[str] = "template"
    template: str

    def output_names(self) -> frozenset[str]:
        return frozenset({"output"})

    def _fields(self) -> dict[str, Any]:
        return {"template": self.template}


@dataclass(frozen=True)
class Condition:
    variable: str
    operator: str
    value: Any = None

    @property
    def node_id(self) -> str:
        return self.variable.split(".", 1)[0]

    @property
    def var(self) -> str:
        return self.variable.split(".", 1)[1]

    def to_dict(self) -> dict[str, Any]:
        data = {"variable": self.variable, "operator": self.operator}
        if self.operator not in _UNARY_OPERATORS:
            data["value"] = self.value
        return data


@dataclass(frozen=True, kw_only=True)
class IfElseNode(Node):
    type: ClassVar[str] = "if_else"
    conditions: tuple[Condition, ...]
    logical_operator: str = "and"

    def output_names(self) -> frozenset[str]:
        return frozenset({"result"})

    def _fields(self) -> dict[str, Any]:
        return {
            "conditions": [condition.to_dict() for condition in self.conditions],
            "logical_operator": self.logical_operator,
        }


@dataclass(frozen=True)
class EndOutput:
    name: str
    value_selector: str

    @property
    def node_id(self) -> str:
        return self.value_selector.split(".", 1)[0]

    @property
    def var(self) -> str:
        return self.value_selector.split(".", 1)[1]


@dataclass(frozen=True, kw_only=True)
class EndNode(Node):
    type: ClassVar[str] = "end"
    outputs: tuple[EndOutput, ...] = ()

    def output_names(self) -> frozenset[str]:
        return frozenset(output.name for output in self.outputs)

    def _fields(self) -> dict[str, Any]:
        return {
            "outputs": [{"name": o.name, "value_selector": o.value_selector} for o in self.outputs]
        }


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    source_handle: str | None = None

    def to_dict(self) -> dict[str, str]:
        data = {"source": self.source, "target": self.target}
        if self.source_handle is not None:
            data["source_handle"] = self.source_handle
        return data


@dataclass(frozen=True, eq=False)
class Graph:
    """A validated workflow graph; only parse_graph builds one."""

    nodes: Mapping[str, Node]
    edges: tuple[Edge, ...]
    start: StartNode
    ends: tuple[EndNode, ...]
    _order: tuple[str, ...] = field(repr=False)
    _incoming: Mapping[str, tuple[Edge, ...]] = field(repr=False)
    _outgoing: Mapping[str, tuple[Edge, ...]] = field(repr=False)

    def topological_order(self) -> list[str]:
        """Node ids, each after all its ancestors; ties keep the order of the JSON."""
        return list(self._order)

    def incoming(self, node_id: str) -> tuple[Edge, ...]:
        return self._incoming[node_id]

    def outgoing(self, node_id: str) -> tuple[Edge, ...]:
        return self._outgoing[node_id]

    def llm_nodes(self) -> list[LlmNode]:
        return [node for node in map(self.nodes.get, self._order) if isinstance(node, LlmNode)]

    def providers_used(self) -> set[str]:
        return {node.provider for node in self.llm_nodes()}

    def to_dict(self) -> dict[str, Any]:
        """The graph as JSON, defaults filled in; parse_graph accepts it back unchanged."""
        return {
            "nodes": [node.to_dict() for node in self.nodes.values()],
            "edges": [edge.to_dict() for edge in self.edges],
        }


# --- Parsing and validation -----------------------------------------------------------------


def _quote(value: object, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return json.dumps(text[:limit] + ("…" if len(text) > limit else ""), ensure_ascii=False)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (not isinstance(value, float) or math.isfinite(value))
    )


class _Issues:
    def __init__(self) -> None:
        self.items: list[GraphIssue] = []
        self.total = 0

    def add(self, node_id: str | None, message: str) -> None:
        self.total += 1
        if len(self.items) < MAX_ISSUES:
            # Lone surrogates from the JSON would break encoding the error response.
            message = message.encode("utf-8", "replace").decode("utf-8")
            self.items.append(GraphIssue(node_id, message))

    def raise_if_any(self) -> None:
        if self.total:
            issues = list(self.items)
            if self.total > len(issues):
                issues.append(GraphIssue(None, f"… and {self.total - len(issues)} more issues"))
            raise GraphError(issues)


class _Reader:
    """Typed access to one JSON object, reporting problems against a node and a path."""

    def __init__(self, issues: _Issues, node_id: str | None, path: str, data: Mapping) -> None:
        self.issues = issues
        self.node_id = node_id
        self.path = path
        self.data = data

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str | None, message: str) -> None:
        where = self._name(key) if key else self.path
        self.issues.add(self.node_id, f"{where} {message}" if where else message)

    def only(self, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for key in self.data:
            if key not in allowed:
                field_name = _quote(key)
                self.problem(
                    None,
                    f"has unknown field {field_name}"
                    if self.path
                    else f"unknown field {field_name}",
                )

    def string(
        self,
        key: str,
        *,
        required: bool = True,
        max_chars: int,
        pattern: re.Pattern | None = None,
        choices: Collection[str] | None = None,
        non_empty: bool = False,
        default: str | None = None,
    ) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.problem(key, "is required")
            return default
        if not isinstance(value, str):
            self.problem(key, f"must be a string, not {_type_name(value)}")
        elif len(value) > max_chars:
            self.problem(key, f"must be at most {max_chars} characters")
        elif non_empty and not value.strip():
            self.problem(key, "must not be empty")
        elif pattern is not None and not pattern.fullmatch(value):
            self.problem(key, f"is not valid: {_quote(value)}")
        elif choices is not None and value not in choices:
            self.problem(key, f"must be one of {', '.join(choices)}, not {_quote(value)}")
        else:
            return value
        return None

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, not {_type_name(value)}")
            return default
        return value

    def integer(self, key: str, *, minimum: int, maximum: int) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem(key, f"must be an integer, not {_type_name(value)}")
        elif not minimum <= value <= maximum:
            self.problem(key, f"must be between {minimum} and {maximum}")
        else:
            return value
        return None

    def number(self, key: str, *, minimum: float, maximum: float) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not _is_number(value):
            self.problem(key, f"must be a number, not {_type_name(value)}")
        elif not minimum <= value <= maximum:
            self.problem(key, f"must be between {minimum:g} and {maximum:g}")
        else:
            return value
        return None

    def items(
        self, key: str, *, required: bool = True, max_items: int, min_items: int = 0
    ) -> list | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.problem(key, "is required")
            return None
        if not isinstance(value, list | tuple):
            self.problem(key, f"must be a list, not {_type_name(value)}")
        elif len(value) > max_items:
            self.problem(key, f"must have at most {max_items} items")
        elif len(value) < min_items:
            self.problem(key, "must not be empty" if min_items == 1 else f"needs {min_items}+")
        else:
            return list(value)
        return None

    def objects(self, key: str, **limits: Any) -> list[_Reader]:
        """The items of a list of objects, as readers; items that are not objects are reported."""
        readers = []
        for index, item in enumerate(self.items(key, **limits) or ()):
            path = f"{self._name(key)}[{index}]"
            if isinstance(item, Mapping):
                readers.append(_Reader(self.issues, self.node_id, path, item))
            else:
                self.issues.add(self.node_id, f"{path} must be an object, not {_type_name(item)}")
        return readers


# A reference one node makes to another's output, checked once the edges are known:
# (where in the node, referenced node id, output name or None).
_Reference = tuple[str, str, str | None]


class _Parser:
    def __init__(self, providers: Mapping[str, Collection[str] | None]) -> None:
        self.providers = providers
        self.issues = _Issues()

    def parse(self, data: object) -> Graph:
        issues = self.issues
        if not isinstance(data, Mapping):
            issues.add(None, f"a workflow graph must be an object, not {_type_name(data)}")
            issues.raise_if_any()
        top = _Reader(issues, None, "", data)
        top.only(("nodes", "edges"))
        raw_nodes = top.items("nodes", max_items=MAX_NODES)
        raw_edges = top.items("edges", max_items=MAX_EDGES)
        if raw_nodes is None or raw_edges is None:
            issues.raise_if_any()

        # Every node with a usable id and type takes part in the structural checks, so that
        # one bad field does not also make its neighbours look unreachable.
        kinds: dict[str, str] = {}
        nodes: dict[str, Node] = {}
        references: dict[str, list[_Reference]] = {}
        for index, raw in enumerate(raw_nodes):
            parsed = self._node(index, raw, kinds)
            if parsed is None:
                continue
            node_id, kind, result = parsed
            kinds[node_id] = kind
            if result is not None:
                nodes[node_id] = result[0]
                references[node_id] = result[1]
        edges = self._edges(raw_edges, kinds)
        incoming, outgoing = _adjacency(kinds, edges)
        self._structure(kinds, edges, incoming, outgoing)
        for node_id, node_references in references.items():
            ancestors = _reach(node_id, incoming, "source")
            for reference in node_references:
                self._check_reference(node_id, reference, kinds, nodes, ancestors)
        issues.raise_if_any()

        starts = [node for node in nodes.values() if isinstance(node, StartNode)]
        return Graph(
            nodes=MappingProxyType(nodes),
            edges=tuple(edges),
            start=starts[0],
            ends=tuple(node for node in nodes.values() if isinstance(node, EndNode)),
            _order=tuple(_topological_order(nodes, incoming, outgoing)),
            _incoming=MappingProxyType({k: tuple(v) for k, v in incoming.items()}),
            _outgoing=MappingProxyType({k: tuple(v) for k, v in outgoing.items()}),
        )

    # Nodes

    def _node(
        self, index: int, raw: object, kinds: Mapping[str, str]
    ) -> tuple[str, str, tuple[Node, list[_Reference]] | None] | None:
        """(id, type, (node, its references) or None if a field is invalid), or None when
        the node has no usable id or type."""
        where = f"nodes[{index}]"
        if not isinstance(raw, Mapping):
            self.issues.add(None, f"{where} must be an object, not {_type_name(raw)}")
            return None
        node_id = _Reader(self.issues, None, where, raw).string(
            "id", max_chars=64, pattern=_NODE_ID
        )
        if node_id is None:
            return None
        if node_id in kinds:
            self.issues.add(node_id, f"{where} repeats the id of another node")
            return None
        reader = _Reader(self.issues, node_id, "", raw)
        if node_id in RESERVED_NODE_IDS:
            reader.problem(None, "id is reserved for templates; choose another id")
        node_type = reader.string("type", max_chars=20, choices=NODE_TYPES)
        if node_type is None:
            return None
        title = reader.string("title", required=False, max_chars=MAX_TITLE_CHARS)
        parse = {
            "start": self._start,
            "llm": self._llm,
            "template": self._template,
            "if_else": self._if_else,
            "end": self._end,
        }[node_type]
        return node_id, node_type, parse(reader, node_id, title)

    def _start(self, reader: _Reader, node_id: str, title: str | None):
        reader.only(("id", "type", "title", "variables"))
        variables: list[StartVariable] = []
        for item in reader.objects("variables", required=False, max_items=MAX_VARIABLES):
            variable = self._variable(item)
            if variable is None:
                continue
            if any(v.name == variable.name for v in variables):
                item.problem("name", f"repeats the variable name {_quote(variable.name)}")
                continue
            variables.append(variable)
        return StartNode(id=node_id, title=title, variables=tuple(variables)), []

    def _variable(self, item: _Reader) -> StartVariable | None:
        item.only(("name", "type", "label", "required", "default", "max_length", "options"))
        name = item.string("name", max_chars=64, pattern=_IDENTIFIER)
        kind = item.string("type", max_chars=20, choices=VARIABLE_TYPES)
        label = item.string("label", required=False, max_chars=MAX_LABEL_CHARS)
        required = item.boolean("required", default=True)
        max_length = item.integer("max_length", minimum=1, maximum=MAX_DECLARED_LENGTH)
        if max_length is not None and kind not in ("string", "paragraph", None):
            item.problem("max_length", f"only applies to string and paragraph, not {kind}")
        options: tuple[str, ...] = ()
        if kind == "select":
            raw_options = item.items("options", max_items=MAX_OPTIONS, min_items=1) or []
            if all(isinstance(o, str) and 0 < len(o) <= MAX_OPTION_CHARS for o in raw_options):
                options = tuple(raw_options)
                if len(set(options)) != len(options):
                    item.problem("options", "must not repeat an option")
            else:
                item.problem(
                    "options", f"must be non-empty strings of at most {MAX_OPTION_CHARS} characters"
                )
        elif "options" in item.data and kind is not None:
            item.problem("options", f"only applies to select, not {kind}")
        if name is None or kind is None:
            return None
        variable = StartVariable(
            name=name,
            type=kind,
            label=label,
            required=required,
            max_length=max_length,
            options=options,
        )
        default = item.data.get("default")
        if default is not None:
            problem = _input_problem(variable, default)
            if problem:
                item.problem("default", problem)
            elif kind == "number" and not _is_number(default):
                item.problem("default", "must be a number")
            else:
                variable = replace(variable, default=default)
        return variable

    def _llm(self, reader: _Reader, node_id: str, title: str | None):
        reader.only(("id", "type", "title", "provider", "model", "messages", "parameters"))
        provider = reader.string("provider", max_chars=MAX_PROVIDER_CHARS, non_empty=True)
        model = reader.string("model", max_chars=MAX_MODEL_CHARS, non_empty=True)
        if provider is not None and provider not in self.providers:
            known = ", ".join(sorted(self.providers)) or "none configured"
            reader.problem(None, f"unknown provider {_quote(provider)} (known: {known})")
        elif provider is not None and model is not None:
            models = self.providers[provider]
            if models is not None and model not in models:
                listed = ", ".join(sorted(models)[:20]) or "none"
                reader.problem(
                    None,
                    f"unknown model {_quote(model)} for provider {_quote(provider)} "
                    f"(known: {listed})",
                )
        references: list[_Reference] = []
        messages: list[LlmMessage] = []
        for item in reader.objects("messages", max_items=MAX_MESSAGES, min_items=1):
            item.only(("role", "text"))
            role = item.string("role", max_chars=20, choices=MESSAGE_ROLES)
            text = item.string("text", max_chars=MAX_TEMPLATE_CHARS, non_empty=True)
            if text is not None:
                references += self._template_references(item, "text", text)
            if role is not None and text is not None:
                messages.append(LlmMessage(role=role, text=text))
        parameters = self._parameters(reader)
        if provider is None or model is None or not messages:
            return None
        node = LlmNode(
            id=node_id,
            title=title,
            provider=provider,
            model=model,
            messages=tuple(messages),
            parameters=MappingProxyType(parameters),
        )
        return node, references

    def _parameters(self, reader: _Reader) -> dict[str, Any]:
        raw = reader.data.get("parameters")
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            reader.problem("parameters", f"must be an object, not {_type_name(raw)}")
            return {}
        params = _Reader(reader.issues, reader.node_id, "parameters", raw)
        params.only(LLM_PARAMETERS)
        parsed: dict[str, Any] = {
            "temperature": params.number("temperature", minimum=0, maximum=2),
            "max_tokens": params.integer("max_tokens", minimum=1, maximum=MAX_TOKENS_LIMIT),
            "top_p": params.number("top_p", minimum=0, maximum=1),
        }
        stop = params.items("stop", required=False, max_items=MAX_STOP_SEQUENCES)
        if stop is not None:
            if all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stop):
                parsed["stop"] = tuple(stop)
            else:
                params.problem(
                    "stop", f"must hold non-empty strings of at most {MAX_STOP_CHARS} characters"
                )
        return {name: value for name, value in parsed.items() if value is not None}

    def _template(self, reader: _Reader, node_id: str, title: str | None):
        reader.only(("id", "type", "title", "template"))
        template = reader.string("template", max_chars=MAX_TEMPLATE_CHARS)
        if template is None:
            return None
        references = self._template_references(reader, "template", template)
        return TemplateNode(id=node_id, title=title, template=template), references

    def _if_else(self, reader: _Reader, node_id: str, title: str | None):
        reader.only(("id", "type", "title", "conditions", "logical_operator"))
        logical = reader.string(
            "logical_operator",
            required=False,
            max_chars=3,
            choices=LOGICAL_OPERATORS,
            default="and",
        )
        conditions: list[Condition] = []
        references: list[_Reference] = []
        items = reader.objects("conditions", max_items=MAX_CONDITIONS, min_items=1)
        for item in items:
            item.only(("variable", "operator", "value"))
            variable = item.string("variable", max_chars=200, pattern=_SELECTOR)
            operator = item.string("operator", max_chars=20, choices=OPERATORS)
            value = self._condition_value(item, operator)
            if variable is not None and operator is not None and value is not _INVALID:
                condition = Condition(variable, operator, value)
                conditions.append(condition)
                references.append((f"{item.path}.variable", condition.node_id, condition.var))
        if logical is None or len(conditions) != len(items) or not items:
            return None
        node = IfElseNode(
            id=node_id, title=title, conditions=tuple(conditions), logical_operator=logical
        )
        return node, references

    def _condition_value(self, item: _Reader, operator: str | None) -> Any:
        value = item.data.get("value")
        if operator in _UNARY_OPERATORS or operator is None:
            return None
        if value is None:
            item.problem("value", f"is required for {operator}")
        elif isinstance(value, str) and len(value) > MAX_CONDITION_VALUE_CHARS:
            item.problem("value", f"must be at most {MAX_CONDITION_VALUE_CHARS} characters")
        elif operator in _NUMERIC_OPERATORS:
            if _as_number(value) is None:
                item.problem("value", f"must be a number for {operator}")
            else:
                return value
        elif operator in _TEXT_OPERATORS:
            if isinstance(value, str):
                return value
            item.problem("value", f"must be a string for {operator}")
        elif isinstance(value, str | bool) or _is_number(value):
            return value
        else:
            item.problem("value", f"must be a string, number or boolean, not {_type_name(value)}")
        return _INVALID

    def _end(self, reader: _Reader, node_id: str, title: str | None):
        reader.only(("id", "type", "title", "outputs"))
        outputs: list[EndOutput] = []
        references: list[_Reference] = []
        for item in reader.objects("outputs", required=False, max_items=MAX_END_OUTPUTS):
            item.only(("name", "value_selector"))
            name = item.string("name", max_chars=64, pattern=_IDENTIFIER)
            selector = item.string("value_selector", max_chars=200, pattern=_SELECTOR)
            if name is None or selector is None:
                continue
            if any(o.name == name for o in outputs):
                item.problem("name", f"repeats the output name {_quote(name)}")
                continue
            output = EndOutput(name, selector)
            outputs.append(output)
            references.append((f"{item.path}.value_selector", output.node_id, output.var))
        return EndNode(id=node_id, title=title, outputs=tuple(outputs)), references

    def _template_references(self, reader: _Reader, key: str, text: str) -> list[_Reference]:
        where = f"{reader.path}.{key}" if reader.path else key
        try:
            found = template_references(text)
        except TemplateSyntaxIssue as exc:
            reader.problem(key, f"has a template error: {exc}")
            return []
        return [(where, node_id, var) for node_id, var in sorted(found, key=str)]

    # Edges and structure

    def _edges(self, raw_edges: list, kinds: Mapping[str, str]) -> list[Edge]:
        edges: list[Edge] = []
        seen: set[Edge] = set()
        for index, raw in enumerate(raw_edges):
            where = f"edges[{index}]"
            if not isinstance(raw, Mapping):
                self.issues.add(None, f"{where} must be an object, not {_type_name(raw)}")
                continue
            reader = _Reader(self.issues, None, where, raw)
            reader.only(("source", "target", "source_handle"))
            source = reader.string("source", max_chars=64)
            target = reader.string("target", max_chars=64)
            handle = reader.string("source_handle", required=False, max_chars=5, choices=HANDLES)
            if source is None or target is None:
                continue
            source_kind = kinds.get(source)
            if source_kind is None:
                self.issues.add(None, f"{where} starts at unknown node {_quote(source)}")
                continue
            if target not in kinds:
                self.issues.add(source, f"{where} leads to unknown node {_quote(target)}")
                continue
            if handle is not None and source_kind != "if_else":
                self.issues.add(source, f"{where} has a source_handle but only if_else edges do")
                continue
            if handle is None and source_kind == "if_else":
                if "source_handle" not in raw:
                    self.issues.add(source, f'{where} needs a source_handle, "true" or "false"')
                continue
            edge = Edge(source, target, handle)
            if edge in seen:
                self.issues.add(source, f"{where} repeats an edge to {_quote(target)}")
                continue
            seen.add(edge)
            edges.append(edge)
        return edges

    def _structure(
        self,
        kinds: Mapping[str, str],
        edges: list[Edge],
        incoming: Mapping[str, list[Edge]],
        outgoing: Mapping[str, list[Edge]],
    ) -> None:
        add = self.issues.add
        starts = [node_id for node_id, kind in kinds.items() if kind == "start"]
        ends = [node_id for node_id, kind in kinds.items() if kind == "end"]
        if not starts:
            add(None, "the graph needs a start node")
        for extra in starts[1:]:
            add(extra, f'is a second start node (the first is "{starts[0]}")')
        if not ends:
            add(None, "the graph needs at least one end node")
        for node_id, kind in kinds.items():
            if kind == "start" and incoming[node_id]:
                add(node_id, "is a start node, so no edge may lead into it")
            if kind == "end" and outgoing[node_id]:
                add(node_id, "is an end node, so no edge may leave it")
            if kind == "if_else":
                handles = {edge.source_handle for edge in outgoing[node_id]}
                for handle in HANDLES:
                    if handle not in handles:
                        add(node_id, f'needs an edge for its "{handle}" branch')
        for cycle in _cycles(kinds, outgoing):
            if len(cycle) == 1:
                add(cycle[0], "has an edge to itself")
            else:
                others = ", ".join(f'"{node_id}"' for node_id in cycle[1:])
                add(cycle[0], f"is part of a cycle with {others}")
        if starts:
            reachable = set().union(*(_reach(s, outgoing, "target") for s in starts), starts)
            for node_id in kinds:
                if node_id not in reachable:
                    add(node_id, "cannot be reached from the start node")
        if ends:
            finishing = set().union(*(_reach(e, incoming, "source") for e in ends), ends)
            for node_id, kind in kinds.items():
                if node_id not in finishing and kind != "end":
                    add(node_id, "has no path to an end node")

    def _check_reference(
        self,
        node_id: str,
        reference: _Reference,
        kinds: Mapping[str, str],
        nodes: Mapping[str, Node],
        ancestors: set[str],
    ) -> None:
        where, target, var = reference
        shown = _quote(target if var is None else f"{target}.{var}")
        target_node = nodes.get(target)  # None when invalid itself: its outputs are unknown
        if target not in kinds:
            message = f"there is no node {_quote(target)}"
        elif target == node_id:
            message = "a node cannot read its own outputs"
        elif target not in ancestors:
            message = f'node "{target}" is not upstream of this node'
        elif target_node and var is not None and var not in target_node.output_names():
            outputs = ", ".join(sorted(target_node.output_names())) or "none"
            message = f'node "{target}" has no output {_quote(var)} (outputs: {outputs})'
        else:
            return
        self.issues.add(node_id, f"{where} references {shown}, but {message}")


_INVALID = object()


def _adjacency(
    nodes: Iterable[str], edges: Iterable[Edge]
) -> tuple[dict[str, list[Edge]], dict[str, list[Edge]]]:
    incoming: dict[str, list[Edge]] = {node_id: [] for node_id in nodes}
    outgoing: dict[str, list[Edge]] = {node_id: [] for node_id in nodes}
    for edge in edges:
        incoming[edge.target].append(edge)
        outgoing[edge.source].append(edge)
    return incoming, outgoing


def _reach(origin: str, adjacency: Mapping[str, list[Edge]], end: str) -> set[str]:
    """Nodes reachable from `origin` (excluded unless on a cycle) following `edge.<end>`."""
    found: set[str] = set()
    stack = [origin]
    while stack:
        for edge in adjacency[stack.pop()]:
            neighbour = getattr(edge, end)
            if neighbour not in found:
                found.add(neighbour)
                stack.append(neighbour)
    return found


def _cycles(nodes: Iterable[str], outgoing: Mapping[str, list[Edge]]) -> list[list[str]]:
    """Strongly connected groups of nodes that form a cycle, in node order."""
    nodes = list(nodes)
    reach = {node_id: _reach(node_id, outgoing, "target") for node_id in nodes}
    cycles: list[list[str]] = []
    placed: set[str] = set()
    for node_id in nodes:
        if node_id in placed or node_id not in reach[node_id]:
            continue
        group = [other for other in nodes if other in reach[node_id] and node_id in reach[other]]
        placed.update(group)
        cycles.append(group)
    return cycles


def _topological_order(
    nodes: Mapping[str, Node],
    incoming: Mapping[str, list[Edge]],
    outgoing: Mapping[str, list[Edge]],
) -> list[str]:
    position = {node_id: index for index, node_id in enumerate(nodes)}
    waiting = {node_id: len({edge.source for edge in incoming[node_id]}) for node_id in nodes}
    heap = [(position[node_id], node_id) for node_id, count in waiting.items() if count == 0]
    order: list[str] = []
    while heap:
        _, node_id = heapq.heappop(heap)
        order.append(node_id)
        for target in dict.fromkeys(edge.target for edge in outgoing[node_id]):
            waiting[target] -= 1
            if waiting[target] == 0:
                heapq.heappush(heap, (position[target], target))
    return order


def parse_graph(data: object, *, providers: Mapping[str, Collection[str] | None]) -> Graph:
    """Validate workflow JSON and build its Graph; raises GraphError listing every issue.

    `providers` maps each provider id an llm node may use to its model names, or to None
    when any model name is accepted (OpenAI-compatible endpoints)."""
    return _Parser(providers).parse(data)


# --- Running ---------------------------------------------------------------------------------


class GraphWalk:
    """Which nodes of a graph run next, as nodes complete and if_else nodes choose a branch.

    An edge is pending until its source completes, then taken or dead (the branch an if_else
    did not choose, or any edge out of a skipped node). A node runs once all its incoming
    edges are resolved and at least one is taken; it is skipped when all are dead. Replaying
    `complete` for nodes finished earlier rebuilds the state of an interrupted run.
    """

    def __init__(self, graph: Graph) -> None:
        self._graph = graph
        self._taken: dict[Edge, bool] = {}
        self._started: set[str] = set()
        self._completed: set[str] = set()
        self._skipped: set[str] = set()

    def _is_ready(self, node_id: str) -> bool:
        if node_id in self._started or node_id in self._completed or node_id in self._skipped:
            return False
        edges = self._graph.incoming(node_id)
        if not all(edge in self._taken for edge in edges):
            return False
        return not edges or any(self._taken[edge] for edge in edges)

    def ready(self) -> list[str]:
        """Nodes that can run now and have not started, in topological order."""
        return [node_id for node_id in self._graph.topological_order() if self._is_ready(node_id)]

    def start(self, node_id: str) -> None:
        """Mark a ready node as running, so that ready() stops offering it."""
        if not self._is_ready(node_id):
            raise ValueError(f'node "{node_id}" is not ready to run')
        self._started.add(node_id)

    def complete(self, node_id: str, *, branch: bool | None = None) -> None:
        """Record that a node finished; an if_else node passes the branch it chose."""
        node = self._graph.nodes.get(node_id)
        if node is None:
            raise ValueError(f'there is no node "{node_id}"')
        if node_id not in self._started and not self._is_ready(node_id):
            raise ValueError(f'node "{node_id}" is not ready to run')
        if isinstance(node, IfElseNode) != (branch is not None):
            raise ValueError(f'node "{node_id}": branch is required for if_else nodes only')
        self._started.discard(node_id)
        self._completed.add(node_id)
        chosen = None if branch is None else ("true" if branch else "false")
        for edge in self._graph.outgoing(node_id):
            self._resolve(edge, taken=chosen is None or edge.source_handle == chosen)

    def _resolve(self, edge: Edge, *, taken: bool) -> None:
        pending = [(edge, taken)]
        while pending:
            edge, taken = pending.pop()
            self._taken[edge] = taken
            target = edge.target
            incoming = self._graph.incoming(target)
            if all(self._taken.get(e) is False for e in incoming):
                self._skipped.add(target)
                pending.extend((e, False) for e in self._graph.outgoing(target))

    def skipped(self) -> set[str]:
        """Nodes that will not run: every edge into them is dead."""
        return set(self._skipped)

    def done(self) -> bool:
        return len(self._completed) + len(self._skipped) == len(self._graph.nodes)


# --- Inputs and conditions -------------------------------------------------------------------


def _as_number(value: object) -> int | float | None:
    """A number, or a string that spells one; None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 100 or not _NUMBER.fullmatch(text):
            return None
        if _INTEGER.fullmatch(text):
            return int(text)
        number = float(text)
        return number if math.isfinite(number) else None
    return None


def _input_problem(variable: StartVariable, value: object) -> str | None:
    """What is wrong with a non-empty value for a start variable, if anything."""
    if variable.type == "number":
        return None if _as_number(value) is not None else "must be a number"
    if variable.type == "boolean":
        return None if isinstance(value, bool) else "must be true or false"
    if not isinstance(value, str):
        return "must be a string"
    if variable.type == "select":
        if value not in variable.options:
            return f"must be one of: {', '.join(variable.options)}"
        return None
    limit = variable.effective_max_length
    if limit is not None and len(value) > limit:
        return f"must be at most {limit} characters"
    return None


_EMPTY_INPUT = {"string": "", "paragraph": "", "select": "", "number": None, "boolean": None}


def validate_inputs(graph: Graph, inputs: object) -> dict[str, Any]:
    """The start node's outputs for a run: inputs checked, coerced and defaulted.

    A missing, null or "" value takes the variable's default; without one it fails when the
    variable is required and is "" (text) or None (number, boolean) otherwise. Inputs the
    start node does not declare are ignored, as Dify does."""
    if not isinstance(inputs, Mapping):
        raise InputError(None, f"inputs must be an object, not {_type_name(inputs)}")
    cleaned: dict[str, Any] = {}
    for variable in graph.start.variables:
        name = f"inputs.{variable.name}"
        value = inputs.get(variable.name)
        if value is None or value == "":
            if variable.default is not None:
                value = variable.default
            elif variable.required:
                raise InputError(variable.name, f"{name} is required")
            else:
                cleaned[variable.name] = _EMPTY_INPUT[variable.type]
                continue
        problem = _input_problem(variable, value)
        if problem:
            raise InputError(variable.name, f"{name} {problem}")
        cleaned[variable.name] = _as_number(value) if variable.type == "number" else value
    return cleaned


def _is_empty(value: object) -> bool:
    return value is None or (isinstance(value, str | list | tuple | dict | set) and not value)


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _equals(actual: object, expected: object) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        left, right = _as_bool(actual), _as_bool(expected)
        if left is not None and right is not None:
            return left == right
    elif _is_number(actual) or _is_number(expected):
        left, right = _as_number(actual), _as_number(expected)
        if left is not None and right is not None:
            return left == right
    return _as_text(actual) == _as_text(expected)


def _holds(operator: str, actual: object, expected: object) -> bool:
    if operator == "is_empty":
        return _is_empty(actual)
    if operator == "is_not_empty":
        return not _is_empty(actual)
    if operator == "equals":
        return _equals(actual, expected)
    if operator == "not_equals":
        return not _equals(actual, expected)
    if operator in ("contains", "not_contains"):
        if isinstance(actual, list | tuple | set):
            found = any(_equals(item, expected) for item in actual)
        else:
            found = _as_text(expected) in _as_text(actual)
        return found if operator == "contains" else not found
    if operator == "starts_with":
        return _as_text(actual).startswith(_as_text(expected))
    if operator == "ends_with":
        return _as_text(actual).endswith(_as_text(expected))
    left, right = _as_number(actual), _as_number(expected)
    if left is None or right is None:
        return False
    if operator == "gt":
        return left > right
    if operator == "lt":
        return left < right
    if operator == "gte":
        return left >= right
    if operator == "lte":
        return left <= right
    raise ValueError(f"unknown operator {operator!r}")


def evaluate_condition(node: IfElseNode, variables: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether an if_else node's conditions hold; a missing variable reads as empty."""
    results = (
        _holds(c.operator, variables.get(c.node_id, {}).get(c.var), c.value)
        for c in node.conditions
    )
    return all(results) if node.logical_operator == "and" else any(results)
