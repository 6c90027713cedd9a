"""docker-compose.yml and Dockerfile describe the same stack as the local one (stack/).

Pure file checks (no Docker needed): the structure of the compose file, and its agreement
with stack/topics.py (topic names, partition count) and stack/kafka/pom.xml (Kafka version);
the ops profile's Prometheus and Grafana with the repository's rules, datasource and
dashboard (ops/).
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def env(service: dict[str, Any]) -> dict[str, str]:
    """environment as a dict, whether written as a mapping or as a list of K=V."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): str(v) for k, v in raw.items()}


def command_text(service: dict[str, Any], key: str = "command") -> str:
    raw = service.get(key) or ""
    return " ".join(map(str, raw)) if isinstance(raw, list) else str(raw)


def healthcheck_text(service: dict[str, Any]) -> str:
    check = service.get("healthcheck")
    assert check and not check.get("disable"), "no healthcheck"
    test = check["test"]
    return " ".join(test) if isinstance(test, list) else test


def stack_topics_module() -> ast.Module:
    return ast.parse((ROOT / "stack" / "topics.py").read_text())


def module_constant(name: str) -> Any:
    for node in stack_topics_module().body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in stack/topics.py")


def test_services_present(services: dict[str, Any]) -> None:
    assert {"kafka", "redis", "topics", "worker"} <= set(services)


def test_kafka_is_official_4x_image_matching_local_stack(services: dict[str, Any]) -> None:
    image = services["kafka"]["image"]
    match = re.fullmatch(r"apache/kafka:(4\.\d+\.\d+)", image)
    assert match, f"want the official apache/kafka 4.x image, got {image!r}"
    pom = ET.parse(ROOT / "stack" / "kafka" / "pom.xml")
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    assert match.group(1) == pom.findtext("m:properties/m:kafka.version", namespaces=ns)


