"""The deployment files, checked structurally against the code they deploy.

docker-compose.yml (with .env), deploy/docker/Dockerfile, deploy/k8s/, and the Grafana
provisioning and dashboard: every command is one the CLI parses, every SF_ variable a setting
the settings model accepts, every probe and healthcheck on the metrics port, every volume
and dependency declared, and every dashboard query names only metrics that serve or retrain
export. No Docker engine or Kubernetes cluster is needed (this machine has neither).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fnmatch
import io
import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from stream_forecaster.cli.commands import build_parser
from stream_forecaster.settings import (
    CONFIG_FILE_ENV,
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    ScoringSettings,
    Settings,
    load_settings,
)
from tests.harness.monitoring import (
    DASHBOARD,
    DATASOURCES,
    GRAFANA,
    PROMETHEUS_SERIES,
    REPO,
    SCRAPE_JOBS,
    alert_rules,
    dashboard,
    dashboard_panels,
    exported_families,
    exported_series_names,
    exporter_of,
    metric_names,
    panel_expressions,
    variable_expressions,
)

COMPOSE = REPO / "docker-compose.yml"
DOT_ENV = REPO / ".env"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
K8S = REPO / "deploy" / "k8s"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
README = REPO / "README.md"
DOCS = REPO / "docs"
CLI = "stream-forecaster"

#: Grafana unit ids the dashboard may use (Grafana's valueFormats categories).
GRAFANA_UNITS = frozenset(
    {"s", "ms", "µs", "short", "none", "percentunit", "percent", "bytes", "decbytes"}
    | {"cps", "ops", "reqps", "rps", "wps", "iops"}
)
PER_SECOND_UNITS = frozenset({"cps", "ops", "reqps", "rps", "wps", "iops"})


# -- settings ------------------------------------------------------------------------------


def is_setting(name: str) -> bool:
    """``SF_<SECTION>__<FIELD>`` or ``SF_<FIELD>`` naming a field of the settings model."""
    upper = name.upper()
    if upper == CONFIG_FILE_ENV:
        return True
    if not upper.startswith(ENV_PREFIX):
        return False
    head, sep, tail = upper.removeprefix(ENV_PREFIX).partition(ENV_NESTED_DELIMITER)
    fields = {n.upper(): f for n, f in Settings.model_fields.items()}
    if head not in fields:
        return False
    annotation = fields[head].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return bool(sep) and tail.lower() in annotation.model_fields
    return not sep


def check_settings(env: Mapping[str, Any], where: str) -> Settings:
    """Every SF_ name in ``env`` is a setting, and the settings model, built from exactly
    these variables the way ``load_settings`` builds it at start-up, accepts their values."""
    settings_env = {k: str(v) for k, v in env.items() if k.upper().startswith(ENV_PREFIX)}
    unknown = sorted(k for k in settings_env if not is_setting(k))
    assert not unknown, f"{where}: not settings of stream-forecaster: {unknown}"
    with pytest.MonkeyPatch.context() as mp:
        for name in [k for k in os.environ if k.upper().startswith(ENV_PREFIX)]:
            mp.delenv(name)
        for name, value in settings_env.items():
            mp.setenv(name, value)
        return load_settings()  # raises ConfigError naming the setting


def test_is_setting_knows_real_settings_from_typos() -> None:
    assert is_setting("SF_KAFKA__BOOTSTRAP_SERVERS")
    assert is_setting("SF_LOG_LEVEL")
    assert not is_setting("SF_KAFKA__BOOTSTRAP_SERVER")
    assert not is_setting("SF_KAFKA")
    assert not is_setting("SF_LOGLEVEL")
    assert not is_setting("KAFKA_NODE_ID")


# -- the command line ----------------------------------------------------------------------


def parse_cli(argv: list[str], where: str) -> argparse.Namespace:
    """``stream-forecaster ARGV`` parsed by the real parser (subcommand, options, choices);
    options must be spelled out, not abbreviated (``--epoch`` for ``--epochs`` fails)."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                subparser.allow_abbrev = False
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            return parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: `{CLI} {shlex.join(argv)}` is rejected: {stderr.getvalue()}")


_SHELL_STOPS = frozenset({";", "&&", "||", "|", "&", ";;", ")", ">", ">>", "<", "fi", "done"})


