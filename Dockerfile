# smsgw container image.
#
#   docker build -t smsgw .
#   docker run --rm -e SMSGW_API_TOKENS=change-me -p 8080:8080 -p 9108:9108 \
#       -v smsgw-data:/data smsgw
#
# The default config (config/examples/docker.toml) listens on 0.0.0.0, so it requires API
# tokens from SMSGW_API_TOKENS and refuses to start without them. Mount another config and
# set SMSGW_CONFIG (or pass `run -c FILE`) for real carriers; `check-config` validates it:
#   docker run --rm -v $PWD/gw.toml:/etc/smsgw.toml smsgw check-config -c /etc/smsgw.toml

# --- build: install the project and its dependencies into a virtualenv ----------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/smsgw
# Only what the package build needs (pyproject's readme, the two packages).
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY rules ./rules
RUN /opt/smsgw/bin/pip install --no-compile . \
    && /opt/smsgw/bin/python -m compileall -q /opt/smsgw/lib

# --- runtime ---------------------------------------------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/smsgw/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SMSGW_CONFIG=/app/config/examples/docker.toml
RUN groupadd --system --gid 10001 smsgw \
    && useradd --system --uid 10001 --gid smsgw --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin smsgw \
    && mkdir -p /data \
    && chown smsgw:smsgw /data
COPY --from=build /opt/smsgw /opt/smsgw
# Config files (defaults, keyword sets, quiet-hour tables, examples) stay root-owned and
# read-only for the service user.
COPY config /app/config
WORKDIR /app
USER smsgw
# LMDB store: keep it on a volume so messages survive container replacement.
VOLUME ["/data"]
EXPOSE 8080 9108
# /healthz = the process is up and serving HTTP; no curl in the slim image, Python is here.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]
# SIGINT lets trio cancel the nurseries cleanly (binds unbind, the store commits).
STOPSIGNAL SIGINT
ENTRYPOINT ["smsgw"]
CMD ["run"]
