"""A gRPC proxy in front of the emulator's Storage Write port, for tests: it forwards every call
as bytes, and answers the appends to chosen tables as a BigQuery would that refuses them or
whose response stream ends early.

Only AppendRows is looked at; every other method passes through unchanged. Each AppendRows call
is recorded (``appends``: its table and the rows of each request), whatever it is answered.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass

import grpc
from google.cloud.bigquery_storage_v1 import types
from google.rpc import status_pb2

_APPEND_ROWS = "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows"


@dataclass(frozen=True)
class Refuse:
    """Refuse the whole call: with a gRPC status (``in_response=False``, as BigQuery ends an
    append whose schema it does not accept), or with an error in each response."""

    code: grpc.StatusCode
    message: str
    in_response: bool = False
    #: Refuse only the calls whose requests carry this (in their serialized rows); None: every call.
    containing: bytes | None = None


@dataclass(frozen=True)
class CutShort:
    """End the response stream (status OK) after ``acknowledged`` responses; the requests are
    forwarded (``forward``) or dropped unread by BigQuery."""

    acknowledged: int
    forward: bool = True


@dataclass(frozen=True)
class Append:
    """One AppendRows call as the proxy saw it."""

    table: str
    rows: tuple[int, ...]  # rows per request
    stream: str = ""  # the first request's write_stream
    routing: str = ""  # the call's x-goog-request-params header, which BigQuery routes it by


class StorageWriteProxy:
    """Listens on ``endpoint`` (host:port, what ``storage_emulator_host`` takes) and forwards to
    ``upstream``. ``answer(table, behaviour)`` changes how appends to ``table`` are answered."""

    def __init__(self, upstream: str) -> None:
        self._upstream = grpc.insecure_channel(upstream)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="grpc-proxy"))
        self._server.add_generic_rpc_handlers([_Handler(self)])
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._behaviours: dict[str, Refuse | CutShort] = {}
        self._lock = threading.Lock()
        self.appends: list[Append] = []

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answer(self, table: str, behaviour: Refuse | CutShort | None) -> None:
        """Answer appends to ``table`` (its name, in any dataset) so from now on; None: forward them."""
        with self._lock:
            if behaviour is None:
                self._behaviours.pop(table, None)
            else:
                self._behaviours[table] = behaviour

    def appends_to(self, table: str) -> list[Append]:
        with self._lock:
            return [a for a in self.appends if a.table == table]

    def __enter__(self) -> StorageWriteProxy:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)
        self._upstream.close()

    # -- the calls ---------------------------------------------------------------------------------

    def _unary(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            return self._upstream.unary_unary(method)(request, metadata=context.invocation_metadata())
        except grpc.RpcError as error:
            context.abort(error.code(), error.details())

    def _append_rows(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        received = list(requests)  # the client sends every request before it reads a response
        if not received:
            return
        stream = types.AppendRowsRequest.pb().FromString(received[0]).write_stream
        table = stream.split("/tables/")[1].split("/")[0]
        routing = dict(context.invocation_metadata()).get("x-goog-request-params", "")
        with self._lock:
            behaviour = self._behaviours.get(table)
            self.appends.append(Append(table, tuple(_row_count(r) for r in received), stream, routing))
        if isinstance(behaviour, Refuse) and (behaviour.containing is None
                                              or any(behaviour.containing in r for r in received)):
            if not behaviour.in_response:
                context.abort(behaviour.code, behaviour.message)
            error = status_pb2.Status(code=behaviour.code.value[0], message=behaviour.message)
            for _ in received:
                yield types.AppendRowsResponse.pb()(error=error).SerializeToString()
        elif isinstance(behaviour, CutShort):
            responses = list(self._forward(received, context)) if behaviour.forward else []
            yield from responses[: behaviour.acknowledged]
        else:
            yield from self._forward(received, context)

    def _forward(self, requests: list[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        call = self._upstream.stream_stream(_APPEND_ROWS)(iter(requests), metadata=context.invocation_metadata())
        try:
            yield from call
        except grpc.RpcError as error:
            context.abort(error.code(), error.details())


def _row_count(request: bytes) -> int:
    return len(types.AppendRowsRequest.pb().FromString(request).proto_rows.rows.serialized_rows)


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, proxy: StorageWriteProxy) -> None:
        self._proxy = proxy

    def service(self, details: grpc.HandlerCallDetails):
        if details.method == _APPEND_ROWS:
            return grpc.stream_stream_rpc_method_handler(self._proxy._append_rows)
        return grpc.unary_unary_rpc_method_handler(lambda request, context: self._proxy._unary(
            details.method, request, context))


__all__ = ["Append", "CutShort", "Refuse", "StorageWriteProxy"]
