# lienthong — set-up and everyday commands. Only Python 3.11+ is needed on the machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export AIRFLOW_HOME := $(CURDIR)/var/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export GX_ANALYTICS_ENABLED := false

.PHONY: help install demo test bench airflow db-stop clean

help:
	@echo "make demo     set up, start the embedded warehouse, generate the sample province, run its DAGs, write the report"
	@echo "make test     run the test suite (unit, PostgreSQL integration, DAG tests)"
	@echo "make bench    benchmark suite: parse and ingest speed against bare pymarc, re-runs, memory (SCALE=5)"
	@echo "make bench-province  the full province refresh at PROVINCE_SCALE (default 122: about 1,000,000 records, 3,000,000 copies)"
	@echo "                     PROVINCE_LIBRARIES=620 PROVINCE_SCALE=25: the same in the province's shape (592 exports of ~1,700 records)"
	@echo "make bench-catalog  union-catalogue build on RECORDS (default 1000000) synthetic records COPYed into core (no ingest)"
	@echo "make airflow  start 'airflow standalone' on the project's DAGs (UI on http://localhost:8080)"
	@echo "make quality  refresh the quality scorecards and build the GX Data Docs (var/quality/)"
	@echo "make fuzz     fuzz the MARC and CSV readers for FUZZ_SECONDS (default 60), print examples/s"
	@echo "make scale-test  the province through CeleryExecutor: Redis, two Celery workers, same warehouse as a local run"
	@echo "make db-stop  stop the embedded PostgreSQL"

$(STAMP): pyproject.toml setup.py include/lienthong/parse.py include/lienthong/normalise.py include/lienthong/vietnamese.py
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "lienthong needs Python 3.11+"'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lienthong demo run

test: $(STAMP)
	$(BIN)/python -m pytest -q

SCALE ?= 5
bench: $(STAMP)
	$(BIN)/python bench/run_bench.py --scale $(SCALE)

PROVINCE_SCALE ?= 122
PROVINCE_LIBRARIES ?= 0
.PHONY: bench-province
bench-province: $(STAMP)  # the full province refresh at about 1,000,000 records; JSON in bench/results/
	$(BIN)/python bench/run_bench.py --refresh-only --big-records 0 --scale $(PROVINCE_SCALE) --extra-copies 1 \
		--libraries $(PROVINCE_LIBRARIES)

RECORDS ?= 1000000
.PHONY: bench-catalog
bench-catalog: $(STAMP)  # clustering time, records/s, peak RSS; JSON in bench/results/
	$(BIN)/python bench/catalog_bench.py --records $(RECORDS)

airflow: $(STAMP)
	$(BIN)/lienthong db init
	$(BIN)/airflow standalone

.PHONY: fuzz
fuzz: $(STAMP)  # the MARC and CSV readers under hypothesis for FUZZ_SECONDS (default 60); not part of make test
	$(BIN)/python bench/fuzz_marc.py

.PHONY: scale-test
scale-test: $(STAMP)  # not part of CI: installs redis-server and the extra `scale` when missing; state in var/scale/
	$(BIN)/python bench/scale_test.py

.PHONY: quality
quality: $(STAMP)
	$(BIN)/lienthong quality scorecard --refresh
	$(BIN)/lienthong quality docs

db-stop: $(STAMP)
	$(BIN)/lienthong db stop

clean: db-stop
	rm -rf var
