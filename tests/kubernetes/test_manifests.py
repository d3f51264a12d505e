"""The deployment recipe in examples/kubernetes/ is consistent with itself and with the runtime.

The manifests are parsed (PyYAML) and cross-checked: the probes hit the runtime's health paths on
the container port the worker serves metrics on (the one CONDUCTOR_WORKER_METRICS_PORT sets and
the Dockerfile exposes), the grace period covers the preStop and the drain, Prometheus scrapes
that port, and every metric the KEDA query uses is one the installed package really serves: a
Runner of the example's own `resize` worker is started against a dev server and its /metrics and
/health/* are read. The Dockerfile is checked as text; the image is built when docker or podman
can build here, and test_the_image_builds says so (skipped, with why) when they cannot.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tools.devserver import DevServer

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "examples" / "kubernetes"
DOCKERFILE = HERE / "Dockerfile"
WORKER_PROGRAM = HERE / "worker.py"
TOOLCHAIN = re.compile(r"(?<![\w-])(cargo|rustc|rustup|gcc|g\+\+|clang|build-essential|maturin)(?![\w-])")

# ---- the manifests ----------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    files = sorted([*HERE.glob("*.yaml"), *HERE.glob("*.yml")])
    assert files, f"no manifests in {HERE}"
    return files


def documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:  # an empty document (a trailing ---)
                docs.append((path, doc))
    return docs


def one(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in documents() if doc.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind} in {HERE}, found {len(found)}"
    return found[0]


def pod_spec() -> dict[str, Any]:
    return one("Deployment")["spec"]["template"]["spec"]


def worker_container() -> dict[str, Any]:
    containers = pod_spec()["containers"]
    assert len(containers) == 1, "the example's pod has one container, the worker"
    return containers[0]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    env = {}
    for var in container.get("env", []):
        assert isinstance(var.get("value"), str) or "valueFrom" in var, f"env {var['name']}: values are strings"
        env[var["name"]] = var.get("value")
    return env


def container_port(container: dict[str, Any], port: int | str) -> int:
    """The container port a probe or a scrape names, by name or by number."""
    ports = container.get("ports", [])
    if isinstance(port, str) and not port.isdigit():
        by_name = [p["containerPort"] for p in ports if p.get("name") == port]
        assert by_name, f"no container port named {port!r} (ports: {ports})"
        return int(by_name[0])
    numbers = [int(p["containerPort"]) for p in ports]
    assert int(port) in numbers, f"port {port} is not a container port (ports: {numbers})"
    return int(port)


def metrics_port() -> int:
    env = env_of(worker_container())
    assert "CONDUCTOR_WORKER_METRICS_PORT" in env, "the Deployment sets CONDUCTOR_WORKER_METRICS_PORT"
    return int(env["CONDUCTOR_WORKER_METRICS_PORT"])


def prestop_command() -> list[str]:
    return worker_container()["lifecycle"]["preStop"]["exec"]["command"]


def test_every_document_parses_and_is_named() -> None:
    docs = documents()
    kinds = {doc.get("kind") for _, doc in docs}
    assert {"Deployment", "Service", "PodMonitor", "ScaledObject"} <= kinds, kinds
    for path, doc in docs:
        assert isinstance(doc, dict), f"{path.name}: a document is a mapping"
        for field in ("apiVersion", "kind"):
            assert doc.get(field), f"{path.name}: a document without {field}"
        assert (doc.get("metadata") or {}).get("name"), f"{path.name}: {doc['kind']} without metadata.name"
    versions = {doc["kind"]: doc["apiVersion"] for _, doc in docs}
    assert versions["PodMonitor"] == "monitoring.coreos.com/v1"
    assert versions["ScaledObject"] == "keda.sh/v1alpha1"


def test_probes_hit_the_health_paths_on_the_metrics_port() -> None:
    container = worker_container()
    env = env_of(container)
    assert env.get("CONDUCTOR_WORKER_METRICS_HOST") == "0.0.0.0", "probes and Prometheus come from outside the pod"
    port = metrics_port()
    for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, f"{probe} asks {get['path']}, the runtime serves {path}"
        assert container_port(container, get["port"]) == port, f"{probe} is not on the metrics port {port}"
    assert expose_ports() == {port}, f"the Dockerfile exposes {expose_ports()}, the worker serves on {port}"
    assert dockerfile_env().get("CONDUCTOR_WORKER_METRICS_PORT") == str(port)
    assert dockerfile_env().get("CONDUCTOR_WORKER_METRICS_HOST") == "0.0.0.0"
    liveness = container["livenessProbe"]
    assert liveness.get("failureThreshold", 3) >= 3 and liveness.get("periodSeconds", 10) >= 10, "liveness is tolerant"
    resources = container["resources"]
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    assert requests.get("memory") and limits.get("memory"), "a memory request and limit"
    assert pod_spec()["securityContext"].get("runAsNonRoot") is True, "the pod sets runAsNonRoot: true"


def test_the_grace_period_covers_quiet_and_drain() -> None:
    command = prestop_command()
    script = " ".join(command)
    assert re.search(r"\bkill\s+-(TSTP|SIGTSTP|20)\s+1\b", script), f"the preStop does not quiet PID 1: {command}"
    sleeps = [int(s) for s in re.findall(r"\bsleep\s+(\d+)\b", script)]
    assert sleeps, f"the preStop does not wait after quieting: {command}"
    drain = float(env_of(worker_container())["WORKER_DRAIN_SECONDS"])
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert grace > drain + sum(sleeps), f"grace {grace} s <= drain {drain} s + preStop sleep {sum(sleeps)} s"
    text = WORKER_PROGRAM.read_text()
    assert re.search(r"""os\.environ(\.get\(|\[)["']WORKER_DRAIN_SECONDS["']""", text), "worker.py reads the deadline"
    assert "stop_timeout=" in text, "worker.py hands the deadline to run(stop_timeout=...)"
    journal = env_of(worker_container())["CONDUCTOR_WORKER_JOURNAL"]
    mounts = [m["mountPath"] for m in worker_container()["volumeMounts"]]
    assert any(journal.startswith(m.rstrip("/") + "/") for m in mounts), f"the journal {journal} is not on a volume"


def test_prometheus_scrapes_the_metrics_port() -> None:
    container = worker_container()
    port = metrics_port()
    labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    monitor = one("PodMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items(), "the PodMonitor selects no worker pod"
    endpoints = monitor["podMetricsEndpoints"]
    assert endpoints, "the PodMonitor has no endpoint"
    for endpoint in endpoints:
        assert endpoint.get("path", "/metrics") == "/metrics", endpoint
        assert container_port(container, endpoint.get("port") or endpoint.get("targetPort")) == port, endpoint
    service = one("Service")["spec"]
    assert service["selector"].items() <= labels.items(), "the Service selects no worker pod"
    for service_port in service["ports"]:
        assert container_port(container, service_port.get("targetPort", service_port["port"])) == port, service_port


def test_the_scaler_targets_the_deployment() -> None:
    spec = one("ScaledObject")["spec"]
    assert spec["scaleTargetRef"]["name"] == one("Deployment")["metadata"]["name"]
    assert spec.get("minReplicaCount", 0) >= 1, "at zero replicas nobody exports task_queue_depth"
    prometheus = [t for t in spec["triggers"] if t["type"] == "prometheus"]
    assert prometheus, "no prometheus trigger"
    assert metric_names(keda_query()) == {"task_queue_depth"}
    assert re.search(r"""task_queue_depth\{[^}]*taskType\s*=\s*"resize"[^}]*\}""", keda_query())


# ---- the KEDA query against what the runtime serves --------------------------------------------

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or"}
PROMQL_WORDS |= {"unless", "inf", "nan", "atan2"}


def keda_query() -> str:
    triggers = one("ScaledObject")["spec"]["triggers"]
    return next(t["metadata"]["query"] for t in triggers if t["type"] == "prometheus")


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords and labels left out)."""
    q = re.sub(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'""", '""', query)  # string literals
    q = re.sub(r"\{[^}]*\}", "{}", q)  # label matchers
    q = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", q)  # label lists
    q = re.sub(r"\[[^\]]*\]", " ", q)  # ranges and subqueries
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", q):
        if q[m.end() :].lstrip().startswith("(") or m.group().lower() in PROMQL_WORDS:
            continue  # a function or an aggregation
        names.add(m.group())
    return names


def test_metric_names_are_read_out_of_promql() -> None:
    assert metric_names('sum(max by (domain) (task_queue_depth{taskType="resize"}))') == {"task_queue_depth"}
    query = 'rate(task_poll_total{taskType="a:b"}[5m] offset 1h) / on (taskType) group_left active_workers > 1e3'
    assert metric_names(query) == {"task_poll_total", "active_workers"}


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def served_names(exposition: str) -> set[str]:
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def load_example_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kubernetes_example_worker", WORKER_PROGRAM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runtime_url() -> Iterator[str]:
    """The metrics and health endpoint of a running Runner of the example's `resize` worker, started
    with the Deployment's environment (servers, port and journal given here) against a dev server."""
    from conductor_worker import Runner

    installed = Path(sys.executable).parent / "conductor-devserver"  # the package's own dev server
    env = {k: v for k, v in env_of(worker_container()).items() if k.startswith("CONDUCTOR_WORKER_")}
    env["CONDUCTOR_WORKER_QUEUE_DEPTH_INTERVAL"] = "1"  # the first depth within a second
    with pytest.MonkeyPatch.context() as mp:
        if installed.is_file() and "CONDUCTOR_DEVSERVER_BIN" not in os.environ:
            mp.setenv("CONDUCTOR_DEVSERVER_BIN", str(installed))
        dev = DevServer()
        for name, value in env.items():
            mp.setenv(name, value)
        runner = Runner([load_example_worker().resize], servers=[dev.api], metrics_port=0, journal="off")
        try:
            runner.start()
        except BaseException:
            dev.stop()
            raise
    try:
        addr = runner.metrics_addr
        assert addr is not None, "the runner serves no metrics endpoint with metrics_port=0"
        yield f"http://127.0.0.1:{addr[1]}"
    finally:
        runner.stop(timeout=5)
        dev.stop()


def test_the_keda_query_uses_metrics_the_runtime_serves(runtime_url: str) -> None:
    wanted = metric_names(keda_query())
    assert wanted, f"no metric name in the KEDA query {keda_query()!r}"
    deadline = time.monotonic() + 15  # gauges appear once measured (the queue depth: after its first read)
    while True:
        status, body = get(runtime_url + "/metrics")
        assert status == 200, f"/metrics answered {status}"
        missing = wanted - served_names(body)
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert not missing, f"the KEDA query uses {sorted(missing)}, not served; served: {sorted(served_names(body))}"


def test_the_runtime_answers_the_probe_paths(runtime_url: str) -> None:
    deadline = time.monotonic() + 10  # ready once a server answered
    while (ready := get(runtime_url + "/health/ready"))[0] == 503 and time.monotonic() < deadline:
        time.sleep(0.25)
    answers = {"/health/live": get(runtime_url + "/health/live"), "/health/ready": ready}
    answers["/health"] = get(runtime_url + "/health")
    wrong = {path: f"{status} {body[:120]!r}" for path, (status, body) in answers.items() if status != 200}
    assert not wrong, f"a healthy runner with its server up answers 200 on every probe path; it answered {wrong}"
    assert isinstance(json.loads(answers["/health"][1]), dict), "/health answers JSON"


# ---- the Dockerfile -----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments left out."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        logical.append(current.strip())
        current = ""
    if current:
        logical.append(current.strip())
    return [(words[0].upper(), words[1] if len(words) > 1 else "") for words in (s.split(None, 1) for s in logical)]


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def final_stage(instruction: str) -> list[str]:
    return [args for name, args in stages()[-1] if name == instruction]


def expose_ports() -> set[int]:
    return {int(p.split("/")[0]) for args in final_stage("EXPOSE") for p in args.split()}


def dockerfile_env() -> dict[str, str]:
    env = {}
    for args in final_stage("ENV"):
        for word in shlex.split(args):
            name, _, value = word.partition("=")
            env[name] = value
    return env


def test_the_dockerfile_is_multi_stage_non_root_and_toolchain_free() -> None:
    assert len(stages()) >= 2, "a multi-stage build: a venv stage and a runtime stage"
    users = final_stage("USER")
    assert users, "the final stage sets no USER: the worker would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: a numeric non-root UID (runAsNonRoot checks it)"
    assert str(pod_spec()["securityContext"].get("runAsUser", uid)) == uid, "the pod runs as the image's user"
    assert final_stage("WORKDIR"), "the final stage sets a WORKDIR"
    final_text = "\n".join(f"{name} {args}" for name, args in stages()[-1])
    toolchain = TOOLCHAIN.findall(final_text)
    assert not toolchain, f"a toolchain in the final stage: {toolchain}"
    assert "rust" not in stages()[-1][0][1].lower(), "the final stage is not built on a Rust image"
    for instruction in ("ENTRYPOINT", "CMD"):
        for args in final_stage(instruction):
            # Exec form (a JSON array, no shell), so Python is PID 1 and gets the signals.
            assert args.startswith("["), f"{instruction} {args}: shell form runs /bin/sh as PID 1"
            argv = json.loads(args)
            assert isinstance(argv, list) and argv[0] not in ("sh", "/bin/sh", "bash", "/bin/bash"), args
    assert final_stage("ENTRYPOINT"), "an exec-form ENTRYPOINT"
    installs = [args for name, args in stages()[0] if name == "RUN" and "pip install" in args]
    assert installs and all("--no-index" in args for args in installs), "the wheel installs with --no-index"


def container_tool() -> str | None:
    return next((tool for tool in ("docker", "podman") if shutil.which(tool)), None)


def execute(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}  # BuildKit reads Dockerfile.dockerignore
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout, env=env)


def test_the_image_builds() -> None:
    tool = container_tool()
    if tool is None:
        pytest.skip("image not built: no docker or podman on this machine")
    if not list(ROOT.glob("dist/conductor_worker-*.whl")):
        pytest.skip("image not built: no wheel in dist/ (run scripts/dist.sh first)")
    info = execute([tool, "info"], timeout=60)
    if info.returncode != 0:
        why = (info.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"image not built: {tool} is on the PATH but cannot build here ({tool} info: {why})")
    tag = f"conductor-worker-k8s-test:{uuid.uuid4().hex[:8]}"
    build = [tool, "build", "-f", str(DOCKERFILE), "-t", tag, str(ROOT)]
    try:
        done = execute(build, timeout=1800)
        assert done.returncode == 0, f"{shlex.join(build)} failed:\n{done.stderr[-4000:]}"
        done = execute([tool, "run", "--rm", tag, "-c", "import os, conductor_worker; print(os.getuid())"], 120)
        assert done.returncode == 0, f"the image cannot import the package: {done.stderr[-2000:]}"
        assert int(done.stdout.strip()) != 0, "the image runs as root"
        look = "for t in gcc cc cargo rustc; do command -v $t; done; true"
        done = execute([tool, "run", "--rm", "--entrypoint", "/bin/sh", tag, "-c", look], 120)
        assert done.stdout.strip() == "", f"a toolchain in the image: {done.stdout.split()}"
    finally:
        execute([tool, "rmi", "-f", tag], 120)
