"""A local Cloud Storage for tests: ``gcp-storage-emulator`` (Cloud Storage's JSON API, uploads
multipart and resumable) in a process of its own, so that what it holds is not in the test's
memory, with every request it receives recorded: method, path, ``Authorization`` and
``Content-Range`` (who asked, and in what pieces the bytes came).

The Google client reaches it through ``STORAGE_EMULATOR_HOST``, as it would Cloud Storage.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class LocalStorage:
    """The emulator, started on a free port; ``requests()`` are the ones it received so far."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen([sys.executable, "-m", "glific_bq_tests.storage_emulator", str(log)],
                                        cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONPATH": str(ROOT)})
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.process.kill()
            raise RuntimeError(f"the Cloud Storage emulator did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line)}"

    def requests(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def _serve(log: str) -> None:
    from gcp_storage_emulator import server

    parse_request = server.RequestHandler.parse_request

    def recorded(handler) -> bool:
        parsed = parse_request(handler)
        if parsed:
            with open(log, "a") as out:
                out.write(json.dumps({"method": handler.command, "path": handler.path,
                                      "authorization": handler.headers.get("Authorization"),
                                      "content_range": handler.headers.get("Content-Range")}) + "\n")
        return parsed

    server.RequestHandler.parse_request = recorded
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # for the server's thread too: waited for below
    emulator = server.create_server("127.0.0.1", 0, in_memory=True)
    emulator.start()
    print(emulator._api._httpd.server_address[1], flush=True)
    signal.sigwait(stop)
    emulator.stop()

if __name__ == "__main__":
    _serve(sys.argv[1])
