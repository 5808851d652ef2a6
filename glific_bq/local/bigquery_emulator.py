"""Start the local BigQuery emulator (bqemulator) with the workarounds it needs here.

bqemulator speaks BigQuery's REST and gRPC (Storage Write/Read) wire protocols over DuckDB.
Five patches, each checked so that an upgrade which removes the patched attribute fails loudly
instead of silently changing behaviour (the README's *Local emulator caveats* says what they hide):

1. ``DuckDBEngine._load_spatial`` downloads DuckDB's spatial extension, impossible offline.
   We use no GEOGRAPHY columns, so it becomes a no-op.
2. Multipart uploads from google-cloud-bigquery send ``*/*`` as the media type; the emulator
   refuses it, which breaks ``load_table_from_file``. ``*/*`` is added to the allowed types.
3. After every write the emulator copies the whole table for time travel, which makes many
   small appends quadratic. We use no time travel, so ``SnapshotManager.capture`` is a no-op.
4. Storage Write builds the target table's Arrow schema from each column's name, type and mode
   only (``write_servicer._table_arrow_schema``), dropping a RECORD's subfields: the target type
   becomes ``struct<>`` and every append to a table with a RECORD column fails in DuckDB
   ("Cannot cast STRUCTs of different size"). The replacement passes the whole column schema.
5. ``ALTER TABLE … RENAME TO`` renames the table in DuckDB but not in the emulator's catalog: the
   old name keeps its metadata over no rows and the new name has rows but no metadata
   (``tables.get`` says 404). After each statement the catalog entry is moved too, as BigQuery
   does (``glific_bq.repartition`` swaps tables by renaming them).

Run ``python -m glific_bq.local.bigquery_emulator --data-dir DIR`` for a standalone server.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

BQEMULATOR_VERSION = "1.4.0"
DEFAULT_PROJECT = "glific-local"


def apply_patches() -> None:
    """Patch bqemulator in-process; raise if the version or a patched attribute changed."""
    import logging
    from importlib.metadata import version

    import structlog

    # bqemulator logs through structlog at debug level from import time on; keep warnings only.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    from bqemulator.api.routes import tabledata, upload
    from bqemulator.grpc_api import write_servicer
    from bqemulator.jobs import executor
    from bqemulator.storage.engine import DuckDBEngine
    from bqemulator.versioning.snapshots import SnapshotManager

    installed = version("bqemulator")
    if installed != BQEMULATOR_VERSION:
        raise RuntimeError(
            f"bqemulator {installed} is installed but the patches were verified on "
            f"{BQEMULATOR_VERSION}; re-verify them (see glific_bq/local/bigquery_emulator.py)."
        )
    for owner, name in [
        (DuckDBEngine, "_load_spatial"),
        (upload, "_PERMITTED_MEDIA_CONTENT_TYPES"),
        (SnapshotManager, "capture"),
        (write_servicer, "_table_arrow_schema"),
        (tabledata, "_build_arrow_schema"),
        (DuckDBEngine, "connection"),
        (executor, "sync_dropped_object"),
    ]:
        if not hasattr(owner, name):
            raise RuntimeError(f"bqemulator no longer has {owner.__name__}.{name}; re-verify the patches")

    DuckDBEngine._load_spatial = lambda self: None
    if "*/*" not in upload._PERMITTED_MEDIA_CONTENT_TYPES:
        upload._PERMITTED_MEDIA_CONTENT_TYPES = (*upload._PERMITTED_MEDIA_CONTENT_TYPES, "*/*")
    SnapshotManager.capture = lambda self, *args, **kwargs: None
    write_servicer._table_arrow_schema = lambda table_meta: tabledata._build_arrow_schema(
        [column.model_dump(exclude_none=True) for column in table_meta.schema_.fields]
    )
    if not getattr(executor.sync_dropped_object, "_glific_bq_renames", False):
        executor.sync_dropped_object = _also_sync_renamed(executor.sync_dropped_object)
    # The REST routes and the gRPC servicer (a thread pool) share one DuckDB connection, which
    # refuses a second call while one runs ("connection is busy with another call"): parallel
    # syncs (glific_bq.tick) failed at random. Each thread gets its own cursor of the database.
    if not getattr(DuckDBEngine.connection, "_glific_bq_per_thread", False):
        shared = DuckDBEngine.connection.fget
        local = threading.local()

        def per_thread(self):
            base = shared(self)
            cursors = local.__dict__.setdefault("cursors", {})
            if cursors.get(id(self), (None,))[0] is not base:
                cursors[id(self)] = (base, base.cursor())
            return cursors[id(self)][1]

        per_thread._glific_bq_per_thread = True
        DuckDBEngine.connection = property(per_thread)


def _also_sync_renamed(sync_dropped_object):
    """``sync_dropped_object``, which the emulator calls after every successful statement, made to
    also move the catalog entry of a table renamed by ``ALTER TABLE … RENAME TO`` (patch 5)."""
    import sqlglot
    from sqlglot import exp

    def after_statement(bq_sql: str, project_id: str, ctx) -> None:
        sync_dropped_object(bq_sql, project_id, ctx)
        try:
            tree = sqlglot.parse_one(bq_sql, read="bigquery")
        except Exception:  # not ours to judge: the statement already ran
            return
        if not isinstance(tree, exp.Alter) or len(tree.args.get("actions") or []) != 1:
            return
        (action,) = tree.args["actions"]
        if not isinstance(action, exp.AlterRename) or not isinstance(tree.this, exp.Table):
            return
        old = tree.this
        project, dataset = old.catalog or project_id, old.db
        meta = ctx.catalog.get_table(project, dataset, old.name)
        if meta is None:
            return
        ctx.catalog.create_table(meta.model_copy(update={"table_id": action.this.name}))
        ctx.catalog.delete_table(project, dataset, old.name, not_found_ok=True)

    after_statement._glific_bq_renames = True
    return after_statement


class LocalBigQuery:
    """An in-process emulator on a background thread.

    ``rest_url`` (with scheme) is what ``BIGQUERY_EMULATOR_HOST`` takes; ``grpc_endpoint``
    (host:port) is what ``BIGQUERY_STORAGE_EMULATOR_HOST`` takes.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        project: str = DEFAULT_PROJECT,
        rest_port: int = 0,
        grpc_port: int = 0,
    ) -> None:
        apply_patches()
        from bqemulator.config import PersistenceMode, Settings
        from bqemulator.testing._thread_runner import ThreadedEmulator

        settings = Settings(
            persistence_mode=PersistenceMode.PERSISTENT if data_dir else PersistenceMode.EPHEMERAL,
            data_dir=data_dir,
            default_project_id=project,
            rest_host="127.0.0.1",
            rest_port=rest_port,
            grpc_host="127.0.0.1",
            grpc_port=grpc_port,
            log_level="warning",
        )
        self.project = project
        self._threaded = ThreadedEmulator(settings)

    def start(self) -> LocalBigQuery:
        self._threaded.start()
        return self

    def stop(self) -> None:
        self._threaded.stop()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self._threaded.server.rest_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self._threaded.server.grpc_port}"

    def environment(self) -> dict[str, str]:
        """The environment variables that point glific_bq at this emulator."""
        return {
            "BIGQUERY_EMULATOR_HOST": self.rest_url,
            "BIGQUERY_STORAGE_EMULATOR_HOST": self.grpc_endpoint,
            "GLIFIC_BQ_PROJECT": self.project,
        }

    def __enter__(self) -> LocalBigQuery:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="persist tables here (default: in memory)")
    parser.add_argument("--project", default=DEFAULT_PROJECT)
    parser.add_argument("--rest-port", type=int, default=9050)
    parser.add_argument("--grpc-port", type=int, default=9060)
    args = parser.parse_args()
    if args.data_dir:
        args.data_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with LocalBigQuery(args.data_dir, args.project, args.rest_port, args.grpc_port) as emulator:
        print(f"BigQuery emulator: REST {emulator.rest_url}, gRPC {emulator.grpc_endpoint}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
