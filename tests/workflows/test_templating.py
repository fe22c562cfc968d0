"""Workflow templates: rendering in the sandbox, its limits, and static references."""

import time

import pytest

from workflows import templating
from workflows.templating import (
    MAX_OUTPUT_CHARS,
    TemplateRenderError,
    TemplateSyntaxIssue,
    render,
    template_references,
)

VARIABLES = {
    "start": {"text": "Hello world", "items": ["a", "b"], "count": 3, "topic": None},
    "summarize": {"text": "A greeting."},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ start.text }}", "Hello world"),
        ('{{ start["text"] }}|{{ summarize.text }}', "Hello world|A greeting."),
        ("{% if summarize.text %}yes{% endif %}", "yes"),
        ("{% for item in start.items %}{{ loop.index }}{{ item }} {% endfor %}", "1a 2b "),
        ("{{ start.count * 2 + 1 }}", "7"),
        ("{{ start.text|upper }} {{ start.text.lower() }}", "HELLO WORLD hello world"),
        ("{{ start.items|join(', ') }}", "a, b"),
        ("[{{ start.topic }}]", "[]"),
        ("<b>{{ '<i>' }}</b>", "<b><i></b>"),
        ("line\n", "line\n"),
        ("{% for key, value in start|items %}{{ key }};{% endfor %}", "text;items;count;topic;"),
        ("{{ summarize.text if summarize is defined else 'none' }}", "A greeting."),
        ("{{ answer.text if answer is defined else 'none' }}", "none"),
        ("{{ 'ab' ~ start.count }}", "ab3"),
        (
            "{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}",
            "3",
        ),
        ("{{ '%s-%03d' % ('a', 7) }} {{ '{}!'.format('b') }}", "a-007 b!"),
    ],
)
def test_render(template, expected):
    assert render(template, VARIABLES) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ answer.text }}", "'answer' is undefined"),
        (
            "{{ start.nope }}",
            "node 'start' has no output 'nope' (outputs: count, items, text, topic)",
        ),
        ("a\n{{ start.nope }}", "line 2: node 'start' has no output 'nope'"),
        ("{{ start.items() }}", "TypeError: 'list' object is not callable"),
        ("{{ start.keys }}", "node 'start' has no output 'keys'"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ start.text + 1 }}", "TypeError"),
        ("{{ start.text", "unexpected end of template"),
        ("{% for x in range(1000000) %}{% endfor %}", "Range too big"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursion too deep"),
    ],
)
def test_render_errors_are_template_render_errors(template, message):
    with pytest.raises(TemplateRenderError) as caught:
        render(template, VARIABLES)

    assert message in str(caught.value)


def test_output_is_capped():
    template = "{% for i in range(100000) %}xx{% endfor %}"

    with pytest.raises(TemplateRenderError, match=f"output is longer than {MAX_OUTPUT_CHARS}"):
        render(template, {})


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ start.__class__ }}",
        "{{ start.text.__class__.__base__ }}",
        "{{ start['__class__'] }}",
        "{{ start|attr('__class__') }}",
        "{{ range.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ self.__dict__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ config }}",
        "{{ request }}",
        "{{ ''.format.__globals__ }}",
        "{{ '{0.__class__}'.format('') }}",
        "{{ start.items.append(1) }}",
        "{{ start.text.translate({}) }}",
        "{{ start.text.encode() }}",
        "{% include '/etc/passwd' %}",
        "{% import 'x' as y %}",
    ],
)
def test_sandbox_escapes_raise_instead_of_leaking(template):
    with pytest.raises(TemplateRenderError) as caught:
        render(template, VARIABLES)

    assert "<class" not in str(caught.value)


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'a' * 1000000000 }}",
        "{{ [1] * 1000000000 }}",
        "{{ 2 ** 100000000 }}",
        "{{ (10 ** 1000) ** 1000 }}",
        "{{ '%0999999999d' % 1 }}",
        "{{ '%*d' % (999999999, 1) }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ 'x'.ljust(999999999) }}",
        "{{ (1).to_bytes(999999999, 'big') }}",
        "{{ 'x'|center(999999999) }}",
        "{{ 'x'|indent(999999999) }}",
        "{{ '%0999999999d'|format(1) }}",
        "{{ ('a' * 99999)|replace('', 'bbbb') }}",
        "{{ ('a' * 99999).replace('a', 'bbbb') }}",
        "{{ range(100000)|join('x' * 90000) }}",
        "{{ ('x' * 90000).join(range(100000)|map('string')) }}",
        "{{ ('{0}' * 5000).format('x' * 90000) }}",
        "{{ '%s%s%s%s' % (('x' * 90000,) * 4) }}",
        "{{ range(3)|batch(999999999, 'x')|list }}",
        "{{ range(3)|slice(999999999)|list }}",
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s|list|string %}{% endfor %}",
        "{% macro grow(s, n) %}{{ grow(s ~ s, n - 1) if n else s|length }}{% endmacro %}{{ grow('x', 64) }}",
        "{% set big %}{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}{% endset %}",
    ],
)
def test_templates_cannot_build_huge_values(template):
    began = time.monotonic()

    with pytest.raises(TemplateRenderError, match="too large|'\\*' widths"):
        render(template, {})

    assert time.monotonic() - began < 2


