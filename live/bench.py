"""The loopback test bench: HAProxy, Prometheus, two backends and a load generator, all ours.

Everything listens on 127.0.0.1 only, on ports the kernel picks at start, and runs as the
bench's own child processes (never system services), stopped by PID in reverse order:

* two backends (live/backend.py): ``stable`` and ``canary`` versions with their own error rate
  and latency, changeable at run time so one bench serves several runs;
* HAProxy (foreground, ``-db``) with one backend ``be`` (servers ``stable`` weight 100 and
  ``canary`` weight 0, round robin), the admin socket in the bench folder, and its built-in
  Prometheus exporter on a separate frontend;
* Prometheus scraping that exporter every ``scrape_interval`` (1 s): readiness is ``up == 1``
  — its first scrape lands 5–6 s after start, so the bench polls, never sleeps a fixed time;
* the open-loop load generator (live/loadgen.py), started per run with a rate and a duration.

The backends are fixed processes: a controller's ``Scale`` actions change no process here (the
executor acknowledges them at once), which is why the bench suits traffic-routed policies.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from live.haproxy import HAProxyRouter, RuntimeAPI
from live.procs import LOOPBACK, BenchError, free_port, spawn, stop_process, wait_for, wait_tcp
from live.prometheus import PrometheusAPI, PrometheusMetrics
from live.queries import prom_duration

__all__ = ["BackendSpec", "Bench", "LoadRun", "binaries_missing"]

BACKEND, STABLE, CANARY = "be", "stable", "canary"
JOB = "haproxy"
START_TIMEOUT_S = 30.0
SOCKET_PATH_MAX = 97
"""HAProxy 2.6 refuses a ``stats socket`` path longer than this ("too long (max 97)")."""


def binaries_missing() -> list[str]:
    """The bench's external programs that are not on PATH (CI installs them with apt)."""
    return [name for name in ("haproxy", "prometheus") if shutil.which(name) is None]


@dataclass(frozen=True)
class BackendSpec:
    """One version's behaviour: failure probability per request and response latency (s)."""

    error_rate: float = 0.0
    latency: float = 0.0
    seed: int = 0


@dataclass
class LoadRun:
    """A running load generator: ``wait()`` returns its counts once it has stopped by itself."""

    proc: subprocess.Popen
    out: Path
    started_at: float
    duration: float

    def wait(self, grace: float = 15.0) -> dict:
        try:
            self.proc.wait(self.duration + grace)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
            raise BenchError("the load generator did not stop by itself") from None
        if self.proc.returncode != 0 or not self.out.exists():
            raise BenchError(f"the load generator failed (exit {self.proc.returncode})")
        return json.loads(self.out.read_text())

    def stop(self) -> None:
        stop_process(self.proc)


