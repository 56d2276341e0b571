# syntax=docker/dockerfile:1
# The Tierra operator image; its entrypoint is `tierra run` (the chart adds the flags).
#
# Two stages on the same base, pinned by digest (refresh both with
# `docker buildx imagetools inspect python:3.11-slim-bookworm`): the build stage installs
# Tierra and its dependencies (all published as wheels, so no compiler is needed) into a
# virtual environment; the final stage gets only that environment, with pip, setuptools and
# wheel removed from it and from the base, and runs as an unprivileged user that matches the
# chart's securityContext (UID/GID 65532, read-only root filesystem).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m venv /opt/tierra \
 && /opt/tierra/bin/pip install --no-compile . \
 && /opt/tierra/bin/pip uninstall --yes pip setuptools wheel

FROM ${PYTHON_IMAGE}
RUN python -m pip uninstall --yes pip setuptools wheel \
 && rm -rf /root/.cache
COPY --from=build /opt/tierra /opt/tierra
ENV PATH=/opt/tierra/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
# metrics, liveness
EXPOSE 8080 8081
ENTRYPOINT ["tierra", "run"]