def shell_invocations(script: str) -> list[list[str]]:
    """The argument lists of every ``stream-forecaster`` call in a shell script."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    calls = []
    for i, token in enumerate(tokens):
        if token == CLI:
            args = []
            for arg in tokens[i + 1 :]:
                if arg in _SHELL_STOPS:
                    break
                args.append(arg)
            calls.append(args)
    return calls


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def dockerfile_entrypoint(target: str = "serve") -> list[str]:
    (entrypoint,) = [args for op, args in target_instructions(target) if op == "ENTRYPOINT"]
    value: list[str] = json.loads(entrypoint)
    return value


def cli_calls(entrypoint: list[str], command: list[str], target: str = "serve") -> list[list[str]]:
    """The CLI argument lists a container runs: the image's entry point with the command,
    or the ``stream-forecaster`` calls of a shell script."""
    argv = [*(entrypoint or dockerfile_entrypoint(target)), *command]
    if argv[0] == CLI or argv[0].endswith(f"/{CLI}"):
        return [argv[1:]]
    if PurePosixPath(argv[0]).name in ("sh", "bash") and "-c" in argv:
        return shell_invocations(argv[argv.index("-c") + 1])
    pytest.fail(f"not a stream-forecaster command: {argv}")


def check_repo_paths(args: argparse.Namespace, where: str, target: str) -> None:
    """Every path argument under /app/ is a file the image copies from the repository."""
    copied = {
        dest: src for src, dest in dockerfile_copies(target=target) if dest.startswith("/app/")
    }
    for value in vars(args).values():
        text = str(value)
        if not text.startswith("/app/"):
            continue
        for dest, src in copied.items():
            if text.startswith(dest.rstrip("/") + "/"):
                assert (REPO / src / text.removeprefix(dest.rstrip("/") + "/")).exists(), (
                    f"{where}: {text} comes from {src}/, which has no such file"
                )
                break
        else:
            pytest.fail(f"{where}: {text} is not copied into the image")


# -- docker compose ------------------------------------------------------------------------


def dot_env() -> dict[str, str]:
    values = {}
    for raw in DOT_ENV.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env: not NAME=VALUE: {line!r}"
            values[name.strip()] = value.strip()
    return values


_COMPOSE_VARIABLE = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?-)([^}]*))?\}|(\w+))")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable interpolation (``$$``, ``${X}``, ``${X:-d}``, ``${X-d}``, ``$X``)
    of every string in a parsed compose file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        name = match.group(2) or match.group(5)
        operator, default = match.group(3), match.group(4)
        found = env.get(name)
        if operator == ":-" and not found:
            return default
        if operator == "-" and found is None:
            return default
        assert found is not None, f"docker-compose.yml: ${name} is not set in .env"
        return found

    return _COMPOSE_VARIABLE.sub(substitute, value)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = interpolate(yaml.safe_load(COMPOSE.read_text()), dot_env())
    return data


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def our_services() -> dict[str, dict[str, Any]]:
    """The services that run a stream-forecaster image."""
    return {name: s for name, s in services().items() if "build" in s}


def target_of(service: dict[str, Any]) -> str:
    """The Dockerfile target a service's image is built from."""
    target: str = service["build"]["target"]
    return target


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read-only) of every volume of a service (short syntax)."""
    found = []
    for volume in service.get("volumes", []):
        source, target, *mode = str(volume).split(":")
        found.append((source, target, mode == ["ro"]))
    return found


def test_compose_runs_the_whole_demo() -> None:
    found = services()
    for name in (
        *("kafka", "kafka-init", "train", "serve", "retrain", "simulate"),
        *("prometheus", "grafana"),
    ):
        assert name in found, f"docker-compose.yml has no {name} service"
    assert found["kafka"]["image"].startswith("apache/kafka:4.")
    assert found["kafka-init"]["image"] == found["kafka"]["image"]
    assert found["prometheus"]["image"].startswith("prom/prometheus:")
    assert found["grafana"]["image"].startswith("grafana/grafana:")
    ours = our_services()
    assert {"train", "serve", "retrain", "simulate"} <= set(ours)
    for name, service in ours.items():
        build = service["build"]
        assert (REPO / build["context"]).resolve() == REPO, name
        assert (REPO / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert build["target"] in TARGETS, name
        same = [o for o in ours.values() if o["build"]["target"] == build["target"]]
        assert {o["image"] for o in same} == {service["image"]}, f"{name}: one image a target"
    # Training needs TensorFlow; serving and the feed must not carry it.
    assert {name: target_of(s) for name, s in ours.items()} == {
        "train": "train",
        "retrain": "train",
        "serve": "serve",
        "simulate": "serve",
    }


def test_compose_defaults_are_the_env_file() -> None:
    """Every variable the compose file uses is in .env, with the same default in both."""
    text = "\n".join(
        line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    env = dot_env()
    used = set()
    for match in _COMPOSE_VARIABLE.finditer(text):
        if match.group(1):
            continue
        name = match.group(2) or match.group(5)
        used.add(name)
        assert name in env, f"${name} is used by docker-compose.yml but not set in .env"
        if match.group(4) is not None:
            assert match.group(4) == env[name], f"${name}: default {match.group(4)!r} != .env"
    assert used, "docker-compose.yml uses no .env variable"
    assert set(env) == used, f".env sets variables nothing uses: {sorted(set(env) - used)}"


def test_compose_commands_are_real_cli_commands() -> None:
    commands = {}
    for name, service in our_services().items():
        calls = cli_calls(as_list(service.get("entrypoint")), as_list(service.get("command")))
        assert calls, f"{name}: runs no stream-forecaster command"
        for argv in calls:
            args = parse_cli(argv, f"service {name}")
            check_repo_paths(args, f"service {name}", target_of(service))
            commands[name] = args.command
    assert commands["serve"] == "serve"
    assert commands["retrain"] == "retrain"
    assert commands["train"] == "train"
    assert commands["simulate"] == "simulate"


def test_compose_bootstrap_model_and_feed_use_the_models_volume() -> None:
    found = services()
    (train,) = cli_calls(as_list(found["train"]["entrypoint"]), as_list(found["train"]["command"]))
    args = parse_cli(train, "train")
    assert ("models", str(args.out), False) in mounts(found["train"]), "train writes the volume"
    assert ("models", str(args.out), True) in mounts(found["serve"]), "serve reads it"
    assert ("models", str(args.out), False) in mounts(found["retrain"]), "retrain writes it"
    for name in ("serve", "retrain"):
        settings = check_settings(environment(found[name]), name)
        assert settings.model.path == args.out, name
        assert settings.model.name == args.name, f"{name} follows the bootstrap model's name"
    script = found["train"]["command"][0]
    assert f"ls {args.out}/*.sfmodel" in script, "train only when the volume holds no bundle"
    (simulate,) = cli_calls([], as_list(found["simulate"]["command"]))
    assert parse_cli(simulate, "simulate").source == "beijing"


def test_compose_settings_are_accepted_by_the_settings_model() -> None:
    image_env = dockerfile_env()
    for name, service in our_services().items():
        env = {**dockerfile_env(target_of(service)), **environment(service)}
        settings = check_settings(env, f"service {name}")
        assert settings.kafka.bootstrap_servers == "kafka:9092", name
    serve = check_settings({**image_env, **environment(services()["serve"])}, "serve")
    simulate = check_settings({**image_env, **environment(services()["simulate"])}, "simulate")
    assert serve.topics == simulate.topics


def test_compose_kafka_is_one_kraft_node_with_the_topics() -> None:
    found = services()
    env = {k: str(v) for k, v in found["kafka"]["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{node}@kafka:")
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    listeners = {item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")}
    protocol_map = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert listeners <= set(protocol_map)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    cluster_id = env["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "a base64 UUID (16 bytes)"
    assert ("kafka-data", env["KAFKA_LOG_DIRS"], False) in mounts(found["kafka"])

    settings = check_settings(environment(found["serve"]), "serve")
    script = " ".join(as_list(found["kafka-init"]["command"]))
    created = set(re.findall(r"--topic\s+(\S+)", script))
    topics = settings.topics
    assert created == {topics.input, topics.output, topics.dead_letter, topics.models}
    assert "--if-not-exists" in script
    for line in script.splitlines():
        (topic,) = re.findall(r"--topic\s+(\S+)", line) or [None]
        if topic == topics.models:
            assert "--config cleanup.policy=compact" in line, "the model topic is compacted"
        elif topic is not None:
            assert "cleanup.policy" not in line, f"{topic} keeps every record: {line}"
    assert depends_on(found["kafka-init"]) == {"kafka": "service_healthy"}


def check_metrics_health_check(service: dict[str, Any], name: str) -> None:
    """The metrics port exposed to the other containers, and a healthcheck on /healthz."""
    port = check_settings(environment(service), name).metrics.port
    assert str(port) in [str(p) for p in service.get("expose", [])], name
    test = " ".join(as_list(service["healthcheck"]["test"]))
    assert f"http://127.0.0.1:{port}/healthz" in test, name
    assert "urllib.request" in test, f"{name}: the slim image has no curl"
    assert as_list(service["healthcheck"]["test"])[0] in ("CMD", "CMD-SHELL"), name


def test_compose_serve_scales_and_has_a_health_check() -> None:
    serve = services()["serve"]
    assert "container_name" not in serve, "a fixed name prevents --scale serve=N"
    assert "ports" not in serve, "a fixed host port prevents --scale serve=N"
    check_metrics_health_check(serve, "serve")
    assert depends_on(serve) == {"kafka-init": "service_completed_successfully"}


def test_compose_retrain_worker() -> None:
    found = services()
    retrain, serve = found["retrain"], found["serve"]
    check_metrics_health_check(retrain, "retrain")
    assert "ports" not in retrain, "Prometheus reaches it inside the Compose network"
    assert depends_on(retrain) == {
        "kafka-init": "service_completed_successfully",
        "train": "service_completed_successfully",
    }, "retrain starts from the bootstrap model"
    assert retrain.get("restart") == "unless-stopped"
    worker = check_settings(environment(retrain), "retrain")
    forecaster = check_settings(environment(serve), "serve")
    assert worker.topics == forecaster.topics, "the same input and model topics"
    assert worker.retrain.group_id != forecaster.processing.group_id, "its own consumer group"
    assert worker.retrain.threads == 1, "training leaves the CPU to serve"
    assert 60 <= worker.retrain.interval_s <= 3600, "a demo sees a few retrainings"
    env, serve_env = environment(retrain), environment(serve)
    secret = "SF_MODEL__SIGNING_SECRET"
    assert env[secret] == serve_env[secret], "retrain signs with the key serve checks with"
    assert not worker.model.signing_secret, "the demo's default is unsigned bundles"
    assert not forecaster.model.signing_secret
    assert secret not in environment(found["simulate"]), "only those that need the secret"


def test_compose_signing_secret_comes_from_the_env_file_empty() -> None:
    """The secret is a Compose variable (set it in the shell), never written in a file."""
    compose_text = COMPOSE.read_text()
    (variable,) = set(re.findall(r"SF_MODEL__SIGNING_SECRET:\s*\$\{(\w+):-\}", compose_text))
    assert compose_text.count("SF_MODEL__SIGNING_SECRET:") == len(
        re.findall(r"SF_MODEL__SIGNING_SECRET:\s*\$\{\w+:-\}", compose_text)
    ), "every SF_MODEL__SIGNING_SECRET is the variable, empty by default"
    assert dot_env()[variable] == "", f".env must not hold a {variable}"


def test_compose_healthchecks_dependencies_and_volumes() -> None:
    data = compose()
    found = data["services"]
    for name in ("kafka", "serve", "retrain", "prometheus", "grafana"):
        assert as_list(found[name].get("healthcheck", {}).get("test")), f"{name}: healthcheck"
    one_shot = {name for name, s in found.items() if s.get("restart") == "no"}
    assert {"kafka-init", "train"} <= one_shot
    for name, service in found.items():
        for target, condition in depends_on(service).items():
            assert target in found, f"{name} depends on unknown service {target}"
            if condition == "service_healthy":
                assert "healthcheck" in found[target], f"{name} waits for {target}'s health"
            elif condition == "service_completed_successfully":
                assert target in one_shot, f"{name} waits for {target} to exit"
            else:
                assert condition == "service_started", f"{name}: {condition}"
        for source, target, _ in mounts(service):
            assert target.startswith("/"), f"{name}: {target}"
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in (data.get("volumes") or {}), f"{name}: undeclared {source}"
    used = {source for s in found.values() for source, _, _ in mounts(s)}
    assert set(data["volumes"]) <= used, "declared volumes that nothing mounts"


def test_compose_prometheus_scrapes_every_serve_replica_and_retrain() -> None:
    found = services()
    prometheus = found["prometheus"]
    targets = {target: source for source, target, _ in mounts(prometheus)}
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = config_flag.split("=", 1)[1]
    assert (REPO / targets[config_path]).resolve() == PROMETHEUS_CONFIG
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    for rule_file in config["rule_files"]:
        mounted = str(PurePosixPath(config_path).parent / rule_file)
        assert mounted in targets, f"{rule_file} is not mounted next to prometheus.yml"
        assert (REPO / targets[mounted]).resolve() == (REPO / "deploy/prometheus/alerts.yml")
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    port = check_settings(environment(found["serve"]), "serve").metrics.port
    job = jobs[SCRAPE_JOBS["serve"]]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["serve"] and sd["type"] == "A" and sd["port"] == port
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # One retrain worker: a static target (up == 0 when it is gone, for RetrainDown).
    port = check_settings(environment(found["retrain"]), "retrain").metrics.port
    job = jobs[SCRAPE_JOBS["retrain"]]
    (static,) = job["static_configs"]
    assert static["targets"] == [f"retrain:{port}"], "the compose service's DNS name and port"
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_compose_grafana_is_provisioned() -> None:
    found = services()
    grafana = found["grafana"]
    targets = {target: source for source, target, _ in mounts(grafana)}
    assert (REPO / targets["/etc/grafana/provisioning"]).resolve() == GRAFANA / "provisioning"
    (provider,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "dashboards.yml").read_text()
    )["providers"]
    dashboards_dir = provider["options"]["path"]
    assert (REPO / targets[dashboards_dir]).resolve() == DASHBOARD.parent
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home == f"{dashboards_dir}/{DASHBOARD.name}"
    (datasource,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090", "the compose service's name and port"
    scrape_interval = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["global"]["scrape_interval"]
    assert datasource["jsonData"]["timeInterval"] == scrape_interval, "for $__rate_interval"
    assert depends_on(grafana) == {"prometheus": "service_healthy"}


# -- the image -----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined, comments left out."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        op, _, args = current.partition(" ")
        instructions.append((op.upper(), args.strip()))
        current = ""
    assert not current, "Dockerfile ends in a line continuation"
    return instructions


def dockerfile_stages() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(base image, stage name, instructions) per stage, global ARGs substituted."""
    global_args: dict[str, str] = {}
    stages: list[tuple[str, str, list[tuple[str, str]]]] = []
    for op, args in dockerfile_instructions():
        if op == "FROM":
            words = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args[m.group(1)], args).split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append((words[0], name, []))
        elif not stages:
            assert op == "ARG", f"{op} before the first FROM"
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            stages[-1][2].append((op, args))
    return stages


