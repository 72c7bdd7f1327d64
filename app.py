"""v-secure Chalice app: registers the API blueprints and the scheduled functions. No logic here."""

from chalice import Chalice

app = Chalice(app_name="v-secure")


@app.route("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
