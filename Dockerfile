# authnode container image. The role is chosen by the command:
#   docker run IMAGE                                  -> the API on 0.0.0.0:8000
#   docker run IMAGE serve --role worker --metrics-bind 0.0.0.0:9101
#   docker run IMAGE migrate                          -> indexes and job-queue schema
# Configuration comes from the environment (see README "Configure"); SECRET_KEY is required.

# ---- build: turn the source into a wheel (and wheels of its dependencies)
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY authnode ./authnode
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- run: a slim Python with only the installed wheels, as an unprivileged user
FROM python:3.11-slim
RUN groupadd --system authnode && useradd --system --gid authnode --no-create-home authnode
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels authnode && rm -rf /wheels
# Preset files for --preset starter|growth|high-scale.
COPY config/*.env /etc/authnode/presets/
ENV PYTHONUNBUFFERED=1 BIND=0.0.0.0:8000
USER authnode
EXPOSE 8000
# SIGTERM starts authnode's graceful stop (SHUTDOWN_TIMEOUT_MS); give `docker stop -t` more.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["authnode"]
CMD ["serve", "--role", "api", "--workers", "1"]