#: The image targets of the Dockerfile: serving (the default, last) and training.
TARGETS = ("serve", "train")


def stage_chain(target: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """The stages a target is built from, the root first (each ``FROM`` an earlier stage)."""
    by_name = {stage[1]: stage for stage in dockerfile_stages() if stage[1]}
    chain = [by_name[target]]
    while chain[0][0] in by_name:
        chain.insert(0, by_name[chain[0][0]])
    return chain


def target_instructions(target: str) -> list[tuple[str, str]]:
    """Every instruction that makes ``target``, in order."""
    return [instruction for _, _, stage in stage_chain(target) for instruction in stage]


def dockerfile_copies(*, target: str | None = None) -> list[tuple[str, str]]:
    """(repository source, image destination) of every COPY from the build context: of
    every stage, or of the stages that make ``target``."""
    stages = dockerfile_stages() if target is None else stage_chain(target)
    found = []
    for _, _, instructions in stages:
        for op, args in instructions:
            if op == "COPY" and "--from=" not in args:
                *sources, dest = [w for w in shlex.split(args) if not w.startswith("--")]
                for source in sources:
                    destination = dest if len(sources) == 1 else f"{dest.rstrip('/')}/{source}"
                    found.append((source, destination))
    return found


def dockerfile_env(target: str = "serve") -> dict[str, str]:
    """The ENV of an image target."""
    env = {}
    for op, args in target_instructions(target):
        if op == "ENV":
            for item in shlex.split(args):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def copied_from(target: str) -> set[str]:
    """The stages whose results ``target`` copies (``COPY --from=``)."""
    return {
        m.group(1)
        for op, args in target_instructions(target)
        if op == "COPY"
        for m in [re.search(r"--from=(\S+)", args)]
        if m
    }


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    stages = dockerfile_stages()
    names = {name for _, name, _ in stages}
    for base, _, _ in stages:
        assert base in names or base == "python:3.11-slim", base
    assert stages[-1][1] == "serve", "serving is the default target"
    for target in TARGETS:
        (runtime_root, *_) = stage_chain(target)
        assert runtime_root[0] == "python:3.11-slim", f"{target}: a fresh slim Python"
        built = copied_from(target)
        assert built and built <= names, f"{target} copies a build stage's result"
        instructions = target_instructions(target)
        assert not any(op == "RUN" and "pip install" in a for op, a in instructions), target
        users = [args for op, args in instructions if op == "USER"]
        assert users, f"{target}: sets a USER"
        user = users[-1].split(":")[0]
        assert user not in ("root", "0"), users[-1]
        assert not user.isdigit() or int(user) > 0
        assert dockerfile_entrypoint(target) == [CLI]
        assert "9464" in [args for op, args in instructions if op == "EXPOSE"]


def test_the_serve_image_has_no_tensorflow_and_the_train_image_the_extra() -> None:
    def installs(target: str) -> list[str]:
        """The RUN instructions of the build stages ``target`` copies from."""
        return [
            args
            for stage in copied_from(target)
            for op, args in target_instructions(stage)
            if op == "RUN"
        ]

    for target in TARGETS:
        runs = installs(target)
        assert any(re.search(r"pip install (--no-deps )?\.(\s|$)", run) for run in runs), target
        assert not any("tensorflow" in run for run in runs), "the pins come from pyproject.toml"
    assert not any("optional-dependencies" in run for run in installs("serve")), "base only"
    assert any("optional-dependencies']['train']" in run for run in installs("train"))
    built_from = copied_from("serve")
    sources = {source for stage in built_from for source, _ in dockerfile_copies(target=stage)}
    assert {"pyproject.toml", "stream_forecaster"} <= sources
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    assert not re.search(r"tensorflow|keras|matplotlib", base), "serving needs none of them"
    assert any(
        d.startswith("tensorflow-cpu") and "platform_machine == 'x86_64'" in d
        for d in project["optional-dependencies"]["train"]
    )
    for target in TARGETS:
        check_settings(dockerfile_env(target), f"Dockerfile ENV ({target})")


def dockerignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for line in patterns:
        negate = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, f"**/{pattern}") for p in prefixes
        ):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_local_state_out_and_what_the_image_needs_in() -> None:
    for local in (".venv", ".run", "models", ".git", "deploy/kafka/.cache", "deploy/kafka/.data"):
        assert dockerignored(local), f".dockerignore lets {local} into the build context"
    assert dockerignored(".mypy_cache") and dockerignored("stream_forecaster/__pycache__")
    for source, _ in dockerfile_copies():
        assert (REPO / source).exists(), f"COPY {source}: no such file"
        assert not dockerignored(source), f"COPY {source}, but .dockerignore excludes it"