@dataclass
class Bench:
    """Start with ``with Bench(...) as bench:`` (or ``start()``/``stop()``)."""

    directory: Path | None = None
    stable: BackendSpec = BackendSpec()
    canary: BackendSpec = BackendSpec()
    scrape_interval: float = 1.0
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    _own_dir: bool = False
    _socket_dir: Path | None = None  # a short folder for the admin socket when ours is too deep
    _loads: int = 0

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> Bench:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> Bench:
        missing = binaries_missing()
        if missing:
            raise BenchError(
                f"{' and '.join(missing)} not found on PATH: install with `apt-get install -y "
                "--no-install-recommends haproxy prometheus`"
            )
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="rolloutsim-bench-"))
            self._own_dir = True
        self.directory = Path(self.directory).resolve()  # haproxy -c runs from elsewhere
        self.directory.mkdir(parents=True, exist_ok=True)
        if len(str(self.directory / "admin.sock")) > SOCKET_PATH_MAX:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="rolloutsim-sock-"))
        try:
            for name in ("frontend", "exporter", "prometheus", STABLE, CANARY):
                self.ports[name] = free_port()
            for name, spec in ((STABLE, self.stable), (CANARY, self.canary)):
                self._start_backend(name, spec)
            self._start_haproxy()
            self.start_prometheus()
        except BaseException:
            self.stop()
            raise
        self._write_pids()
        return self

    def stop(self) -> None:
        """Stop every process of ours by its PID, newest first."""
        for name in reversed(list(self.procs)):
            stop_process(self.procs.pop(name))
        self._write_pids()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def _write_pids(self) -> None:
        if self.directory is not None and self.directory.exists():
            pids = {name: p.pid for name, p in self.procs.items()}
            (self.directory / "pids.json").write_text(json.dumps(pids))

    # ------------------------------------------------------------------ components

    def _start_backend(self, name: str, spec: BackendSpec) -> None:
        argv = [
            sys.executable,
            "-m",
            "live.backend",
            "--port",
            str(self.ports[name]),
            "--name",
            name,
            "--error-rate",
            repr(spec.error_rate),
            "--latency",
            repr(spec.latency),
            "--seed",
            str(spec.seed),
        ]
        log = self.directory / f"{name}.log"
        self.procs[name] = proc = spawn(argv, log, cwd=_project_root())
        wait_tcp(self.ports[name], START_TIMEOUT_S, f"backend {name}", alive=proc, log=log)

    def _start_haproxy(self) -> None:
        cfg = self.directory / "haproxy.cfg"
        cfg.write_text(self.haproxy_config())
        sock = self.socket
        if sock.exists():
            sock.unlink()
        check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True)
        if check.returncode != 0:  # haproxy's ALERT lines say why
            alerts = [
                ln for ln in check.stderr.decode(errors="replace").splitlines() if "ALERT" in ln
            ]
            raise BenchError(f"haproxy -c {cfg}: {' '.join(alerts)[:400]}")
        log = self.directory / "haproxy.log"
        self.procs["haproxy"] = proc = spawn(["haproxy", "-db", "-f", str(cfg)], log)
        wait_for(
            lambda: RuntimeAPI(str(sock), 0.5).get_weight(BACKEND, STABLE) == 100 or None,
            START_TIMEOUT_S,
            "haproxy admin socket",
            alive=proc,
            log=log,
        )
        wait_tcp(self.ports["frontend"], START_TIMEOUT_S, "haproxy frontend", alive=proc, log=log)

    def start_prometheus(self) -> None:
        """Start (or restart, keeping its data) Prometheus and wait for its first scrape."""
        if "prometheus" in self.procs and self.procs["prometheus"].poll() is None:
            return
        cfg = self.directory / "prometheus.yml"
        cfg.write_text(self.prometheus_config())
        data = self.directory / "prometheus-data"
        argv = [
            "prometheus",
            f"--config.file={cfg}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address={LOOPBACK}:{self.ports['prometheus']}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        log = self.directory / "prometheus.log"
        started = time.time()
        self.procs["prometheus"] = proc = spawn(argv, log)
        api = PrometheusAPI(self.prometheus_url, timeout=1.0)
        probe = lambda: api.target_up(JOB, since=started) or None  # noqa: E731 - one line
        wait_for(probe, START_TIMEOUT_S, "prometheus up==1", interval=0.2, alive=proc, log=log)
        self._write_pids()

    def warm_up(self, scrapes: int = 3, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until Prometheus holds a few scrapes with traffic (a fresh one has none, and a
        gate's first window would be empty)."""
        metrics = self.metrics()
        span = scrapes * self.scrape_interval

        def ready():
            reading = metrics.observe(span, time.time())
            full = reading.ok and reading.end - reading.start >= span - self.scrape_interval / 2
            return True if full and reading.stable.requests > 0 else None

        wait_for(ready, timeout, "prometheus warm-up", interval=0.2)

    def stop_prometheus(self) -> None:
        """Stop Prometheus by its PID (a fault for the executor to survive)."""
        stop_process(self.procs.pop("prometheus", None))
        self._write_pids()

    # ------------------------------------------------------------------ configuration

    def haproxy_config(self) -> str:
        p = self.ports
        return f"""# rolloutsim bench: loopback only
global
    stats socket {self.socket} mode 600 level admin
    stats timeout 30s
    maxconn 2000

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend fe
    bind {LOOPBACK}:{p["frontend"]}
    default_backend {BACKEND}

frontend exporter
    bind {LOOPBACK}:{p["exporter"]}
    http-request use-service prometheus-exporter if {{ path /metrics }}

backend {BACKEND}
    balance roundrobin
    server {STABLE} {LOOPBACK}:{p[STABLE]} weight 100
    server {CANARY} {LOOPBACK}:{p[CANARY]} weight 0
"""

    def prometheus_config(self) -> str:
        s = self.scrape_interval
        return f"""# rolloutsim bench: loopback only
global:
  scrape_interval: {prom_duration(s)}
  scrape_timeout: {prom_duration(min(s, 10.0) * 0.9)}
  evaluation_interval: {prom_duration(s)}
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ["{LOOPBACK}:{self.ports["exporter"]}"]
"""

    # ------------------------------------------------------------------ handles

    @property
    def socket(self) -> Path:
        return Path(self._socket_dir or self.directory) / "admin.sock"

    @property
    def prometheus_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['prometheus']}"

    def runtime(self) -> RuntimeAPI:
        return RuntimeAPI(str(self.socket))

    def router(self) -> HAProxyRouter:
        return HAProxyRouter(self.runtime(), BACKEND, STABLE, CANARY)

    def metrics(self) -> PrometheusMetrics:
        return PrometheusMetrics(
            PrometheusAPI(self.prometheus_url), BACKEND, STABLE, CANARY, self.scrape_interval
        )

    def set_backend(self, name: str, **values) -> dict:
        """Change a backend's ``error_rate``, ``latency`` or ``seed`` while it runs."""
        query = "&".join(f"{k}={v}" for k, v in values.items())
        url = f"http://{LOOPBACK}:{self.ports[name]}/__control?{query}"
        with urllib.request.urlopen(url, timeout=2.0) as reply:
            return json.loads(reply.read())

    def reset_weights(self) -> None:
        """All traffic to the stable server (as after start)."""
        self.router().apply(0.0)

    def load(self, rate: float, duration: float, *, seed: int = 0) -> LoadRun:
        """Start the load generator: ``rate`` req/s for ``duration`` s, then it stops."""
        self._loads += 1
        out = self.directory / f"load-{self._loads}.json"
        argv = [
            sys.executable,
            "-m",
            "live.loadgen",
            "--port",
            str(self.ports["frontend"]),
            "--rate",
            repr(rate),
            "--duration",
            repr(duration),
            "--seed",
            str(seed),
            "--out",
            str(out),
        ]
        proc = spawn(argv, self.directory / "loadgen.log", cwd=_project_root())
        self.procs[f"load-{self._loads}"] = proc
        return LoadRun(proc, out, time.time(), duration)

    def describe(self) -> str:
        return (
            f"bench in {self.directory}\n"
            f"  frontend    http://{LOOPBACK}:{self.ports['frontend']}/\n"
            f"  admin       {self.socket}  (servers {BACKEND}/{STABLE}, {BACKEND}/{CANARY})\n"
            f"  prometheus  {self.prometheus_url}  (scrape every {self.scrape_interval:g} s)\n"
            f"  pids        {', '.join(f'{n}={p.pid}' for n, p in self.procs.items())}"
        )


def _project_root() -> Path:
    """Where ``python -m live.*`` resolves (the children import this package)."""
    return Path(__file__).resolve().parents[1]
