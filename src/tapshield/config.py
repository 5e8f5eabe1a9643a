"""The one way tapshield loads a configuration file: YAML into a pydantic model,
with every problem named by file, line and field.

``load_model(Model, text, source)`` parses safe YAML (timestamps stay text:
each model parses instants strictly itself), validates the mapping with the
model, and turns a ``ValidationError`` into a :class:`~tapshield.errors.ContractError`
(or the caller's subclass) whose lines read ``scenario.yaml line 12:
faults[0].rate: ...``. Durations in any model use the one grammar of
:func:`tapshield.timeutil.parse_duration` (the :data:`Duration` type).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from tapshield.errors import ContractError
from tapshield.timeutil import DURATION_HELP, parse_duration

M = TypeVar("M", bound=BaseModel)


def _duration(value: object) -> timedelta:
    return parse_duration(value)


Duration = Annotated[timedelta, BeforeValidator(_duration), Field(description=DURATION_HELP)]
"""A duration field: ``500ms``, ``90s``, ``45m``, ``1h30m``, ``2d``, ``1w`` or seconds."""


class _Loader(yaml.SafeLoader):
    """Safe YAML that keeps timestamps as text (models parse them strictly themselves)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_yaml(
    text: str, source: str, error: type[ContractError] = ContractError
) -> tuple[Any, yaml.Node | None]:
    """The document and its node tree (for line numbers)."""
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{source}{where}: not valid YAML ({problem})") from None
    return data, node


def line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The line of the value at ``loc`` (or of its closest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == part), None)
            if nxt is None:
                key = next((k for k, _ in node.value if k.value == part), None)
                return key.start_mark.line + 1 if key is not None else line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def explain(
    exc: ValidationError, node: yaml.Node | None, source: str, *,
    error: type[ContractError] = ContractError, tags: Collection[str] = (),
    docs: str = "the documentation",
) -> ContractError:
    """One line per problem (at most ten): file, line, field, what is wrong, what was given.

    ``tags``: discriminator tags pydantic adds to locations of tagged unions
    (they are not in the file, so they are dropped)."""
    lines = []
    for err in exc.errors()[:10]:
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in tags))
        line = line_of(node, loc)
        where = f"{source} line {line}" if line is not None else source
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if err["type"] in ("missing", "model_type") or isinstance(got, dict | list) \
            else f" (got {got!r})"
        if err["type"] == "extra_forbidden":
            msg, shown = f"unknown field (check the spelling; see {docs})", ""
        lines.append(f"{where}: {_path(loc)}: {msg}{shown}")
    more = len(exc.errors()) - 10
    if more > 0:
        lines.append(f"... and {more} more problem(s)")
    return error("\n".join(lines))


def validate_mapping(
    model: type[M], data: Any, node: yaml.Node | None, source: str, *,
    error: type[ContractError] = ContractError, tags: Collection[str] = (),
    docs: str = "the documentation",
) -> M:
    """``model`` from an already-read YAML mapping (``node`` gives the lines)."""
    if not isinstance(data, dict):
        raise error(f"{source}: expected a YAML mapping of fields at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise explain(exc, node, source, error=error, tags=tags, docs=docs) from None


def load_model(
    model: type[M], text: str, source: str, *,
    error: type[ContractError] = ContractError, tags: Collection[str] = (),
    docs: str = "the documentation",
) -> M:
    """``model`` from YAML ``text``; errors name ``source``, the line and the field."""
    data, node = read_yaml(text, source, error)
    return validate_mapping(model, data, node, source, error=error, tags=tags, docs=docs)
