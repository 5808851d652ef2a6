"""Source columns, read from the PostgreSQL catalog, and their BigQuery types.

The one mapping from PostgreSQL types to BigQuery types lives here, together with the SELECT
expression that turns each column into the value BigQuery receives:

| PostgreSQL | BigQuery | sent as |
|---|---|---|
| smallint, integer, bigint, oid | INT64 | as is |
| real, double precision | FLOAT64 | as is |
| numeric(p,s) with p-s <= 29 and s <= 9 | NUMERIC | decimal text |
| other numeric, money | BIGNUMERIC | decimal text |
| boolean | BOOL | as is |
| text, varchar, char, name, citext, enum, uuid, inet, interval, xml, ... | STRING | text (inet as PostgreSQL shows it, no /32 on a host) |
| json, jsonb | STRING | JSON text (Glific's dashboards use JSON_EXTRACT_SCALAR on it) |
| date | DATE | as is |
| time | TIME | as is |
| timestamp, timestamp(0) | DATETIME | UTC (Glific's convention) converted to the organization's timezone |
| timestamptz | DATETIME | converted to the organization's timezone |
| bytea | BYTES | as is |
| one-dimensional arrays of the above | REPEATED | NULL elements dropped (BigQuery arrays cannot hold NULL) |
| anything else | STRING | its text form, with a warning |

**Column names.** A source column keeps its name in BigQuery when BigQuery can take it as it is
(letters, digits and underscores, not starting with a digit, at most 300 characters) and it
differs, ignoring case, from the metadata columns and from every other source column. Any other
name (a contact field column like ``Opt-in Source (web)``, say) is mapped by
``bigquery_column_name``: each run of other characters becomes ``_``, a leading digit or an
empty result gets ``col_`` in front, and ``_`` plus the first 8 hex digits of the SHA-1 of the
source name is appended: ``Opt-in Source (web)`` → ``Opt_in_Source_web_89c81eed``. The mapping
depends on the name alone, so it is stable (a column added later never renames another) and two
source names map to the same BigQuery name only by a SHA-1 prefix collision, which
``syncable_columns`` refuses with a clear error rather than merging two columns. The data is
synced; each mapping is logged (INFO) at every sync.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, replace

import psycopg
from google.cloud.bigquery import SchemaField
from psycopg import sql

from glific_bq import identifiers

log = logging.getLogger(__name__)

#: Columns glific_bq adds to every row it sends.
BQ_UUID = "bq_uuid"
BQ_INSERTED_AT = "bq_inserted_at"
METADATA_FIELDS = (
    SchemaField(BQ_UUID, "STRING", description="A new UUID for every row version sent"),
    SchemaField(BQ_INSERTED_AT, "TIMESTAMP", description="When glific_bq sent this row version"),
)


_INTEGERS = {"int2", "int4", "int8", "oid"}
_FLOATS = {"float4", "float8"}
_TEXTS = {"text", "varchar", "bpchar", "char", "name", "citext"}
_TEXT_FORMS = {  # types whose text form is the natural BigQuery value
    "uuid", "inet", "cidr", "macaddr", "macaddr8", "interval", "xml", "bit", "varbit",
    "tsvector", "tsquery", "timetz", "json", "jsonb",
}
_SIMPLE = {"bool": "BOOL", "date": "DATE", "time": "TIME", "bytea": "BYTES"}


class UnsupportedColumn(ValueError):
    """A source column that cannot be synced as it is (its name, usually)."""


@dataclass(frozen=True)
class Column:
    """A source column as the catalog describes it.

    ``type_name`` is the scalar type (the element type for arrays), after resolving domains;
    ``kind`` is pg_type.typtype of that scalar ('e' for enums); ``typmod`` is pg_attribute.atttypmod.
    """

    name: str
    type_name: str
    kind: str = "b"
    is_array: bool = False
    typmod: int = -1
    declared: str = ""
    #: The column's name in BigQuery when it differs from ``name`` (see ``bigquery_column_name``).
    bigquery_name: str = ""

    @property
    def target_name(self) -> str:
        """The column's name in BigQuery."""
        return self.bigquery_name or self.name

    @property
    def bigquery_type(self) -> str:
        """The BigQuery type of one value of this column (STRING for types we don't know)."""
        return _scalar_type(self) or "STRING"

    @property
    def is_known_type(self) -> bool:
        return _scalar_type(self) is not None

    def schema_field(self) -> SchemaField:
        return SchemaField(self.target_name, self.bigquery_type, mode="REPEATED" if self.is_array else "NULLABLE")

    def select_expression(self, timezone: sql.Composable) -> sql.Composable:
        """The SELECT expression that yields this column's BigQuery value.

        ``timezone`` is the placeholder of the organization's timezone parameter: values are bound,
        never spliced into the statement.
        """
        col = sql.Identifier(self.name)
        if self.is_array:
            col = sql.SQL("array_remove({}, NULL)").format(col)
        bq_type = self.bigquery_type
        if bq_type in ("NUMERIC", "BIGNUMERIC"):
            cast = "::numeric::text" if self.type_name == "money" else "::text"
            expr = sql.SQL("{}" + (cast + "[]" if self.is_array else cast)).format(col)
        elif bq_type == "DATETIME":
            utc = sql.SQL("{} AT TIME ZONE 'UTC'").format(col) if self.type_name == "timestamp" else col
            expr = sql.SQL("({}) AT TIME ZONE {}").format(utc, timezone)
        elif self.type_name in _INTEGERS | _FLOATS or self.type_name in _SIMPLE:
            expr = col
        elif self.type_name == "inet" and not self.is_array:
            expr = sql.SQL("abbrev({})").format(col)  # as PostgreSQL shows it: ::text adds /32 to a host
        else:
            expr = sql.SQL("{}::text[]" if self.is_array else "{}::text").format(col)
        return sql.SQL("{} AS {}").format(expr, sql.Identifier(self.target_name))


    @property
    def conversion(self):
        """How the worker turns the value as stored into its BigQuery value
        (``glific_bq.convert``), or None when ``extract_expression`` casts it in SQL."""
        from glific_bq import convert

        return convert.on_worker(self.type_name, self.kind, self.is_array, self.bigquery_type)

    def extract_expression(self, timezone: sql.Composable) -> sql.Composable:
        """What the extract reads for this column: the column as stored when the worker converts
        it (``conversion``), else ``select_expression`` (types Arrow cannot decode)."""
        if self.conversion is None:
            return self.select_expression(timezone)
        return sql.SQL("{} AS {}").format(sql.Identifier(self.name), sql.Identifier(self.target_name))


