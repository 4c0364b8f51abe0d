"""Service files (issue 19.5): what can be checked without a docker engine or a booted systemd.

* examples/xcap-wsgi.service: ``systemd-analyze verify`` (with ExecStart pointing at this
  machine's xcap-wsgi), the hardening directives, ``systemd-analyze security`` exposure level;
* examples/docker/Dockerfile: every COPY source exists; its RUN pip install runs in a venv and its
  ENTRYPOINT + CMD start a server that answers (after ``adduser``, as the image's user would);
* examples/docker/compose.yaml: build contexts, Dockerfiles and mounted files exist, dependencies
  name services, and the database credentials, service names and ports agree between the
  MariaDB service, xcap-wsgi's XCAP_DB, Kamailio's DBURL, the RPC listener and published ports;
* examples/docker/kamailio.cfg passes ``kamailio -c``; the Debian packages the Kamailio image
  installs are the ones .ci/run installs (and the tests run).

Tools missing here (systemd-analyze, kamailio) skip the test outside CI and fail it in CI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from test_workers import free_port, request

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DOCKER = EXAMPLES / "docker"
UNIT = EXAMPLES / "xcap-wsgi.service"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def tool(name: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if found is None:
        if IN_CI:
            pytest.fail(f"CI=true and {name} is not installed (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return found


# -- systemd ----------------------------------------------------------------------------------


def unit_directives() -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, val = line.partition("=")
            directives.setdefault(key.strip(), []).append(val.strip())
    return directives


def local_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart's program replaced by this machine's xcap-wsgi (verify checks it exists)."""
    program = shutil.which("xcap-wsgi") or str(Path(sys.executable).with_name("xcap-wsgi"))
    target = tmp_path / "xcap-wsgi.service"
    target.write_text(UNIT.read_text().replace("/opt/xcap-wsgi/bin/xcap-wsgi", os.path.realpath(program)))
    return target


def test_systemd_unit_verifies(tmp_path):
    analyze = tool("systemd-analyze")
    verified = subprocess.run([analyze, "verify", "--man=no", str(local_unit(tmp_path))],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    original = subprocess.run([analyze, "verify", "--man=no", str(UNIT)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (original.stdout + original.stderr).splitlines()
                if line.strip() and "/opt/xcap-wsgi/bin/xcap-wsgi" not in line]
    assert problems == []  # the only complaint about the shipped file: its program is not installed here


def test_systemd_unit_is_hardened(tmp_path):
    d = unit_directives()
    assert d["User"] == ["xcap-wsgi"] and d["Group"] == ["xcap-wsgi"]
    for key, want in {"ProtectSystem": "strict", "PrivateTmp": "yes", "NoNewPrivileges": "yes", "ProtectHome": "yes",
                      "PrivateDevices": "yes", "CapabilityBoundingSet": "", "UMask": "0077"}.items():
        assert d[key] == [want], key
    assert d["RuntimeDirectory"] == ["xcap-wsgi xcap-wsgi/metrics"] and d["RuntimeDirectoryMode"] == ["0700"]
    assert d["StateDirectory"] == ["xcap-wsgi"]
    assert set(d["ReadWritePaths"][0].split()) == {"/var/lib/xcap-wsgi", "/run/xcap-wsgi"}
    assert "XCAP_METRICS_DIR=/run/xcap-wsgi/metrics" in d["Environment"][0].split()
    assert (EXAMPLES / "xcap-wsgi.sysusers.conf").read_text().count("u xcap-wsgi ") == 1
    security = subprocess.run([tool("systemd-analyze"), "security", "--offline=true", "--no-pager",
                               str(local_unit(tmp_path))], capture_output=True, text=True, timeout=60)
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\S+)", security.stdout)
    assert level, security.stdout + security.stderr
    assert float(level.group(1)) <= 2.0 and level.group(2) == "OK", level.group(0)


# -- Dockerfile -------------------------------------------------------------------------------


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in text.splitlines() if line.strip()]


def test_dockerfile_copies_files_that_exist():
    for name, context in (("Dockerfile", REPO), ("kamailio.Dockerfile", DOCKER)):
        copies = [args.split() for op, args in dockerfile(DOCKER / name) if op == "COPY"]
        assert copies, name
        for parts in copies:
            for source in parts[:-1]:
                assert (context / source).exists(), f"{name}: COPY {source} (context {context})"


