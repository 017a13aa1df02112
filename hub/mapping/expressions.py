"""Value builders: how a route's body is made from the event's payload.

```yaml
body:
  name: $.name                                  # a path (null when missing)
  origin: site                                  # any other scalar is a constant
  kind: {const: "$not-a-path"}                  # a constant that looks like a path
  phone: {fn: phone_br, args: [$.phone], required: true}
  greeting: {template: "Olá {{ $.name }}!"}     # or a plain string containing {{ }}
  plan: {path: $.plan, default: basic}          # default when the value is null
  items:
    each: $.items                               # a list built from each element (`@`)
    when: {path: "@.qty", gt: 0}                # optional filter
    body: {sku: "@.sku", cents: {fn: money, args: ["@.price"]}}
  raw: {object: {path: "/x"}}                   # an object whose keys would read as operators
```
Every expression is compiled once into a closure `(root, item) -> value`; simple paths become plain
dict lookups (see paths.py). `required: true` turns a null result into a TransformError naming the
field and the path. Problems found while compiling are collected with their location, never raised
one at a time.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import orjson

from hub.core.errors import TransformError
from hub.core.yamlfile import format_loc
from hub.mapping.conditions import Loc, Problems, compile_condition
from hub.mapping.functions import REGISTRY, unknown_message
from hub.mapping.paths import Getter, PathError, compile_path, is_path

OPERATORS = ("path", "const", "template", "fn", "each", "object")
MODIFIERS = ("default", "required")
_ALLOWED = {
    "path": {"path", *MODIFIERS},
    "const": {"const"},
    "template": {"template", *MODIFIERS},
    "fn": {"fn", "args", *MODIFIERS},
    "each": {"each", "body", "when", *MODIFIERS},
    "object": {"object"},
}
_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def compile_value(raw: Any, loc: Loc, problems: Problems) -> Getter:
    """Compile one value expression; problems go to `problems` (the result is then unusable)."""
    if isinstance(raw, str):
        if is_path(raw):
            return _path(raw, loc, problems)
        if "{{" in raw:
            return compile_template(raw, loc, problems)
        return _constant(raw)
    if isinstance(raw, list):
        return _list([compile_value(v, (*loc, i), problems) for i, v in enumerate(raw)])
    if isinstance(raw, dict):
        operators = [k for k in OPERATORS if k in raw]
        if not operators:
            return compile_object(raw, loc, problems)
        if len(operators) > 1:
            problems.append((loc, f"give one of {', '.join(operators)}, not several"))
            return _constant(None)
        return _operator(operators[0], raw, loc, problems)
    return _constant(raw)  # numbers, booleans, null


def compile_object(raw: dict[str, Any], loc: Loc, problems: Problems) -> Getter:
    fields = []
    for key, value in raw.items():
        if not isinstance(key, str):
            problems.append(((*loc, str(key)), "object keys are text"))
            continue
        fields.append((key, compile_value(value, (*loc, key), problems)))
    items = tuple(fields)

    def build(root: Any, item: Any) -> dict[str, Any]:
        return {key: get(root, item) for key, get in items}

    return build


def compile_template(text: str, loc: Loc, problems: Problems, *, url: bool = False) -> Getter:
    """`"Olá {{ $.name }}"`: literal parts and paths; null renders as ''. `url` quotes values."""
    parts: list[str | Getter] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > pos:
            parts.append(text[pos : match.start()])
        inner = match.group(1)
        if not is_path(inner):
            problems.append(
                (loc, f"a placeholder holds a path such as {{{{ $.name }}}}: {inner!r}")
            )
            pos = match.end()
            continue
        parts.append(_path(inner, loc, problems))
        pos = match.end()
    if pos < len(text):
        parts.append(text[pos:])
    pieces = tuple(parts)

    def render(root: Any, item: Any) -> str:
        out = []
        for piece in pieces:
            if type(piece) is str:
                out.append(piece)
            else:
                value = as_text(piece(root, item))  # type: ignore[operator]
                out.append(quote(value, safe="") if url else value)
        return "".join(out)

    return render


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _constant(value: Any) -> Getter:
    if isinstance(value, dict | list):
        frozen = orjson.dumps(value)
        return lambda _root, _item: orjson.loads(frozen)  # a fresh copy each time
    return lambda _root, _item: value


def _list(getters: list[Getter]) -> Getter:
    items = tuple(getters)
    return lambda root, item: [get(root, item) for get in items]


def _path(path: str, loc: Loc, problems: Problems) -> Getter:
    try:
        return compile_path(path)
    except PathError as exc:
        problems.append((loc, f"{exc} (write {{const: ...}} for a literal)"))
        return _constant(None)


def _operator(name: str, raw: dict[str, Any], loc: Loc, problems: Problems) -> Getter:
    unknown = [k for k in raw if k not in _ALLOWED[name]]
    for key in unknown:
        allowed = ", ".join(sorted(_ALLOWED[name]))
        problems.append(((*loc, str(key)), f"unknown key beside '{name}' (allowed: {allowed})"))
    if name == "const":
        return _constant(raw["const"])
    if name == "object":
        if not isinstance(raw["object"], dict):
            problems.append(((*loc, "object"), "'object' takes a mapping"))
            return _constant(None)
        return compile_object(raw["object"], (*loc, "object"), problems)
    where = format_loc(loc)
    described = ""
    if name == "path":
        value = raw["path"]
        if not isinstance(value, str):
            problems.append(((*loc, "path"), "a path is text such as $.phone"))
            return _constant(None)
        getter = _path(value, (*loc, "path"), problems)
        described = value
    elif name == "template":
        value = raw["template"]
        if not isinstance(value, str):
            problems.append(((*loc, "template"), "a template is text"))
            return _constant(None)
        getter = compile_template(value, (*loc, "template"), problems)
        described = "template"
    elif name == "fn":
        getter, described = _function(raw, loc, problems, where)
    else:
        getter, described = _each(raw, loc, problems, where)
    return _modifiers(getter, raw, loc, problems, where, described)


def _function(raw: dict[str, Any], loc: Loc, problems: Problems, where: str) -> tuple[Getter, str]:
    name = raw["fn"]
    args = raw.get("args", [])
    if not isinstance(name, str) or name not in REGISTRY:
        problems.append(((*loc, "fn"), unknown_message(str(name))))
        return _constant(None), str(name)
    if not isinstance(args, list):
        args = [args]
    function = REGISTRY[name]
    count = len(args)
    if count < function.min_args or (function.max_args is not None and count > function.max_args):
        most = "any number" if function.max_args is None else str(function.max_args)
        wanted = (
            str(function.min_args) if function.min_args == function.max_args
            else f"{function.min_args} to {most}"
        )  # fmt: skip
        problems.append(((*loc, "args"), f"{name} takes {wanted} argument(s), got {count}"))
        return _constant(None), name
    getters = []
    for index, arg in enumerate(args):
        arg_loc = (*loc, "args", index)
        literal = not isinstance(arg, dict | list) and not is_path(arg)
        literal = literal and not (isinstance(arg, str) and "{{" in arg)
        if literal:
            problem = function.check_constant(index, arg)
            if problem is not None:
                problems.append((arg_loc, problem))
        getters.append(compile_value(arg, arg_loc, problems))
    call = function.call
    paths = [a for a in args if is_path(a)]
    described = f"{name}({', '.join(paths)})" if paths else name
    prefix = f"{where}: "

    if len(getters) == 1:
        (only,) = getters

        def call1(root: Any, item: Any) -> Any:
            value = only(root, item)  # an argument's own failure is already located
            try:
                return call(value)
            except TransformError as exc:
                raise TransformError(prefix + exc.message) from exc
            except Exception as exc:  # noqa: BLE001 - a bad value fails the event, not the worker
                raise TransformError(f"{prefix}{name} failed ({type(exc).__name__})") from exc

        return call1, described

    arg_getters = tuple(getters)

    def call_n(root: Any, item: Any) -> Any:
        values = [get(root, item) for get in arg_getters]
        try:
            return call(*values)
        except TransformError as exc:
            raise TransformError(prefix + exc.message) from exc
        except Exception as exc:  # noqa: BLE001 - a bad value fails the event, not the worker
            raise TransformError(f"{prefix}{name} failed ({type(exc).__name__})") from exc

    return call_n, described


def _each(raw: dict[str, Any], loc: Loc, problems: Problems, where: str) -> tuple[Getter, str]:
    source = raw["each"]
    if not is_path(source):
        problems.append(((*loc, "each"), "'each' takes a path to a list, such as $.items"))
        return _constant(None), str(source)
    items_of = _path(source, (*loc, "each"), problems)
    if "body" not in raw:
        problems.append((loc, "'each' needs a 'body' built from each element ('@')"))
        return _constant(None), source
    body = compile_value(raw["body"], (*loc, "body"), problems)
    condition = None
    if "when" in raw:
        condition = compile_condition(raw["when"], (*loc, "when"), problems)
    keep = condition.test if condition is not None else None

    def each(root: Any, _item: Any) -> Any:
        items = items_of(root, _item)
        if items is None:
            return None
        if type(items) is not list:
            raise TransformError(f"{where}: {source} is not a list")
        if keep is None:
            return [body(root, element) for element in items]
        return [body(root, element) for element in items if keep(root, element)]

    return each, source


def _modifiers(
    getter: Getter, raw: dict[str, Any], loc: Loc, problems: Problems, where: str, described: str
) -> Getter:
    required = raw.get("required", False)
    if not isinstance(required, bool):
        problems.append(((*loc, "required"), "required is true or false"))
        required = False
    if "default" in raw:
        fallback = _constant(raw["default"])
        inner = getter

        def with_default(root: Any, item: Any) -> Any:
            value = inner(root, item)
            return fallback(root, item) if value is None else value

        getter = with_default
    if required:
        message = f"{where}: required value is missing ({described})"
        checked = getter

        def must(root: Any, item: Any) -> Any:
            value = checked(root, item)
            if value is None:
                raise TransformError(message)
            return value

        getter = must
    return getter
