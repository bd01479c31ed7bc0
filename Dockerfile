# smtp-diag's image: `smtp-diag` as the entrypoint, the web service by default.
#
# The base is a build argument: any Debian-like image with Python 3.11 and its venv module (python3-venv),
# the same in both stages. `make image` builds one from Debian's packages (debootstrap), because these
# machines pull no base images; elsewhere `--build-arg BASE=python:3.11-slim-bookworm` works as well.
#
# The build installs only wheels (build/wheels, made by `make wheels` on the build machine), never a
# source distribution, so no compiler is needed in either stage and the build itself needs no network.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
COPY build/wheels/ /wheels/
RUN python3 -m venv /opt/smtp-diag \
    && /opt/smtp-diag/bin/pip install --no-cache-dir --no-index --find-links /wheels "smtp-diag[postgres]==0.1.0" \
    && /opt/smtp-diag/bin/pip uninstall --yes pip

FROM ${BASE}
# A fixed non-root user (10001), as the Kubernetes manifests run it; no home, no shell. Its SQLite directory
# exists for a plain `run`; with a read-only root filesystem, mount a volume there.
RUN groupadd --gid 10001 smtp-diag \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin smtp-diag \
    && mkdir -p /var/lib/smtp-diag && chown 10001:10001 /var/lib/smtp-diag
COPY --from=build /opt/smtp-diag /opt/smtp-diag
# A read-only root filesystem: no bytecode written at run time (pip compiled it at install), SQLite under
# /var/lib/smtp-diag, output unbuffered for the logs.
ENV PATH=/opt/smtp-diag/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DIAG_DB_PATH=/var/lib/smtp-diag/reports.sqlite3
USER 10001:10001
EXPOSE 8025
# For `serve`: the process answers /healthz (any Host is accepted there). For a one-off `check`, ignore it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DIAG_PORT', '8025') + '/healthz', timeout=4)"]
ENTRYPOINT ["smtp-diag"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8025"]
