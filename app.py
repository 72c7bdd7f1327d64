"""v-secure Chalice app: registers the API blueprints and the scheduled functions. No logic here."""

from chalice import Chalice, Rate

from chalicelib.api.principals import principals_api
from chalicelib.api.secrets import secrets_api
from chalicelib.api.system import system_api
from chalicelib.jobs import purge_deleted_secrets

app = Chalice(app_name="v-secure")
app.register_blueprint(system_api)
app.register_blueprint(secrets_api)
app.register_blueprint(principals_api)


@app.schedule(Rate(1, unit=Rate.HOURS), name="purge-deleted")
def purge_deleted(event: object) -> dict[str, object]:
    return purge_deleted_secrets()
