"""DynamoDB table layout: key schema and indexes, in one place.

The local bootstrap creates the tables from these definitions and ``infra/stateful.yaml``
declares the same ones (a test compares them).

Secrets table items (``pk`` / ``sk``):

=======================  ==================  ===============================================
pk                       sk                  what
=======================  ==================  ===============================================
``SECRET#<id>``          ``META``            type, labels, policy, rotation, current envelope
``SECRET#<id>``          ``V#<0000000001>``  one version's envelope, status, provenance
``PRINCIPAL#<id>``       ``META``            a user or service account, its groups
``TOKEN#<sha256>``       ``META``            a bearer token's hash, principal, expiry
``PRINCIPAL#<id>``       ``TOKEN#<token id>`` token listing for a principal
``GROUP#<name>``         ``MEMBER#<id>``     group membership
``POLICY``               ``<name>``          a prefix policy (``prod/*``); all load with one Query
``RATE#<principal>#<id>`` ``W#<window>``     rate-limit counter (TTL)
``MFA#<principal>``      ``STEP#<step>``     a used TOTP time step (replay guard, TTL)
``ROTATION#<id>``        ``RUN#<run id>``    a rotation run and its steps
``OUTBOX``               ``<time>#<ntf id>`` a notification not yet delivered (TTL)
``SYSTEM``               ``<name>``          bootstrap state, key checks
=======================  ==================  ===============================================

Secret META items carry ``kind = "SECRET"`` (listing index) and, when something is due for
them, ``sched_pk`` (``ROTATION`` or ``PURGE``) and ``sched_at`` (ISO time), so scheduled jobs
find due work with one Query instead of a scan.

Audit table items: ``pk`` = ``STREAM#<stream id>``, ``sk`` = sequence number; the registry of
streams is ``pk`` = ``STREAMS``, ``sk`` = 0-padded start time + stream id.
"""

from __future__ import annotations

from typing import Any

SECRET_LIST_INDEX = "by_kind"
SCHEDULE_INDEX = "scheduled"
AUDIT_BY_SECRET = "by_secret"
AUDIT_BY_ACTOR = "by_actor"
AUDIT_BY_ACTION = "by_action"
AUDIT_BY_DAY = "by_day"
TTL_ATTRIBUTE = "ttl"


def _gsi(name: str, hash_key: str, range_key: str) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }


def secrets_table_definition(table_name: str) -> dict[str, Any]:
    """Arguments for ``CreateTable`` of the secrets table."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "kind", "AttributeType": "S"},
            {"AttributeName": "secret_id", "AttributeType": "S"},
            {"AttributeName": "sched_pk", "AttributeType": "S"},
            {"AttributeName": "sched_at", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            _gsi(SECRET_LIST_INDEX, "kind", "secret_id"),
            _gsi(SCHEDULE_INDEX, "sched_pk", "sched_at"),
        ],
    }


def audit_table_definition(table_name: str) -> dict[str, Any]:
    """Arguments for ``CreateTable`` of the append-only audit table."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
            {"AttributeName": "secret_id", "AttributeType": "S"},
            {"AttributeName": "actor", "AttributeType": "S"},
            {"AttributeName": "action", "AttributeType": "S"},
            {"AttributeName": "day", "AttributeType": "S"},
            {"AttributeName": "ts", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            _gsi(AUDIT_BY_SECRET, "secret_id", "ts"),
            _gsi(AUDIT_BY_ACTOR, "actor", "ts"),
            _gsi(AUDIT_BY_ACTION, "action", "ts"),
            _gsi(AUDIT_BY_DAY, "day", "ts"),
        ],
    }
