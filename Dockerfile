# A socket UDF served by `aioudf serve`, for the usual two-container setup:
# Kapacitor in one container, the UDF in another, sharing a volume that holds
# the unix socket. Prometheus metrics on port 9108 (the [metrics] extra).
#
#   docker build -t aioudf .                 # serves examples/mirror.py:Mirror
#   docker volume create udf-sockets
#   docker run -d --name udf -v udf-sockets:/var/run/udf -p 9108:9108 aioudf
#   # Kapacitor: mount the same volume and set, in kapacitor.conf,
#   #   [udf.functions.mirror]
#   #     socket = "/var/run/udf/udf.sock"
#   #     timeout = "10s"
#
# Your own handler: build an image FROM this one that copies it in and names
# it in UDF_HANDLER (README.md, "In Docker"):
#
#   FROM aioudf
#   COPY --chown=udf ewma.py /opt/udf/
#   ENV UDF_HANDLER=/opt/udf/ewma.py:EWMA
#
# or, for a handler in this build context, pass it as a build argument:
#   docker build --build-arg HANDLER=examples/moving_avg.py:MovingAvg -t aioudf-avg .
# UDF_SOCKET and UDF_METRICS (HOST:PORT, empty for none) change the rest.
#
# `docker stop` sends SIGTERM: the server stops accepting, ends open
# connections (each answers what it received, then is told the server is
# shutting down), removes the socket file and exits 0, about 2 s later with
# the defaults: well within Docker's 10 s stop timeout.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/aioudf
COPY pyproject.toml README.md ./
COPY src ./src
COPY examples ./examples
RUN pip install ".[uvloop,metrics]"

# An unprivileged user owns the socket directory (the volume's mount point)
# and /opt/udf, where a derived image puts its handler.
RUN useradd --system --uid 10001 --no-create-home udf \
    && mkdir -p /var/run/udf /opt/udf \
    && chown udf /var/run/udf /opt/udf
USER udf
VOLUME ["/var/run/udf"]

ARG HANDLER=examples/mirror.py:Mirror
ENV UDF_HANDLER=${HANDLER} \
    UDF_SOCKET=/var/run/udf/udf.sock \
    UDF_METRICS=0.0.0.0:9108
EXPOSE 9108

# Mode 666: Kapacitor runs as another user in another container and needs
# write permission on the socket to connect; the volume, shared only by the
# two containers, is what keeps others out. Use --mode 660 and a common group
# if your setup shares a gid instead. `exec`: aioudf is PID 1 and gets the
# signals.
CMD ["sh", "-c", "exec aioudf serve \"$UDF_HANDLER\" --socket \"$UDF_SOCKET\" --mode 666 ${UDF_METRICS:+--metrics \"$UDF_METRICS\"}"]
