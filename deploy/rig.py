"""The replica rig: flux-dao scaled out on real parts, on one machine, over loopback.

    deploy/rig up [--dir D] [--replicas 3]   build and start everything (installs what is missing with apt)
    deploy/rig status [--dir D]              what runs where
    deploy/rig test [--dir D]                the proof tests (tests/rig) against the running rig
    deploy/rig down [--dir D]                stop everything and remove D

What ``up`` makes, each on a free loopback port, none of it touching the machine's own PostgreSQL cluster:

    PostgreSQL primary ──streaming──> PostgreSQL standby (pg_basebackup -R)
         │                                  │
    pgbouncer (transaction mode)       pgbouncer (transaction mode)
         │  DATABASE_URL                    │  DATABASE_READ_URL
         └────────── flux-dao x N ──────────┘   (DATABASE_DIRECT_URL: the primary itself, for migrations)
                          │
                   haproxy (checks /ready)

Everything the rig made is listed in ``D/rig.json``; ``down`` stops it by those records and removes ``D``. The
module is also the tests' handle on the rig (kill a replica, restart pgbouncer, stop the standby, delay replay).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = Path(tempfile.gettempdir()) / "flux-dao-rig"
PACKAGES = {"pgbouncer": "/usr/sbin/pgbouncer", "haproxy": "/usr/sbin/haproxy"}
ROLE = "flux"
DATABASE = "flux"
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
"""Replicas this process started, kept so that they are waited for (and reaped) when stopped."""
STATEMENT_TIMEOUT = "5s"
"""Set on the role: a transaction pooler does not pass ``statement_timeout`` as a startup setting."""


def _pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not versions:
        msg = "PostgreSQL's server binaries are missing (apt-get install postgresql)"
        raise RigError(msg)
    return versions[-1]


class RigError(RuntimeError):
    """Something the rig could not do, in one line."""


@dataclass
class Rig:
    """Where each part of a running rig listens, and the processes it started."""

    dir: Path
    primary_port: int = 0
    standby_port: int = 0
    bouncer_ports: dict[str, int] = field(default_factory=dict)
    replica_ports: list[int] = field(default_factory=list)
    haproxy_port: int = 0
    replica_pids: dict[str, int] = field(default_factory=dict)

    # -- records ------------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, folder: Path) -> Rig:
        """The rig recorded in ``folder`` (``RigError`` when there is none)."""
        path = folder / "rig.json"
        if not path.exists():
            msg = f"no rig in {folder} (deploy/rig up)"
            raise RigError(msg)
        data = json.loads(path.read_text())
        data["dir"] = Path(data["dir"])
        return cls(**data)

    def save(self) -> None:
        data = asdict(self) | {"dir": str(self.dir)}
        (self.dir / "rig.json").write_text(json.dumps(data, indent=1))

    # -- addresses ----------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The service, through haproxy."""
        return f"http://127.0.0.1:{self.haproxy_port}"

    def replica_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.replica_ports[index]}"

    def dsn(self, part: str) -> str:
        """``primary``/``standby`` (straight to PostgreSQL) or ``pooled-primary``/``pooled-standby``."""
        ports = {"primary": self.primary_port, "standby": self.standby_port}
        ports |= {f"pooled-{name}": port for name, port in self.bouncer_ports.items()}
        return f"postgresql://{ROLE}@127.0.0.1:{ports[part]}/{DATABASE}"

    def replica_env(self, index: int) -> dict[str, str]:
        """One flux-dao replica's settings: the production layout in miniature."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUX_DAO_", "DATABASE_", "DB_"))}
        return env | {
            "FLUX_DAO_DATABASE_URL": self.dsn("pooled-primary"),
            "FLUX_DAO_DATABASE_DIRECT_URL": self.dsn("primary"),
            "FLUX_DAO_DATABASE_READ_URL": self.dsn("pooled-standby"),
            # the last replica finds the pooler by itself (auto); the others are told
            "FLUX_DAO_DB_PREPARED_STATEMENTS": "auto" if index == len(self.replica_ports) - 1 else "off",
            "FLUX_DAO_LOG_LEVEL": "WARNING",
            "FLUX_DAO_SHUTDOWN_GRACE": "2",
        }

    # -- PostgreSQL ---------------------------------------------------------------------------------------------

    def _pg_ctl(self, cluster: str, action: str, *, port: int = 0) -> None:
        data = self.dir / cluster
        command = [str(_pg_bin() / "pg_ctl"), "-D", str(data), "-l", str(self.dir / f"{cluster}.log"), "-w"]
        if action == "start":
            options = [
                f"-c port={port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.dir}",
                "-c wal_level=replica",
                "-c max_wal_senders=5",
                "-c hot_standby=on",
                "-c hot_standby_feedback=on",
                "-c max_connections=200",
                "-c shared_buffers=64MB",
            ]
            command += ["-o", " ".join(options)]
        _run(_as_postgres([*command, action] if action != "stop" else [*command, "-m", "fast", "stop"]))

    def start_standby(self) -> None:
        """Start the standby (it catches up from the primary by itself)."""
        self._pg_ctl("standby", "start", port=self.standby_port)

    def stop_standby(self) -> None:
        """Stop the standby (fast: sessions are ended)."""
        self._pg_ctl("standby", "stop")

    def delay_standby(self, delay: str) -> None:
        """Make the standby apply each commit ``delay`` after the primary made it (``0`` for none)."""
        self.sql("standby", f"ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'", superuser=True)
        self.sql("standby", "SELECT pg_reload_conf()", superuser=True)

    def sql(self, part: str, statement: str, *, superuser: bool = False) -> str:
        """Run one statement with psql on ``part`` (straight, not pooled); its unaligned output."""
        port = self.primary_port if part == "primary" else self.standby_port
        user = "postgres" if superuser else ROLE
        command = ["psql", "-X", "-q", "-At", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", DATABASE]
        return _run([*command, "-c", statement]).strip()

    # -- pgbouncer ----------------------------------------------------------------------------------------------

    def _bouncer_file(self, name: str, suffix: str) -> Path:
        return self.dir / f"pgbouncer-{name}.{suffix}"

    def start_bouncer(self, name: str) -> None:
        """Start the pooler in front of ``primary`` or ``standby``."""
        ini = self._bouncer_file(name, "ini")
        _run([PACKAGES["pgbouncer"], "-d", *(["-u", "postgres"] if os.geteuid() == 0 else []), str(ini)])
        _wait_for_port(self.bouncer_ports[name], f"pgbouncer ({name})")

    def stop_bouncer(self, name: str) -> None:
        """Stop it at once (SIGTERM: clients are cut, as in a crash or a hurried restart)."""
        _stop_by_pidfile(self._bouncer_file(name, "pid"), signal.SIGTERM)

    def restart_bouncer(self, name: str) -> None:
        self.stop_bouncer(name)
        self.start_bouncer(name)

    def _write_bouncer(self, name: str, port: int) -> None:
        server = self.primary_port if name == "primary" else self.standby_port
        (self.dir / "userlist.txt").write_text(f'"{ROLE}" ""\n')
        self._bouncer_file(name, "ini").write_text(
            "\n".join(
                [
                    "[databases]",
                    f"{DATABASE} = host=127.0.0.1 port={server} dbname={DATABASE}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {self.dir / 'userlist.txt'}",
                    "pool_mode = transaction",
                    "max_client_conn = 1000",
                    "default_pool_size = 20",
                    "server_reset_query =",
                    "ignore_startup_parameters = extra_float_digits",
                    f"pidfile = {self._bouncer_file(name, 'pid')}",
                    f"logfile = {self._bouncer_file(name, 'log')}",
                    "",
                ]
            )
        )

    # -- flux-dao -----------------------------------------------------------------------------------------------

    def start_replica(self, index: int) -> None:
        """Start replica ``index`` (it migrates on start-up: once in all, under the advisory lock)."""
        port = self.replica_ports[index]
        command = [sys.executable, "-m", "flux_dao", "serve", "--host", "127.0.0.1", "--port", str(port)]
        with (self.dir / f"replica-{index}.log").open("ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
                command, env=self.replica_env(index), stdout=log, stderr=log, start_new_session=True, cwd=ROOT
            )
        self.replica_pids[str(index)] = process.pid
        _CHILDREN[process.pid] = process
        self.save()

    def kill_replica(self, index: int) -> None:
        """SIGKILL the replica's whole process group (the server and its worker): no goodbye to anyone."""
        self._signal_replica(index, signal.SIGKILL)

    def stop_replica(self, index: int) -> None:
        """SIGTERM: the replica finishes what it serves and exits."""
        self._signal_replica(index, signal.SIGTERM)

    def _signal_replica(self, index: int, how: signal.Signals) -> None:
        pid = self.replica_pids.pop(str(index), None)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, how)
            _reap(pid, patience=15.0)
        self.save()

    def wait_ready(self, url: str, patience: float = 60.0) -> dict[str, Any]:
        """Wait for ``url``/ready to answer 200; its body."""
        deadline = time.monotonic() + patience
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/ready", timeout=2) as answer:  # noqa: S310 (loopback http)
                    return dict(json.loads(answer.read()))
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.2)
        msg = f"{url}/ready did not answer 200 within {patience:g} s: {last}"
        raise RigError(msg)

    # -- haproxy ------------------------------------------------------------------------------------------------

    def _write_haproxy(self) -> None:
        servers = [
            f"    server replica-{i} 127.0.0.1:{port} check inter 500ms fall 2 rise 2"
            for i, port in enumerate(self.replica_ports)
        ]
        (self.dir / "haproxy.cfg").write_text(
            "\n".join(
                [
                    "global",
                    "    maxconn 4000",
                    f"    pidfile {self.dir / 'haproxy.pid'}",
                    "defaults",
                    "    mode http",
                    "    timeout connect 2s",
                    "    timeout client 60s",
                    "    timeout server 60s",
                    "    retries 2",  # connection failures only: a request that reached a replica is never resent
                    "    option redispatch",
                    "frontend api",
                    f"    bind 127.0.0.1:{self.haproxy_port}",
                    "    default_backend flux_dao",
                    "backend flux_dao",
                    "    balance leastconn",
                    "    option httpchk GET /ready",
                    "    http-check expect status 200",
                    *servers,
                    "",
                ]
            )
        )

    def start_haproxy(self) -> None:
        config = self.dir / "haproxy.cfg"
        _run([PACKAGES["haproxy"], "-D", "-f", str(config), "-p", str(self.dir / "haproxy.pid")])
        _wait_for_port(self.haproxy_port, "haproxy")

    def set_replicas(self, count: int) -> None:
        """Serve with the first ``count`` replicas only (haproxy reloaded; the others stopped), for benchmarks."""
        for index in range(count, len(self.replica_ports)):
            self.stop_replica(index)
        for index in range(count):
            if str(index) not in self.replica_pids:
                self.start_replica(index)
                self.wait_ready(self.replica_url(index))
        ports, self.replica_ports = self.replica_ports, self.replica_ports[:count]
        self._write_haproxy()
        self.replica_ports = ports
        _stop_by_pidfile(self.dir / "haproxy.pid", signal.SIGTERM)
        self.start_haproxy()


