"""gateway.marketing.templates: table-driven rendering and errors, hypothesis safety."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.marketing import templates
from gateway.marketing.templates import (
    MAX_NAME,
    Template,
    TemplateError,
    compile_template,
    has_placeholders,
    render,
)

RENDERS = [
    # (text, vars, expected)
    ("Hi {{ first_name }}!", {"first_name": "Ada"}, "Hi Ada!"),
    ("Hi {{first_name}}!", {"first_name": "Ada"}, "Hi Ada!"),
    ("Hi {{ first_name | default: \"there\" }}!", {}, "Hi there!"),
    ("Hi {{ first_name | default: \"there\" }}!", None, "Hi there!"),
    ("Hi {{ first_name | default: 'there' }}!", {"first_name": ""}, "Hi there!"),
    ("Hi {{ first_name | default: \"there\" }}!", {"first_name": "Bo"}, "Hi Bo!"),
    ("{{ a }}{{ b }}", {"a": "1", "b": "2"}, "12"),
    ("{{ x | upper }}", {"x": "straße"}, "STRASSE"),
    ("{{ x | lower }}", {"x": "ÉCOLE"}, "école"),
    ("{{ x | capitalize }}", {"x": "mARIE"}, "Marie"),
    ("{{ x | upper | default: \"y\" }}", {}, "y"),
    ("{{ x | default: \"y\" | upper }}", {}, "Y"),
    ("{{ x | default: \"\" }}.", {}, "."),
    ("{{ x|default:\"a \\\" b\" }}", {}, 'a " b'),
    ("{{ x | default: 'it\\'s' }}", {}, "it's"),
    ("{{ x | default: \"a\\\\b\" }}", {}, "a\\b"),
    ("{{ x | default: \"}}\" }}", {}, "}}"),
    # literal braces
    ("a {{ \"{{\" }} b }} c", None, "a {{ b }} c"),
    ("{ single } and }} alone", None, "{ single } and }} alone"),
    ("{{ '{{' }}{{ '}}' }}", None, "{{}}"),
    # values are inserted verbatim, never re-parsed
    ("{{ x }}", {"x": "{{ y }}"}, "{{ y }}"),
    ("{{ x }}", {"x": "__import__('os')"}, "__import__('os')"),
    # newlines and unicode around and inside tags
    ("L1\n{{\n name \n}}\nL3 ✓", {"name": "Zoë"}, "L1\nZoë\nL3 ✓"),
    ("{{ _x1 }}", {"_x1": "ok"}, "ok"),
]


@pytest.mark.parametrize(("text", "vars_", "expected"), RENDERS)
def test_render(text: str, vars_: dict[str, str] | None, expected: str) -> None:
    assert render(text, vars_) == expected


ERRORS = [
    # (text, vars, reason, field, detail fragment)
    ("Hi {{ first_name }}", {}, "missing_variable", "vars.first_name", "first_name"),
    ("Hi {{ first_name }}", {"first_name": ""}, "missing_variable", "vars.first_name", ""),
    ("Hi {{ first_name | upper }}", {}, "missing_variable", "vars.first_name", ""),
    ("{{ x", None, "template_syntax", "text", "not closed"),
    ("{{ x }", None, "template_syntax", "text", "unexpected '}'"),
    ("{{}}", None, "template_syntax", "text", "empty placeholder"),
    ("{{ x | foo }}", None, "template_syntax", "text", "unknown filter 'foo'"),
    ("{{ x | default }}", None, "template_syntax", "text", "default needs an argument"),
    ("{{ x | default: y }}", None, "template_syntax", "text", "quoted string"),
    ("{{ x | upper: \"a\" }}", None, "template_syntax", "text", "expected | or }}"),
    ("{{ x y }}", None, "template_syntax", "text", "expected | or }}"),
    ("{{ x.y }}", None, "template_syntax", "text", "unexpected '.'"),
    ("{{ 1x }}", None, "template_syntax", "text", "unexpected '1'"),
    ("{{ x() }}", None, "template_syntax", "text", "unexpected '('"),
    ("{{ \"unterminated }}", None, "template_syntax", "text", "unexpected"),
    ("{{ x | default: \"\\n\" }}", None, "template_syntax", "text", "unknown escape"),
    ("{{ | upper }}", None, "template_syntax", "text", "expected a variable name"),
    ("{{ " + "a" * (MAX_NAME + 1) + " }}", None, "template_syntax", "text", "longer than"),
    ("ok {{ x }} then {{", {"x": "1"}, "template_syntax", "text", "at character 16"),
]


@pytest.mark.parametrize(("text", "vars_", "reason", "field", "detail"), ERRORS)
def test_render_errors(text: str, vars_: dict[str, str] | None, reason: str, field: str,
                       detail: str) -> None:
    result = render(text, vars_)
    assert isinstance(result, TemplateError), result
    assert (result.reason, result.field) == (reason, field)
    assert detail in result.detail


def test_text_without_placeholders_is_returned_unchanged() -> None:
    text = "".join(["Sale today! Reply STOP to opt out {not a tag}"])
    assert render(text, {"x": "y"}) is text
    assert not has_placeholders(text)
    assert has_placeholders("a {{ b }}")


def test_compiled_templates_are_cached_and_report_names() -> None:
    text = "Hi {{ first_name | default: \"there\" }}, code {{ code }} {{ 'lit' }}"
    first = compile_template(text)
    assert isinstance(first, Template)
    assert compile_template(text) is first
    assert first.names == frozenset({"first_name", "code"})
    assert first.render({"code": "7"}) == "Hi there, code 7 lit"
    assert "first_name" in repr(first)


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(templates, "MAX_CACHE", 4)
    monkeypatch.setattr(templates, "_cache", {})
    for i in range(10):
        compile_template(f"{{{{ v{i} }}}}")
    assert len(templates._cache) <= 4


def test_literal_only_template_renders_without_vars() -> None:
    template = compile_template("{{ 'a' }}{{ \"b\" }}")
    assert isinstance(template, Template)
    assert template.parts == ("ab",)
    assert template.render(None) == "ab"


def test_empty_text_renders_empty() -> None:
    assert render("", None) == ""
    assert render("{{ x | default: '' }}", None) == ""


# --- properties ------------------------------------------------------------------------

# Text made mostly of the syntax's own characters, so the parser's every branch is hit.
_pieces = st.sampled_from(["{{", "}}", "{", "}", "|", ":", " ", "\"", "'", "\\", "x", "name",
                           "default", "upper", "lower", "capitalize", "é", "\n", "(", ")",
                           ".", "__import__", "1"])
_texts = st.lists(_pieces, max_size=30).map("".join) | st.text(max_size=60)
_vars = st.dictionaries(st.sampled_from(["x", "name", "a", "default"]), st.text(max_size=8),
                        max_size=4)


@settings(max_examples=400, deadline=None)
@given(_texts, _vars)
def test_render_returns_text_or_template_error_and_never_raises(
        text: str, vars_: dict[str, str]) -> None:
    result = render(text, vars_)
    assert isinstance(result, (str, TemplateError))
    if "{{" not in text:
        assert result is text
    if isinstance(result, TemplateError):
        assert result.reason in ("missing_variable", "template_syntax")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_values_are_inserted_verbatim(value: str) -> None:
    assert render("<{{ v }}>", {"v": value or "x"}) == f"<{value or 'x'}>"
