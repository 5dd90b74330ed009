"""The baseline: a bare Flask JSON echo app, served by the same gunicorn settings as the webhook-service."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/<path:_path>")
def echo(_path: str):
    """Parse the JSON body and answer it back, as a callback endpoint does at the very least."""
    return jsonify(request.get_json())
