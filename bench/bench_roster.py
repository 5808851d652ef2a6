"""What reading Glific's control plane costs per tick, at 100, 1,000 and 5,000 organizations.

Every tick starts from ``glific_bq.roster.select_tenants``: who is synced (Glific's rule), with
which key (decrypted from ``credentials.secrets`` with ``CIPHER_KEY``) and into which project. This
builds Glific's real schema in an embedded PostgreSQL with N organizations, of which 60 % turned
BigQuery on (a real service-account key each, encrypted as Glific does), 10 % turned it off again,
5 % are suspended and the rest never enabled it; then times ``select_tenants`` and counts its
SQL statements. The baseline in the same run: the same roster built the way an operator's script
around Glific's data would, one query per organization for its credential.

    python bench/bench_roster.py [--organizations 100 1000 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import tempfile
import time

import psycopg

from glific_bq import roster
from glific_bq.cloak import Vault
from glific_bq.local import glific_writes
from glific_bq.local.glific_schema import create_glific_schema
from glific_bq.warehouse import WarehouseConfig

CIPHER_KEY = base64.b64encode(os.urandom(32)).decode()
KEY = glific_writes.service_account_key("template")  # one RSA key, many project ids (RSA is slow to make)


class Counting(psycopg.Cursor):
    """A cursor that counts the statements its connection sends (``cursor_factory``; reset per run)."""

    statements = 0

    def execute(self, *args, **kwargs):
        type(self).statements += 1
        return super().execute(*args, **kwargs)


def build(url: str, organizations: int) -> None:
    vault = Vault.from_env({"CIPHER_KEY": CIPHER_KEY})
    with psycopg.connect(url, autocommit=True) as conn:
        create_glific_schema(conn)
        with conn.transaction():
            for n in range(organizations):
                org = glific_writes.organization(conn, f"NGO {n}", f"ngo{n}", f"91{n:010d}")
                share = n % 20
                if share < 14:  # 60 % on, 10 % switched off again
                    glific_writes.bigquery_credential(conn, org, {**KEY, "project_id": f"ngo-{n}"}, vault,
                                                      active=share < 12)
                if share == 19:
                    conn.execute("UPDATE organizations SET is_suspended = true WHERE id = %s", (org,))
        conn.execute("ANALYZE")


def per_organization(conn: psycopg.Connection, vault: Vault) -> int:
    """The baseline: one credential query per organization, decrypting each active key."""
    synced = 0
    for org_id, active, suspended in conn.execute(
            "SELECT id, is_active, COALESCE(is_suspended, false) FROM organizations").fetchall():
        row = conn.execute(
            "SELECT c.secrets, c.is_active FROM credentials c JOIN global.providers p ON p.id = c.provider_id "
            "WHERE c.organization_id = %s AND p.shortcode = 'bigquery'", (org_id,)).fetchone()
        if active and not suspended and row and row[1]:
            vault.decrypt_map(row[0])
            synced += 1
    return synced


def measure(fn, repeat: int) -> tuple[float, int]:
    times = []
    for _ in range(repeat):
        Counting.statements = 0
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, Counting.statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--organizations", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import pgserver

    config = WarehouseConfig(cipher_key=CIPHER_KEY, emulator_host="http://127.0.0.1:9")  # never contacted
    vault = Vault.from_env({"CIPHER_KEY": CIPHER_KEY})
    print(f"{'organizations':>13} {'synced':>7} {'roster ms':>10} {'statements':>10} "
          f"{'baseline ms':>12} {'statements':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        server = pgserver.get_server(tmp, cleanup_mode="stop")
        try:
            for n in args.organizations:
                name = f"roster_{n}"
                with psycopg.connect(server.get_uri(), autocommit=True) as admin:
                    admin.execute(f"CREATE DATABASE {name}")
                url = server.get_uri().replace("/postgres?", f"/{name}?", 1)
                build(url, n)
                with psycopg.connect(url, autocommit=True, cursor_factory=Counting) as conn:
                    found = roster.select_tenants(conn, config)  # warm: catalog, plans
                    ours_ms, ours_statements = measure(lambda: roster.select_tenants(conn, config), args.repeat)
                    base_ms, base_statements = measure(lambda: per_organization(conn, vault), args.repeat)
                    assert per_organization(conn, vault) == len(found.tenants)
                print(f"{n:>13} {len(found.tenants):>7} {ours_ms:>10.1f} {ours_statements:>10} "
                      f"{base_ms:>12.1f} {base_statements:>10}")
        finally:
            server.cleanup()


if __name__ == "__main__":
    main()
