# reglink image for docker-compose.yml (worker, topics init, demo publisher).
# The local stack without Docker is `make stack-up`; this image does not run Kafka or Redis.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    REGLINK_STATE_DIR=/data

RUN useradd --create-home --uid 10001 reglink \
    && mkdir -p /data && chown reglink:reglink /data

WORKDIR /src
COPY . /src
RUN pip install /src

USER reglink
WORKDIR /data
CMD ["reglink", "--help"]
