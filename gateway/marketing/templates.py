"""Personalisation: ``{{ first_name | default: "there" }}`` placeholders filled from ``vars``.

A deliberately tiny, Liquid-flavoured syntax. It is parsed by hand (a regex tokenizer and a
loop), never evaluated: there are no expressions, attribute lookups, calls, loops or
includes, so a template cannot execute code or reach anything but the ``vars`` mapping it
is rendered with (jasmin's ``EvalPyFilter`` is the counter-example: STYLE.md §1).

Grammar (whitespace inside ``{{ }}`` is free)::

    tag     := "{{" expr ("|" filter)* "}}"
    expr    := NAME | STRING          NAME = [A-Za-z_][A-Za-z0-9_]{0,63}
    filter  := "default" ":" STRING | "upper" | "lower" | "capitalize"
    STRING  := '"' ... '"' | "'" ... "'"   (escapes: \\" \\' \\\\ only)

Semantics:

- ``{{ name }}``: ``vars[name]``. Missing (or empty) and no default -> ``missing_variable``.
- ``| default: "x"``: used when the variable is missing *or empty* (Liquid's rule: an empty
  first name should still read "Hi there").
- ``upper`` / ``lower`` / ``capitalize`` (first character upper, the rest lower, as in
  Liquid and ``str.capitalize``) apply left to right; on a missing value they do nothing,
  so ``{{ x | upper | default: "y" }}`` renders ``y``.
- Values are inserted verbatim and never re-parsed: a value containing ``{{`` stays text.
- Literal braces: a lone ``{`` or ``}}`` is text. To write ``{{`` itself, use a string
  expression: ``{{ "{{" }}``. A ``{{`` that does not open a valid tag is
  ``template_syntax`` (an unclosed placeholder is far more often a mistake than intent).
- Text without ``{{`` is returned unchanged (the same object): the fast path.

Errors are values: ``render`` returns ``str | TemplateError``; nothing else escapes it
(a hypothesis property in ``tests/marketing/test_templates.py``).

Compiled templates are cached by text: a campaign renders one text for many recipients.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, Literal

import msgspec

__all__ = [
    "MAX_CACHE",
    "MAX_NAME",
    "Template",
    "TemplateError",
    "compile_template",
    "has_placeholders",
    "render",
]

#: Longest variable name (``api_types.Vars`` keys are free-form strings; names longer than
#: this are syntax errors rather than silently never matching).
MAX_NAME: Final = 64
#: Compiled templates kept (cleared when full: campaigns reuse few texts at a time).
MAX_CACHE: Final = 1024

_OPEN: Final = "{{"


class TemplateError(msgspec.Struct, frozen=True, kw_only=True):
    """Why a text could not be rendered; maps to an API error with ``field``.

    ``reason`` is a stable code: ``missing_variable`` (``field`` = ``vars.<name>``) or
    ``template_syntax`` (``field`` = ``text``; ``detail`` names the character offset).
    """

    reason: Literal["missing_variable", "template_syntax"]
    field: str
    detail: str


class _Expr(msgspec.Struct, frozen=True):
    """One placeholder: a variable name or a literal, then filters in order."""

    name: str | None
    literal: str | None
    #: (filter name, argument or None)
    filters: tuple[tuple[str, str | None], ...]


# One token inside a tag. Alternatives are tried at the current position only (.match).
_TOKEN: Final = re.compile(
    r"""\s*(?:
        (?P<close>\}\})
      | (?P<pipe>\|)
      | (?P<colon>:)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    )""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPE: Final = re.compile(r"\\(.)", re.DOTALL)
_FILTERS: Final = frozenset({"default", "upper", "lower", "capitalize"})


class _Syntax(Exception):
    def __init__(self, offset: int, what: str) -> None:
        super().__init__(what)
        self.offset = offset
        self.what = what


def _unquote(token: str, offset: int) -> str:
    def unescape(m: re.Match[str]) -> str:
        char = m.group(1)
        if char not in "\"'\\":
            raise _Syntax(offset, f"unknown escape \\{char} in a string")
        return char

    return _ESCAPE.sub(unescape, token[1:-1])


