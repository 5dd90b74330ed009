# webhook-service image. Build from the repository root:
#   docker build -f deploy/docker/webhook-service.Dockerfile -t payhook/webhook-service .
# Stage 1 builds a virtualenv; stage 2 copies only that virtualenv onto a clean slim base.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Third-party dependencies first, at the versions in constraints.txt, so this layer is reused
# until the constraints change; tests/deploy checks this list against the pyproject files.
COPY constraints.txt ./
RUN pip install --constraint constraints.txt apispec Flask gevent gunicorn marshmallow redis urllib3 prometheus-client standardwebhooks SQLAlchemy alembic dramatiq python-json-logger psycopg psycopg-binary cryptography
COPY shared/ shared/
COPY services/webhook-service/ services/webhook-service/
RUN pip install --constraint constraints.txt "./shared[postgres]" ./services/webhook-service

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 payhook \
    && useradd --system --uid 10001 --gid payhook --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin payhook
COPY --from=build /opt/venv /opt/venv
WORKDIR /tmp
USER 10001:10001
ENV BIND=0.0.0.0:8000
EXPOSE 8000
ENTRYPOINT ["payhook-webhook-service"]
