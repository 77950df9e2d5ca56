"""Static checks of the production stack: docker-compose.yml, Dockerfile and .env.example.

No Docker engine runs where the tests run, so the compose file is parsed with PyYAML (anchors and
`<<` merge keys are resolved by the loader) and checked against what docs/production.md promises.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

AIRFLOW_SERVICES = [
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
]
REQUIRED_SERVICES = AIRFLOW_SERVICES + ["redis", "postgres", "warehouse"]
PROJECT_MOUNTS = {
    "./dags": "/opt/airflow/dags",
    "./include": "/opt/airflow/include",
    "./sql": "/opt/airflow/sql",
    "./expectations": "/opt/airflow/expectations",
    "./plugins": "/opt/airflow/plugins",
    "./config": "/opt/airflow/config",
    "./logs": "/opt/airflow/logs",
}
SECRET_WORDS = ("PASSWORD", "SECRET", "FERNET")

# `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?msg}`, `${NAME?msg}`; `$${...}` is an
# escaped dollar (left to the container's shell) and is not a compose variable.
VAR_RE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
# A value that is exactly one reference without a default: `${NAME}` or `${NAME:?message}`.
SECRET_REF_RE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*)?\}$")


@pytest.fixture(scope="module")
def compose_text() -> str:
    """The compose file without its whole-line comments (they may quote `${VAR}` syntax)."""
    lines = COMPOSE.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE list form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def mounts_of(service: dict) -> dict[str, str]:
    """target -> source for the short volume syntax (and the long one)."""
    result = {}
    for vol in service.get("volumes") or []:
        if isinstance(vol, dict):
            result[vol["target"]] = vol.get("source", "")
        else:
            parts = split_outside_vars(vol)
            result[parts[1]] = parts[0]
    return result


def split_outside_vars(spec: str) -> list[str]:
    """Split `source:target[:mode]` on the colons that are not inside a `${...}` reference."""
    parts, depth, current = [], 0, ""
    for i, ch in enumerate(spec):
        if ch == "{" and spec[i - 1 : i] == "$":
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
        if ch == ":" and not depth:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def resolve_defaults(value: str) -> str:
    """Interpolate the way compose would with an empty .env for the `:-` defaults."""
    return VAR_RE.sub(lambda m: m.group(3) if m.group(2) in (":-", "-") else f"<{m.group(1)}>", value)


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert "=" in line, f".env.example: not KEY=VALUE: {line!r}"
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip()
    return values


def walk_strings(node, path=()):
    """Yield (path, key, string) for every string scalar in the parsed compose file."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, (dict, list)):
                yield from walk_strings(v, path + (str(k),))
            elif v is not None:
                yield path, str(k), str(v)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            if isinstance(v, (dict, list)):
                yield from walk_strings(v, path + (str(i),))
            elif v is not None:
                yield path, str(i), str(v)


# --- services -------------------------------------------------------------------------------------


def test_required_services_exist(services):
    missing = [name for name in REQUIRED_SERVICES if name not in services]
    assert not missing, f"services missing from docker-compose.yml: {missing}"