# -- up / down ----------------------------------------------------------------------------------------------------


def up(folder: Path, replicas: int = 3) -> Rig:
    """Build and start a rig in ``folder`` (which must not hold one); on a failure, take down what it started."""
    _install_missing()
    if (folder / "rig.json").exists():
        msg = f"a rig is already in {folder} (deploy/rig down first)"
        raise RigError(msg)
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    rig = Rig(folder)
    ports = _free_ports(5 + replicas)
    rig.primary_port, rig.standby_port, rig.haproxy_port = ports[:3]
    rig.bouncer_ports = {"primary": ports[3], "standby": ports[4]}
    rig.replica_ports = ports[5:]
    rig.save()
    try:
        bin_dir = _pg_bin()
        _run(_as_postgres([str(bin_dir / "initdb"), "-D", str(folder / "primary"), "-U", "postgres", "--auth=trust"]))
        rig._pg_ctl("primary", "start", port=rig.primary_port)
        psql = ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(rig.primary_port), "-U", "postgres", "-d", "postgres"]
        _run([*psql, "-c", f"CREATE ROLE {ROLE} LOGIN"])
        _run([*psql, "-c", f"ALTER ROLE {ROLE} SET statement_timeout = '{STATEMENT_TIMEOUT}'"])
        _run(["createdb", "-h", "127.0.0.1", "-p", str(rig.primary_port), "-U", "postgres", "-O", ROLE, DATABASE])
        backup = [str(bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(rig.primary_port), "-U", "postgres"]
        _run(_as_postgres([*backup, "-D", str(folder / "standby"), "-R", "-X", "stream", "--checkpoint=fast"]))
        rig.start_standby()
        for name, port in rig.bouncer_ports.items():
            rig._write_bouncer(name, port)
            rig.start_bouncer(name)
        for index in range(replicas):
            rig.start_replica(index)
        for index in range(replicas):
            rig.wait_ready(rig.replica_url(index))
        rig._write_haproxy()
        rig.start_haproxy()
        rig.wait_ready(rig.url)
    except BaseException:  # half a rig helps nobody: take down what was started
        down(folder)
        raise
    return rig


def down(folder: Path) -> None:
    """Stop everything the rig in ``folder`` started and remove the folder."""
    try:
        rig = Rig.load(folder)
    except RigError:
        if folder.exists():
            shutil.rmtree(folder)
        return
    _stop_by_pidfile(folder / "haproxy.pid", signal.SIGTERM)
    for index in list(rig.replica_pids):
        rig.kill_replica(int(index))
    for name in rig.bouncer_ports:
        with contextlib.suppress(RigError):
            rig.stop_bouncer(name)
    for cluster in ("standby", "primary"):
        if (folder / cluster / "postmaster.pid").exists():
            with contextlib.suppress(RigError):
                rig._pg_ctl(cluster, "stop")
    shutil.rmtree(folder)


def status(rig: Rig) -> str:
    lines = [
        f"service (haproxy):  {rig.url}",
        f"primary:            {rig.dsn('primary')}  (pooled: {rig.dsn('pooled-primary')})",
        f"standby:            {rig.dsn('standby')}  (pooled: {rig.dsn('pooled-standby')})",
    ]
    for index, port in enumerate(rig.replica_ports):
        pid = rig.replica_pids.get(str(index))
        lines.append(f"replica {index}:          http://127.0.0.1:{port}  ({'pid ' + str(pid) if pid else 'stopped'})")
    return "\n".join(lines)


# -- helpers ------------------------------------------------------------------------------------------------------


def _install_missing() -> None:
    missing = [name for name, path in PACKAGES.items() if not Path(path).exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        msg = f"missing: {', '.join(missing)} (apt-get install {' '.join(missing)}, as root)"
        raise RigError(msg)
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)  # noqa: S607
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)
    for name in ("pgbouncer", "haproxy"):  # Debian starts the packaged services: the rig runs its own
        subprocess.run(["service", name, "stop"], check=False, capture_output=True)  # noqa: S603, S607


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL's server tools refuse to run as root: as root, run them as the ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    if result.returncode != 0:
        msg = f"{' '.join(command[:4])}... failed ({result.returncode}): {(result.stderr or result.stdout).strip()}"
        raise RigError(msg)
    return result.stdout


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait_for_port(port: int, what: str, patience: float = 15.0) -> None:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    msg = f"{what} is not listening on 127.0.0.1:{port}"
    raise RigError(msg)


def _stop_by_pidfile(path: Path, how: signal.Signals) -> None:
    if not path.exists():
        return
    with contextlib.suppress(ValueError, ProcessLookupError):
        pid = int(path.read_text().split()[0])
        os.kill(pid, how)
        _reap(pid)
    path.unlink(missing_ok=True)


def _reap(pid: int, patience: float = 10.0) -> None:
    """Wait for ``pid`` to be gone (reaping it when it is our child)."""
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=patience)
        return
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/rig", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "status", "test", "down"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"where the rig lives (default {DEFAULT_DIR})")
    parser.add_argument("--replicas", type=int, default=3)
    args = parser.parse_args(argv)
    folder = args.dir.resolve()
    try:
        if args.command == "up":
            print(status(up(folder, args.replicas)))  # noqa: T201
        elif args.command == "status":
            print(status(Rig.load(folder)))  # noqa: T201
        elif args.command == "down":
            down(folder)
        else:
            Rig.load(folder)
            tests = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "rig", "tests/rig"]
            return subprocess.call(tests, cwd=ROOT, env=os.environ | {"FLUX_RIG_DIR": str(folder)})  # noqa: S603
    except RigError as exc:
        print(f"rig: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
