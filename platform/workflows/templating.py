"""Jinja templates in workflow nodes: sandboxed rendering and static reference analysis.

Templates see one variable per node that has run, named by the node id and holding that
node's outputs: `{{ start.text }}`, `{% if summarize.text %}`. Output mappings expose their
keys only (`{{ start.items }}` is the input named "items", never `dict.items`); use the
`items` filter to iterate over one.

Nodes that did not run (a skipped branch) are absent, so an unguarded reference to one fails
the render with "'answer_fr' is undefined". A template that follows a branch tests which one
ran: `{{ answer_fr.text if answer_fr is defined else answer_en.text }}`.

Templates belong to tenants and run in shared workers, so besides Jinja's sandbox (no
`__class__`, no private attributes, no mutation of lists or dicts) every value a template
builds is bounded: a string, list or integer over MAX_VALUE_SIZE characters, items or digits
fails the render before it is allocated where the size can be known in advance, and right
after otherwise. That keeps a template from exhausting a worker's memory (and from being
folded into a huge constant while it is compiled in a web request). CPU time is not bounded
here (nested loops can still run long): the worker's task time limit covers that.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Iterable, Mapping

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, filters, meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import Template
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, pass_eval_context

MAX_TEMPLATE_CHARS = 20_000
MAX_OUTPUT_CHARS = 100_000
MAX_VALUE_SIZE = 100_000
_CACHE_SIZE = 512

# Names a template can use that are not nodes: node ids must avoid them (see graph.py).
TEMPLATE_GLOBALS = frozenset({"range", "dict", "cycler", "joiner", "namespace"})
TEMPLATE_SPECIAL_NAMES = frozenset({"loop", "self", "caller", "varargs", "kwargs", "super"})

# String methods a template may call; others (translate, encode, expandtabs…) are refused.
_STR_METHODS = frozenset(
    {
        "capitalize", "casefold", "center", "count", "endswith", "find", "format",
        "format_map", "index", "isalnum", "isalpha", "isdecimal", "isdigit", "islower",
        "isnumeric", "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip",
        "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust",
        "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip",
        "swapcase", "title", "upper", "zfill",
    }
)  # fmt: skip
_FORBIDDEN_TAGS = {
    nodes.Extends: "extends",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from … import",
}
# Widths and precisions in %-style and {}-style format strings.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?([#0\- +]*(?:\d+|\*)?(?:\.(?:\d+|\*))?)[a-zA-Z%]")
_BRACE_SPEC = re.compile(r"\{[^{}]*\}")
_DIGITS = re.compile(r"\d+")


def _printable(message: str) -> str:
    # Messages may quote the template or its data; lone surrogates would not encode.
    return message.encode("utf-8", "replace").decode("utf-8")


class TemplateSyntaxIssue(Exception):
    """A template that does not compile; `lineno` is 1-based when known."""

    def __init__(self, message: str, lineno: int | None = None) -> None:
        message = _printable(message)
        self.message = message
        self.lineno = lineno
        super().__init__(f"line {lineno}: {message}" if lineno else message)


class TemplateRenderError(Exception):
    """A template that failed while rendering (undefined variable, limit, sandbox)."""

    def __init__(self, message: str, lineno: int | None = None) -> None:
        message = _printable(message)
        self.message = message
        self.lineno = lineno
        super().__init__(f"line {lineno}: {message}" if lineno else message)


class _TooLarge(TemplateRuntimeError):
    def __init__(self) -> None:
        super().__init__(f"value too large (limit {MAX_VALUE_SIZE} characters or items)")


def _size(value: object, limit: int = MAX_VALUE_SIZE) -> int:
    """Characters, items and digits in a value, counted until `limit` is passed."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += item.bit_length() // 3 + 1  # about the number of decimal digits
        elif isinstance(item, list | tuple | set | frozenset | dict):
            total += 1 + len(item)
            if total <= limit:
                stack.extend(item.values() if isinstance(item, dict) else item)
                if isinstance(item, dict):
                    stack.extend(item.keys())
        else:
            total += 1
    return total


def _check(value: object) -> object:
    if _size(value) > MAX_VALUE_SIZE:
        raise _TooLarge()
    return value


def _check_estimate(size: int) -> None:
    if size > MAX_VALUE_SIZE:
        raise _TooLarge()


