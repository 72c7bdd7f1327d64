"""GDPR Art. 5, 17, 30 and 32 as they apply to a secret store.

Security of processing (Art. 32): encryption and access restricted to named principals.
Erasure (Art. 17, with storage limitation, Art. 5(1)(e)): destroyed secrets are crypto-shredded
(no ciphertext, no wrapped data key left). Records of processing (Art. 30): who did what to
which secret, compiled from the audit trail and exported as a report section. Integrity and
accountability (Art. 5(1)(f), 5(2)): the audit log is on and verified. GDPR sets no minimum
retention, so the retention control does not apply.

Example::

    from chalicelib.compliance.validators.gdpr import STANDARD
"""

from chalicelib.compliance import checks
from chalicelib.compliance.model import Control, Standard

CONTROLS = (
    Control("encryption_at_rest", "GDPR Art. 32(1)(a)",
            "Encryption of stored values (AES-256-GCM envelopes)", checks.encryption_at_rest),
    Control("no_wildcard_grants", "GDPR Art. 32(1)(b)",
            "Confidentiality: no '*' grants on secrets in scope", checks.no_wildcard_grants),
    Control("crypto_shredding", "GDPR Art. 17 / Art. 5(1)(e)",
            "Erasure by crypto-shredding: destroyed secrets keep no ciphertext or key", checks.crypto_shredding),
    Control("records_of_processing", "GDPR Art. 30(1)",
            "Records of processing: who accessed which secrets, exportable", checks.records_of_processing),
    Control("audit_enabled", "GDPR Art. 5(2)", "Accountability: every change recorded in the audit log",
            checks.audit_enabled),
    Control("audit_integrity", "GDPR Art. 5(1)(f)",
            "Integrity: the audit log verified unaltered over the period", checks.audit_integrity),
)

STANDARD = Standard(name="GDPR", title="GDPR", controls=CONTROLS, rotation_max_days=None,
                    audit_retention_days=None, inactive_days=90)
