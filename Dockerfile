# Storyloop — container image.
#   docker compose up -d          (app + Redis with AOF; see docker-compose.yml and docs/INSTALL.md)
#   docker build -t storyloop .   (image only; needs REDIS_URL pointing at a persistent Redis)
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# 0. ffmpeg joins the video's clips and mixes the voice-over (the video stage).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

# 1. Dependencies only, exactly as requirements/app.lock pins them: every package ==, every file
#    checked against its sha256, so each build installs the same thing (refresh: bash .ci/lock).
#    This layer depends on the lock alone, so editing the code does not reinstall them.
COPY requirements/app.lock requirements/app.lock
RUN pip install --require-hashes -r requirements/app.lock

# 2. The app itself: nothing resolved (--no-deps), built with the locked setuptools
#    (--no-build-isolation) instead of whatever is newest that day.
COPY pyproject.toml README.md ./
COPY bot/ bot/
COPY handlers/ handlers/
COPY storage/ storage/
RUN pip install --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info

# 3. Run as an unprivileged user. ./data holds the spool (paid media on its way to Slack) and,
#    only when REDIS_URL is unset, a local redis-server (docker-compose.yml sets REDIS_URL).
RUN groupadd --system --gid 10001 storyloop \
    && useradd --system --uid 10001 --gid storyloop --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin storyloop \
    && mkdir -p /app/data \
    && chown storyloop:storyloop /app/data
USER 10001:10001

# HTTP mode only (no SLACK_APP_TOKEN): Slack posts to http://<host>:$PORT/slack/events.
EXPOSE 3000

# Exec form: `storyloop` runs as the container's main process and receives SIGTERM directly on
# `docker stop`, so it can stop taking work and release its job leases before exiting.
CMD ["storyloop", "run"]