def _scalar_type(column: Column) -> str | None:
    name = column.type_name
    if name in _INTEGERS:
        return "INT64"
    if name in _FLOATS:
        return "FLOAT64"
    if name == "numeric":
        precision, scale = _numeric_precision_scale(column.typmod)
        fits = precision is not None and precision - scale <= 29 and scale <= 9
        return "NUMERIC" if fits else "BIGNUMERIC"
    if name == "money":
        return "BIGNUMERIC"
    if name in ("timestamp", "timestamptz"):
        # Arrays of timestamps keep their text form: a rare case not worth a conversion per element.
        return "STRING" if column.is_array else "DATETIME"
    if name in _SIMPLE:
        return _SIMPLE[name]
    if name in _TEXTS or name in _TEXT_FORMS or column.kind == "e":
        return "STRING"
    return None


def _numeric_precision_scale(typmod: int) -> tuple[int | None, int]:
    if typmod < 4:
        return None, 0
    return ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF


_CATALOG_QUERY = """
SELECT a.attname,
       CASE WHEN t.typcategory = 'A' THEN et.typname ELSE t.typname END,
       CASE WHEN t.typcategory = 'A' THEN et.typtype ELSE t.typtype END,
       t.typcategory = 'A',
       CASE WHEN dt.typtype = 'd' THEN dt.typtypmod ELSE a.atttypmod END,
       format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type dt ON dt.oid = a.atttypid
JOIN pg_type t ON t.oid = CASE WHEN dt.typtype = 'd' THEN dt.typbasetype ELSE dt.oid END
LEFT JOIN pg_type et ON et.oid = t.typelem
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def reflect_columns(conn: psycopg.Connection, table: str, schema: str = "public") -> list[Column]:
    """The columns of ``schema.table`` as the catalog has them now; [] if the table is missing."""
    rows = conn.execute(_CATALOG_QUERY, {"schema": schema, "table": table}).fetchall()
    return [Column(name, type_name, kind, is_array, typmod, declared)
            for name, type_name, kind, is_array, typmod, declared in rows]


def syncable_columns(columns: list[Column], table: str) -> tuple[list[Column], list[str]]:
    """The columns to sync, each with its BigQuery name, and warnings (unknown types).

    Every column is synced: a name BigQuery cannot take, or that collides (ignoring case) with the
    metadata columns or another source column, gets a BigQuery name of its own
    (``bigquery_column_name``; see the module's docstring). An unknown type is sent as text.
    """
    keep, warnings = [], []
    reserved = {f.name.lower() for f in METADATA_FIELDS}
    lowered = [c.name.lower() for c in columns]
    for column in columns:
        ambiguous = lowered.count(column.name.lower()) > 1 and column.name != column.name.lower()
        if not identifiers.is_column(column.name) or column.name.lower() in reserved or ambiguous:
            column = replace(column, bigquery_name=bigquery_column_name(column.name))
            log.info("%s.%s is named %s in BigQuery", table, column.name, column.bigquery_name)
        if not column.is_known_type:
            warnings.append(f"{table}.{column.name}: unknown type {column.declared}; sent as STRING")
        keep.append(column)
    names: dict[str, str] = {}
    for column in keep:
        other = names.setdefault(column.target_name.lower(), column.name)
        if other != column.name:
            raise UnsupportedColumn(f"{table}: columns {other!r} and {column.name!r} would both be "
                                    f"{column.target_name!r} in BigQuery; rename one at the source")
    for warning in warnings:
        log.warning(warning)
    return keep, warnings


def bigquery_column_name(name: str) -> str:
    """A legal, stable BigQuery column name for a source column name BigQuery cannot take as it is
    (see the module's docstring): ``Opt-in Source (web)`` → ``Opt_in_Source_web_89c81eed``."""
    suffix = "_" + hashlib.sha1(name.encode()).hexdigest()[:8]
    base = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")
    if not base or base[0].isdigit():
        base = "col_" + base
    return base[: 300 - len(suffix)] + suffix


def bigquery_schema(columns: list[Column]) -> list[SchemaField]:
    """The BigQuery table schema for these source columns, metadata columns last."""
    return [c.schema_field() for c in columns] + list(METADATA_FIELDS)
