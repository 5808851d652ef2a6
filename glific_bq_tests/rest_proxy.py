"""An HTTP proxy in front of the emulator's REST port, for tests: it forwards every request as
bytes, and answers the load jobs (resumable uploads, whose sessions it keeps going through it) whose
Parquet file holds a chosen row as BigQuery does when a
row of the file cannot be read: the job is created, and done, with an ``invalid`` error (the
emulator loads such files).

``refuse_loads_holding(column, value)`` sets the row; ``loads`` records each load job's outcome.
"""

from __future__ import annotations

import http.client
import http.server
import io
import json
import threading
import uuid
from urllib.parse import urlsplit

import pyarrow.parquet as pq

_PARQUET = b"PAR1"


class LoadRefusingProxy:
    """Listens on ``url`` (what ``emulator_host`` takes) and forwards to ``upstream``."""

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self._upstream = (target.hostname, target.port)
        self.refused: tuple[str, object] | None = None
        self.loads: list[str] = []  # "loaded" or "refused", per load job
        self._sessions: dict[str, dict] = {}  # upload session path -> the load job it creates
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "/upload/" in self.path and self.command == "PUT" and _PARQUET in body:  # a load's file
                    if proxy._holds_refused_row(body):
                        proxy.loads.append("refused")
                        return self._answer(200, proxy._failed_job(proxy._sessions[self.path]))
                    proxy.loads.append("loaded")
                conn = http.client.HTTPConnection(*proxy._upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for key, value in reply.getheaders():
                    if key.lower() == "location":  # a resumable upload's session: through the proxy too
                        session = urlsplit(value)
                        value = proxy.url + session.path + (f"?{session.query}" if session.query else "")
                        proxy._sessions[value[len(proxy.url):]] = json.loads(body or b"{}")
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def refuse_loads_holding(self, column: str, value: object) -> None:
        self.refused = (column, value)

    def _holds_refused_row(self, body: bytes) -> bool:
        start, end = body.find(_PARQUET), body.rfind(_PARQUET)
        if self.refused is None or start < 0 or end <= start:
            return False
        column, value = self.refused
        table = pq.read_table(io.BytesIO(body[start:end + len(_PARQUET)]), columns=[column])
        return value in table.column(column).to_pylist()

    @staticmethod
    def _failed_job(metadata: dict) -> dict:
        """The job resource BigQuery returns for a load whose data it could not read."""
        reference = {**metadata.get("jobReference", {}), "location": "US"}
        reference.setdefault("jobId", uuid.uuid4().hex)
        error = {"reason": "invalid", "message": "Error while reading data, error message: a value is out of range"}
        return {"kind": "bigquery#job", "id": f"{reference.get('projectId')}:{reference['jobId']}",
                "jobReference": reference, "configuration": metadata.get("configuration", {}),
                "status": {"state": "DONE", "errorResult": error, "errors": [error]}}

    def __enter__(self) -> LoadRefusingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


__all__ = ["LoadRefusingProxy"]
