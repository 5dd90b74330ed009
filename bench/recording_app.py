"""A second reference beside the echo: bare Flask that records each body in PostgreSQL before answering.

Not a target. It shows what durably recording a request costs on this machine (one INSERT and its
commit, no validation, no queue), apart from everything else Payhook does with a callback. Served by
the same gunicorn settings as the echo; ``BENCH_RECORDING_URL`` names the bench's own database, where
``make bench`` has made its table ``bench_recorded (id bigserial PRIMARY KEY, body text NOT NULL)``.
"""

import os

import sqlalchemy
from flask import Flask, jsonify, request

app = Flask(__name__)
# Built in the worker, after gevent patches the standard library, so psycopg waits cooperatively.
engine = sqlalchemy.create_engine(os.environ["BENCH_RECORDING_URL"], pool_size=8, max_overflow=8)


@app.post("/<path:_path>")
def record(_path: str):
    """Parse the JSON body, insert it, commit, then answer as a callback endpoint does."""
    request.get_json()
    with engine.connect() as conn:
        conn.exec_driver_sql("INSERT INTO bench_recorded (body) VALUES (%s)", (request.get_data(as_text=True),))
        conn.commit()
    return jsonify(ResultCode=0, ResultDesc="Accepted")
