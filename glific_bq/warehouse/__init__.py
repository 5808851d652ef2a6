"""BigQuery: one dataset per organization, tables created from the reflected schema, rows written
and confirmed.

By concern:

- ``config``: ``WarehouseConfig`` (from the environment) and each organization's credentials;
- ``tables``: dataset and table set-up, schema evolution;
- ``writes``: the write paths (Storage Write API with protobuf or Arrow rows, Parquet loads);
- ``dead_letters``: the table of rows BigQuery refused;
- ``queries``: the one query path, with the retry and deadline policy;
- ``dataset``: ``Warehouse``, one organization's dataset, the face the rest of the code uses.
"""

from glific_bq.warehouse.config import ENVIRONMENT, WarehouseConfig, WriteMethod
from glific_bq.warehouse.dataset import Warehouse
from glific_bq.warehouse.dead_letters import DEAD_LETTER_SCHEMA, DEAD_LETTERS
from glific_bq.warehouse.errors import CredentialsError, SchemaDriftError, WarehouseError
from glific_bq.warehouse.tables import Target
from glific_bq.warehouse.writes import SOURCE_ID, Rejected, RowsRefused, arrow_batches

__all__ = [
    "DEAD_LETTERS",
    "DEAD_LETTER_SCHEMA",
    "ENVIRONMENT",
    "SOURCE_ID",
    "CredentialsError",
    "Rejected",
    "RowsRefused",
    "SchemaDriftError",
    "Target",
    "Warehouse",
    "WarehouseConfig",
    "WarehouseError",
    "WriteMethod",
    "arrow_batches",
]