def test_huge_constants_are_not_folded_while_compiling():
    # parse_graph compiles templates in web requests: this must not build the value.
    began = time.monotonic()

    assert template_references("{{ 'x'|center(999999999) }}{{ 'a' * 999999999 }}") == set()

    assert time.monotonic() - began < 1


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ start.text }}", {("start", "text")}),
        ('{{ start["text"] }}', {("start", "text")}),
        ("{{ start }}", {("start", None)}),
        ("{{ start[key] }}", {("start", None), ("key", None)}),
        ("{{ start.text.upper() }}", {("start", "text")}),
        (
            "{% if summarize.text %}{{ a.b|default(c.d) }}{% endif %}",
            {("summarize", "text"), ("a", "b"), ("c", "d")},
        ),
        ("{{ a.text if a is defined else b.text }}", {("a", "text"), ("a", None), ("b", "text")}),
        (
            "{% for item in start.items %}{{ item.name }}{{ loop.index }}{% endfor %}",
            {("start", "items")},
        ),
        (
            "{% for start in xs %}{{ start.a }}{% endfor %}{{ start.b }}",
            {("xs", None), ("start", "b")},
        ),
        ("{% for k, v in start|items %}{{ k }}{{ v.x }}{% endfor %}", {("start", None)}),
        ("{% set x = start.text %}{{ x.y }}", {("start", "text")}),
        ("{{ x.before }}{% set x = 1 %}{{ x.after }}", {("x", "before")}),
        ("{% set ns = namespace(a=1) %}{% set ns.a = start.text %}{{ ns.a }}", {("start", "text")}),
        ("{% set block %}{{ start.text }}{% endset %}{{ block }}", {("start", "text")}),
        (
            "{% macro m(a, b=start.x) %}{{ a.q }}{{ caller() }}{% endmacro %}{% call m(1) %}{{ c.d }}{% endcall %}",
            {("start", "x"), ("c", "d")},
        ),
        (
            "{% with w = start.text %}{{ w.z }}{% endwith %}{{ w }}",
            {("start", "text"), ("w", None)},
        ),
        ("{% if c %}{% set y = 1 %}{% else %}{% set y = 2 %}{% endif %}{{ y }}", {("c", None)}),
        ("{% if c %}{% set y = 1 %}{% endif %}{{ y }}", {("c", None), ("y", None)}),
        ("{{ range(3)|list }}{{ dict(a=1) }}{{ namespace() }}", set()),
        ("{{ loop.index }}", {("loop", "index")}),
        ("plain text", set()),
    ],
)
def test_template_references(template, expected):
    assert template_references(template) == expected


@pytest.mark.parametrize(
    ("template", "lineno", "message"),
    [
        ("a\n\n{{ x ", 3, "unexpected end of template"),
        ("{% if x %}", 1, "Unexpected end of template"),
        ("{{ x|nosuchfilter }}", 1, "No filter named 'nosuchfilter'"),
        ("{{ x is nosuchtest }}", 1, "No test named 'nosuchtest'"),
        ("\n{% extends 'base' %}", 2, "{% extends %} is not supported"),
        ("{% from 'x' import y %}", 1, "{% from … import %} is not supported"),
        ("{{ " + "(" * 500 + "1" + ")" * 500 + " }}", None, "nested too deeply"),
        ("{% for a in b %}" * 30 + "{% endfor %}" * 30, None, "nested too deeply"),
        ("{{ 1" + "0" * 5000 + " }}", None, "invalid template"),
        ("x" * 20_001, None, "longer than 20000 characters"),
    ],
)
def test_syntax_issues_carry_the_line(template, lineno, message):
    with pytest.raises(TemplateSyntaxIssue) as caught:
        template_references(template)

    assert caught.value.lineno == lineno
    assert message in caught.value.message


def test_compiled_templates_are_cached_by_text():
    template = "{{ start.text }} cached"
    render(template, VARIABLES)
    hits = templating._compile.cache_info().hits

    render(template, VARIABLES)
    template_references(template)

    assert templating._compile.cache_info().hits == hits + 2
