"""Validation errors in plain words: what a 422 (and so the CLI) tells a user.

pydantic reports a union field once per branch ("Input should be 'sru_mnist', … " *and* "Input
should be a valid dictionary or object to extract fields from"), prefixes a validator's message
with "Value error, ", and says "Extra inputs are not permitted". Here each error becomes one entry
``{type, loc, msg}`` whose ``loc`` is the field path a user wrote and whose ``msg`` says what to
write instead:

- a union's errors are kept for the branch the input was meant for (a string: the names; a
  mapping: its fields);
- a name that is not one of a fixed set gets "did you mean" (fields, rules, models, datasets);
- every problem of an inline search space is its own entry (``space.params.lr: …``);
- a check of the whole study that names its field ("n_trials: give …") is placed at that field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from search_spaces.params import PARAMS
from search_spaces.schema import SpaceError, did_you_mean
from service.studies.schemas import Budget, FieldError, InlineSpace, Scheduler, StudyCreate

__all__ = ["plain_errors"]

#: the fields a user can write under each parent field (for "did you mean")
FIELDS: dict[str, type[BaseModel]] = {"scheduler": Scheduler, "pruning": Scheduler,
                                      "budget": Budget, "space": InlineSpace}
_TAG = re.compile(r"(literal|function-\w+)\[.*\]|[A-Z]\w*")  # a union branch's tag in a loc
_FIELD_FIRST = re.compile(r"([a-z_][a-z0-9_.]*): (.+)", re.S)  # "n_trials: give …"
_PHRASES = (("Input should be a valid dictionary or object to extract fields from",
             "must be a mapping (key: value)"),
            ("Input should be a valid dictionary", "must be a mapping (key: value)"),
            ("Input should be", "must be"), ("Field required", "required"),
            ("Value error, ", ""), ("Assertion failed, ", ""))


def _words(msg: str) -> str:
    for jargon, plain in _PHRASES:
        msg = msg.replace(jargon, plain)
    return re.sub(r"must be a valid dictionary or instance of \w+", "must be a mapping (key: value)",
                  msg)


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and bool(_TAG.fullmatch(part))


SOURCES = ("body", "query", "path", "header", "cookie")  # FastAPI's first loc element


def _path(loc: Sequence[Any]) -> tuple[list[str | int], list[str | int]]:
    """(where the value came from, e.g. ``["body"]``; the field path without union tags)."""
    source = list(loc[:1]) if loc and loc[0] in SOURCES else []
    return source, [p for p in loc[len(source):] if not _is_tag(p)]


def _known_fields(path: Sequence[str | int]) -> Iterable[str]:
    parent = str(path[-2]) if len(path) > 1 else ""
    return FIELDS.get(parent, StudyCreate).model_fields


def _one(e: Mapping[str, Any]) -> list[FieldError]:
    """One pydantic error as one or more plain entries."""
    source, path = _path(tuple(e.get("loc", ())))
    kind = e.get("type")
    cause = (e.get("ctx") or {}).get("error")
    if isinstance(cause, SpaceError):  # every problem of a space, each at its parameter
        out: list[FieldError] = []
        for problem in cause.problems:
            where, _, reason = problem.partition(": ")
            sub = ([] if where == "space" else [where] if where in InlineSpace.model_fields
                   else ["params", where])
            out.append({"type": kind, "loc": [*source, *path, *sub],
                         "msg": _words(reason or problem)})
        return out
    msg = str(e.get("msg", ""))
    given = e.get("input")
    if kind == "extra_forbidden" and path:
        msg = "not a known field" + did_you_mean(str(path[-1]), [*_known_fields(path), *PARAMS])
    elif kind == "literal_error":
        expected = re.findall(r"'([^']*)'", str((e.get("ctx") or {}).get("expected", "")))
        shown = repr(given) if len(repr(given)) <= 40 else f"{repr(given)[:37]}..."
        msg = (f"{shown} is not one of {', '.join(expected)}"
               + (did_you_mean(given, expected) if isinstance(given, str) else ""))
    elif kind == "value_error" and not path and (m := _FIELD_FIRST.fullmatch(_words(msg))):
        path, msg = [*m.group(1).split(".")], m.group(2)
    return [{"type": kind, "loc": [*source, *path], "msg": _words(msg)}]


def _drop_other_branches(errors: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Of a union's errors, those of the branch the input was meant for: with errors from
    several branches at one field, a branch that only says "wrong type" is dropped."""
    by_field: dict[tuple, set[Any]] = {}
    for e in errors:
        loc = tuple(e.get("loc", ()))
        tags = [i for i, p in enumerate(loc) if _is_tag(p)]
        if tags:
            by_field.setdefault(loc[:tags[0]], set()).add(loc[tags[0]])
    kept = []
    for e in errors:
        loc = tuple(e.get("loc", ()))
        tags = [i for i, p in enumerate(loc) if _is_tag(p)]
        if tags and len(by_field[loc[:tags[0]]]) > 1:
            wrong_type = e.get("type") in ("model_type", "dict_type", "model_attributes_type")
            wrong_name = e.get("type") == "literal_error" and not isinstance(e.get("input"), str)
            if wrong_type or (wrong_name and isinstance(e.get("input"), Mapping)):
                continue
        kept.append(e)
    return kept


def plain_errors(errors: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    """pydantic's errors (``ValidationError.errors()``) as plain ``{type, loc, msg}`` entries."""
    return [out for e in _drop_other_branches(errors) for out in _one(e)]
