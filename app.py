"""v-secure Chalice app: registers the API blueprints and the scheduled functions. No logic here."""

from chalice import Chalice, Cron, Rate

from chalicelib import jobs
from chalicelib.api.access import access_api
from chalicelib.api.audit import audit_api
from chalicelib.api.compliance import compliance_api
from chalicelib.api.jwks import jwks_api
from chalicelib.api.keys import keys_api
from chalicelib.api.principals import principals_api
from chalicelib.api.rotation import rotation_api
from chalicelib.api.secrets import secrets_api
from chalicelib.api.system import system_api

app = Chalice(app_name="v-secure")
for blueprint in (system_api, secrets_api, principals_api, access_api, audit_api, rotation_api,
                  compliance_api, keys_api, jwks_api):
    app.register_blueprint(blueprint)


@app.schedule(Rate(1, unit=Rate.HOURS), name="purge-deleted")
def purge_deleted(event: object) -> dict[str, object]:
    return jobs.purge_deleted_secrets()


@app.schedule(Rate(5, unit=Rate.MINUTES), name="audit-sealer")
def seal_audit(event: object) -> dict[str, object]:
    return jobs.seal_audit_log()


@app.schedule(Rate(5, unit=Rate.MINUTES), name="rotation-scheduler")
def rotation_tick(event: object) -> dict[str, object]:
    return jobs.run_rotation_scheduler()


@app.schedule(Cron(0, 3, 1, "*", "?", "*"), name="monthly-compliance-report")
def monthly_report(event: object) -> dict[str, object]:
    return jobs.monthly_compliance_reports()
