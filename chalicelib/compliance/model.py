"""The vocabulary of compliance checks: standards, controls, their results, and report periods.

A :class:`Standard` is a list of :class:`Control` s. Each control names the requirement it maps
to (``"PCI DSS v4.0.1 Req. 8.4.2"``, ``"HIPAA §164.312(a)(2)(iv)"``...) and checks the
:class:`~chalicelib.compliance.evidence.Evidence` gathered once per report, returning a
:class:`ControlResult`: ``pass``, ``fail`` or ``not_applicable``, the evidence it looked at
(counts, ids) and, when it fails, the findings and what to do about them.

Example::

    result = control.evaluate(evidence)
    if result.status is Outcome.FAIL:
        print(result.requirement, result.summary, result.remediation)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from chalicelib.errors import InvalidRequest

if TYPE_CHECKING:
    from chalicelib.compliance.evidence import Evidence

MAX_PERIOD_DAYS = 400
"""A custom period spans at most this many days (a year and a bit: one Query per day of events)."""


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NOT_APPLICABLE = "not_applicable"


class ReportStatus(StrEnum):
    COMPLIANT = "compliant"
    NON_COMPLIANT = "non_compliant"


@dataclass(frozen=True)
class Finding:
    """One thing wrong (or, for the inventory, one thing checked): a subject and what about it."""

    subject: str
    detail: str


@dataclass(frozen=True)
class ControlResult:
    control_id: str
    requirement: str
    title: str
    status: Outcome
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    remediation: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is Outcome.FAIL


Check = Callable[["Evidence", "Standard"], "Verdict"]


@dataclass(frozen=True)
class Verdict:
    """What a check function returns; the control adds its id, requirement and title."""

    status: Outcome
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    remediation: str | None = None


@dataclass(frozen=True)
class Control:
    """One requirement of a standard and the check that tests it against the evidence."""

    control_id: str
    requirement: str
    title: str
    check: Check

    def evaluate(self, evidence: Evidence, standard: Standard) -> ControlResult:
        verdict = self.check(evidence, standard)
        return ControlResult(control_id=self.control_id, requirement=self.requirement, title=self.title,
                             status=verdict.status, summary=verdict.summary, evidence=verdict.evidence,
                             findings=verdict.findings,
                             remediation=verdict.remediation if verdict.status is Outcome.FAIL else None)


@dataclass(frozen=True)
class Standard:
    """A standard's controls and the parameters its checks use.

    ``rotation_max_days``: the longest a credential may go unrotated when the secret has no
    rotation interval of its own (None: only secrets with a configured interval are checked).
    ``audit_retention_days``: the minimum Object Lock retention of the audit log (None: no minimum).
    """

    name: str
    title: str
    controls: tuple[Control, ...]
    rotation_max_days: int | None = None
    audit_retention_days: int | None = None
    inactive_days: int = 90

    def control(self, control_id: str) -> Control:
        for control in self.controls:
            if control.control_id == control_id:
                return control
        raise KeyError(control_id)


# --- periods ----------------------------------------------------------------------------------


class PeriodKind(StrEnum):
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"
    CUSTOM = "custom"


@dataclass(frozen=True)
class Period:
    """The time a report covers: ``[start, end]`` (both inclusive, UTC).

    Event-based checks (who changed what, accesses, rotations) read the audit events of the
    period up to ``as_of`` (the earlier of ``end`` and the time the report is made);
    state-based checks (envelopes, grants, retention) read the store as it is at ``as_of``.
    """

    kind: PeriodKind
    start: datetime
    end: datetime
    as_of: datetime

    @property
    def label(self) -> str:
        """``2026-01-01 to 2026-01-31``, as the product spec shows it."""
        return f"{self.start.date().isoformat()} to {self.end.date().isoformat()}"

    def days(self) -> list[date]:
        """Every day from ``start`` to ``as_of`` (the ``by_day`` index partitions to read)."""
        first, last = self.start.date(), self.as_of.date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def parse_period(kind: str | None, start: str | None = None, end: str | None = None, *,
                 now: datetime) -> Period:
    """``monthly`` / ``quarterly`` / ``yearly``: the calendar month, quarter or year that holds
    ``start`` (default: now); ``custom``: ``start`` and ``end`` (dates or ISO times) are required.

    Example::

        parse_period("monthly", now=datetime(2026, 1, 15, tzinfo=UTC)).label  # "2026-01-01 to 2026-01-31"
    """
    from chalicelib.audit.query import parse_time

    try:
        period_kind = PeriodKind((kind or PeriodKind.MONTHLY.value).lower())
    except ValueError:
        raise InvalidRequest(f"period must be one of {', '.join(k.value for k in PeriodKind)}") from None
    if period_kind is PeriodKind.CUSTOM:
        if not start or not end:
            raise InvalidRequest("a custom period needs start and end (dates like 2026-01-01 or ISO times)")
        first, last = parse_time(start, "start"), parse_time(end, "end", end_of_day=True)
    else:
        if end:
            raise InvalidRequest(f"end is only for custom periods; a {period_kind.value} period ends with its "
                                 "calendar unit")
        anchor = parse_time(start, "start") if start else now
        first, last = calendar_period(period_kind, anchor)
    if first > last:
        raise InvalidRequest("start is after end")
    if first > now:
        raise InvalidRequest("the period has not started yet")
    if (last - first).days >= MAX_PERIOD_DAYS:
        raise InvalidRequest(f"a period spans at most {MAX_PERIOD_DAYS} days")
    return Period(period_kind, first, last, min(last, now))


def calendar_period(kind: PeriodKind, anchor: datetime) -> tuple[datetime, datetime]:
    """The first and last instant of the calendar month / quarter / year holding ``anchor``."""
    anchor = anchor.astimezone(UTC)
    if kind is PeriodKind.MONTHLY:
        first_month, months = anchor.month, 1
    elif kind is PeriodKind.QUARTERLY:
        first_month, months = 3 * ((anchor.month - 1) // 3) + 1, 3
    else:
        first_month, months = 1, 12
    start = datetime(anchor.year, first_month, 1, tzinfo=UTC)
    following = first_month + months
    after = datetime(anchor.year + (following - 1) // 12, (following - 1) % 12 + 1, 1, tzinfo=UTC)
    return start, after - timedelta(microseconds=1)


def previous_month(now: datetime) -> tuple[datetime, datetime]:
    """The calendar month before the one holding ``now`` (what the scheduled report covers)."""
    this_month, _end = calendar_period(PeriodKind.MONTHLY, now)
    return calendar_period(PeriodKind.MONTHLY, this_month - timedelta(days=1))
