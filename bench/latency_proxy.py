"""A TCP proxy that puts distance between a client and a local server, and counts round trips.

Each direction of each connection forwards every chunk ``delay_ms`` after it arrived (order
kept, the pipe never stalls on the delay: chunks in flight overlap like packets on a long
link). A new connection also waits ``handshake_rtts`` round trips before its first byte
reaches the server: 0 for a plain TCP proxy, 1 for TCP's own handshake, 2 for TCP + TLS 1.3
(what a client opening a connection to the real BigQuery over HTTPS pays).

What it counts, per listener (the client→server byte stream is parsed, never changed):

- ``connections``: connections accepted;
- ``http_requests``: HTTP/1.1 requests (request line + headers + ``Content-Length`` body;
  chunked bodies end at ``0\\r\\n\\r\\n``): the REST API;
- ``grpc_calls``: HTTP/2 HEADERS frames opening a new client stream (an odd stream id not
  seen before): one per gRPC call, whatever the frames that follow (the Storage Write API);
- ``turns``: client→server bursts that follow a server→client reply on the same connection
  (or open it): an upper bound of round trips, which also counts HTTP/2's own
  WINDOW_UPDATE/PING traffic.

``round_trips`` = ``http_requests + grpc_calls + connections × handshake_rtts``: each request
or call waits at least one round trip for its answer, each new connection its handshake.

Run standalone (control port: send ``stats``, ``reset`` or ``delay <ms>`` as one line; the
answer is one JSON line):

    python bench/latency_proxy.py --route 9150:127.0.0.1:9050 --route 9160:127.0.0.1:9060 \\
        --delay-ms 50 --control-port 9199
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import time
from dataclasses import asdict, dataclass, field

_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADERS_FRAME = 0x1
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked", re.IGNORECASE)


@dataclass
class Counts:
    """What went through one listener since the last reset."""

    connections: int = 0
    http_requests: int = 0
    grpc_calls: int = 0
    turns: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    by_method: dict[str, int] = field(default_factory=dict)  # "GET tables": HTTP requests by method and resource

    def round_trips(self, handshake_rtts: int) -> int:
        return self.http_requests + self.grpc_calls + self.connections * handshake_rtts


class RequestCounter:
    """Counts HTTP/1.1 requests or HTTP/2 call openings in a client→server byte stream."""

    def __init__(self, route: Route) -> None:
        self.route = route  # counts go to route.counts, which a reset replaces
        self.buffer = b""
        self.protocol: str | None = None  # "http1" | "http2", decided by the first bytes
        self.skip = 0  # body bytes (HTTP/1.1) or frame payload (HTTP/2) still to pass over
        self.chunked = False
        self.streams: set[int] = set()

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if self.protocol is None:
            if len(self.buffer) < len(_HTTP2_PREFACE) and _HTTP2_PREFACE.startswith(self.buffer):
                return
            if self.buffer.startswith(_HTTP2_PREFACE):
                self.protocol, self.buffer = "http2", self.buffer[len(_HTTP2_PREFACE) :]
            else:
                self.protocol = "http1"
        if self.protocol == "http2":
            self._http2()
        else:
            self._http1()

    def _pass_over(self) -> bool:
        """Drop bytes still to skip; False when the buffer ran out first."""
        if self.skip:
            taken = min(self.skip, len(self.buffer))
            self.buffer, self.skip = self.buffer[taken:], self.skip - taken
        return not self.skip

    def _http2(self) -> None:
        while self._pass_over() and len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[0:3], "big")
            kind = self.buffer[3]
            stream = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
            if kind == _HEADERS_FRAME and stream % 2 == 1 and stream not in self.streams:
                self.streams.add(stream)
                self.route.counts.grpc_calls += 1
            self.buffer, self.skip = self.buffer[9:], length

    def _http1(self) -> None:
        while self._pass_over():
            if self.chunked:
                end = self.buffer.find(b"0\r\n\r\n")
                if end < 0:
                    self.buffer = self.buffer[-4:]
                    return
                self.buffer, self.chunked = self.buffer[end + 5 :], False
                continue
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[: end + 4], self.buffer[end + 4 :]
            self.route.counts.http_requests += 1
            key = _resource(head)
            self.route.counts.by_method[key] = self.route.counts.by_method.get(key, 0) + 1
            length = _CONTENT_LENGTH.search(head)
            if length:
                self.skip = int(length.group(1))
            elif _CHUNKED.search(head):
                self.chunked = True


def _resource(head: bytes) -> str:
    """``"GET tables"`` from a request line: the method and the last REST resource named in the
    path (``datasets``, ``tables``, ``jobs``, ``queries``…), never the ids."""
    method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
    segments = rest.split(" ", 1)[0].split("?", 1)[0].strip("/").split("/")
    kinds = [s for s in segments if s in ("datasets", "tables", "jobs", "queries", "insertAll", "upload")]
    return f"{method} {kinds[-1] if kinds else segments[-1]}"


@dataclass
class Route:
    listen_port: int
    target_host: str
    target_port: int
    counts: Counts = field(default_factory=Counts)


class LatencyProxy:
    """Listeners that forward to their targets with ``delay_ms`` each way."""

    def __init__(self, routes: list[Route], delay_ms: float = 0.0, handshake_rtts: int = 0) -> None:
        self.routes = routes
        self.delay_ms = delay_ms
        self.handshake_rtts = handshake_rtts
        self._servers: list[asyncio.base_events.Server] = []

    async def start(self, host: str = "127.0.0.1") -> None:
        for route in self.routes:
            server = await asyncio.start_server(
                lambda r, w, route=route: self._connection(route, r, w), host, route.listen_port
            )
            route.listen_port = server.sockets[0].getsockname()[1]
            self._servers.append(server)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()

    def stats(self) -> dict:
        return {
            "delay_ms": self.delay_ms,
            "handshake_rtts": self.handshake_rtts,
            "routes": {
                str(route.listen_port): {
                    **asdict(route.counts),
                    "target": f"{route.target_host}:{route.target_port}",
                    "round_trips": route.counts.round_trips(self.handshake_rtts),
                }
                for route in self.routes
            },
        }

    def reset(self) -> None:
        for route in self.routes:
            route.counts = Counts()

    async def _connection(self, route: Route, client_reader, client_writer) -> None:
        route.counts.connections += 1
        opened = time.monotonic()
        try:
            server_reader, server_writer = await asyncio.open_connection(route.target_host, route.target_port)
        except OSError:
            client_writer.close()
            return
        for writer in (client_writer, server_writer):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        last_direction = ["down"]  # a first client burst opens a turn
        counter = RequestCounter(route)
        # The client's first byte leaves only once the handshake's round trips are over.
        not_before = opened + self.handshake_rtts * 2 * self.delay_ms / 1000

        def on_up(data: bytes) -> None:
            if last_direction[0] == "down":
                route.counts.turns += 1
            last_direction[0] = "up"
            route.counts.bytes_up += len(data)
            counter.feed(data)

        def on_down(data: bytes) -> None:
            last_direction[0] = "down"
            route.counts.bytes_down += len(data)

        await asyncio.gather(
            self._pipe(client_reader, server_writer, on_up, not_before),
            self._pipe(server_reader, client_writer, on_down, 0.0),
            return_exceptions=True,
        )

    async def _pipe(self, reader, writer, on_chunk, not_before: float) -> None:
        """Read chunks as they come; a second task writes each one when its delay is over."""
        queue: asyncio.Queue = asyncio.Queue()

        async def send() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    break
                arrived, data = item
                wait = max(arrived, not_before) + self.delay_ms / 1000 - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

        sender = asyncio.create_task(send())
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                on_chunk(data)
                queue.put_nowait((time.monotonic(), data))
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait(None)
            try:
                await sender
            except (ConnectionError, OSError):
                pass
            writer.close()

    async def serve_control(self, port: int, host: str = "127.0.0.1") -> asyncio.base_events.Server:
        """A line protocol: ``stats`` | ``reset`` | ``delay <ms>`` | ``handshake <rtts>``; answers one JSON line."""

        async def handle(reader, writer) -> None:
            while line := (await reader.readline()).decode().strip():
                command, _, value = line.partition(" ")
                if command == "reset":
                    self.reset()
                elif command == "delay":
                    self.delay_ms = float(value)
                elif command == "handshake":
                    self.handshake_rtts = int(value)
                elif command != "stats":
                    writer.write(json.dumps({"error": f"unknown command {command!r}"}).encode() + b"\n")
                    continue
                writer.write(json.dumps(self.stats()).encode() + b"\n")
                await writer.drain()
            writer.close()

        return await asyncio.start_server(handle, host, port)


class ProxyControl:
    """The client side of the control port (for the benchmark)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port))
        self.file = self.sock.makefile("rwb")

    def command(self, line: str) -> dict:
        self.file.write(line.encode() + b"\n")
        self.file.flush()
        return json.loads(self.file.readline())

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _route(text: str) -> Route:
    listen, host, port = text.split(":")
    return Route(int(listen), host, int(port))


async def _main(args: argparse.Namespace) -> None:
    proxy = LatencyProxy([_route(r) for r in args.route], args.delay_ms, args.handshake_rtts)
    await proxy.start()
    control = await proxy.serve_control(args.control_port)
    ports = " ".join(f"{r.listen_port}->{r.target_host}:{r.target_port}" for r in proxy.routes)
    print(
        f"latency proxy: {ports}; control {control.sockets[0].getsockname()[1]}; {args.delay_ms} ms each way",
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await proxy.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", action="append", required=True, help="LISTEN_PORT:TARGET_HOST:TARGET_PORT")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="one-way delay")
    parser.add_argument(
        "--handshake-rtts", type=int, default=0, help="round trips before a new connection carries data"
    )
    parser.add_argument("--control-port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