def test_common_anchor_and_build_from_dockerfile(compose, services):
    common = compose["x-airflow-common"]
    build = common["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    assert context in (".", "./")
    assert (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile") == "Dockerfile"
    for name in AIRFLOW_SERVICES:
        assert services[name].get("build") == common["build"], f"{name} does not use the x-airflow-common build"


def test_service_commands(services):
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert services["airflow-scheduler"]["command"] == "scheduler"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-triggerer"]["command"] == "triggerer"
    assert services["airflow-worker"]["command"] == "celery worker"


def test_apiserver_publishes_8080(services):
    ports = [resolve_defaults(str(p)) for p in services["airflow-apiserver"]["ports"]]
    assert any(p.endswith(":8080") for p in ports), ports
    assert env_of(services["airflow-apiserver"])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith(
        "http://airflow-apiserver:8080/"
    )


def test_at_least_two_celery_workers(services):
    workers = [s for s in services.values() if s.get("command") == "celery worker"]
    replicas = sum(int((s.get("deploy") or {}).get("replicas", 1)) for s in workers)
    assert replicas >= 2, "need deploy.replicas >= 2 or a second worker service"


# --- executor and broker ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_celery_executor_and_redis_broker(services, name):
    env = env_of(services[name])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    broker = env["AIRFLOW__CELERY__BROKER_URL"]
    assert re.fullmatch(r"redis://:?(\$\{[^}]+\})?@redis:6379/\d+", broker), broker
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert "@postgres:" in env["AIRFLOW__CELERY__RESULT_BACKEND"]


def test_celery_workers_preload_lienthong_and_gx(services):
    """The workers' Celery settings import lienthong and GX before the pool forks, and those imports start no
    thread (forking after them is safe); with the Celery provider installed, Airflow's settings are all kept."""
    import ast
    import subprocess
    import sys

    option = env_of(services["airflow-worker"])["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"]
    assert option == "lienthong.celery_config.CELERY_CONFIG"
    source = ast.parse((ROOT / "include" / "lienthong" / "celery_config.py").read_text(encoding="utf-8"))
    assigned = {target.id: node.value for node in source.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    assert "CELERY_CONFIG" in assigned
    preloaded = ast.literal_eval(assigned["PRELOADED"])
    assert "great_expectations" in preloaded
    probe = ("import importlib, threading\n"
             f"for name in {preloaded!r}: importlib.import_module(name)\n"
             "print(threading.active_count())")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
    try:
        from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
    except ImportError:  # the provider comes with the `scale` extra and the Docker image, not the test set
        return
    from lienthong.celery_config import CELERY_CONFIG

    assert {k: v for k, v in CELERY_CONFIG.items() if k != "imports"} == DEFAULT_CELERY_CONFIG
    assert set(preloaded) <= set(CELERY_CONFIG["imports"])


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_settings(services, name):
    env = env_of(services[name])
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
    assert int(resolve_defaults(env["AIRFLOW__CORE__MAX_MAP_LENGTH"])) >= 1024
    assert "@postgres:" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"):
        assert SECRET_REF_RE.match(env[key]), f"{name}: {key} must come from a variable"
    assert not env.get("_PIP_ADDITIONAL_REQUIREMENTS"), "install packages in the Dockerfile, not at start-up"


def test_secrets_identical_across_components(services):
    """JWT secret, API secret key and Fernet key must be the same in every component."""
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY"):
        values = {env_of(services[name]).get(key) for name in AIRFLOW_SERVICES}
        assert len(values) == 1 and None not in values, f"{key} differs between components: {values}"


# --- mounts and environment of the project -----------------------------------------------------------


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_project_folders_mounted(services, name):
    mounts = mounts_of(services[name])
    for source, target in PROJECT_MOUNTS.items():
        assert mounts.get(target) == source, f"{name}: {source} not mounted at {target}"
    assert "/opt/airflow/var" in mounts, f"{name}: no landing volume at /opt/airflow/var"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_lienthong_environment(services, name):
    env = env_of(services[name])
    assert "/opt/airflow/include" in env["PYTHONPATH"].split(":")
    assert env["LIENTHONG_HOME"] == "/opt/airflow"
    assert env["LIENTHONG_VAR"] == "/opt/airflow/var"
    assert env["LIENTHONG_EXPECTATIONS_DIR"] == "/opt/airflow/expectations"
    assert env["LIENTHONG_SQL_DIR"] == "/opt/airflow/sql"
    assert env["LIENTHONG_VAR"] in mounts_of(services[name])


def test_landing_volume_is_declared(compose, services):
    source = resolve_defaults(mounts_of(services["airflow-worker"])["/opt/airflow/var"])
    if not source.startswith(("/", ".")):
        assert source in compose["volumes"], f"named volume {source} not declared"


# --- the warehouse ------------------------------------------------------------------------------------


def test_warehouse_is_separate_from_metadata_db(compose, services):
    meta, wh = services["postgres"], services["warehouse"]
    assert wh["image"].split(":")[0] == "postgres" and wh["image"].split(":")[1].startswith("16")
    meta_data = mounts_of(meta)["/var/lib/postgresql/data"]
    wh_data = mounts_of(wh)["/var/lib/postgresql/data"]
    assert meta_data != wh_data, "warehouse and metadata DB share a data volume"
    assert {meta_data, wh_data} <= set(compose["volumes"]), "data volumes must be declared named volumes"
    meta_env, wh_env = env_of(meta), env_of(wh)
    assert meta_env["POSTGRES_PASSWORD"] != wh_env["POSTGRES_PASSWORD"], "warehouse needs its own credentials"
    assert meta_env["POSTGRES_USER"] != wh_env["POSTGRES_USER"]


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_warehouse_url_points_at_warehouse(services, name):
    env = env_of(services[name])
    wh_env = env_of(services["warehouse"])
    url = env["LIENTHONG_WAREHOUSE_URL"]
    m = re.fullmatch(r"postgresql\+psycopg2://(\$\{[^}]+\}):(\$\{[^}]+\})@([\w.-]+):(\d+)/(\$\{[^}]+\})", url)
    assert m, f"unexpected LIENTHONG_WAREHOUSE_URL: {url}"
    user, password, host, port, db = m.groups()
    assert host == "warehouse" and port == "5432"
    assert resolve_defaults(user) == resolve_defaults(wh_env["POSTGRES_USER"])
    assert VAR_RE.match(password).group(1) == VAR_RE.match(wh_env["POSTGRES_PASSWORD"]).group(1)
    assert resolve_defaults(db) == resolve_defaults(wh_env["POSTGRES_DB"])


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_warehouse_airflow_connection(services, name):
    import json

    env = env_of(services[name])
    conn = json.loads(resolve_defaults(env["AIRFLOW_CONN_LIENTHONG_WAREHOUSE"]))
    wh_env = env_of(services["warehouse"])
    assert conn["conn_type"] == "postgres"
    assert conn["host"] == "warehouse" and int(conn["port"]) == 5432
    assert conn["login"] == resolve_defaults(wh_env["POSTGRES_USER"])
    assert conn["schema"] == resolve_defaults(wh_env["POSTGRES_DB"])
    assert conn["password"] == resolve_defaults(wh_env["POSTGRES_PASSWORD"])  # the same `<VAR>` marker
    assert conn["password"].startswith("<"), "connection password must come from a variable"


# --- secrets ---------------------------------------------------------------------------------------------


def test_secret_values_are_variable_references(compose):
    offenders = []
    for path, key, value in walk_strings(compose):
        if any(word in key.upper() for word in SECRET_WORDS) and not SECRET_REF_RE.match(value):
            offenders.append(f"{'.'.join(path)}.{key}={value}")
    assert not offenders, f"secrets must be ${{VAR}} / ${{VAR:?msg}} references without default: {offenders}"


def test_no_literal_password_in_urls_or_json(compose_text):
    for m in re.finditer(r"[a-z0-9+]+://([^:/@\s'\"]*):([^@\s'\"]*)@", compose_text):
        assert m.group(2) == "" or SECRET_REF_RE.match(m.group(2)), f"literal password in URL: {m.group(0)}"
    for m in re.finditer(r'"password"\s*:\s*"([^"]*)"', compose_text):
        assert SECRET_REF_RE.match(m.group(1)), f"literal password in JSON: {m.group(0)}"


def test_secret_variables_have_no_default(compose_text):
    for m in VAR_RE.finditer(compose_text):
        name, op = m.group(1), m.group(2)
        if any(word in name.upper() for word in SECRET_WORDS):
            assert op in (None, ":?", "?"), f"secret ${{{name}}} must not have a default: {m.group(0)}"


def test_variable_defaults_are_consistent(compose_text):
    """The same variable must not default to different values in different places."""
    defaults: dict[str, set[str]] = {}
    for m in VAR_RE.finditer(compose_text):
        if m.group(2) in (":-", "-"):
            defaults.setdefault(m.group(1), set()).add(m.group(3))
    assert not {k: v for k, v in defaults.items() if len(v) > 1}


# --- healthchecks and start order -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["postgres", "warehouse", "redis", "airflow-apiserver", "airflow-scheduler"])
def test_healthchecks(services, name):
    hc = services[name].get("healthcheck")
    assert hc and hc.get("test"), f"{name} has no healthcheck"


def test_depends_on_conditions(services):
    for name in AIRFLOW_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["redis"]["condition"] == "service_healthy", name
        if name != "airflow-init":
            assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
    assert services["airflow-init"]["depends_on"]["warehouse"]["condition"] == "service_healthy"
    assert services["airflow-worker"]["depends_on"]["warehouse"]["condition"] == "service_healthy"


def test_airflow_init_migrates_then_initialises_warehouse(services):
    init = services["airflow-init"]
    command = init["command"]
    script = "\n".join(command) if isinstance(command, list) else command
    migrate = script.find("airflow db migrate")
    warehouse = script.find("lienthong db init")
    assert migrate >= 0, "airflow-init does not run airflow db migrate"
    assert warehouse >= 0, "airflow-init does not run lienthong db init"
    assert migrate < warehouse, "lienthong db init must run after airflow db migrate"


# --- .env.example and Dockerfile ------------------------------------------------------------------------


def test_env_example_covers_every_variable(compose_text):
    referenced = {m.group(1) for m in VAR_RE.finditer(compose_text)}
    assert referenced, "no ${VAR} found: regex broken?"
    missing = sorted(referenced - set(env_example()))
    assert not missing, f".env.example lacks: {missing}"


def test_env_example_values(compose_text):
    values = env_example()
    assert values["AIRFLOW_UID"] == "50000"
    for key, value in values.items():
        if any(word in key.upper() for word in SECRET_WORDS):
            assert "change-me" in value, f".env.example: {key} must be an obvious placeholder"


def test_env_example_not_referenced_is_not_stale(compose_text):
    referenced = {m.group(1) for m in VAR_RE.finditer(compose_text)}
    stale = sorted(set(env_example()) - referenced)
    assert not stale, f".env.example lists variables docker-compose.yml never uses: {stale}"


def test_dockerfile_pins_airflow_and_installs_project():
    text = DOCKERFILE.read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert froms == ["apache/airflow:3.3.2-python3.11"], froms
    assert re.search(r"^COPY\b.*\bpyproject\.toml\b", text, flags=re.M)
    assert re.search(r"^COPY\b.*\binclude/?\s", text, flags=re.M)
    assert re.search(r"pip install --no-cache-dir\b.*\s\.\s*$", text, flags=re.M)
    # setup.py compiles the hot path: it must be in the image, with a compiler
    assert re.search(r"^COPY\b.*\bsetup\.py\b", text, flags=re.M)
    assert re.search(r"apt-get install\b.*\bgcc\b", text)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"apache-airflow==3.3.2"' in pyproject, "pyproject and Dockerfile must pin the same Airflow"