# -- Kubernetes ----------------------------------------------------------------------------


def k8s_objects() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) of every manifest that kustomization.yaml lists."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found = []
    for resource in kustomization["resources"]:
        for document in yaml.safe_load_all((K8S / resource).read_text()):
            if document:
                found.append((resource, document))
    return found


def k8s_object(kind: str) -> dict[str, Any]:
    (found,) = [o for _, o in k8s_objects() if o["kind"] == kind]
    return found


def k8s_deployments() -> dict[str, dict[str, Any]]:
    """The Deployments by their ``app.kubernetes.io/component`` label."""
    found = {}
    for _, obj in k8s_objects():
        if obj["kind"] == "Deployment":
            component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
            assert component not in found, f"two Deployments of {component}"
            found[component] = obj
    return found


def test_kustomization_lists_every_manifest_and_none_names_a_namespace() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    kinds = sorted(o["kind"] for _, o in k8s_objects())
    for kind in ("ConfigMap", "Secret", "Deployment", "Service"):
        assert kind in kinds
    for name, obj in k8s_objects():
        assert "namespace" not in obj["metadata"], f"{name} names a namespace"
    images = {i["name"] for i in kustomization.get("images", [])}
    deployments = k8s_deployments()
    assert set(deployments) == {"serve", "retrain"}
    for component, deployment in deployments.items():
        containers = deployment["spec"]["template"]["spec"]["containers"]
        assert {c["image"].split(":")[0] for c in containers} <= images, component


