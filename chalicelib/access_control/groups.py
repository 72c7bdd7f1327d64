"""Groups (``backend-team``, ``devops-team``): named sets of principals that grants can name.

Membership is stored on the principal record (``groups``), so authorization needs no extra
read, and mirrored as ``GROUP#<name>`` / ``MEMBER#<id>`` items so a group's members list with
one Query. Both change in one transaction with the ``group_change`` audit event, guarded by
the principal's ``rev``. Only global admins manage groups. A principal's other processes see
a membership change within ``V_SECURE_AUTH_CACHE_TTL`` seconds (the token cache).

Example::

    groups = get_group_service()
    groups.add_member(caller, "backend-team", "alice")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.access_control.auth import Directory, PrincipalRecord, group_member_key
from chalicelib.access_control.context import Caller
from chalicelib.access_control.gate import require_global_admin
from chalicelib.access_control.wire import GroupInfo, GroupList
from chalicelib.audit.events import Action
from chalicelib.audit.stream import AuditWriter
from chalicelib.errors import Conflict, DependencyUnavailable, VersionConflict

MAX_ATTEMPTS = 5


class GroupService:
    def __init__(self, directory: Directory, dynamodb: Any, table: str, audit: AuditWriter) -> None:
        self.directory = directory
        self._db = dynamodb
        self._table = table
        self._audit = audit

    def list_groups(self, caller: Caller) -> GroupList:
        """Every group that has members, with its members (from the principal listing: one Query)."""
        self._require_admin(caller, Action.GROUP_READ, "list", None)
        members: dict[str, list[str]] = {}
        for principal in self.directory.list_principals():
            for group in principal.groups:
                members.setdefault(group, []).append(principal.principal_id)
        return GroupList(groups=[GroupInfo(group=g, members=sorted(m)) for g, m in sorted(members.items())])

    def get_group(self, caller: Caller, group: str) -> GroupInfo:
        self._require_admin(caller, Action.GROUP_READ, "get", group)
        return GroupInfo(group=group, members=self._members(group))

    def add_member(self, caller: Caller, group: str, principal_id: str) -> GroupInfo:
        self._require_admin(caller, Action.GROUP_CHANGE, "add_member", group, principal_id)
        member = {"Put": {"TableName": self._table, "Item": {**group_member_key(group, principal_id),
                                                             "principal_id": {"S": principal_id}}}}
        self._update(caller, group, principal_id, "add_member", lambda groups: groups | {group}, member)
        return GroupInfo(group=group, members=self._members(group))

    def remove_member(self, caller: Caller, group: str, principal_id: str) -> GroupInfo:
        self._require_admin(caller, Action.GROUP_CHANGE, "remove_member", group, principal_id)
        member = {"Delete": {"TableName": self._table, "Key": group_member_key(group, principal_id)}}
        self._update(caller, group, principal_id, "remove_member", lambda groups: groups - {group}, member)
        return GroupInfo(group=group, members=self._members(group))

    def _update(self, caller: Caller, group: str, principal_id: str, operation: str,
                change: Callable[[set[str]], set[str]], member_item: dict[str, Any]) -> PrincipalRecord:
        for _attempt in range(MAX_ATTEMPTS):
            principal = self.directory.require_principal(principal_id)
            groups = sorted(change(set(principal.groups)))
            updated = principal.model_copy(update={"groups": groups})
            draft = caller.draft(Action.GROUP_CHANGE, details={
                "operation": operation, "group": group, "principal": principal_id,
                "groups_before": principal.groups, "groups_after": groups})
            try:
                self.directory.save_principal(updated, draft, extra_items=[member_item], guarded=True)
            except Conflict:
                continue
            return updated
        raise VersionConflict(f"principal '{principal_id}' is being changed by others; try again")

    def _members(self, group: str) -> list[str]:
        kwargs: dict[str, Any] = {
            "TableName": self._table, "KeyConditionExpression": "pk = :pk AND begins_with(sk, :m)",
            "ExpressionAttributeValues": {":pk": {"S": f"GROUP#{group}"}, ":m": {"S": "MEMBER#"}},
            "ConsistentRead": True}
        members: list[str] = []
        try:
            while True:
                answer = self._db.query(**kwargs)
                members.extend(item["sk"]["S"].removeprefix("MEMBER#") for item in answer.get("Items", []))
                if "LastEvaluatedKey" not in answer:
                    return sorted(members)
                kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as error:
            code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else None
            raise DependencyUnavailable("dynamodb", f"Query failed: {code or type(error).__name__}") from None

    def _require_admin(self, caller: Caller, action: Action, operation: str, group: str | None,
                       principal_id: str | None = None) -> None:
        require_global_admin(caller, action, "managing groups", audit=self._audit.commit,
                             details={"operation": operation, "group": group, "principal": principal_id})


def get_group_service() -> GroupService:
    from chalicelib.access_control.auth import get_directory
    from chalicelib.audit.stream import get_audit_writer
    from chalicelib.aws import client
    from chalicelib.config import get_settings

    return GroupService(get_directory(), client("dynamodb"), get_settings().secrets_table, get_audit_writer())
