"""Rules in YAML over the same features as the model, with allow and deny lists.

A rule is a condition in a small, safe expression language (Python syntax,
whitelisted: comparisons, ``and``/``or``/``not``, ``in [...]``, arithmetic),
an action (``decline``, ``step_up`` or ``approve``), a mode (``active`` or
``shadow``) and a reason code::

    version: rules-2026.12.07
    rules:
      - id: new-device-large-amount
        when: "user_device_cnt_30d == 0 and amount > 2000 and user_cnt_30d >= 3"
        action: step_up
        reason: NEW_DEVICE_LARGE_AMOUNT
      - id: hw6-spoofing
        when: "device_model == 'HW-6' and score > 0.2"
        action: decline
        mode: shadow          # logged, never applied: costs customers nothing
    lists:
      deny: {device_id: [d-farm-01]}
      allow: {user_id: [u-qa-1]}

Names are the engineered features (docs/risk.md), the request's text
columns (``channel``, ``region``, ``device_model``, ``app_version``, ...,
the ids), the lender's ``f_`` columns and ``score`` (the model's calibrated
probability). A missing value makes a comparison *unknown*, and an unknown
condition does not fire (SQL's three-valued logic, the same in the live path
and in the columnar path, so a backtest of a rule fires on exactly the rows the
live rule would; a property test holds the two to it).
"""

from __future__ import annotations

import ast
import hashlib
import json
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from tapshield.errors import ContractError

ACTIONS = ("approve", "step_up", "decline")
SEVERITY = {"approve": 0, "step_up": 1, "decline": 2}
MODES = ("active", "shadow")
LIST_KEYS = ("user_id", "device_id", "merchant_id")
TEXT_NAMES = ("channel", "region", "carrier", "os", "app_version", "device_model",
              "merchant_category", "user_id", "device_id", "merchant_id", "payment_id")

Value = float | str | None
Row = Callable[[str], Value]
Pred = Callable[[Row], Value | bool]


class RuleError(ContractError):
    """A rules file that cannot be used (named: file, rule, problem)."""


_CMP: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
_ARITH: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


_ALLOWED: tuple[type[ast.AST], ...] = (
    ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare, ast.BinOp,
    ast.Constant, ast.List, ast.Tuple, ast.Load, ast.In, ast.NotIn, *_CMP, *_ARITH)