def secret_example_names() -> list[str]:
    """The SF_ settings that secret.yaml's comments give as examples."""
    return re.findall(r"^#\s+(SF_\w+):", (K8S / "secret.yaml").read_text(), re.M)


def test_k8s_settings_are_accepted_by_the_settings_model() -> None:
    config = k8s_object("ConfigMap")["data"]
    secret = k8s_object("Secret")
    secret_data = {**(secret.get("stringData") or {}), **(secret.get("data") or {})}
    examples = secret_example_names()
    assert examples, "secret.yaml documents which settings belong in it"
    assert "SF_MODEL__SIGNING_SECRET" in examples, "the model-signing secret is a secret"
    unknown = [n for n in [*config, *secret_data, *examples] if not is_setting(n)]
    assert not unknown, f"not settings of stream-forecaster: {unknown}"
    check_settings({**dockerfile_env(), **config}, "ConfigMap")
    for secret_word in ("PASSWORD", "SECRET"):
        assert secret_word not in " ".join(config), "secrets belong in the Secret"


def check_k8s_deployment(component: str) -> tuple[dict[str, Any], Settings]:
    """What every Deployment needs: the CLI command of its component, the settings from the
    ConfigMap and the Secret, the signing secret by secretKeyRef, probes on the metrics port,
    scrape annotations, resources, a non-root user, declared volumes and the model folder.
    Returns its container and its settings."""
    deployment = k8s_deployments()[component]
    config_map = k8s_object("ConfigMap")
    secret = k8s_object("Secret")
    settings = check_settings({**dockerfile_env(), **config_map["data"]}, "ConfigMap")
    spec = deployment["spec"]
    template = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    for other, obj in k8s_deployments().items():
        if other != component:
            selector = spec["selector"]["matchLabels"].items()
            labels = obj["spec"]["template"]["metadata"]["labels"].items()
            assert not selector <= labels, f"{component}'s selector also takes {other}'s pods"
    pod = template["spec"]
    (container,) = pod["containers"]
    target = "train" if component == "retrain" else "serve"
    assert container["image"].split(":")[0] == {"serve": CLI, "train": f"{CLI}-train"}[target]
    command = as_list(container.get("command")) or dockerfile_entrypoint(target)
    (argv,) = cli_calls(command, as_list(container.get("args")), target)
    assert parse_cli(argv, f"{component} Deployment").command == component

    refs = {
        ("configMap", e["configMapRef"]["name"])
        if "configMapRef" in e
        else ("secret", e["secretRef"]["name"])
        for e in container["envFrom"]
    }
    assert refs == {
        ("configMap", config_map["metadata"]["name"]),
        ("secret", secret["metadata"]["name"]),
    }
    env = container.get("env", [])
    for entry in env:
        assert is_setting(entry["name"]), f"{component}: {entry['name']} is not a setting"
    check_settings(
        {
            **dockerfile_env(),
            **config_map["data"],
            **{e["name"]: e["value"] for e in env if "value" in e},
        },
        f"{component} Deployment env",
    )
    (signing,) = [e for e in env if e["name"] == "SF_MODEL__SIGNING_SECRET"]
    ref = signing["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"], component
    assert ref["key"] == "SF_MODEL__SIGNING_SECRET", component
    assert ref.get("optional") is True, f"{component}: unset means unsigned bundles"

    (port,) = [p for p in container["ports"] if p["name"] == "metrics"]
    assert port["containerPort"] == settings.metrics.port
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        if probe == "startupProbe" and probe not in container:
            continue
        get = container[probe]["httpGet"]
        assert get["path"] == path, f"{component} {probe}"
        assert get["port"] in ("metrics", settings.metrics.port), f"{component} {probe}"
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(settings.metrics.port)
    assert annotations["prometheus.io/path"] == "/metrics"

    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
    pod_security = pod.get("securityContext", {})
    container_security = container.get("securityContext", {})
    security = {**pod_security, **container_security}
    assert security["runAsNonRoot"] is True
    assert int(security["runAsUser"]) > 0
    assert container_security["allowPrivilegeEscalation"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        assert mount["name"] in volumes
    claims = {
        o["metadata"]["name"] for _, o in k8s_objects() if o["kind"] == "PersistentVolumeClaim"
    }
    for volume in volumes.values():
        if "persistentVolumeClaim" in volume:
            assert volume["persistentVolumeClaim"]["claimName"] in claims
    return container, settings


def models_mount(container: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The volume mount of the model folder SF_MODEL__PATH."""
    mounts: list[dict[str, Any]] = container["volumeMounts"]
    (mount,) = [m for m in mounts if m["mountPath"] == str(settings.model.path)]
    return mount


def test_k8s_serve_deployment() -> None:
    deployment = k8s_deployments()["serve"]
    assert deployment["spec"]["replicas"] == 2
    container, settings = check_k8s_deployment("serve")
    assert models_mount(container, settings).get("readOnly") is True, "serve only reads models"


def test_k8s_retrain_deployment() -> None:
    deployment = k8s_deployments()["retrain"]
    spec = deployment["spec"]
    assert spec["replicas"] == 1, "one worker: two would promote side by side"
    assert spec["strategy"]["type"] == "Recreate", "never two workers, not even in a rollout"
    container, settings = check_k8s_deployment("retrain")
    assert not models_mount(container, settings).get("readOnly"), "retrain writes the models"
    serve_container, _ = check_k8s_deployment("serve")
    volume_claims = []
    for pod_container, obj in (
        (container, deployment),
        (serve_container, k8s_deployments()["serve"]),
    ):
        volumes = {v["name"]: v for v in obj["spec"]["template"]["spec"]["volumes"]}
        claim = volumes[models_mount(pod_container, settings)["name"]]["persistentVolumeClaim"]
        volume_claims.append(claim["claimName"])
    assert volume_claims[0] == volume_claims[1], "serve reads the folder retrain writes"
    (claim,) = [o for _, o in k8s_objects() if o["kind"] == "PersistentVolumeClaim"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"], "pods on several nodes share it"
    assert settings.retrain.threads == 1, "training leaves the CPU to serve"
    assert settings.retrain.group_id != settings.processing.group_id, "its own consumer group"


def test_k8s_metrics_service_selects_the_serve_pods() -> None:
    service = k8s_object("Service")
    template = k8s_deployments()["serve"]["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    retrain = k8s_deployments()["retrain"]["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= retrain.items(), "serve pods only"
    (container,) = template["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in named or port["targetPort"] in named.values()
    assert port["name"] == "metrics"


def test_configured_coverage_is_the_dashboards_target() -> None:
    """The coverage panel's target line and the settings agree (Compose, ConfigMap)."""
    (panel,) = [
        p
        for p in dashboard_panels()
        if any("sf_interval_coverage_ratio" in metric_names(e) for e in panel_expressions(p))
    ]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    lines = {step["value"] for step in steps if step["value"] is not None}
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
    configured = {
        ScoringSettings().coverage,
        check_settings(
            {**dockerfile_env(), **k8s_object("ConfigMap")["data"]}, "k8s"
        ).scoring.coverage,
        check_settings(environment(services()["serve"]), "serve").scoring.coverage,
    }
    assert len(configured) == 1, f"coverage configured differently: {configured}"
    assert configured <= lines, f"no target line at {configured} on {panel['title']!r}"
    (coverage_alert,) = [r for r in alert_rules() if r["alert"] == "IntervalCoverageLow"]
    threshold = float(
        re.findall(r"sf_interval_coverage_ratio < ([0-9.]+)", coverage_alert["expr"])[0]
    )
    assert threshold < min(configured), "the alert fires below the target, not at it"
    assert threshold in lines, "the alert's threshold is drawn too"


# -- Grafana -------------------------------------------------------------------------------


def datasource_uid() -> str:
    (datasource,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    uid: str = datasource["uid"]
    return uid


def test_every_panel_has_a_query_a_unit_and_the_provisioned_datasource() -> None:
    uid = datasource_uid()
    panels = dashboard_panels()
    assert len(panels) >= 10
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in panels:
        title = panel["title"]
        assert panel_expressions(panel), f"panel {title!r} has no query"
        assert panel["datasource"]["uid"] == uid, title
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] == uid, title
            assert target.get("refId"), title
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert unit in GRAFANA_UNITS, f"panel {title!r}: unit {unit!r}"
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), title
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == uid
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[x, y]!r}"
                cells[x, y] = panel["title"]


