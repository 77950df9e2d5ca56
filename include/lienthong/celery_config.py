"""Celery settings for Airflow's Celery workers: Airflow's own, plus lienthong and GX imported up front.

Airflow runs each task instance in a process forked from its Celery worker's pool process. Importing
lienthong's pipeline and Great Expectations there once, before the pool forks, spares every mapped task that
import (about 2.4 s of CPU per task: for ~600 libraries, 20 CPU-minutes a day). The imports start no thread,
so forking after them is safe. docker-compose.yml and `make scale-test` set
``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=lienthong.celery_config.CELERY_CONFIG``.
"""
from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

PRELOADED = ("great_expectations", "lienthong.pipeline")

CELERY_CONFIG = {**DEFAULT_CELERY_CONFIG,
                 "imports": (*DEFAULT_CELERY_CONFIG.get("imports", ()), *PRELOADED)}
