"""Run the app the way the image and the manifests do, without Docker or a cluster.

The exact uvicorn command line of the Dockerfile's CMD (only host and port
changed), the image's ENV, the production overlay's ConfigMap, secrets of the
right shape, a real PostgreSQL and Redis. When the tests run as root, every
command runs in a private mount namespace where the repository (code and
virtualenv) and the Python installation are mounted read-only, as on the
image's read-only root filesystem, and as UID 10001 too where the same
interpreter stays reachable for that user (not on this project's machines,
whose Python lives under /root). The migrate Job's, the init container's and
the purge CronJob's commands run as they would in their pods.

``tests/support/servers.py``'s LiveServer is not used: it runs as the current
user without isolation and appends its own ``--host``/``--port`` to the
arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.deploy import support
from tests.support.servers import LOCALHOST, PostgresServer, RedisServer, free_port
from tests.support.tokens import user_token

pytestmark = pytest.mark.live

IMAGE_UID = 10001
WAIT = 30.0  # for a frame or an answer that normally takes milliseconds
SOCKETS = 20  # open at SIGTERM: more than the drain's 10 batches
POD_HOST = "10.244.1.23:8000"  # what kubelet sends as Host: the pod IP
JWT_SECRET = secrets.token_hex(24)
PUBLISHER_SECRET = "deploy-" + secrets.token_hex(24)
VENV_BIN = Path(sys.executable).parent
Rendered = dict[str, list[support.Resource]]


# Mounted read-only for the pod's processes: the app and its virtualenv (the
# repository) and the Python installation. With the image's UID on top, the
# only writable places left are the world-writable ones such as /tmp.
READ_ONLY = (support.REPO, Path(sys.base_prefix))
_ISOLATE = (
    'set -e; for p in "$@"; do [ "$p" = -- ] && break; '
    'mount --bind "$p" "$p"; mount -o remount,ro,bind "$p"; done'
)


def isolation_prefix() -> tuple[list[str], str]:
    """A command prefix: a private mount namespace with READ_ONLY read-only, then
    (where the interpreter stays the same) setpriv to the image's UID; and why
    the part that is missing is missing ("" when complete). Empty when neither
    is possible (not root, no unshare)."""
    if os.geteuid() != 0:
        return [], "not root: no mount namespace, no image UID"
    if not shutil.which("unshare"):
        return [], "no unshare: no mount namespace, no image UID"
    paths = [str(p.resolve()) for p in READ_ONLY]
    # sh -c SCRIPT sh PATH... -- COMMAND...: mount, drop the paths, exec the command.
    script = _ISOLATE + '; while [ "$1" != -- ]; do shift; done; shift; exec "$@"'
    read_only = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    read_only += [*paths, "--"]
    as_image_user = [
        *read_only,
        "setpriv", f"--reuid={IMAGE_UID}", f"--regid={IMAGE_UID}", "--clear-groups",
    ]  # fmt: skip
    reasons: list[str] = []
    for prefix, uid in ((as_image_user, IMAGE_UID), (read_only, 0)):
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", _PROBE, str(uid), sys.version],
            cwd=support.REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0:
            return prefix, "; ".join(reasons)
        tail = (probe.stderr.strip().splitlines() or [""])[-1][:300]
        meaning = _PROBE_EXITS.get(probe.returncode, tail)
        reasons.append(f"probe as UID {uid} exited {probe.returncode} ({meaning})")
    return [], "; ".join(reasons)


_PROBE_EXITS = {
    2: "another UID or another interpreter than this test's",
    3: "writing into the repository failed other than read-only",
    4: "the repository was writable",
}
# Exit 0 only with the same interpreter, as UID argv[1], on a read-only repository.
_PROBE = """
import errno, os, sys
import django, uvicorn
if os.getuid() != int(sys.argv[1]) or sys.version != sys.argv[2]:
    sys.exit(2)
path = os.path.join(os.getcwd(), ".deploy-read-only-probe")
try:
    open(path, "x").close()
except OSError as exc:
    sys.exit(0 if exc.errno == errno.EROFS else 3)
