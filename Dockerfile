# Production image for lienthong: the official Airflow image plus our package.
#
# Built by docker-compose.yml (`docker compose build`). The Airflow version here, the pin in
# pyproject.toml (apache-airflow==3.3.2) and the image tag in docker-compose.yml move together.
FROM apache/airflow:3.3.2-python3.11

# Landing store / drop folders (LIENTHONG_VAR). Created in the image so that a fresh named volume
# mounted here starts owned by the airflow user (uid 50000, gid 0) instead of root.
USER root
RUN mkdir -p /opt/airflow/var \
    && chown -R airflow:0 /opt/airflow/var \
    && chmod -R g+rwX /opt/airflow/var
# A C compiler for setup.py's Cython build of the per-record hot path (parse, normalise, vietnamese); without
# one, lienthong installs as pure Python and a large export takes about 13 % longer to ingest.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
USER airflow

# Install the project (and its pinned dependencies) into the image, as the official docs recommend
# for extending the image: never with _PIP_ADDITIONAL_REQUIREMENTS at container start.
# apache-airflow is named again so pip cannot move Airflow itself off the image's version.
# README.m[d] is a glob so the build still works while the project has no README yet.
WORKDIR /opt/lienthong
COPY --chown=airflow:0 pyproject.toml setup.py README.m[d] ./
COPY --chown=airflow:0 include/ ./include/
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" .

WORKDIR /opt/airflow
