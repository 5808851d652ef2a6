"""Where export files go: a local directory or a Cloud Storage bucket, one timestamped folder per
export, each file published when it is complete."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from glific_bq.export.result import ExportError
from glific_bq.warehouse import Warehouse

log = logging.getLogger(__name__)

#: Bytes of an export file held in memory while it uploads. The client uploads a file of at most
#: 8 MiB in one request, read whole; a larger one by a resumable upload in chunks of this size
#: (the client's default is 100 MiB a chunk: a 90 MB workbook would be read into memory whole).
#: A multiple of 256 KiB, as Cloud Storage requires.
UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Destination:
    """Where exports go: a local directory, or a Cloud Storage bucket and object prefix."""

    path: str  # local directory, or the object prefix ('' for the bucket's root)
    bucket: str | None = None

    @classmethod
    def parse(cls, destination: str | os.PathLike) -> Destination:
        text = os.fspath(destination)
        if not text.startswith("gs://"):
            if "://" in text:
                raise ValueError(f"unsupported export destination {text!r}: a local directory or gs://bucket/prefix")
            return cls(text)
        bucket, _, prefix = text[len("gs://"):].partition("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]", bucket):
            raise ValueError(f"not a Cloud Storage bucket name in {text!r}")
        parts = [p for p in prefix.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError(f"export prefix {prefix!r} must not contain . or ..")
        return cls("/".join(parts), bucket)

    def folder(self, dataset: str, stamp: str) -> str:
        """The URI (or local path) of one export's folder."""
        if self.bucket is None:
            return str(Path(self.path) / dataset / stamp)
        return "gs://" + "/".join(p for p in (self.bucket, self.path, dataset, stamp) if p)

    def object_name(self, dataset: str, stamp: str, filename: str) -> str:
        """The Cloud Storage object name of one file of an export."""
        return "/".join(p for p in (self.path, dataset, stamp, filename) if p)


class _Location:
    """One export's folder: files are written in ``workdir`` and published when complete."""

    def __init__(self, destination: Destination, dataset: str, stamp: str, warehouse: Warehouse, storage_client) -> None:
        self.destination, self.dataset, self.stamp = destination, dataset, stamp
        if destination.bucket is None:
            self.workdir = _new_folder(Path(destination.path) / dataset, stamp)
            self.uri = str(self.workdir)
            self._bucket = None
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix="glific_bq_export_"))
            self.uri = destination.folder(dataset, stamp)
            if storage_client is None:
                from google.cloud import storage

                # The organization's own credentials, as for its dataset.
                storage_client = storage.Client(project=warehouse.project, credentials=warehouse.credentials)
            self._bucket = storage_client.bucket(destination.bucket)

    def publish(self, path: Path, filename: str) -> str:
        """Make a finished file visible under its final name; returns its path or URI."""
        if self._bucket is None:
            final = path.with_name(filename)
            os.replace(path, final)
            return str(final)
        name = self.destination.object_name(self.dataset, self.stamp, filename)
        blob = self._bucket.blob(name, chunk_size=UPLOAD_CHUNK_BYTES)
        blob.upload_from_filename(str(path), content_type=_CONTENT_TYPES[Path(filename).suffix])
        path.unlink()
        return f"gs://{self.destination.bucket}/{name}"

    def abort(self) -> None:
        """After a failure: remove partial files (published ones stay; there is no manifest)."""
        if self._bucket is None:
            for partial in self.workdir.glob("*.part"):
                partial.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        if self._bucket is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


_CONTENT_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".parquet": "application/vnd.apache.parquet",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".json": "application/json",
}


def _new_folder(parent: Path, stamp: str) -> Path:
    """``parent/stamp``, or ``stamp-2``… when an export already started in that second."""
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        folder = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise ExportError(f"too many exports in {parent} at {stamp}")
