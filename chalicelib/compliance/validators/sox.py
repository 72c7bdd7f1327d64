"""SOX IT general controls (ITGC) over the systems that hold financial-reporting credentials.

Change management: routine changes are made by named principals, never by the shared root
principal. Logical access: least privilege, MFA, periodic review of unused accounts. Records
are kept seven years (SOX §802 / SEC Rule 2-06). SOX sets no rotation period: secrets with an
interval of their own are checked against it.

Example::

    from chalicelib.compliance.validators.sox import STANDARD
"""

from chalicelib.compliance import checks
from chalicelib.compliance.model import Control, Standard

CONTROLS = (
    Control("attributable_changes", "SOX ITGC: change management",
            "Routine changes made by named principals, not shared or root", checks.attributable_changes),
    Control("no_wildcard_grants", "SOX ITGC: logical access (least privilege)",
            "No '*' grants on secrets in scope", checks.no_wildcard_grants),
    Control("mfa_required", "SOX ITGC: logical access (authentication)",
            "MFA required to read secrets in scope", checks.mfa_required),
    Control("no_inactive_principals", "SOX ITGC: logical access (user access review)",
            "No enabled principal unused for 90 days", checks.no_inactive_principals),
    Control("rotation", "SOX ITGC: logical access (credential management)",
            "Credentials rotated within their configured interval", checks.rotation),
    Control("encryption_at_rest", "SOX ITGC: data protection",
            "Secret values stored encrypted (AES-256-GCM)", checks.encryption_at_rest),
    Control("audit_enabled", "SOX ITGC: IT operations (audit logging)",
            "Every change recorded in the audit log", checks.audit_enabled),
    Control("audit_retention", "SOX ITGC: record retention (SOX §802, 7 years)",
            "Audit log retained seven years under Object Lock COMPLIANCE", checks.audit_retention),
    Control("audit_integrity", "SOX ITGC: change management (audit trail integrity)",
            "Audit log verified unaltered over the period", checks.audit_integrity),
)

STANDARD = Standard(name="SOX", title="SOX IT general controls", controls=CONTROLS, rotation_max_days=None,
                    audit_retention_days=7 * 365, inactive_days=90)
