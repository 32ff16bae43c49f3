# prodgate gateway image: `prodgate serve` on 0.0.0.0:8000.
#
#   docker build -t prodgate:0.1.0 .
#   docker run --rm -p 8000:8000 \
#     -e PRODGATE_DATABASE_URL=postgresql://prodgate@db.internal/prodgate \
#     -v "$PWD/prodgate.yaml:/etc/prodgate/prodgate.yaml:ro" \
#     -v prodgate-home:/var/lib/prodgate \
#     prodgate:0.1.0
#
# Models whose libraries are not prodgate's own (LightGBM, XGBoost) need them in the
# image: build with --build-arg EXTRAS=lightgbm (or xgboost, or lightgbm,xgboost).
# See docs/deployment.md.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/prodgate
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The package and its runtime dependencies only (no dev extras), into the venv that
# the final stage copies whole; the venv's path is the same in both stages.
RUN /opt/prodgate/bin/pip install ".${EXTRAS:+[$EXTRAS]}"

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/prodgate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PRODGATE_HOME=/var/lib/prodgate \
    PRODGATE_CONFIG=/etc/prodgate/prodgate.yaml
# A fixed numeric user, so Kubernetes' runAsNonRoot can check it. HOME (the artifact
# cache and the audit journal) is the one folder it writes; mount a volume there.
RUN groupadd --system --gid 10001 prodgate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/prodgate --shell /usr/sbin/nologin prodgate \
    && mkdir -p /var/lib/prodgate /etc/prodgate \
    && chown 10001:10001 /var/lib/prodgate
COPY --from=build /opt/prodgate /opt/prodgate
USER 10001:10001
WORKDIR /var/lib/prodgate
EXPOSE 8000
# Liveness only (the process answers); readiness is GET /readyz. The slim image has
# no curl, so Python's own urllib asks. Port 8000 unless PRODGATE_PORT says otherwise.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PRODGATE_PORT', '8000') + '/healthz', timeout=4)"]
ENTRYPOINT ["prodgate"]
CMD ["serve", "--host", "0.0.0.0"]
