# Layerdeck in a container: `docker compose up` (see docker-compose.yml and docs/DEPLOY.md).
#
# BASE_IMAGE is any Debian-like image with Python 3.11 and its venv module. Where no registry can be
# reached, make one from Debian's packages with scripts/base-image.sh and pass it as a build argument.
# Where the build cannot reach a package index, fill wheels/ first (scripts/wheelhouse.sh): when it holds
# wheels, the dependencies are installed from it alone.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PATH=/opt/layerdeck/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# The user Layerdeck runs as owns only /data. The engine's socket is reached through its group, added at
# `docker run --group-add` / compose `group_add`. An empty DOCKER_CONFIG: the Docker SDK would otherwise
# send every registry credential it finds with each build.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin layerdeck \
 && mkdir -p /data /opt/layerdeck/docker-config \
 && chown layerdeck:layerdeck /data \
 && python3 -m venv /opt/layerdeck/venv

# Dependencies first, so a code change rebuilds only the layers below. `wheel[s]` copies the wheelhouse's
# files when there is one and nothing otherwise (pyproject.toml keeps the COPY from matching nothing).
COPY pyproject.toml wheel[s] /tmp/build/
RUN python -c "import tomllib; p = tomllib.load(open('/tmp/build/pyproject.toml', 'rb')); print('\n'.join(p['build-system']['requires'] + p['project']['dependencies']))" > /tmp/build/requirements.txt \
 && if ls /tmp/build/*.whl >/dev/null 2>&1; then from="--no-index --find-links /tmp/build"; else from=""; fi \
 && pip install $from -r /tmp/build/requirements.txt \
 && rm -rf /tmp/build

# The app finds templates/, static/ and migrations/ beside webapp/, so it is installed in place (editable).
WORKDIR /app
COPY pyproject.toml README.md ./
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
COPY webapp ./webapp
RUN pip install --no-deps --no-build-isolation -e . \
 && python -m compileall -q webapp migrations

USER 10001:10001
ENV LAYERDECK_DATA_DIR=/data \
    LAYERDECK_HOST=0.0.0.0 \
    LAYERDECK_PORT=8000 \
    DOCKER_CONFIG=/opt/layerdeck/docker-config
EXPOSE 8000
VOLUME ["/data"]
# Healthy when Layerdeck answers and both its database and the engine do: a socket it cannot open (a
# wrong DOCKER_GID) shows as unhealthy. Python, as slim images have no curl.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD python -c "import json, os, sys, urllib.request; url = 'http://127.0.0.1:%s/api/v1/health' % os.environ.get('LAYERDECK_PORT', '8000'); sys.exit(0 if json.load(urllib.request.urlopen(url, timeout=8)).get('status') == 'ok' else 1)"
CMD ["layerdeck", "serve"]
