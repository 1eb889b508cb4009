# The subreq worker image: `docker compose up` builds it (see docker-compose.yml).
# Runtime dependencies come pinned from requirements.lock (`make lock`), installed
# without resolution and then checked, so the image runs what the tests ran against.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A system user without a login shell; its home is the working directory, where the
# default SQLite file and the .eml folder would go when those settings are left unset.
RUN groupadd --system --gid 10001 subreq \
    && useradd --system --uid 10001 --gid subreq --home-dir /var/lib/subreq \
       --create-home --shell /usr/sbin/nologin subreq

WORKDIR /opt/subreq

# Dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip install --no-deps --requirement requirements.lock

COPY pyproject.toml README.md ./
COPY policies ./policies
COPY workflow ./workflow
COPY consumers ./consumers
# --no-deps: everything is pinned above; pip check fails the build if the lock misses one.
RUN pip install --no-deps . && pip check && rm -rf build *.egg-info

USER subreq
WORKDIR /var/lib/subreq

HEALTHCHECK --interval=15s --timeout=10s --start-period=20s --retries=3 \
    CMD ["subreq", "health"]

ENTRYPOINT ["subreq"]
CMD ["worker"]
