# earshot: one container, SQLite in /data by default, PostgreSQL through DATABASE_URL.
#
#   docker build -t earshot .
#   docker run -v $PWD/earshot.toml:/config/earshot.toml:ro -v earshot-data:/data \
#              -e SLACK_BOT_TOKEN=xoxb-... earshot
#
# Volumes: /config (the TOML config, read-only) and /data (the SQLite file, if used).

FROM python:3.11.10-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY listener ./listener
COPY responders ./responders
COPY config ./config
RUN python -m venv /opt/earshot \
    && /opt/earshot/bin/pip install --no-compile . \
    && /opt/earshot/bin/earshot --version

FROM python:3.11.10-slim-bookworm
ENV PATH=/opt/earshot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    EARSHOT_CONFIG=/config/earshot.toml \
    EARSHOT_LOG_FORMAT=json
RUN groupadd --system --gid 10001 earshot \
    && useradd --system --uid 10001 --gid earshot --home-dir /data --shell /usr/sbin/nologin earshot \
    && mkdir -p /data /config \
    && chown earshot:earshot /data
COPY --from=build /opt/earshot /opt/earshot
COPY config/earshot.example.toml /config/earshot.toml
WORKDIR /data
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["earshot", "run"]
