# batchbanana as a container image, built from the repository as it is:
#
#   docker build -t ghcr.io/your-org/batchbanana:latest .
#   docker run --rm -e BATCHBANANA_API_KEY -v "$PWD/jobs:/jobs" \
#       ghcr.io/your-org/batchbanana:latest run /jobs/job.yaml --no-progress
#
# The key comes from the environment at run time (never a build argument or a layer).
# deploy/kubernetes and deploy/slurm run this image as shards of one job.

ARG PYTHON_VERSION=3.12

# Build stage: the wheel, made from the source tree (pyproject.toml, README.md, batchbanana/).
FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir --disable-pip-version-check "build>=1.2"
COPY pyproject.toml README.md ./
COPY batchbanana ./batchbanana
RUN python -m build --wheel --outdir /dist .

# Runtime stage: the wheel installed into a slim Python, run by a non-root user.
FROM python:${PYTHON_VERSION}-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /dist/ /tmp/dist/
RUN pip install /tmp/dist/*.whl && rm -rf /tmp/dist \
    && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin batchbanana
# A numeric user, so Kubernetes' runAsNonRoot can check it; the volume holding manifests and
# outputs must be writable by it (fsGroup 10001 in deploy/kubernetes).
USER 10001:10001
WORKDIR /jobs
ENTRYPOINT ["batchbanana"]
CMD ["--help"]
