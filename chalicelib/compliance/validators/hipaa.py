"""HIPAA Security Rule technical safeguards (45 CFR §164.312), with the six-year retention of
§164.316(b)(2)(i) for the audit log.

HIPAA sets no rotation period: only secrets with a rotation interval of their own are checked
against it (§164.308(a)(5)(ii)(D), password management).

Example::

    from chalicelib.compliance.validators.hipaa import STANDARD
"""

from chalicelib.compliance import checks
from chalicelib.compliance.model import Control, Standard

CONTROLS = (
    Control("encryption_at_rest", "HIPAA §164.312(a)(2)(iv)",
            "Encryption and decryption: values stored as AES-256-GCM envelopes", checks.encryption_at_rest),
    Control("no_wildcard_grants", "HIPAA §164.312(a)(1)",
            "Access control: only the principals granted access rights", checks.no_wildcard_grants),
    Control("attributable_changes", "HIPAA §164.312(a)(2)(i)",
            "Unique user identification: changes made by named principals, not root", checks.attributable_changes),
    Control("mfa_required", "HIPAA §164.312(d)",
            "Person or entity authentication: MFA required to read secrets in scope", checks.mfa_required),
    Control("rotation", "HIPAA §164.308(a)(5)(ii)(D)",
            "Password management: credentials rotated within their configured interval", checks.rotation),
    Control("audit_enabled", "HIPAA §164.312(b)", "Audit controls: activity recorded for every change",
            checks.audit_enabled),
    Control("audit_integrity", "HIPAA §164.312(c)(1)",
            "Integrity: the audit log is not altered or destroyed improperly", checks.audit_integrity),
    Control("audit_retention", "HIPAA §164.316(b)(2)(i)",
            "Audit records retained six years under Object Lock COMPLIANCE", checks.audit_retention),
)

STANDARD = Standard(name="HIPAA", title="HIPAA Security Rule", controls=CONTROLS, rotation_max_days=None,
                    audit_retention_days=6 * 365, inactive_days=90)