def test_kafka_runs_kraft_single_node(services: dict[str, Any]) -> None:
    e = env(services["kafka"])
    assert set(e["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_ZOOKEEPER_CONNECT" not in e
    node_id = e["KAFKA_NODE_ID"]
    voters = e["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters.startswith(f"{node_id}@"), "the node must be its own controller voter"
    listeners = {item.split("://")[0] for item in e["KAFKA_LISTENERS"].split(",")}
    assert e["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert voters.rsplit(":", 1)[1] == next(
        item.rsplit(":", 1)[1]
        for item in e["KAFKA_LISTENERS"].split(",")
        if item.startswith(e["KAFKA_CONTROLLER_LISTENER_NAMES"] + "://")
    )
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert e[key] == "1", key
    assert e["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_worker_bootstrap_is_advertised_by_kafka(services: dict[str, Any]) -> None:
    # The worker must reach a listener whose advertised address resolves in the network.
    bootstrap = env(services["worker"])["FRAUD_KAFKA_BOOTSTRAP"].removeprefix("kafka://")
    advertised = [
        item.split("://", 1)[1]
        for item in env(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"].split(",")
    ]
    assert bootstrap in advertised
    assert bootstrap.split(":")[0] == "kafka"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("kafka", "kafka-broker-api-versions.sh"),
        ("redis", "redis-cli ping"),
        ("worker", "localhost:6066/health"),
    ],
)
def test_healthchecks(services: dict[str, Any], name: str, expected: str) -> None:
    assert expected in healthcheck_text(services[name])


def test_redis_is_7_without_persistence(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert redis["image"].split(":")[0] == "redis"
    assert redis["image"].split(":")[1].split(".")[0] == "7"
    args = redis["command"]
    assert args[args.index("--appendonly") + 1] == "no"
    assert args[args.index("--save") + 1] == ""
    # The same compact card histories as stack/redis.sh.
    assert args[args.index("--zset-max-listpack-entries") + 1] == "512"
    assert "--zset-max-listpack-entries 512" in (ROOT / "stack" / "redis.sh").read_text()


def test_worker_runs_the_worker_entry_point(services: dict[str, Any]) -> None:
    worker = services["worker"]
    tokens = shlex.split(command_text(worker))
    assert tokens[0] == "fraud-worker"  # the console script of pyproject.toml
    assert 'fraud-worker = "service.worker:main"' in (ROOT / "pyproject.toml").read_text()
    assert "build" in worker
    # reachable through the published port: the web server listens beyond the loopback
    assert env(worker)["FRAUD_WEB_HOST"] == "0.0.0.0"


def test_worker_environment(services: dict[str, Any]) -> None:
    e = env(services["worker"])
    assert e["FRAUD_KAFKA_BOOTSTRAP"]
    assert re.fullmatch(r"redis://redis:6379(/\d+)?", e["FRAUD_REDIS_URL"])
    assert e["FRAUD_MODEL_DIR"] == "/app/models"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "worker",
            {
                "kafka": "service_healthy",
                "redis": "service_healthy",
                "topics": "service_completed_successfully",
            },
        ),
        ("topics", {"kafka": "service_healthy"}),
    ],
)
def test_depends_on_conditions(
    services: dict[str, Any], name: str, expected: dict[str, str]
) -> None:
    deps = services[name]["depends_on"]
    assert isinstance(deps, dict), "long form needed for conditions"
    for dep, condition in expected.items():
        assert deps[dep]["condition"] == condition, f"{name} -> {dep}"


def test_topics_service_creates_the_same_topics_as_stack_script(
    services: dict[str, Any],
) -> None:
    topics = services["topics"]
    assert topics["image"] == services["kafka"]["image"]
    script = command_text(topics, "command") + " " + command_text(topics, "entrypoint")
    assert "kafka-topics.sh" in script and "--create" in script
    assert "--bootstrap-server kafka:9092" in script
    words = set(re.findall(r"[\w.-]+", script))
    for name in module_constant("TOPIC_ENV").values():
        assert name in words, f"topic {name} not created by the topics service"
    partitions = re.search(r"--partitions\s+(\S+)", script)
    assert partitions, "explicit partition count needed"
    default = re.fullmatch(r"\$\{FRAUD_PARTITIONS:-(\d+)\}|(\d+)", partitions.group(1))
    assert default, partitions.group(1)
    assert int(default.group(1) or default.group(2)) == module_constant("DEFAULT_PARTITIONS")
    assert re.search(r"--replication-factor\s+1\b", script)


def test_dockerfile_builds_service_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if line.strip()]
    instructions = [i for i in instructions if not i[0].startswith("#")]
    stages = [n for n, i in enumerate(instructions) if i[0] == "FROM"]
    # the compiled core is built in a stage of its own; the worker's image is the last
    assert instructions[stages[-1]] == ["FROM", "python:3.11-slim"]
    builds = [i[1] for i in instructions if i[0] == "RUN" and "maturin build" in i[1]]
    assert builds and "--locked" in builds[0]
    instructions = instructions[stages[-1]:]
    assert any(i[0] == "RUN" and ".[service]" in i[1] and "/wheels/" in i[1]
               for i in instructions)
    copied = {i[1].split()[-2 if "--from" in i[1] else 0].rstrip("/") for i in instructions
              if i[0] == "COPY"}
    # what the worker imports
    assert {"fraudcore", "fraudrules", "fraudmodel", "fraudnative", "service", "models",
            "/wheels"} <= copied
    users = [i[1].strip() for i in instructions if i[0] == "USER"]
    assert users and users[-1] not in {"root", "0"}


def test_dockerfile_runs_the_worker_entry_point() -> None:
    text = (ROOT / "Dockerfile").read_text()
    commands = [line for line in text.splitlines() if line.startswith("CMD")]
    assert commands == ['CMD ["fraud-worker"]']
    assert "ENV FRAUD_WEB_HOST=0.0.0.0" in text


# -- the cluster and sentinel profiles (stack/redis-cluster.sh, stack/redis-sentinel.sh) ------


