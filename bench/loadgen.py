"""A lean HTTP/1.1 load generator over a unix socket, in its own process (as wrk or hey would).

``--clients`` keep-alive connections, each a closed loop for ``--seconds``: it sends one
request, reads the whole answer, sends the next. Requests alternate a GET of a random
cell (``c00000``..) and a LIST of one label's cells (``labelSelector=group=N``), as
``api_bench``'s ``ApiClient`` clients do. No JSON parsing or validation: only the status
line and the body's length are read (the body is received in full), so the client costs
the shared cores as little as it can and the figure is the server's.

Every connection is an ``asyncio.Protocol`` that sends its next request from
``data_received`` (no coroutine or stream per request). Prints one JSON line:
``{"requests", "seconds", "per_second", "p50_ms", "p99_ms", "errors", "unanswered"}``:
an answer other than 200 or a connection the server closed counts as an error (an
answer's latency is kept), a request still unanswered a minute after the end as
unanswered.

    python bench/loadgen.py --socket /run/kukeon/api.sock --path /apis/.../cells \
        --cells 1000 [--clients 200] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

GRACE_SECONDS = 60.0
"""How long after ``--seconds`` the clients' last answers may take before they are given up."""


class _Totals:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.latencies: list[float] = []
        self.errors = 0
        self.closed = 0
        self.statuses: dict[int, int] = {}
        self.running = 0
        self.finished = asyncio.get_running_loop().create_future()


class _Connection(asyncio.Protocol):
    """One client: a keep-alive connection sending its next request when an answer ends."""

    def __init__(self, totals: _Totals, requests: list[bytes], seed: int) -> None:
        self._totals = totals
        self._requests = requests
        self._chooser = random.Random(seed)
        self._turn = seed
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._body_end = -1  # index in _buffer where the current answer ends, once known
        self._status = 0
        self._sent_at = 0.0
        self._active = False
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def start(self) -> None:
        if self.lost.done():
            self._totals.errors += 1  # closed by the server before its first request
            self._totals.closed += 1
            return
        self._active = True
        self._totals.running += 1
        self._send()

    def stop(self) -> None:
        """Give up on this client (its answer never came); it counts as unanswered."""
        if self._transport is not None:
            self._transport.close()

    def _send(self) -> None:
        assert self._transport is not None
        half = len(self._requests) // 2
        # Even turns: a GET (first half of the prepared requests), odd: a LIST.
        offset = half if self._turn % 2 else 0
        request = self._requests[offset + self._chooser.randrange(half)]
        self._turn += 1
        self._sent_at = time.perf_counter()
        self._transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._body_end < 0:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            self._body_end = head_end + 4 + _content_length(self._buffer[:head_end])
            self._status = int(self._buffer[9:12])
        if len(self._buffer) < self._body_end:
            return
        totals = self._totals
        now = time.perf_counter()
        totals.latencies.append(now - self._sent_at)
        totals.statuses[self._status] = totals.statuses.get(self._status, 0) + 1
        if self._status != 200:
            totals.errors += 1
        del self._buffer[: self._body_end]
        self._body_end = -1
        if now < totals.deadline:
            self._send()
        else:
            self._done()

    def _done(self) -> None:
        if not self._active:
            return
        self._active = False
        self._totals.running -= 1
        if self._totals.running == 0 and not self._totals.finished.done():
            self._totals.finished.set_result(None)
        assert self._transport is not None
        self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if self._active:
            self._totals.errors += 1  # closed by the server mid-run
            self._totals.closed += 1
            self._done()


def _content_length(head: bytearray) -> int:
    for line in bytes(head).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("an answer without Content-Length: " + bytes(head[:200]).decode())


def _requests(path: str, cells: int) -> list[bytes]:
    """Every GET and LIST the clients may send, GETs first (the same count of each)."""
    groups = max(1, cells // 10)
    gets = [f"{path}/c{index:05d}" for index in range(cells)]
    lists = [f"{path}?labelSelector=group%3D{index % groups}" for index in range(cells)]
    return [
        f"GET {target} HTTP/1.1\r\nHost: kukeond\r\nAccept: application/json\r\n\r\n".encode()
        for target in (*gets, *lists)
    ]


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(
    socket_path: str, path: str, *, cells: int, clients: int, seconds: float
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    requests = _requests(path, cells)
    totals = _Totals(deadline=float("inf"))
    connections: list[_Connection] = []
    for seed in range(clients):
        _, protocol = await loop.create_unix_connection(
            lambda seed=seed: _Connection(totals, requests, seed), socket_path
        )
        connections.append(protocol)
    started = time.perf_counter()
    totals.deadline = started + seconds
    for connection in connections:
        connection.start()
    # The server answers a request within its request timeout (30 s) or with a 504: a
    # client still waiting long after that has lost its answer.
    done, _ = await asyncio.wait([totals.finished], timeout=seconds + GRACE_SECONDS)
    unanswered = 0 if done else totals.running
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.stop()
    await asyncio.gather(*(connection.lost for connection in connections))
    ordered = sorted(totals.latencies)
    return {
        "requests": len(ordered),
        "seconds": elapsed,
        "per_second": len(ordered) / elapsed,
        "p50_ms": _percentile(ordered, 0.5) * 1000,
        "p99_ms": _percentile(ordered, 0.99) * 1000,
        "errors": totals.errors,
        "unanswered": unanswered,
        "closed": totals.closed,
        "statuses": {str(code): count for code, count in sorted(totals.statuses.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, help="the API's unix socket")
    parser.add_argument("--path", required=True, help="the cells collection's URL path")
    parser.add_argument("--cells", type=int, required=True, help="cells c00000.. to GET")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    result = asyncio.run(
        run(args.socket, args.path, cells=args.cells, clients=args.clients, seconds=args.seconds)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