def _check_format_string(fmt: str, arguments: object, *, percent: bool) -> None:
    specs = _PERCENT_SPEC.findall(fmt) if percent else _BRACE_SPEC.findall(fmt)
    # Each field may repeat any argument: "{0}{0}{0}…".format(long_text).
    _check_estimate(len(fmt) + len(specs) * _size(arguments))
    for spec in specs:
        if percent and "*" in spec:
            raise SecurityError("'*' widths are not supported in format strings")
        if any(int(digits) > MAX_VALUE_SIZE for digits in _DIGITS.findall(spec)):
            raise _TooLarge()


def _estimate_replace(s: str, old: str, new: str, count: object = None) -> int:
    occurrences = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        occurrences = min(occurrences, count)
    return len(s) + occurrences * max(len(new) - len(old), 0)


def _estimate_join(items: list, separator: str) -> int:
    return len(separator) * max(len(items) - 1, 0) + _size(items)


def _bounded_filter(func):
    @functools.wraps(func)  # also carries Jinja's pass_context/pass_eval_context marker
    def bounded(*args, **kwargs):
        return _check(func(*args, **kwargs))

    return bounded


def _center(value, width=80):
    if isinstance(width, int) and width > MAX_VALUE_SIZE:
        raise _TooLarge()
    return filters.do_center(value, width)


def _indent(s, width=4, first=False, blank=False):
    step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    _check_estimate(len(str(s)) + (str(s).count("\n") + 1) * max(step, 0))
    return filters.do_indent(s, width, first, blank)


def _format(value, *args, **kwargs):
    _check_format_string(str(value), (args, kwargs), percent=True)
    return filters.do_format(value, *args, **kwargs)


def _batch(value, linecount, fill_with=None):
    if isinstance(linecount, int) and linecount > MAX_VALUE_SIZE:
        raise _TooLarge()  # the last batch is padded to linecount items
    return filters.do_batch(value, linecount, fill_with)


def _slice(value, slices, fill_with=None):
    if isinstance(slices, int) and slices > MAX_VALUE_SIZE:
        raise _TooLarge()
    return filters.do_slice(value, slices, fill_with)


@pass_eval_context
def _replace(eval_ctx, s, old, new, count=None):
    _check_estimate(_estimate_replace(str(s), str(old), str(new), count))
    return filters.do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def _join(eval_ctx, value, d="", attribute=None):
    items = list(value)
    _check_estimate(_estimate_join(items, str(d)))
    return filters.do_join(eval_ctx, items, d, attribute)


class _NodeOutputs(dict):
    """One node's outputs as a template sees them; knows its node for error messages."""

    def __init__(self, node_id: str, outputs: Mapping[str, object]) -> None:
        super().__init__(outputs)
        self.node_id = node_id


