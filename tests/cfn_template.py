"""Read CloudFormation YAML (short-form tags included) and resolve the intrinsics our templates use.

Only what ``infra/*.yaml`` needs: ``Ref`` (parameters, pseudo parameters, resources),
``Fn::Sub``, ``Fn::If`` / ``Fn::Equals`` / ``Fn::Not``, ``Fn::GetAtt`` and ``AWS::NoValue``.
Resource references resolve to placeholders (``<DataKey>``, ``<DataKey.Arn>``) since no
resource exists when a template is only read.

Example::

    template = load_template(Path("infra/stateful.yaml"))
    names = Resolver(template, {"NamePrefix": "v-secure"}).resolve(template["Resources"]["SecretsTable"])
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
_NO_VALUE = object()
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns ``!Ref x`` / ``!Sub ...`` / ``!GetAtt A.B`` into their long forms."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: Path) -> dict[str, Any]:
    """A CloudFormation template (YAML or JSON) as plain dicts with long-form intrinsics."""
    loaded = yaml.load(path.read_text(), Loader=_CfnLoader)
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} is not a template")
    return loaded


class Resolver:
    """Resolve intrinsics with given parameter values (defaults from the template).

    Example::

        Resolver(template, {"NamePrefix": "v-secure-prod"}).sub("${NamePrefix}-secrets")
    """

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, str] | None = None,
                 *, stack_name: str = "v-secure-stateful") -> None:
        self.template = template
        self.values: dict[str, str] = {
            name: str(spec.get("Default", "")) for name, spec in (template.get("Parameters") or {}).items()}
        self.values.update(parameters or {})
        self.values.update({"AWS::AccountId": ACCOUNT_ID, "AWS::Region": REGION, "AWS::Partition": "aws",
                            "AWS::StackName": stack_name, "AWS::URLSuffix": "amazonaws.com"})

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def sub(self, text: str, variables: Mapping[str, Any] | None = None) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if variables and name in variables:
                return str(self.resolve(variables[name]))
            if name in self.values:
                return self.values[name]
            return f"<{name}>"

        return _SUB_VARIABLE.sub(replace, text)

    def resolve(self, node: Any) -> Any:
        """``node`` with every supported intrinsic replaced by its value (or a placeholder)."""
        if isinstance(node, list):
            return [item for item in (self.resolve(i) for i in node) if item is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            resolved = self._intrinsic(key, value)
            if resolved is not None:
                return resolved
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v is not _NO_VALUE}

    def _intrinsic(self, key: str, value: Any) -> Any:
        if key == "Ref":
            if value == "AWS::NoValue":
                return _NO_VALUE
            return self.values.get(value, f"<{value}>")
        if key == "Fn::Sub":
            if isinstance(value, list):
                return self.sub(value[0], value[1])
            return self.sub(value)
        if key == "Fn::If":
            name, when_true, when_false = value
            return self.resolve(when_true if self.condition(name) else when_false)
        if key == "Fn::Equals":
            left, right = (self.resolve(v) for v in value)
            return left == right
        if key == "Fn::Not":
            return not self.resolve(value[0])
        if key == "Fn::GetAtt":
            return f"<{value[0]}.{value[1]}>"
        if key == "Fn::ImportValue":
            return f"<import:{self.resolve(value)}>"
        return None
