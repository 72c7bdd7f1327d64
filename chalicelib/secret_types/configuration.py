"""``configuration``: a JSON object, optionally checked against the secret's ``value_schema``.

``value_schema`` is a Draft 2020-12 JSON Schema. ``format`` keywords are asserted, and ``$ref``
resolves only inside the schema itself: remote references are never fetched. A failure names the
JSON Pointer of the offending location and the schema keyword that failed, never the value
found there. Object keys in the pointer are shown only if the schema names them as properties;
other keys (matched by ``additionalProperties`` or ``patternProperties``) come from the value
and are shown as ``*``. A schema that is itself invalid raises
:class:`~chalicelib.errors.InvalidRequest`.

Example::

    schema = {"type": "object", "required": ["region"], "properties": {"region": {"type": "string"}}}
    ConfigurationHandler().validate('{"region": 7}', value_schema=schema)
    # InvalidSecretValue: a configuration value does not match value_schema at /region:
    #                     'type' (expected string)
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from chalicelib.errors import InvalidRequest, InvalidSecretValue
from chalicelib.models import SecretType
from chalicelib.secret_types.base import ValidatedValue, parse_json_object

if TYPE_CHECKING:  # jsonschema is imported on first use: it costs tens of ms at cold start
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

_WHAT = "a configuration value"


class ConfigurationHandler:
    """Validates ``configuration`` values: a JSON object, matching ``value_schema`` when one is set."""

    type: SecretType = SecretType.CONFIGURATION

    def validate(self, value: str, *, value_schema: dict[str, Any] | None = None) -> ValidatedValue:
        document = parse_json_object(value, _WHAT)
        if value_schema is not None:
            check_against_schema(document, value_schema)
        return ValidatedValue(format="json")


def check_against_schema(document: dict[str, Any], schema: dict[str, Any]) -> None:
    """Raise ``InvalidSecretValue`` naming the first failing path, or ``InvalidRequest`` for a bad schema."""
    from jsonschema.exceptions import best_match
    from referencing.exceptions import Unresolvable

    validator = schema_validator(schema)
    try:
        error = best_match(validator.iter_errors(document))
    except Unresolvable:
        raise InvalidRequest(
            "value_schema has a $ref that cannot be resolved (remote refs are not fetched)"
        ) from None
    except RecursionError:
        raise InvalidRequest("value_schema could not be evaluated (recursion too deep)") from None
    if error is not None:
        where = pointer(error.absolute_path, known_keys=property_names(schema))
        raise InvalidSecretValue(f"{_WHAT} does not match value_schema at {where}: {describe_failure(error)}")


def schema_validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A Draft 2020-12 validator with format assertion and no remote ``$ref`` retrieval."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError
    from referencing import Registry

    if not isinstance(schema, dict):
        raise InvalidRequest("value_schema must be a JSON object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise InvalidRequest(
            f"value_schema is not a valid Draft 2020-12 JSON Schema (at {pointer(error.absolute_path)})"
        ) from None
    return Draft202012Validator(
        schema, registry=Registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def describe_failure(error: ValidationError) -> str:
    """The failing keyword, with detail taken from the schema only (never from the value)."""
    keyword = str(error.validator)
    if keyword == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        return f"missing required properties {', '.join(map(str, missing))}"
    if keyword == "type":
        return f"'type' (expected {_schema_words(error.validator_value)})"
    return f"'{keyword}'"


def _schema_words(expected: Any) -> str:
    return " or ".join(map(str, expected)) if isinstance(expected, list) else str(expected)


def pointer(path: Iterable[Any], known_keys: Collection[str] | None = None) -> str:
    """RFC 6901 JSON Pointer for a jsonschema path; ``(root)`` for the document itself.

    With ``known_keys``, object keys outside it are masked as ``*`` (array indexes are kept).

    Example::

        pointer(["limits", "my-key", 0], known_keys={"limits"})  # "/limits/*/0"
    """
    parts = [_segment(part, known_keys) for part in path]
    return "/" + "/".join(parts) if parts else "(root)"


def _segment(part: Any, known_keys: Collection[str] | None) -> str:
    if isinstance(part, str) and known_keys is not None and part not in known_keys:
        return "*"
    return str(part).replace("~", "~0").replace("/", "~1")


def property_names(schema: Any) -> set[str]:
    """Every name the schema declares under ``properties`` or ``required``, at any depth."""
    names: set[str] = set()
    if isinstance(schema, dict):
        for keyword, child in schema.items():
            if keyword in ("properties", "required") and isinstance(child, dict | list):
                names.update(name for name in child if isinstance(name, str))
            names |= property_names(child)
    elif isinstance(schema, list):
        for child in schema:
            names |= property_names(child)
    return names