class _BoundedNamespace(Namespace):
    """`namespace()` whose attributes obey the size limit (a loop could double one)."""

    def __init__(*args, **kwargs) -> None:  # noqa: B902 (same signature as Namespace)
        for value in (*args[1:], *kwargs.values()):
            _check(value)
        Namespace.__init__(*args, **kwargs)

    def __setitem__(self, name: str, value: object) -> None:
        Namespace.__setitem__(self, name, _check(value))


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # `a ~ b` goes through environment.concat, which checks the size before joining.
        self.write("environment.concat(map(str, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


class _WorkflowSandbox(ImmutableSandboxedEnvironment):
    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=_finalize,
        )
        self.globals.pop("lipsum", None)
        self.globals["namespace"] = _BoundedNamespace
        self.filters = {name: _bounded_filter(func) for name, func in self.filters.items()}
        self.filters.update(
            (name, _bounded_filter(func))
            for name, func in [
                ("batch", _batch),
                ("center", _center),
                ("format", _format),
                ("indent", _indent),
                ("join", _join),
                ("replace", _replace),
                ("slice", _slice),
            ]
        )

    @staticmethod
    def concat(parts: Iterable[str]) -> str:  # type: ignore[override]
        collected = []
        total = 0
        for part in parts:
            total += len(part)
            if total > MAX_VALUE_SIZE:
                raise _TooLarge()
            collected.append(part)
        return "".join(collected)

    def getattr(self, obj, attribute):
        if isinstance(obj, Mapping):
            return self._lookup_key(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        if isinstance(obj, Mapping):
            return self._lookup_key(obj, argument)
        return super().getitem(obj, argument)

    def _lookup_key(self, obj: Mapping, key):
        try:
            return obj[key]
        except (KeyError, TypeError):
            hint = None
            if isinstance(obj, _NodeOutputs):
                outputs = ", ".join(sorted(map(str, obj))) or "none"
                hint = f"node {obj.node_id!r} has no output {key!r} (outputs: {outputs})"
            return self.undefined(hint=hint, obj=obj, name=key)

    def call_binop(self, context, operator, left, right):
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, str | list | tuple) and isinstance(times, int):
                    _check_estimate(_size(sequence) * max(times, 0))
            if isinstance(left, int) and isinstance(right, int):
                _check_estimate((left.bit_length() + right.bit_length()) // 3)
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
                _check_estimate(left.bit_length() * right // 3)
        elif operator == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                _check_estimate(_size(left) + _size(right))
        elif operator == "%" and isinstance(left, str):
            _check_format_string(left, right, percent=True)
        return _check(super().call_binop(context, operator, left, right))

    def call(self, context, obj, /, *args, **kwargs):
        args = _check_call(obj, args, kwargs)
        return _check(super().call(context, obj, *args, **kwargs))


def _finalize(value: object) -> object:
    # An optional input left empty renders as nothing rather than "None".
    return "" if value is None else value


def _check_call(obj: object, args: tuple, kwargs: dict) -> tuple:
    """Refuse calls that would build a value over the limit; returns the arguments to use."""
    if isinstance(obj, types.BuiltinMethodType | types.BuiltinFunctionType):
        numbers = [a for a in (*args, *kwargs.values()) if isinstance(a, int)]
        if any(n > MAX_VALUE_SIZE for n in numbers):
            raise _TooLarge()  # e.g. "x".ljust(10**9), (1).to_bytes(10**9)
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, str):
            if obj.__name__ not in _STR_METHODS:
                raise SecurityError(f"str.{obj.__name__}() is not allowed in templates")
            if obj.__name__ == "replace" and len(args) >= 2:
                _check_estimate(_estimate_replace(owner, str(args[0]), str(args[1]), *args[2:3]))
            if obj.__name__ == "join" and len(args) == 1:
                items = list(args[0])
                _check_estimate(_estimate_join(items, owner))
                args = (items,)
    wrapped = getattr(obj, "__wrapped__", None)  # the sandbox's str.format wrapper
    if isinstance(getattr(wrapped, "__self__", None), str):
        _check_format_string(wrapped.__self__, (args, kwargs), percent=False)
    return args


_env = _WorkflowSandbox()


class _ReferenceCollector:
    """Finds `name.attr`, `name["attr"]` and bare `name` loads that are not bound by the
    template itself at that point (loop targets, `set`, macro arguments…)."""

    def __init__(self) -> None:
        self.found: set[tuple[str, str | None]] = set()
        self._scopes: list[set[str]] = [set()]

    def visit(self, node: nodes.Node) -> None:
        visitor = getattr(self, f"visit_{type(node).__name__}", None)
        if visitor is None:
            for child in node.iter_child_nodes():
                self.visit(child)
        else:
            visitor(node)

    def _visit_all(self, items: Iterable[nodes.Node]) -> None:
        for item in items:
            self.visit(item)

    def _load(self, name: str, attr: str | None) -> None:
        if not any(name in scope for scope in self._scopes):
            self.found.add((name, attr))

    def _scoped(self, body: Iterable[nodes.Node], bound: Iterable[str] = ()) -> set[str]:
        self._scopes.append(set(bound))
        try:
            self._visit_all(body)
        finally:
            scope = self._scopes.pop()
        return scope

    def _bind(self, target: nodes.Node) -> None:
        if isinstance(target, nodes.Name):
            self._scopes[-1].add(target.name)
        elif isinstance(target, nodes.Tuple):
            for item in target.items:
                self._bind(item)
        elif isinstance(target, nodes.NSRef):
            self._load(target.name, None)

    def visit_Name(self, node: nodes.Name) -> None:
        if node.ctx == "load":
            self._load(node.name, None)

    def visit_Getattr(self, node: nodes.Getattr) -> None:
        if isinstance(node.node, nodes.Name) and node.node.ctx == "load":
            self._load(node.node.name, node.attr)
        else:
            self.visit(node.node)

    def visit_Getitem(self, node: nodes.Getitem) -> None:
        key = node.arg.value if isinstance(node.arg, nodes.Const) else None
        if isinstance(node.node, nodes.Name) and isinstance(key, str):
            self._load(node.node.name, key)
        else:
            self.visit(node.node)
            self.visit(node.arg)

    def visit_For(self, node: nodes.For) -> None:
        self.visit(node.iter)
        names = _target_names(node.target) | {"loop"}
        self._scoped([*([node.test] if node.test else []), *node.body], names)
        self._scoped(node.else_)

    def visit_If(self, node: nodes.If) -> None:
        self.visit(node.test)
        branches = [self._scoped(node.body)]
        for elif_ in node.elif_:
            self.visit(elif_.test)
            branches.append(self._scoped(elif_.body))
        if node.else_:
            # A name set on every branch is set after the `if`, as Jinja sees it.
            branches.append(self._scoped(node.else_))
            self._scopes[-1].update(set.intersection(*branches))

    def visit_Macro(self, node: nodes.Macro) -> None:
        self._scopes[-1].add(node.name)
        self._visit_macro(node)

    def visit_CallBlock(self, node: nodes.CallBlock) -> None:
        self.visit(node.call)
        self._visit_macro(node)

    def _visit_macro(self, node: nodes.Macro | nodes.CallBlock) -> None:
        self._visit_all(node.defaults)
        names = {arg.name for arg in node.args} | {"caller", "varargs", "kwargs"}
        self._scoped(node.body, names)

    def visit_With(self, node: nodes.With) -> None:
        self._visit_all(node.values)
        names = set().union(*(_target_names(target) for target in node.targets))
        self._scoped(node.body, names)

    def visit_Block(self, node: nodes.Block) -> None:
        self._scoped(node.body)

    def visit_Assign(self, node: nodes.Assign) -> None:
        self.visit(node.node)
        self._bind(node.target)

    def visit_AssignBlock(self, node: nodes.AssignBlock) -> None:
        self._scoped(node.body)
        if node.filter is not None:
            self.visit(node.filter)
        self._bind(node.target)

    def visit_NSRef(self, node: nodes.NSRef) -> None:
        self._load(node.name, None)


def _target_names(target: nodes.Node) -> set[str]:
    if isinstance(target, nodes.Name):
        return {target.name}
    return {name.name for name in target.find_all(nodes.Name)}


class _Compiled:
    __slots__ = ("template", "references")

    def __init__(self, template: Template, references: frozenset) -> None:
        self.template = template
        self.references = references


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile(source: str) -> _Compiled:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateSyntaxIssue(f"template is longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        tree = _env.parse(source)
        for node_class, tag in _FORBIDDEN_TAGS.items():
            for found in tree.find_all(node_class):
                raise TemplateSyntaxIssue(f"{{% {tag} %}} is not supported", found.lineno)
        collector = _ReferenceCollector()
        collector.visit(tree)
        undeclared = meta.find_undeclared_variables(tree)
        template = _env.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateSyntaxIssue(exc.message or "invalid syntax", exc.lineno) from None
    except (RecursionError, SyntaxError):
        raise TemplateSyntaxIssue("template is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python accepts
        raise TemplateSyntaxIssue(f"invalid template: {exc}") from None
    references = frozenset(ref for ref in collector.found if ref[0] in undeclared)
    return _Compiled(template, references)


def template_references(template: str) -> set[tuple[str, str | None]]:
    """Every `(node_id, var)` a template reads; `(name, None)` for a bare name or a key
    that is not a constant string. Raises TemplateSyntaxIssue when it does not compile."""
    return set(_compile(template).references)


def render(template: str, variables: Mapping[str, Mapping[str, object]]) -> str:
    """Render a workflow template against node outputs (`{node_id: {var: value}}`)."""
    try:
        compiled = _compile(template)
    except TemplateSyntaxIssue as exc:
        raise TemplateRenderError(exc.message, exc.lineno) from None
    context = {node_id: _NodeOutputs(node_id, outputs) for node_id, outputs in variables.items()}
    chunks: list[str] = []
    total = 0
    try:
        for chunk in compiled.template.generate(context):
            total += len(chunk)
            if total > MAX_OUTPUT_CHARS:
                raise TemplateRenderError(f"output is longer than {MAX_OUTPUT_CHARS} characters")
            chunks.append(chunk)
    except TemplateRenderError:
        raise
    except TemplateError as exc:
        raise TemplateRenderError(exc.message or type(exc).__name__, _template_line(exc)) from None
    except RecursionError:
        raise TemplateRenderError("recursion too deep") from None
    except Exception as exc:  # a template's own error, e.g. {{ 1 / 0 }} or {{ "a" + 1 }}
        message = f"{type(exc).__name__}: {exc}"
        raise TemplateRenderError(message, _template_line(exc)) from None
    return "".join(chunks)


def _template_line(exc: BaseException) -> int | None:
    # Jinja rewrites tracebacks so that template frames carry template line numbers.
    lineno = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            lineno = tb.tb_lineno
        tb = tb.tb_next
    return lineno