#: Metrics whose values are fractions of 1, shown in percent: Prometheus' ``_ratio`` names,
#: and the skill score (1 - MAE / persistence MAE).
RATIOS = frozenset(
    {n for n in exported_series_names() if n.endswith("_ratio")} | {"sf_online_skill"}
)


def test_panel_units_fit_their_queries() -> None:
    """Seconds for durations and ages, per-second units for rates, percent for ratios, a
    plain count for counts."""
    rate_only = re.compile(r"^sum(?: by \([^)]*\))? ?\(rate\([^()]*\)\)$")
    for panel in dashboard_panels():
        exprs = [" ".join(e.split()) for e in panel_expressions(panel)]
        unit = panel["fieldConfig"]["defaults"]["unit"]
        names = set().union(*(metric_names(e) for e in exprs))
        durations = all(
            n.endswith(("_seconds_bucket", "_seconds_sum", "_seconds_count")) for n in names
        )
        if durations and all("histogram_quantile" in e or "/" in e for e in exprs):
            assert unit == "s", panel["title"]
        elif all(rate_only.match(e) for e in exprs):
            assert unit in PER_SECOND_UNITS, panel["title"]
        elif names and all(n.endswith("_timestamp_seconds") for n in names):
            assert unit == "s", f"{panel['title']}: an age, time() - a timestamp"
        elif names and names <= RATIOS:
            assert unit == "percentunit", panel["title"]
        elif any("/" in e for e in exprs) and not durations:
            assert unit in ("percentunit", "short"), panel["title"]
        else:
            assert unit in ("short", "none"), panel["title"]