class Template:
    """A parsed text: literal pieces and placeholders. Build with `compile_template`."""

    __slots__ = ("names", "parts", "text")

    def __init__(self, text: str, parts: tuple[str | _Expr, ...]) -> None:
        self.text = text
        self.parts = parts
        #: The variable names the text refers to.
        self.names: frozenset[str] = frozenset(
            p.name for p in parts if isinstance(p, _Expr) and p.name is not None)

    def render(self, vars: Mapping[str, str] | None) -> str | TemplateError:
        """The text with every placeholder filled, or why it can't be."""
        if len(self.parts) == 1 and isinstance(self.parts[0], str):
            return self.parts[0]
        values = vars if vars is not None else {}
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part.literal if part.name is None else values.get(part.name)
            defaulted = False
            for name, arg in part.filters:
                if name == "default":
                    if not value:
                        value, defaulted = arg, True
                elif value is None:
                    pass
                elif name == "upper":
                    value = value.upper()
                elif name == "lower":
                    value = value.lower()
                else:  # capitalize
                    value = value.capitalize()
            if not value and not defaulted and part.name is not None:
                name = part.name or ""
                return TemplateError(reason="missing_variable", field=f"vars.{name}",
                                     detail=f"no value for {name!r} and no default")
            out.append(value or "")
        return "".join(out)

    def __repr__(self) -> str:
        return f"<Template {len(self.parts)} parts, vars {sorted(self.names)}>"


def _parse_tag(text: str, start: int) -> tuple[_Expr, int]:
    """The placeholder opening at ``text[start:start+2] == "{{"``; its end offset."""
    pos = start + 2

    def token() -> tuple[str, str, int]:
        nonlocal pos
        m = _TOKEN.match(text, pos)
        if m is None or m.lastgroup is None:
            at = pos
            while at < len(text) and text[at].isspace():
                at += 1
            if at >= len(text):
                raise _Syntax(start, "placeholder not closed with }}")
            raise _Syntax(at, f"unexpected {text[at]!r} in a placeholder")
        pos = m.end()
        return m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup)

    kind, value, at = token()
    name: str | None = None
    literal: str | None = None
    if kind == "name":
        if len(value) > MAX_NAME:
            raise _Syntax(at, f"variable name longer than {MAX_NAME} characters")
        name = value
    elif kind == "string":
        literal = _unquote(value, at)
    elif kind == "close":
        raise _Syntax(start, "empty placeholder")
    else:
        raise _Syntax(at, f"expected a variable name, found {value!r}")
    filters: list[tuple[str, str | None]] = []
    while True:
        kind, value, at = token()
        if kind == "close":
            return _Expr(name, literal, tuple(filters)), pos
        if kind != "pipe":
            raise _Syntax(at, f"expected | or }}}}, found {value!r}")
        kind, value, at = token()
        if kind != "name" or value not in _FILTERS:
            raise _Syntax(at, f"unknown filter {value!r} (default, upper, lower, capitalize)")
        if value == "default":
            kind, _, at = token()
            if kind != "colon":
                raise _Syntax(at, 'default needs an argument: default: "text"')
            kind, arg, at = token()
            if kind != "string":
                raise _Syntax(at, "the default must be a quoted string")
            filters.append(("default", _unquote(arg, at)))
        else:
            filters.append((value, None))


def _compile(text: str) -> Template | TemplateError:
    parts: list[str | _Expr] = []
    pos = 0
    try:
        while (start := text.find(_OPEN, pos)) >= 0:
            if start > pos:
                parts.append(text[pos:start])
            expr, pos = _parse_tag(text, start)
            if expr.name is None and not expr.filters and expr.literal is not None:
                parts.append(expr.literal)  # a literal: fold it into the text now
            else:
                parts.append(expr)
    except _Syntax as exc:
        return TemplateError(reason="template_syntax", field="text",
                             detail=f"{exc.what} (at character {exc.offset})")
    if pos < len(text):
        parts.append(text[pos:])
    # merge adjacent literals (from folded string expressions)
    merged: list[str | _Expr] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return Template(text, tuple(merged) or ("",))


_cache: dict[str, Template | TemplateError] = {}


def compile_template(text: str) -> Template | TemplateError:
    """Parse ``text`` once (cached by text); a syntax error is returned, not raised."""
    hit = _cache.get(text)
    if hit is None:
        hit = _compile(text)
        if len(_cache) >= MAX_CACHE:
            _cache.clear()
        _cache[text] = hit
    return hit


def has_placeholders(text: str) -> bool:
    """Whether ``text`` needs rendering at all (contains ``{{``)."""
    return _OPEN in text


def render(text: str, vars: Mapping[str, str] | None = None) -> str | TemplateError:
    """``text`` with its placeholders filled from ``vars``; text without ``{{`` is returned
    unchanged (the same object)."""
    if _OPEN not in text:
        return text
    template = compile_template(text)
    if isinstance(template, TemplateError):
        return template
    return template.render(vars)
