"""A small IAM policy evaluator: enough of AWS's rules to check ``infra/iam-policy.json``.

Supports what the project's policies use: ``Action``/``Resource`` with ``*`` and ``?``
wildcards, explicit ``Deny`` over ``Allow`` over the implicit deny, and the condition
operators ``String(Not)Equals``, ``String(Not)Like``, ``Arn(Not)Equals``, ``Arn(Not)Like``,
``Bool`` and ``Null``, with the ``IfExists`` suffix and the ``ForAnyValue:`` /
``ForAllValues:`` set qualifiers. Anything else (``NotAction``, other operators) raises
:class:`UnsupportedPolicy`, so a policy change this evaluator cannot judge fails loudly
instead of being misjudged.

Example::

    request = AccessRequest("kms:Decrypt", "arn:aws:kms:us-east-1:123456789012:key/k",
                            {"kms:EncryptionContextKeys": ("secret_id", "type", "version")})
    decide(policy, request).allowed
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_OPERATOR = re.compile(r"^(?:(ForAnyValue|ForAllValues):)?([A-Za-z]+?)(IfExists)?$")
_NEGATED = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}
_MATCHERS = {"StringEquals", "StringNotEquals", "StringLike", "StringNotLike", "ArnEquals", "ArnLike",
             "ArnNotEquals", "ArnNotLike", "Bool"}


class UnsupportedPolicy(ValueError):
    """The policy uses an element or operator this evaluator does not implement."""


@dataclass(frozen=True)
class AccessRequest:
    """One authorization question: may ``action`` be done on ``resource`` in this ``context``?"""

    action: str
    resource: str
    context: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def values(self, key: str) -> tuple[str, ...] | None:
        """The request's values for condition key ``key`` (case-insensitive), None if absent."""
        wanted = key.lower()
        for name, values in self.context.items():
            if name.lower() == wanted:
                return tuple(values)
        return None


@dataclass(frozen=True)
class Decision:
    """``allowed`` plus which statements matched (for messages and coverage)."""

    allowed: bool
    allowing: tuple[str, ...] = ()
    denying: tuple[str, ...] = ()

    @property
    def explanation(self) -> str:
        if self.denying:
            return f"explicitly denied by {', '.join(self.denying)}"
        if self.allowing:
            return f"allowed by {', '.join(self.allowing)}"
        return "no statement allows it"


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def statements(policy: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The policy's statements, checked for elements this evaluator supports."""
    found = as_list(policy.get("Statement", []))
    for statement in found:
        unsupported = {"NotAction", "NotResource", "NotPrincipal"} & set(statement)
        if unsupported:
            raise UnsupportedPolicy(f"statement {statement.get('Sid')!r} uses {sorted(unsupported)}")
    return found


def action_matches(patterns: Iterable[str], action: str) -> bool:
    """IAM action patterns are case-insensitive globs (``dynamodb:Get*``)."""
    return any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in patterns)


def resource_matches(patterns: Iterable[str], resource: str) -> bool:
    """Resource patterns are case-sensitive globs; ``*`` and ``?`` may span ``/`` and ``:``."""
    return any(fnmatch.fnmatchcase(resource, pattern) for pattern in patterns)


def _value_matches(base: str, pattern: str, value: str) -> bool:
    if base in ("StringEquals", "StringNotEquals", "ArnEquals", "ArnNotEquals"):
        return value == pattern
    if base == "Bool":
        return value.lower() == pattern.lower()
    return fnmatch.fnmatchcase(value, pattern)


def _condition_holds(operator: str, key: str, expected: Any, request: AccessRequest) -> bool:
    match = _OPERATOR.match(operator)
    if match is None:
        raise UnsupportedPolicy(f"condition operator {operator!r}")
    qualifier, base, if_exists = match.groups()
    patterns = [str(item).lower() if base == "Bool" else str(item) for item in as_list(expected)]
    values = request.values(key)
    if base == "Null":
        if qualifier or if_exists:
            raise UnsupportedPolicy(f"condition operator {operator!r}")
        return (values is None or not values) == (patterns[0].lower() == "true")
    if base not in _MATCHERS:
        raise UnsupportedPolicy(f"condition operator {operator!r}")
    negated = base in _NEGATED
    positive = base.replace("Not", "")

    def holds_for(value: str) -> bool:
        return any(_value_matches(positive, p, value) for p in patterns) != negated

    if qualifier == "ForAllValues":
        return all(holds_for(value) for value in values or ())
    if qualifier == "ForAnyValue":
        return any(holds_for(value) for value in values or ())
    if values is None:
        return bool(if_exists) or negated
    if len(values) != 1:
        raise UnsupportedPolicy(f"single-valued operator {operator!r} on multi-valued key {key!r}")
    return holds_for(values[0])


def conditions_hold(statement: Mapping[str, Any], request: AccessRequest) -> bool:
    """Every operator and every key of the statement's ``Condition`` block holds (AND)."""
    for operator, keys in (statement.get("Condition") or {}).items():
        for key, expected in keys.items():
            if not _condition_holds(operator, key, expected, request):
                return False
    return True


def statement_applies(statement: Mapping[str, Any], request: AccessRequest) -> bool:
    return (action_matches(as_list(statement.get("Action", [])), request.action)
            and resource_matches(as_list(statement.get("Resource", [])), request.resource)
            and conditions_hold(statement, request))


def decide(policy: Mapping[str, Any], request: AccessRequest) -> Decision:
    """Evaluate an identity policy: explicit deny, then allow, else the implicit deny.

    Example::

        decide(policy, AccessRequest("dynamodb:UpdateItem", audit_table_arn)).allowed  # False
    """
    allowing: list[str] = []
    denying: list[str] = []
    for index, statement in enumerate(statements(policy)):
        if statement_applies(statement, request):
            sid = str(statement.get("Sid") or f"#{index}")
            (denying if statement.get("Effect") == "Deny" else allowing).append(sid)
    return Decision(allowed=bool(allowing) and not denying, allowing=tuple(allowing), denying=tuple(denying))


def granted_actions(policy: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(sid, action)`` for every action an ``Allow`` statement names."""
    pairs: list[tuple[str, str]] = []
    for index, statement in enumerate(statements(policy)):
        if statement.get("Effect") == "Allow":
            sid = str(statement.get("Sid") or f"#{index}")
            pairs.extend((sid, str(action)) for action in as_list(statement.get("Action", [])))
    return pairs