def _constant(node: ast.expr) -> Value:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str) \
            and not isinstance(node.value, bool):
        return node.value if isinstance(node.value, str) else float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _constant(node.operand)
        if isinstance(inner, float):
            return -inner
    raise RuleError("a list may only hold numbers and strings")


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition: evaluate it on one row or turn it into a Polars expression."""

    text: str
    names: frozenset[str]
    _tree: ast.expr

    @classmethod
    def parse(cls, text: str, known: Callable[[str], bool]) -> Condition:
        try:
            tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as exc:
            raise RuleError(f"cannot parse {text!r}: {exc.msg}") from None
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                if not known(node.id):
                    raise RuleError(f"unknown name {node.id!r} in {text!r}")
                names.add(node.id)
            elif not isinstance(node, _ALLOWED):
                raise RuleError(f"{type(node).__name__} is not allowed in {text!r}")
            if isinstance(node, ast.Constant) and isinstance(node.value, bool | type(None)):
                raise RuleError(f"use comparisons, not {node.value!r}, in {text!r}")
        return cls(text, frozenset(names), tree)

    # -- one row (three-valued: None = unknown) ----------------------------------------

    def compile(self) -> Pred:
        return _py(self._tree)

    # -- a frame -----------------------------------------------------------------------

    def expr(self) -> pl.Expr:
        """The condition as a Boolean Polars expression (null = unknown)."""
        return _pl(self._tree)


def _py(node: ast.expr) -> Pred:
    if isinstance(node, ast.Name):
        name = node.id
        return lambda row: row(name)
    if isinstance(node, ast.Constant):
        c = _constant(node)
        return lambda row: c
    if isinstance(node, ast.UnaryOp):
        inner = _py(node.operand)
        if isinstance(node.op, ast.Not):
            def not_(row: Row) -> Value | bool:
                v = inner(row)
                return None if v is None else not v
            return not_

        def neg(row: Row) -> Value | bool:
            v = inner(row)
            return None if v is None or isinstance(v, str) else -float(v)
        return neg
    if isinstance(node, ast.BoolOp):
        parts = [_py(v) for v in node.values]
        if isinstance(node.op, ast.And):
            def and_(row: Row) -> Value | bool:
                unknown = False
                for p in parts:
                    v = p(row)
                    if v is None:
                        unknown = True
                    elif not v:
                        return False
                return None if unknown else True
            return and_

        def or_(row: Row) -> Value | bool:
            unknown = False
            for p in parts:
                v = p(row)
                if v is None:
                    unknown = True
                elif v:
                    return True
            return None if unknown else False
        return or_
    if isinstance(node, ast.BinOp):
        fn = _ARITH[type(node.op)]
        lf, rf = _py(node.left), _py(node.right)

        def arith(row: Row) -> Value | bool:
            a, b = lf(row), rf(row)
            if a is None or b is None or isinstance(a, str) or isinstance(b, str):
                return None
            if isinstance(node.op, ast.Div) and b == 0:
                return None
            return float(fn(a, b))
        return arith
    if isinstance(node, ast.Compare):
        terms: list[Pred] = []
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            terms.append(_cmp_py(op, _py(left), right))
            left = right
        if len(terms) == 1:
            return terms[0]
        return _py_and(terms)
    raise RuleError(f"{type(node).__name__} is not allowed")


def _py_and(terms: list[Pred]) -> Pred:
    def and_(row: Row) -> Value | bool:
        unknown = False
        for p in terms:
            v = p(row)
            if v is None:
                unknown = True
            elif not v:
                return False
        return None if unknown else True
    return and_


def _cmp_py(op: ast.cmpop, lf: Pred, right: ast.expr) -> Pred:
    if isinstance(op, ast.In | ast.NotIn):
        if not isinstance(right, ast.List | ast.Tuple):
            raise RuleError("`in` needs a list of values, e.g. region in ['CN-GD', 'CN-ZJ']")
        values = frozenset(_constant(e) for e in right.elts)
        negate = isinstance(op, ast.NotIn)

        def member(row: Row) -> Value | bool:
            v = lf(row)
            if v is None:
                return None
            return (v in values) != negate
        return member
    fn = _CMP[type(op)]
    rf = _py(right)

    def cmp(row: Row) -> Value | bool:
        a, b = lf(row), rf(row)
        if a is None or b is None:
            return None
        if isinstance(a, str) != isinstance(b, str):
            return None
        return bool(fn(a, b))
    return cmp


def _pl(node: ast.expr) -> pl.Expr:
    if isinstance(node, ast.Name):
        return pl.col(node.id)
    if isinstance(node, ast.Constant):
        return pl.lit(_constant(node))
    if isinstance(node, ast.UnaryOp):
        inner = _pl(node.operand)
        return ~inner if isinstance(node.op, ast.Not) else -inner
    if isinstance(node, ast.BoolOp):
        parts = [_pl(v) for v in node.values]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if isinstance(node.op, ast.And) else (out | p)
        return out
    if isinstance(node, ast.BinOp):
        a, b = _pl(node.left), _pl(node.right)
        if isinstance(node.op, ast.Div):
            return pl.when(b == 0).then(None).otherwise(a / b)
        return _ARITH[type(node.op)](a, b)  # type: ignore[no-any-return]
    if isinstance(node, ast.Compare):
        terms: list[pl.Expr] = []
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            a = _pl(left)
            if isinstance(op, ast.In | ast.NotIn):
                assert isinstance(right, ast.List | ast.Tuple)
                values = [_constant(e) for e in right.elts]
                member = a.is_in(values, nulls_equal=False)
                member = ~member if isinstance(op, ast.NotIn) else member
                terms.append(pl.when(a.is_null()).then(None).otherwise(member))
            else:
                terms.append(_CMP[type(op)](a, _pl(right)))  # type: ignore[arg-type]
            left = right
        out = terms[0]
        for t in terms[1:]:
            out = out & t
        return out
    raise RuleError(f"{type(node).__name__} is not allowed")


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    condition: Condition
    action: str
    mode: str = "active"
    reason: str = ""
    description: str = ""
    test: Pred = field(default=lambda row: None, repr=False, compare=False)

    @property
    def code(self) -> str:
        return self.reason or f"RULE_{self.id.upper().replace('-', '_')}"


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A versioned set of rules and lists: what one ``rule_change`` deploys."""

    version: str
    rules: tuple[Rule, ...] = ()
    allow: Mapping[str, frozenset[str]] = field(default_factory=dict)
    deny: Mapping[str, frozenset[str]] = field(default_factory=dict)
    digest: str = ""

    @property
    def active(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.mode == "active")

    @property
    def shadow(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.mode == "shadow")

    def with_modes(self, modes: Mapping[str, str], version: str | None = None) -> RuleSet:
        """A copy with some rules' modes changed (promote a shadow rule, silence one)."""
        rules = tuple(Rule(r.id, r.condition, r.action, modes.get(r.id, r.mode), r.reason,
                           r.description, r.test) for r in self.rules)
        return RuleSet(version or self.version, rules, self.allow, self.deny, self.digest)

    def without(self, rule_ids: Sequence[str], version: str | None = None) -> RuleSet:
        keep = tuple(r for r in self.rules if r.id not in set(rule_ids))
        return RuleSet(version or self.version, keep, self.allow, self.deny, self.digest)


