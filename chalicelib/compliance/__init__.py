"""Compliance reports from what is stored: PCI DSS v4.0.1, HIPAA (§164.312), SOX ITGC, GDPR.

- ``evidence.py`` gathers the facts once per report (Query, BatchGetItem, S3, ``audit verify``);
- ``encryption_check.py`` inspects every stored envelope;
- ``checks.py`` holds the checks and the scope rule, ``validators/<standard>.py`` binds them to
  each standard's requirements;
- ``report.py`` builds the report, ``reporters/`` renders it as JSON, CSV or PDF;
- ``scheduled.py`` writes last month's reports to the audit bucket.

Example::

    from chalicelib.compliance.model import parse_period
    from chalicelib.compliance.report import generate_report

    report = generate_report("PCI-DSS", parse_period("monthly", now=now), generated_by="auditor")
    print(report.status, [v.control_id for v in report.violations])
"""