def test_dashboard_and_alerts_query_only_exported_metrics() -> None:
    exported = exported_series_names() | PROMETHEUS_SERIES
    queries = [(p["title"], e) for p in dashboard_panels() for e in panel_expressions(p)]
    queries += [("variable", e) for e in variable_expressions()]
    queries += [(r["alert"], r["expr"]) for r in alert_rules()]
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= exported, f"{where}: {sorted(names - exported)} are not exported"


def test_dashboard_panels_query_one_exporter_each_and_retrain_without_instance() -> None:
    """A query reads the metrics of serve or of retrain, not both (they come from different
    scrape jobs); the $instance variable lists serve instances (label_values of a serve
    metric), so retrain queries do not filter by it; job selectors name real scrape jobs."""
    for variable in variable_expressions():
        assert {exporter_of(n) for n in metric_names(variable)} == {"serve"}, variable
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {j["job_name"] for j in config["scrape_configs"]}
    retrain_panels = 0
    for panel in dashboard_panels():
        for expr in panel_expressions(panel):
            names = metric_names(expr) - PROMETHEUS_SERIES
            exporters = {exporter_of(n) for n in names}
            assert len(exporters) <= 1, f"{panel['title']}: {expr} mixes {exporters}"
            if exporters == {"retrain"}:
                retrain_panels += 1
                assert "$instance" not in expr, f"{panel['title']}: {expr}"
            for job in re.findall(r'\bjob\s*=~?\s*"([^"]*)"', expr):
                assert job in jobs, f"{panel['title']}: no scrape job {job!r}"
    assert retrain_panels, "the dashboard shows the retrain worker"
    titles = [p["title"] for p in dashboard()["panels"] if p.get("type") == "row"]
    assert any("Retraining" in t for t in titles), "a Retraining row"