def script_default(script: str, variable: str) -> str:
    """The default of ``${VARIABLE:-default}`` in stack/<script>."""
    text = (ROOT / "stack" / script).read_text()
    match = re.search(rf"\${{{variable}:-([^}}]+)}}", text)
    assert match, f"{variable} has no default in stack/{script}"
    return match.group(1)


def in_profile(services: dict[str, Any], profile: str) -> dict[str, Any]:
    return {n: s for n, s in services.items() if profile in (s.get("profiles") or [])}


def redis_args(service: dict[str, Any]) -> list[str]:
    """The redis-server arguments of a ``sh -c 'exec docker-entrypoint.sh redis-server ...'``
    command, with the service's environment and compose's defaults filled in."""
    assert service["command"][:2] == ["sh", "-c"]
    script = service["command"][2]
    script = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", script)  # compose's ${VAR:-default}
    for key, value in env(service).items():
        script = script.replace(
            f"$${{{key}:+--replicaof 127.0.0.1 $${key}}}",
            f"--replicaof 127.0.0.1 {value}" if value else "",
        )
        script = script.replace(f"$${key}", value)
    tokens = shlex.split(script)
    assert tokens[:3] == ["exec", "docker-entrypoint.sh", "redis-server"], tokens[:3]
    return tokens[3:]


