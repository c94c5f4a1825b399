# One image for every ccx-licensing program: the six services, the ticker and the `ccxlic` command.
#   docker build -t ccxlic:dev .
#   docker run --rm ccxlic:dev serve consumption      (what docker-compose.yml and deploy/k8s run)
# The base is pinned by version and by the digest of its multi-architecture index; both stages use the same one.
# No Docker engine runs on the development machines: CI lints this file (hadolint), runs its install step as written
# (tests/unit/deploy/test_image.py) and checks every command that compose and Kubernetes give the image.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/ccxlic
RUN pip install --no-cache-dir --disable-pip-version-check uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs/ libs/
COPY services/ services/
# Exactly what uv.lock says, without the development tools and without the test library.
RUN uv sync --frozen --no-dev --no-editable \
      --package ccxlic-cli --package ccxlic-consumption --package ccxlic-compliance --package ccxlic-alerting \
      --package ccxlic-agent --package ccxlic-authority --package ccxlic-console

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --gid 0 --home-dir /home/ccxlic --create-home --shell /usr/sbin/nologin ccxlic
COPY --from=build /opt/ccxlic /opt/ccxlic
ENV PATH=/opt/ccxlic/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CCXLIC_HTTP_HOST=0.0.0.0 \
    CCXLIC_RUN_DIR=/tmp
USER 10001
WORKDIR /home/ccxlic
EXPOSE 8180 8181 8182 8183 8184 8190
# `ccxlic serve` notes what it runs; `ccxlic health` asks that service's /healthz (or checks the ticker's last tick).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["ccxlic", "health"]
ENTRYPOINT ["ccxlic"]
CMD ["--help"]
