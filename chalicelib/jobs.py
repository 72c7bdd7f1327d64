"""Scheduled jobs, called by the Chalice scheduled functions in app.py and by the local timer."""

from __future__ import annotations

from chalicelib.logging import logger


def purge_deleted_secrets() -> dict[str, object]:
    """Destroy (crypto-shred) secrets whose recovery window has passed."""
    from chalicelib.vault.service import get_vault_service

    purged = get_vault_service().purge_due()
    logger.info("purged deleted secrets", extra={"count": len(purged)})
    return {"purged": purged}