def arg(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_default_profile_is_the_four_services(services: dict[str, Any]) -> None:
    default = {n for n, s in services.items() if not s.get("profiles")}
    assert default == {"kafka", "redis", "topics", "worker"}
    for name, service in services.items():
        assert set(service.get("profiles") or []) <= {"cluster", "sentinel", "ops"}, name


def test_cluster_profile_is_the_local_cluster(services: dict[str, Any]) -> None:
    cluster = in_profile(services, "cluster")
    nodes = {n: s for n, s in cluster.items() if "healthcheck" in s}
    base = int(script_default("redis-cluster.sh", "REDIS_CLUSTER_PORT"))
    timeout = script_default("redis-cluster.sh", "REDIS_CLUSTER_NODE_TIMEOUT_MS")
    ports = []
    for name, node in nodes.items():
        assert node["image"] == services["redis"]["image"], name
        # the nodes announce 127.0.0.1:<port>, the address the host reaches them on
        assert node["network_mode"] == "host" and "ports" not in node, name
        args = redis_args(node)
        port = int(arg(args, "--port"))
        ports.append(port)
        assert name == f"redis-cluster-{port}"
        assert arg(args, "--bind") == "127.0.0.1"
        assert arg(args, "--cluster-enabled") == "yes"
        assert arg(args, "--cluster-node-timeout") == timeout
        assert arg(args, "--save") == "" and arg(args, "--appendonly") == "no"
        assert arg(args, "--zset-max-listpack-entries") == "512"
        assert arg(args, "--maxmemory-policy") == "noeviction"
        assert "redis-cli -p $$NODE_PORT ping" in healthcheck_text(node)
    assert sorted(ports) == list(range(base, base + 6))
    create = cluster["redis-cluster-create"]
    assert create["network_mode"] == "host"
    assert {d: c["condition"] for d, c in create["depends_on"].items()} == {
        n: "service_healthy" for n in nodes
    }
    script = command_text(create)
    assert "--cluster create" in script and "--cluster-replicas 1" in script
    assert " ".join(map(str, range(base, base + 6))) in script


def test_sentinel_profile_is_the_local_sentinel_setup(services: dict[str, Any]) -> None:
    setup = in_profile(services, "sentinel")
    base = int(script_default("redis-sentinel.sh", "REDIS_SENTINEL_PORT"))
    name = script_default("redis-sentinel.sh", "REDIS_SENTINEL_MASTER")
    down_after = script_default("redis-sentinel.sh", "REDIS_SENTINEL_DOWN_AFTER_MS")
    ports = (base, base + 1, base + 6, base + 7, base + 8)
    assert set(setup) == {f"redis-sentinel-{p}" for p in ports}
    for service in setup.values():
        assert service["image"] == services["redis"]["image"]
        assert service["network_mode"] == "host" and "ports" not in service
    for port, replica_of in ((base, None), (base + 1, base)):
        server = setup[f"redis-sentinel-{port}"]
        args = redis_args(server)
        assert int(arg(args, "--port")) == port and arg(args, "--bind") == "127.0.0.1"
        assert arg(args, "--save") == "" and arg(args, "--appendonly") == "no"
        assert arg(args, "--zset-max-listpack-entries") == "512"
        assert arg(args, "--maxmemory-policy") == "noeviction"
        if replica_of is None:
            assert "--replicaof" not in args
        else:
            assert args[args.index("--replicaof") + 1 :][:2] == ["127.0.0.1", str(replica_of)]
        assert "redis-cli -p $$SERVER_PORT ping" in healthcheck_text(server)
    for port in (base + 6, base + 7, base + 8):
        sentinel = setup[f"redis-sentinel-{port}"]
        assert env(sentinel)["SENTINEL_PORT"] == str(port)
        script = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", command_text(sentinel))
        assert f"sentinel monitor {name} 127.0.0.1 {base} 2" in script
        assert f"sentinel down-after-milliseconds {name} {down_after}" in script
        assert f"sentinel failover-timeout {name} 5000" in script
        assert script.rstrip().endswith("redis-server /data/sentinel.conf --sentinel")
        check = healthcheck_text(sentinel)
        assert f"get-master-addr-by-name ${{REDIS_SENTINEL_MASTER:-{name}}}" in check


# -- the ops profile: Prometheus and Grafana on ops/ ------------------------------------------


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Short-form bind mounts, container path -> host path (checked to exist)."""
    found = {}
    for volume in service.get("volumes") or []:
        host, container, *_ = str(volume).split(":")
        assert (ROOT / host).exists(), f"{host} does not exist"
        found[container] = host
    return found


def test_ops_profile_is_prometheus_and_grafana(services: dict[str, Any]) -> None:
    assert set(in_profile(services, "ops")) == {"prometheus", "grafana"}
    assert re.fullmatch(r"prom/prometheus:v2\.\d+\.\d+", services["prometheus"]["image"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", services["grafana"]["image"])
    for name, port in (("prometheus", 9090), ("grafana", 3000)):
        assert services[name]["ports"] == [f"127.0.0.1:{port}:{port}"], name


def test_prometheus_scrapes_the_worker_with_the_repository_rules(
    services: dict[str, Any],
) -> None:
    prometheus = services["prometheus"]
    volumes = mounts(prometheus)
    flags = dict(f.split("=", 1) for f in prometheus["command"] if "=" in f)
    config_path = flags["--config.file"]
    config = yaml.safe_load((ROOT / volumes[config_path]).read_text())
    # rule files resolve beside the config file, in the container as on the host
    for rule_file in config["rule_files"]:
        in_container = str(Path(config_path).parent / rule_file)
        assert volumes[in_container] == "./ops/prometheus/rules.yml"
    [job] = config["scrape_configs"]
    assert job["job_name"] == "fraud-worker"  # what the worker-down alerts select
    assert "up{job=\"fraud-worker\"}" in (ROOT / "ops/prometheus/rules.yml").read_text()
    [target] = [t for c in job["static_configs"] for t in c["targets"]]
    worker_port = services["worker"]["ports"][0].rsplit(":", 1)[1]
    assert target == f"worker:{worker_port}"
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_grafana_gets_the_datasource_and_the_dashboard(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    volumes = mounts(grafana)
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    datasources = ROOT / volumes["/etc/grafana/provisioning/datasources"]
    [source] = yaml.safe_load((datasources / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    dashboards = ROOT / volumes["/etc/grafana/provisioning/dashboards"]
    [provider] = yaml.safe_load((dashboards / "fraud.yml").read_text())["providers"]
    folder = provider["options"]["path"]
    assert (ROOT / volumes[folder] / "fraud.json").is_file()
    dashboard = json.loads((ROOT / volumes[folder] / "fraud.json").read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if p["type"] != "row"}
    assert uids == {source["uid"]}