def test_dockerfile_steps_run_in_a_venv(tmp_path):
    """The image's RUN pip install, then its ENTRYPOINT + CMD with its ENV: a server that answers."""
    steps = dockerfile(DOCKER / "Dockerfile")
    env = {}
    for op, args in steps:
        if op == "ENV":
            env.update(dict(part.split("=", 1) for part in shlex.split(args)))
    pip = next(args for op, args in steps if op == "RUN" and "pip install" in args)
    install = shlex.split(pip.split("&&")[0].strip())
    assert install[:2] == ["pip", "install"]
    venv = tmp_path / "venv"
    # The host's packages stand in for PyPI's (same requirements; nothing to download).
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    source = tmp_path / "src"  # what COPY puts in /src
    for op, args in steps:
        if op == "COPY":
            *items, destination = args.split()
            base = Path(destination.replace("/src", str(source), 1))
            for item in items:
                target = base / Path(item).name if destination.endswith("/") else base
                target.parent.mkdir(parents=True, exist_ok=True)
                if (REPO / item).is_dir():
                    shutil.copytree(REPO / item, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(REPO / item, target)
    arguments = [a.replace("/src", str(source)) for a in install[2:]]
    built = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *arguments], capture_output=True, text=True,
                           timeout=600, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    entry = json.loads(next(args for op, args in steps if op == "ENTRYPOINT"))
    command = json.loads(next(args for op, args in steps if op == "CMD"))
    program = [str(venv / "bin" / entry[0]), *entry[1:]]
    port = free_port()
    run_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROMETHEUS_MULTIPROC_DIR")}
    run_env.update(env, XCAP_PORT=str(port), XCAP_HOST="127.0.0.1",
                   XCAP_DB=f"sqlite:///{tmp_path / 'xcap.sqlite3'}", XCAP_PASSWORD="secret")
    assert subprocess.run([*program, "--help"], capture_output=True, env=run_env, timeout=60).returncode == 0
    added = subprocess.run([*program, "adduser", "alice@localhost"], capture_output=True, text=True, env=run_env,
                           timeout=60)
    assert added.returncode == 0, added.stderr
    server = subprocess.Popen([*program, *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=run_env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        health = re.search(r"http://127\.0\.0\.1:8080(/[^'\"]+)", next(a for o, a in steps if o == "HEALTHCHECK"))
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                response, body = request(port, "GET", health.group(1))  # the image's HEALTHCHECK
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert response.status == 200 and health.group(1) == "/healthz"
        assert request(port, "GET", "/metrics")[0].status == 200  # the metrics extra is installed
        assert request(port, "GET", "/xcap-root/resource-lists/users/sip:alice@localhost/index")[0].status == 401
        # Digest is on; whichever worker answers /metrics counts the other's 401 too.
        assert b'status="401"' in request(port, "GET", "/metrics")[1]
    finally:
        server.terminate()
        server.wait(30)
    assert env["XCAP_WORKERS"] == "2" and "--workers=2" not in command  # the image runs several workers


# -- compose ----------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_references_exist_and_services_agree():
    services = compose()["services"]
    assert {"mariadb", "kamailio", "xcap-wsgi"} <= set(services)
    images = {}
    for name, service in services.items():
        if "build" in service:
            context = (DOCKER / service["build"]["context"]).resolve()
            assert (context / service["build"].get("dockerfile", "Dockerfile")).exists(), name
            images[service["image"]] = service
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), (name, source)
            else:
                assert source in compose().get("volumes", {}), (name, source)
        if "build" not in service:
            assert service["image"] in images or "/" in service["image"] or ":" in service["image"], name
    database = services["mariadb"]["environment"]
    for name in ("xcap-wsgi", "xcap-initdb"):
        url = urlsplit(services[name]["environment"]["XCAP_DB"])
        assert (url.hostname, url.username, url.password, url.path.lstrip("/")) == (
            "mariadb", database["MARIADB_USER"], database["MARIADB_PASSWORD"], database["MARIADB_DATABASE"]), name
    init = services["kamailio-db"]["environment"]
    assert (init["DB_HOST"], init["DB_USER"], init["DB_PASSWORD"], init["DB_NAME"]) == (
        "mariadb", database["MARIADB_USER"], database["MARIADB_PASSWORD"], database["MARIADB_DATABASE"])
    cfg = (DOCKER / "kamailio.cfg").read_text()
    dburl = urlsplit(re.search(r'#!define DBURL "([^"]+)"', cfg).group(1))
    assert (dburl.hostname, dburl.username, dburl.password, dburl.path.lstrip("/")) == (
        "mariadb", database["MARIADB_USER"], database["MARIADB_PASSWORD"], database["MARIADB_DATABASE"])
    xcap = services["xcap-wsgi"]["environment"]
    rpc = urlsplit(xcap["XCAP_KAMAILIO_RPC"])
    assert rpc.hostname == "kamailio" and f"listen=tcp:0.0.0.0:{rpc.port}" in cfg and rpc.path == "/RPC"
    assert f"{xcap['XCAP_PORT']}:{xcap['XCAP_PORT']}" in services["xcap-wsgi"]["ports"]
    assert not any(str(rpc.port) in p for p in services["kamailio"]["ports"])  # JSON-RPC stays private
    assert xcap["XCAP_HOST"] == "0.0.0.0"
    assert services["xcap-initdb"]["command"] == ["initdb"] and services["xcap-wsgi"]["command"] == ["serve"]
    assert services["kamailio"]["image"] == services["kamailio-db"]["image"]


def test_kamailio_config_and_packages():
    checked = subprocess.run([tool("kamailio"), "-c", "-f", str(DOCKER / "kamailio.cfg")], capture_output=True,
                             text=True, timeout=60, cwd=DOCKER)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    run = next(args for op, args in dockerfile(DOCKER / "kamailio.Dockerfile") if op == "RUN")
    wanted = re.search(r"--no-install-recommends ([^&]+)", run).group(1).split()
    ci = (REPO / ".ci" / "run").read_text()
    for package in wanted:
        assert re.search(rf"\b{re.escape(package)}\b", ci), f"{package}: not installed (so not tested) by .ci/run"
    script = DOCKER / "kamailio-db-init.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    for sql in ("standard-create.sql", "presence-create.sql", "rls-create.sql"):
        assert sql in script.read_text()
        if IN_CI or Path("/usr/share/kamailio/mysql").exists():
            assert (Path("/usr/share/kamailio/mysql") / sql).exists()
