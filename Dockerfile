# The mirror example as a socket UDF, for the usual two-container setup:
# Kapacitor in one container, this UDF in another, sharing a volume that
# holds the unix socket.
#
#   docker build -t aioudf-mirror .
#   docker volume create udf-sockets
#   docker run -d --name mirror -v udf-sockets:/var/run/udf aioudf-mirror
#   # Kapacitor: mount the same volume and set, in kapacitor.conf,
#   #   [udf.functions.mirror]
#   #     socket = "/var/run/udf/mirror.sock"
#   #     timeout = "10s"
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
RUN pip install ".[uvloop]"

# An unprivileged user owns the socket directory (the volume's mount point).
RUN useradd --system --uid 10001 --no-create-home udf \
    && mkdir -p /var/run/udf \
    && chown udf /var/run/udf
USER udf
VOLUME ["/var/run/udf"]

# Mode 666: Kapacitor runs as another user in another container and needs
# write permission on the socket to connect; the volume, shared only by the
# two containers, is what keeps others out. Use --mode 660 and a common group
# if your setup shares a gid instead.
CMD ["python", "examples/mirror.py", "--socket", "/var/run/udf/mirror.sock", "--mode", "666"]
