"""A private Prometheus server (Debian's ``prometheus``) for the metrics tests.

It listens on a free loopback port, scrapes the given targets every second, keeps its
TSDB in a temporary directory, and is stopped (SIGTERM, then SIGKILL) with its directory
removed by ``stop()``, which the fixture calls even when the test fails.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from tests.fixtures.services import free_tcp_port
from tests.fixtures.sessions import note, spawn_service

SCRAPE_JOB = "kukeond"

_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: {job}
    static_configs:
      - targets: [{targets}]
"""


class PrometheusError(AssertionError):
    """Prometheus refused a query or did not start."""


_AUTHORIZATION = """\
    authorization:
      credentials_file: {credentials_file}
"""


class PrometheusServer:
    def __init__(
        self, *, binary: str, targets: list[str], credentials_file: Path | None = None
    ) -> None:
        """``credentials_file``: the bearer token file it scrapes with (none: no token)."""
        self.binary = binary
        self.targets = targets
        self.credentials_file = credentials_file
        self.root = Path(tempfile.mkdtemp(prefix="kukeon-prometheus-"))
        note("scratch", path=str(self.root))
        self.port = free_tcp_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "prometheus.log"

    def start(self, *, within: float = 30.0) -> None:
        config = self.root / "prometheus.yml"
        targets = ", ".join(f'"{target}"' for target in self.targets)
        text = _CONFIG.format(job=SCRAPE_JOB, targets=targets)
        if self.credentials_file is not None:
            text += _AUTHORIZATION.format(credentials_file=self.credentials_file)
        config.write_text(text)
        with self.log_path.open("ab") as log:
            self.process = spawn_service(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
            )
        deadline = time.monotonic() + within
        while True:
            if self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited at start: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise PrometheusError(f"prometheus not ready after {within}s: {self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def _get(self, path: str, params: dict[str, str] | list[tuple[str, str]]) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}{path}", params=params) as reply,
        ):
            body = await reply.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query at now; the result vector (or matrix/scalar, as a list)."""
        data = await self._get("/api/v1/query", {"query": expr})
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result)

    async def series(self, match: str) -> list[dict[str, str]]:
        data: list[dict[str, str]] = await self._get(
            "/api/v1/series", [("match[]", match), ("start", str(time.time() - 600))]
        )
        return data

    async def scrapes_so_far(self) -> int:
        """Successful scrapes of every target in the last 10 minutes (the smallest count)."""
        # up is 1 per successful scrape and 0 per failed one: the sum counts successes.
        rows = await self.query(f'sum_over_time(up{{job="{SCRAPE_JOB}"}}[10m])')
        if len(rows) < len(self.targets):
            return 0
        return min(int(float(row["value"][1])) for row in rows)

    async def wait_for_scrapes(self, count: int, *, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while (await self.scrapes_so_far()) < count:
            if time.monotonic() > deadline:
                targets = await self._get("/api/v1/targets", {})
                raise PrometheusError(f"fewer than {count} scrapes after {within}s: {targets}")
            await asyncio.sleep(0.2)
