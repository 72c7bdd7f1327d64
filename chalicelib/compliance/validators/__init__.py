"""The standards v-secure reports on, each a list of controls (``<standard>.py``).

Example::

    standard = get_standard("pci")          # the PCI DSS v4.0.1 controls
    results = [control.evaluate(evidence, standard) for control in standard.controls]
"""

from __future__ import annotations

from chalicelib.compliance.evidence import normalize_standard
from chalicelib.compliance.model import Standard
from chalicelib.errors import InvalidRequest


def standards() -> dict[str, Standard]:
    """Every supported standard by name (``PCI-DSS``, ``HIPAA``, ``SOX``, ``GDPR``)."""
    from chalicelib.compliance.validators import gdpr, hipaa, pci_dss, sox

    return {s.name: s for s in (pci_dss.STANDARD, hipaa.STANDARD, sox.STANDARD, gdpr.STANDARD)}


def get_standard(name: str | None) -> Standard:
    """The standard called ``name`` (case-insensitive; ``pci`` and ``PCI_DSS`` mean ``PCI-DSS``)."""
    known = standards()
    if not name:
        raise InvalidRequest(f"standard is required ({', '.join(known)})")
    found = known.get(normalize_standard(name))
    if found is None:
        raise InvalidRequest(f"unknown standard '{name}' (one of {', '.join(known)})")
    return found