os.remove(path)
sys.exit(4)
"""


@dataclass
class Pod:
    """What a pod of the image would have: its env, user and working directory."""

    env: dict[str, str]
    prefix: list[str]  # isolation_prefix(), or [] to run as the current user
    log: Path
    missing: str = ""  # why the isolation is incomplete ("" when it is complete)

    def run(self, command: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """A container command as the pod runs it (its env, so ``python`` is the venv's)."""
        result = self.try_run(command, timeout)
        assert result is not None, f"{command} still running after {timeout}s"
        return result

    def try_run(
        self, command: list[str], timeout: float
    ) -> subprocess.CompletedProcess[str] | None:
        """Like run(), but None (and the command's process group killed) on a timeout."""
        with self.log.open("a") as log:
            log.write(f"--- {' '.join(command)}\n")
        with subprocess.Popen(
            [*self.prefix, *command],
            env=self.env,
            cwd=support.REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as proc:
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                return None
        return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            log.write(f"--- {' '.join(argv)}\n".encode())
            log.flush()
            # unshare, sh and setpriv exec one another: the pid stays uvicorn's.
            return subprocess.Popen(
                [*self.prefix, *argv],
                env=self.env,
                cwd=support.REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


@pytest.fixture
def pod(
    rendered: Rendered,
    postgres_server: PostgresServer,
    fresh_redis_server: RedisServer,
    tmp_path: Path,
) -> Iterator[Pod]:
    resources = rendered["production"]
    server = support.server_container(resources)
    runtime = support.dockerfile_stages()[-1]
    env = {k: v for k, v in support.env_of(runtime).items() if k != "PATH"}
    for name, var in support.container_env(server, resources).items():
        if var.source.startswith("configmap:"):
            assert var.value is not None
            env[name] = var.value
    database = f"deploy_{uuid.uuid4().hex[:10]}"
    env.update(
        {
            # The image's PATH puts the venv first; HOME does not exist there.
            "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": "/nonexistent",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "JWT_SECRET": JWT_SECRET,
            "NOTIFY_API_KEYS": f"shop:{PUBLISHER_SECRET}",
            "DATABASE_URL": postgres_server.create_database(database),
            "REDIS_URL": fresh_redis_server.url,
        }
    )
    assert env["DEBUG"] == "false"
    prefix, missing = isolation_prefix()
    yield Pod(env=env, prefix=prefix, log=tmp_path / "pod.log", missing=missing)
    with contextlib.suppress(Exception):
        postgres_server.drop_database(database)


def image_argv(port: int) -> list[str]:
    """The Dockerfile's CMD with host and port replaced in place (nothing appended)."""
    cmd = support.exec_form((support.dockerfile_stages()[-1].last("CMD") or _none()).args)
    argv = [str(VENV_BIN / cmd[0]), *cmd[1:]]
    argv[argv.index("--host") + 1] = LOCALHOST
    argv[argv.index("--port") + 1] = str(port)
    return argv


def _none() -> support.Instruction:
    raise AssertionError("no CMD")


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"uvicorn exited with {proc.returncode}:\n{log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url + "/healthz", headers={"Host": POD_HOST}).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"/healthz never answered 200:\n{log.read_text()}")
            time.sleep(0.1)


def token(user: str) -> str:
    return user_token(JWT_SECRET, user, exp_in=600)


async def publish(client: httpx.AsyncClient, url: str, user: str, n: int) -> None:
    response = await client.post(
        url + "/api/v1/notifications",
        json={"recipients": [user], "type": "deploy.check", "title": f"n{n}"},
        headers={"Authorization": f"Bearer {PUBLISHER_SECRET}", "Host": "notify.example.com"},
    )
    assert response.status_code == 202, response.text


def files_owned_by(uid: int) -> list[Path]:
    found = []
    for top in ("service", "notifications", "api", "realtime", "deploy", "tests"):
        found += [p for p in (support.REPO / top).rglob("*") if p.lstat().st_uid == uid]
    found += [p for p in support.REPO.iterdir() if p.lstat().st_uid == uid]
    return found


async def closed_with(ws: ClientConnection) -> tuple[int | None, float]:
    """Read until the server closes; (close code, when)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), WAIT)
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else None), time.monotonic()


async def readyz_once_503(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """Poll /readyz (as the readiness probe does) until it answers 503."""
    deadline = time.monotonic() + 30
    while True:
        response = await client.get(url + "/readyz", headers={"Host": POD_HOST})
        if response.status_code == 503:
            return response
        assert response.status_code == 200, response.text
        assert time.monotonic() < deadline, "/readyz did not turn 503 after SIGTERM"
        await asyncio.sleep(0.02)


async def logged(log: Path, line: str, proc: subprocess.Popen[bytes]) -> None:
    """Until ``line`` is in ``log``, written by ``proc`` (which must not exit first)."""
    deadline = time.monotonic() + 60
    while line not in log.read_text():
        assert proc.poll() is None, f"exited {proc.returncode} first:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {line!r} after 60s:\n{log.read_text()}"
        await asyncio.sleep(0.1)


def drain_stamps(log: str) -> list[float]:
    """Server-side times at which the drain closed its batches (JSON log lines)."""
    stamps = []
    for line in log.splitlines():
        if '"drain: closing ' in line:
            entry = json.loads(line)
            stamps.append(dt.datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp())
    return stamps


@pytest.mark.timeout(150)
async def test_the_image_command_serves_drains_and_the_jobs_run(
    pod: Pod, rendered: Rendered
) -> None:
    resources = rendered["production"]
    apps = support.app_containers(resources)
    init = next(a for a in apps if a.init)
    job = next(a for a in apps if a.workload["kind"] == "Job")
    cron = next(a for a in apps if a.workload["kind"] == "CronJob")
    server = support.server_container(resources)

    # Before the migrate Job the init container waits, holding the rollout back:
    # its "waiting" line says it checked and found migrations to apply (a
    # marker, where "still running after a few seconds" could be a slow start).
    # Once the Job has run, the same container lets the pod start.
    waiting = pod.start(init.container["command"])
    try:
        await logged(pod.log, "waiting for the migrate Job", waiting)
        result = pod.run(job.container["command"])
        assert result.returncode == 0, result.stdout + result.stderr
        assert await asyncio.to_thread(waiting.wait, 60) == 0, pod.log.read_text()
    finally:
        if waiting.poll() is None:
            os.killpg(waiting.pid, signal.SIGKILL)
            waiting.wait()

    port = free_port()
    url = f"http://{LOCALHOST}:{port}"
    proc = pod.start(image_argv(port))
    try:
        wait_healthy(proc, url, pod.log)

        # The Dockerfile's HEALTHCHECK, as Docker would run it inside the container.
        health = support.dockerfile_stages()[-1].last("HEALTHCHECK")
        assert health is not None
        code = support.exec_form(health.args.partition("CMD ")[2])[2]
        code = code.replace(":8000/", f":{port}/")
        check = pod.run(["python", "-c", code], timeout=30)
        assert check.returncode == 0, check.stderr

        async with httpx.AsyncClient(timeout=WAIT, trust_env=False) as client:
            # Probes exactly as the Deployment declares them, Host = pod IP.
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                path = server.container[probe]["httpGet"]["path"]
                response = await client.get(url + path, headers={"Host": POD_HOST})
                assert response.status_code == 200, (probe, response.text)

            user = f"deploy-{uuid.uuid4().hex[:8]}"
            headers = {"Authorization": f"Bearer {token(user)}"}
            async with connect(
                f"ws://{LOCALHOST}:{port}/ws/notifications",
                additional_headers=headers,
                open_timeout=WAIT,
            ) as ws:
                ready = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                assert ready["type"] == "ready" and ready["user"] == user
                for n in range(2):
                    await publish(client, url, user, n)
                got = []
                while len(got) < 2:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                    if frame["type"] == "notification":
                        got.append(frame["notification"]["title"])
                assert got == ["n0", "n1"]

                # --proxy-headers: the scheme the ingress saw is the one in links.
                response = await client.get(
                    url + "/api/v1/me/notifications?limit=1",
                    headers={
                        **headers,
                        "Host": "notify.example.com",
                        "X-Forwarded-Proto": "https",
                        "X-Forwarded-For": "203.0.113.9",
                    },
                )
                assert response.status_code == 200, response.text
                assert response.json()["next"].startswith("https://notify.example.com/")

                # Kubernetes' SIGTERM (after preStop) with 20 sockets open: readyz
                # turns 503, the sockets close with 1012 spread over the drain
                # window, then the process exits 0 within the grace period.
                async with contextlib.AsyncExitStack() as stack:
                    sockets = [ws]
                    for i in range(SOCKETS - 1):
                        other = await stack.enter_async_context(
                            connect(
                                f"ws://{LOCALHOST}:{port}/ws/notifications",
                                additional_headers={
                                    "Authorization": f"Bearer {token(f'{user}-{i}')}"
                                },
                                open_timeout=WAIT,
                            )
                        )
                        frame = json.loads(await asyncio.wait_for(other.recv(), WAIT))
                        assert frame["type"] == "ready"
                        sockets.append(other)
                    started = time.monotonic()
                    proc.send_signal(signal.SIGTERM)
                    response = await readyz_once_503(client, url)
                    assert response.json()["shutting_down"] is True
                    closes = await asyncio.gather(*(closed_with(s) for s in sockets))
        drain = float(pod.env["NOTIFY_DRAIN_SECONDS"])
        grace = server.pod_spec["terminationGracePeriodSeconds"]
        pre_stop = float(server.container["lifecycle"]["preStop"]["exec"]["command"][1])
        assert {code for code, _ in closes} == {1012}
        # Within what Kubernetes allows after preStop (it SIGKILLs then); spread
        # over the drain window by the server's own clock (its log), which a
        # stalled client could not show.
        last_close = max(at for _, at in closes) - started
        assert last_close <= grace - pre_stop, last_close
        batches = drain_stamps(pod.log.read_text())
        assert len(batches) >= 2 and max(batches) - min(batches) >= drain / 2, batches

        code = await asyncio.to_thread(proc.wait, grace - pre_stop)
        # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
        assert code in (0, -signal.SIGTERM), pod.log.read_text()
        assert "Application shutdown complete." in pod.log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    # The retention CronJob's command.
    result = pod.run(cron.container["command"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "purged 0 notifications" in result.stdout

    log = pod.log.read_text()
    for bad in ("Traceback", "Permission denied", "Read-only file system"):
        assert bad not in log, (bad, log)
    # Django logs every 5xx at ERROR, the drain's readyz 503 included (expected).
    errors = [
        line
        for line in log.splitlines()
        if '"level": "ERROR"' in line and "Service Unavailable: /readyz" not in line
    ]
    assert errors == [], errors
    if "setpriv" not in pod.prefix:
        # Everything above passed; the image-UID part could not run here: say so.
        pytest.skip(f"not checked as the image's UID {IMAGE_UID}: {pod.missing}")
    assert files_owned_by(IMAGE_UID) == [], "the image's user wrote into the app directory"