def test_metric_names_sees_what_a_query_selects() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(sf_a_bucket{job="x", le!="1e3"}[5m])))'
        " / on(instance) group_left sf_b offset 5m > bool 1e3 and time() - sf_c"
    )
    assert metric_names(expr) == {"sf_a_bucket", "sf_b", "sf_c"}
    assert metric_names('up{job="stream-forecaster"} == 0') == {"up"}


def test_every_exported_metric_has_a_panel() -> None:
    shown = set().union(
        *(metric_names(e) for p in dashboard_panels() for e in panel_expressions(p))
    )
    missing = [f.name for f in exported_families() if not f.series & shown]
    assert not missing, f"metrics without a dashboard panel: {missing}"


# -- the docs ------------------------------------------------------------------------------


def test_the_docs_list_every_metric_alert_and_the_dashboard() -> None:
    metrics = (DOCS / "reference" / "metrics.md").read_text()
    rows = [line for line in metrics.splitlines() if line.startswith("| `sf_")]
    for family in exported_families():
        name = family.queried_name
        matching = [r for r in rows if r.startswith(f"| `{name}` |")]
        assert len(matching) == 1, f"docs/reference/metrics.md: {len(matching)} rows for {name}"
        cells = [cell.strip() for cell in matching[0].strip("|").split("|")]
        assert len(cells) == 4, f"{name}: | metric | type | labels | meaning |"
        _, kind, labels, meaning = cells
        assert kind == family.type, f"{name}: type {family.type}, the page says {kind}"
        assert meaning, f"{name}: its meaning"
        for label in family.labels:
            assert f"`{label}`" in labels, f"{name}: label {label}"
    alerts = (DOCS / "operations" / "alerts.md").read_text()
    for rule in alert_rules():
        assert rule["alert"] in alerts, f"docs/operations/alerts.md lacks {rule['alert']}"
    dashboard = (DOCS / "operations" / "dashboard.md").read_text()
    assert DASHBOARD.name in dashboard
    assert "## Retraining" in dashboard, "a section on the retrain worker's row"


def test_the_compose_page_names_the_stack() -> None:
    page = (DOCS / "how-to" / "compose.md").read_text()
    for word in ("docker compose up", "--scale serve=3", ":3000", ":9090", ".env"):
        assert word in page, word
    for name in services():
        assert f"`{name}`" in page, f"docs/how-to/compose.md does not name {name}"
    assert "SF_MODEL__SIGNING_SECRET" in page
    for name in dot_env():
        assert name in page, f"docs/how-to/compose.md does not explain .env's {name}"


def test_the_readme_is_a_short_front_page_whose_links_work() -> None:
    text = README.read_text()
    assert len(text.encode()) <= 10 * 1024, f"README.md is {len(text.encode())} bytes"
    for command in ("make run", "make test"):
        assert command in text
    for target in re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)\)", text):
        assert (REPO / target).is_file(), f"README links to {target}, which does not exist"


@pytest.fixture(autouse=True)
def _no_stray_settings() -> Iterator[None]:
    """check_settings restores the environment; make sure no test leaks SF_ variables."""
    before = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    yield
    assert {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)} == before
