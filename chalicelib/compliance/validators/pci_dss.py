"""PCI DSS v4.0.1 controls on secrets, access and the audit log.

Credentials and keys go at most 90 days between rotations unless the secret has a rotation
interval of its own (Req. 8.3.9 sets 90 days for passwords; 8.6.3 and 3.7.4 let a risk analysis
or cryptoperiod set the interval); audit history is kept at least 12 months (Req. 10.5.1);
accounts inactive for 90 days are disabled (Req. 8.2.6).

Example::

    from chalicelib.compliance.validators.pci_dss import STANDARD
"""

from chalicelib.compliance import checks
from chalicelib.compliance.model import Control, Standard

_V = "PCI DSS v4.0.1"

CONTROLS = (
    Control("encryption_at_rest", f"{_V} Req. 3.6.1.2",
            "Secret values stored encrypted (AES-256-GCM) under wrapped data keys", checks.encryption_at_rest),
    Control("rotation", f"{_V} Req. 8.3.9 / 8.6.3 / 3.7.4",
            "Passwords and keys changed within their period (90 days unless configured)", checks.rotation),
    Control("no_wildcard_grants", f"{_V} Req. 7.2.2",
            "Access granted to named principals and groups, never to '*'", checks.no_wildcard_grants),
    Control("mfa_required", f"{_V} Req. 8.4.2", "MFA required to read secrets in scope", checks.mfa_required),
    Control("no_inactive_principals", f"{_V} Req. 8.2.6",
            "No enabled principal unused for 90 days", checks.no_inactive_principals),
    Control("attributable_changes", f"{_V} Req. 8.2.2",
            "Changes made by named principals, not the shared root account", checks.attributable_changes),
    Control("audit_enabled", f"{_V} Req. 10.2.1", "Audit logs enabled and recording every change",
            checks.audit_enabled),
    Control("audit_retention", f"{_V} Req. 10.5.1",
            "Audit log retained at least 12 months under Object Lock COMPLIANCE", checks.audit_retention),
    Control("audit_integrity", f"{_V} Req. 10.3.4",
            "Audit log unaltered: signatures, digest chain, segment hashes, sealing", checks.audit_integrity),
)

STANDARD = Standard(name="PCI-DSS", title=_V, controls=CONTROLS, rotation_max_days=90, audit_retention_days=365,
                    inactive_days=90)