EMPTY_RULES = RuleSet("none")


def load_rules(source: Path | str | Mapping[str, Any], *, known: Callable[[str], bool],
               origin: str | None = None) -> RuleSet:
    """Parse a rules YAML file (or an already-loaded mapping) and check every rule."""
    if isinstance(source, Mapping):
        doc: Any = dict(source)
        where = origin or "rules"
    else:
        p = Path(source)
        if not p.exists():
            raise RuleError(f"{p}: no such file")
        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise RuleError(f"{p.name}: not valid YAML ({exc})") from None
        where = p.name
    if not isinstance(doc, Mapping):
        raise RuleError(f"{where}: expected a mapping with `version` and `rules`")
    version = str(doc.get("version") or "")
    if not version:
        raise RuleError(f"{where}: a rule set needs a `version` (it names the change)")
    rules: list[Rule] = []
    seen: set[str] = set()
    for n, raw in enumerate(doc.get("rules") or [], start=1):
        if not isinstance(raw, Mapping):
            raise RuleError(f"{where}: rule {n} is not a mapping")
        rid = str(raw.get("id") or "")
        if not rid or rid in seen:
            raise RuleError(f"{where}: rule {n} needs a unique `id` (got {rid!r})")
        seen.add(rid)
        action = str(raw.get("action", ""))
        if action not in ACTIONS:
            raise RuleError(f"{where}: rule {rid}: action must be one of {', '.join(ACTIONS)}")
        mode = str(raw.get("mode", "active"))
        if mode not in MODES:
            raise RuleError(f"{where}: rule {rid}: mode must be active or shadow")
        try:
            cond = Condition.parse(str(raw.get("when", "")), known)
        except RuleError as exc:
            raise RuleError(f"{where}: rule {rid}: {exc}") from None
        rules.append(Rule(rid, cond, action, mode, str(raw.get("reason") or ""),
                          str(raw.get("description") or ""), cond.compile()))
    lists: dict[str, dict[str, frozenset[str]]] = {"allow": {}, "deny": {}}
    for kind in ("allow", "deny"):
        raw_lists = (doc.get("lists") or {}).get(kind) or {}
        if not isinstance(raw_lists, Mapping):
            raise RuleError(f"{where}: lists.{kind} must map {', '.join(LIST_KEYS)} to lists")
        for key, values in raw_lists.items():
            if key not in LIST_KEYS:
                raise RuleError(f"{where}: lists.{kind}.{key}: use one of {', '.join(LIST_KEYS)}")
            lists[kind][key] = frozenset(str(v) for v in (values or []))
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
    return RuleSet(version, tuple(rules), lists["allow"], lists["deny"], digest[:12])

