"""Alerts when a tenant-table stops syncing, once per incident: detection against the real
PostgreSQL (watermarks made stale or failing by hand), incident bookkeeping across sensor
evaluations, and the webhook against a local HTTP server."""

from __future__ import annotations

import json
import logging
import socket
from datetime import datetime, timedelta

import dagster as dg
import psycopg
import pytest

from glific_bq import alerts, plan, watermarks
from glific_bq.defs.alerting import stalled_watermarks
from glific_bq.defs.partitions import tenants
from glific_bq.defs.resources import GlificPostgres
from glific_bq.local.sample_data import seed
from glific_bq.registry import TABLES, TableSpec, table
from glific_bq.schema import reflect_columns

from .helpers import bigquery_resource, destinations

MESSAGES = table("messages")


# -- simulating the sync ---------------------------------------------------------------------------------


def catch_up(conn, tenants: dict[int, str], tables: tuple[TableSpec, ...] = TABLES) -> None:
    """Move every tenant's watermarks to its newest row, as a finished sync does."""
    for spec in tables:
        has_cursor = any(c.name == spec.cursor_column for c in reflect_columns(conn, spec.name))
        for org, destination in tenants.items():
            watermarks.create(conn, org, spec.name, destination)
            (top,) = conn.execute(f"SELECT COALESCE(max(id), 0) FROM {spec.name} WHERE organization_id = %s", (org,)).fetchone()
            cursor = None
            if has_cursor:
                cursor = conn.execute(
                    f"SELECT {spec.cursor_column}, id FROM {spec.name} WHERE organization_id = %s "
                    f"ORDER BY {spec.cursor_column} DESC, id DESC LIMIT 1",
                    (org,),
                ).fetchone()
            watermarks.advance(conn, org, spec.name, destination, table_id=top, cursor=tuple(cursor) if cursor else None)


def fall_behind(conn, org: int, name: str = "messages", *, last_moved: timedelta = timedelta(hours=1)) -> None:
    """The newest row of (org, table) not sent yet, and the watermark last moved ``last_moved`` ago."""
    conn.execute(
        'UPDATE glific_bq_watermarks SET table_id = table_id - 1, advanced_at = now() - %s '
        'WHERE organization_id = %s AND "table" = %s',
        (last_moved, org, name),
    )


def fail(conn, org: int, name: str, times: int, error: str = "Forbidden: 403 Access Denied: BigQuery BigQuery: Permission bigquery.tables.create denied") -> None:
    for _ in range(times):
        watermarks.record_failure(conn, org, name, watermarks.get(conn, org, name).destination, error)


@pytest.fixture
def seeded(db, warehouse_config):
    """Two organizations, every watermark caught up (for the destinations the roster gives them)."""
    seed(db, organizations=2, messages_per_org=20, contacts_per_org=5)
    catch_up(db, destinations(db, warehouse_config))
    assert plan.dirty(db, TABLES, destinations(db, warehouse_config)) == {}
    return db


def kinds(problems: list[alerts.Problem]) -> list[tuple[int, str, str]]:
    return [(p.organization_id, p.table, p.kind) for p in problems]


# -- detection -------------------------------------------------------------------------------------------


def test_a_stalled_watermark_is_detected(seeded, warehouse_config):
    fall_behind(seeded, 1, "messages", last_moved=timedelta(hours=1))

    problems = alerts.find_problems(seeded, TABLES, destinations(seeded, warehouse_config))

    assert kinds(problems) == [(1, "messages", "stalled")]
    (problem,) = problems
    assert "rows waiting to sync since" in problem.detail and problem.organization
    (db_now,) = seeded.execute("SELECT now()").fetchone()
    assert timedelta(minutes=59) < db_now - problem.since < timedelta(minutes=61)


def test_a_watermark_never_advanced_counts_from_its_creation(seeded, warehouse_config):
    seeded.execute(
        "UPDATE glific_bq_watermarks SET table_id = 0, advanced_at = NULL, created_at = now() - interval '2 hours' "
        "WHERE organization_id = 2 AND \"table\" = 'contacts'"
    )
    assert kinds(alerts.find_problems(seeded, TABLES, destinations(seeded, warehouse_config))) == [(2, "contacts", "stalled")]


def test_no_stall_when_caught_up_recently_advanced_or_rows_just_arrived(seeded, warehouse_config):
    seeded.execute("UPDATE glific_bq_watermarks SET advanced_at = now() - interval '1 day'")  # idle, but caught up
    assert alerts.find_problems(seeded, TABLES, destinations(seeded, warehouse_config)) == []

    fall_behind(seeded, 1, "messages", last_moved=timedelta(minutes=2))  # syncing, just a little behind
    assert alerts.find_problems(seeded, TABLES, destinations(seeded, warehouse_config)) == []
    assert kinds(alerts.find_problems(seeded, TABLES, destinations(seeded, warehouse_config), stall_after=timedelta(minutes=1))) == [(1, "messages", "stalled")]

    # A tenant idle for hours that just got a message: old watermark, but the rows only now wait.
    fall_behind(seeded, 2, "messages", last_moved=timedelta(hours=3))
    (db_now,) = seeded.execute("SELECT now()").fetchone()
    assert alerts.find_problems(seeded, TABLES, destinations(seeded, warehouse_config), waiting_since={(2, "messages"): db_now}) == []


#: A fake key, assembled so that no secret scanner mistakes the test for a leak.
PEM_KIND = "PRIVATE " + "KEY"


def test_repeated_failures_are_detected_with_a_safe_short_error(seeded, warehouse_config):
    secret_error = (
        "RefreshError: could not connect to postgresql://glific:s3cr3t-pw@db.internal/glific with "
        f'{{"private_{""}key": "-----BEGIN {PEM_KIND}-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END {PEM_KIND}-----"}} '
        "token=ya29.a0AfH6SMBx3Yq8Zz " + "x" * 1000
    )
    fail(seeded, 2, "contacts", 2, secret_error)
    assert alerts.find_problems(seeded, TABLES, destinations(seeded, warehouse_config)) == []  # two failures: not yet an incident
    assert kinds(alerts.find_problems(seeded, TABLES, destinations(seeded, warehouse_config), failures_after=2)) == [(2, "contacts", "failing")]

    fall_behind(seeded, 2, "contacts", last_moved=timedelta(hours=1))  # failing and behind: the failure says why
    fail(seeded, 2, "contacts", 1, secret_error)
    (problem,) = alerts.find_problems(seeded, TABLES, destinations(seeded, warehouse_config))

    assert (problem.organization_id, problem.table, problem.kind) == (2, "contacts", "failing")
    assert problem.detail.startswith("3 consecutive failed syncs")
    error = problem.detail.split("Last error: ", 1)[1]
    assert error.startswith("RefreshError") and len(error) <= alerts.MAX_ERROR_CHARS
    for secret in ("s3cr3t", "MIIEvQ", "ya29", "BEGIN PRIVATE"):
        assert secret not in problem.detail


def test_a_stall_does_not_clear_while_a_failed_pair_is_held_back(seeded, warehouse_config):
    fall_behind(seeded, 1, "messages", last_moved=timedelta(hours=1))
    fail(seeded, 1, "messages", 1)  # backoff: the planner skips the pair for a minute
    assert plan.dirty(seeded, TABLES, destinations(seeded, warehouse_config)) == {}
    assert kinds(alerts.find_problems(seeded, TABLES, destinations(seeded, warehouse_config))) == [(1, "messages", "stalled")]


def test_backoff_doubles_with_each_consecutive_failure_up_to_an_hour(seeded, warehouse_config):
    """A pair that failed ``n`` times in a row waits 1, 2, 4 … minutes, never more than 60, after
    its last failure before the planner tries it again (the clock: ``last_failed_at``, set back)."""
    tenants = destinations(seeded, warehouse_config)
    fall_behind(seeded, 1, "messages", last_moved=timedelta(minutes=1))  # rows waiting

    def retried(failures: int, minutes_ago: float) -> bool:
        seeded.execute('UPDATE glific_bq_watermarks SET failures = %s, last_failed_at = now() - %s '
                       "WHERE organization_id = 1 AND \"table\" = 'messages'",
                       (failures, timedelta(minutes=minutes_ago)))
        return 1 in plan.dirty_organizations(seeded, MESSAGES, tenants)

    for failures, wait in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 32), (7, 60), (8, 60), (20, 60)]:
        assert not retried(failures, wait - 0.1), (failures, wait)
        assert retried(failures, wait + 0.1), (failures, wait)


def test_a_transaction_left_open_stalls_the_update_cursor_and_is_alerted_while_inserts_flow(
        db, database_url, warehouse_config):
    """A real transaction left open holds the update cursor back (``horizon``); the rows changed
    meanwhile wait, while new rows keep being inserted (``table_id`` moves at every sync). Those
    inserts must not hide the stall: the alert fires, and clears once the transaction ends.
    Time passing is simulated by setting the watermark's ``advanced_at`` back; no sync waits for
    a clock (``horizon_seconds=0``: the margin is not what is tested here)."""
    from glific_bq.source import Source
    from glific_bq.sync import SyncOptions, sync_table
    from glific_bq.warehouse import Warehouse

    from .helpers import NOTES_DDL, add_notes, add_organization, destination_of

    db.execute(NOTES_DDL)
    notes, no_margin = TableSpec("notes"), SyncOptions(horizon_seconds=0)
    org = add_organization(db)
    ids = add_notes(db, org, ["a", "b", "c"])
    tenants = {org.id: destination_of(warehouse_config, org)}
    stamped_now = "now() AT TIME ZONE 'UTC'"

    def problems() -> list[tuple[int, str, str]]:
        return kinds(alerts.find_problems(db, [notes], tenants, horizon_seconds=0))

    def ten_minutes_pass() -> None:
        db.execute("UPDATE glific_bq_watermarks SET advanced_at = advanced_at - interval '11 minutes'")

    with Source(database_url) as source, Warehouse(warehouse_config, org) as warehouse, \
            psycopg.connect(database_url) as held:
        sync_table(source, warehouse, org, notes)
        held.execute("UPDATE notes SET body = 'held' WHERE id = %s", (ids[0],))  # and left open
        db.execute(f"UPDATE notes SET body = 'changed', updated_at = {stamped_now} WHERE id = %s", (ids[1],))
        assert sync_table(source, warehouse, org, notes, no_margin).updated == 0  # held back
        for _ in range(2):  # inserts keep flowing
            ten_minutes_pass()
            before = watermarks.get(db, org.id, "notes")
            db.execute(f"INSERT INTO notes (organization_id, body, inserted_at, updated_at) "
                       f"VALUES (%s, 'new', {stamped_now}, {stamped_now})", (org.id,))
            sent = sync_table(source, warehouse, org, notes, no_margin)
            after = watermarks.get(db, org.id, "notes")
            assert (sent.inserted, sent.updated) == (1, 0) and after.table_id > before.table_id
            assert (after.cursor, after.advanced_at) == (before.cursor, before.advanced_at)

        assert problems() == [(org.id, "notes", "stalled")]

        held.commit()
        assert sync_table(source, warehouse, org, notes, no_margin).updated >= 2
        assert problems() == []

# -- incidents (pure) --------------------------------------------------------------------------------------


def test_diff_opens_once_keeps_open_and_resolves_once():
    stalled = alerts.Problem(1, "messages", "stalled", "rows waiting")
    failing = alerts.Problem(1, "messages", "failing", "3 consecutive failed syncs")

    new, resolved, still = alerts.diff({}, [stalled])
    assert list(new) == ["1/messages/stalled"] and not resolved and not still
    assert new["1/messages/stalled"]["notified"] is False
    json.dumps(new)  # the state is JSON

    opened = {key: {**incident, "notified": True} for key, incident in new.items()}
    new, resolved, still = alerts.diff(opened, [alerts.Problem(1, "messages", "stalled", "rows waiting, longer")])
    assert not new and not resolved and still["1/messages/stalled"]["notified"] is True
    assert still["1/messages/stalled"]["detail"] == "rows waiting, longer"

    new, resolved, still = alerts.diff(still, [failing])  # the same pair, now failing: superseded
    assert list(new) == ["1/messages/failing"] and not resolved and not still

    new, resolved, still = alerts.diff(new, [])
    assert list(resolved) == ["1/messages/failing"] and resolved["1/messages/failing"]["resolved_at"]
    assert alerts.diff({}, []) == ({}, {}, {})


# -- the sensor ----------------------------------------------------------------------------------------------


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/services/T000/B000/SECRETPART"


@pytest.fixture
def alert_env(monkeypatch):
    for var in (alerts.WEBHOOK_URL_ENV, alerts.STALL_MINUTES_ENV, alerts.FAILURES_ENV):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelname, record.getMessage()))


class Sensor:
    """Evaluates ``stalled_watermarks`` tick after tick, passing the cursor on as the daemon does,
    and applying what it returns to the instance (observations, partitions)."""

    def __init__(self, instance: dg.DagsterInstance, database_url: str, warehouse_config) -> None:
        self.instance = instance
        self.resources = {"postgres": GlificPostgres(database_url=database_url),
                          "bigquery": bigquery_resource(warehouse_config)}
        self.cursor: str | None = None
        self.logs = Records()

    def tick(self):
        with dg.build_sensor_context(instance=self.instance, resources=self.resources, cursor=self.cursor) as context:
            context.log.addHandler(self.logs)
            result = stalled_watermarks(context)
            self.cursor = result.cursor if isinstance(result, dg.SensorResult) else context.cursor
        if isinstance(result, dg.SensorResult):
            for event in result.asset_events:
                self.instance.report_runless_asset_event(event)
            for request in result.dynamic_partitions_requests or []:
                self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return result

    def time_passes(self, waited: timedelta) -> None:
        """As if the last evaluation was a minute ago and the waiting rows were first seen
        ``waited`` ago (the database side is aged by hand, in ``advanced_at``)."""
        state = json.loads(self.cursor)

        def earlier(iso: str, by: timedelta) -> str:
            return (datetime.fromisoformat(iso) - by).isoformat()

        state["at"] = earlier(state["at"], timedelta(minutes=1))
        state["waiting"] = {t: {o: earlier(s, waited) for o, s in orgs.items()} for t, orgs in state["waiting"].items()}
        self.cursor = json.dumps(state)

    def state(self) -> dict:
        return json.loads(self.cursor)


def observations(instance, name: str) -> list[dg.AssetObservation]:
    records = instance.fetch_observations(dg.AssetKey(["bigquery", name]), limit=100).records
    return [r.asset_observation for r in reversed(records)]


def test_one_alert_per_incident_and_one_recovery(seeded, database_url, webhook, alert_env, warehouse_config):
    alert_env.setenv(alerts.WEBHOOK_URL_ENV, webhook.url)
    fall_behind(seeded, 1, "messages", last_moved=timedelta(hours=1))
    with dg.instance_for_test() as instance:
        sensor = Sensor(instance, database_url, warehouse_config)

        # The rows just started waiting (an idle tenant's watermark is old): not a stall yet.
        assert isinstance(sensor.tick(), dg.SkipReason)
        assert webhook.posts == []

        sensor.time_passes(timedelta(minutes=11))
        opened = sensor.tick()
        assert isinstance(opened, dg.SensorResult)
        assert [(e.asset_key.path, e.partition, e.metadata["status"].value, e.metadata["kind"].value) for e in opened.asset_events] == [
            (["bigquery", "messages"], "1", "open", "stalled")
        ]
        # The test instance has no tenant partitions: the sensor registers the one it reports on.
        assert [r.partition_keys for r in opened.dynamic_partitions_requests] == [["1"]]
        assert "1" in instance.get_dynamic_partitions(tenants.name)
        (text,) = webhook.texts
        assert "organization 1 (" in text and "table `messages` has STALLED" in text
        assert "rows waiting to sync since" in text
        assert "What to do" in text and "glific-bq sync --organization 1 --table messages" in text
        assert webhook.posts[0]["path"] == "/services/T000/B000/SECRETPART"
        assert webhook.posts[0]["content_type"] == "application/json"
        assert [level for level, message in sensor.logs.records if "has STALLED" in message] == ["ERROR"]

        for _ in range(3):  # still stalled: no new alert, no new observation
            sensor.time_passes(timedelta(minutes=1))
            assert isinstance(sensor.tick(), dg.SkipReason)
        assert len(webhook.posts) == 1
        assert list(sensor.state()["incidents"]) == ["1/messages/stalled"]

        catch_up(seeded, destinations(seeded, warehouse_config), (MESSAGES,))
        cleared = sensor.tick()
        assert isinstance(cleared, dg.SensorResult)
        assert [(e.partition, e.metadata["status"].value) for e in cleared.asset_events] == [("1", "resolved")]
        assert not cleared.dynamic_partitions_requests  # registered at the alert
        assert len(webhook.posts) == 2 and "RESOLVED: organization 1 (" in webhook.texts[1]
        assert "table `messages` is syncing again (was stalled since" in webhook.texts[1]
        assert [level for level, message in sensor.logs.records if "RESOLVED" in message] == ["INFO"]

        assert isinstance(sensor.tick(), dg.SkipReason)
        assert len(webhook.posts) == 2 and sensor.state()["incidents"] == {} and sensor.state()["recoveries"] == []

        # What the UI shows: both events on the tenant's partition of bigquery/messages.
        shown = observations(instance, "messages")
        assert [(o.partition, o.metadata["status"].value) for o in shown] == [("1", "open"), ("1", "resolved")]


def test_webhook_down_does_not_crash_the_sensor_and_is_retried(seeded, database_url, webhook, alert_env, warehouse_config):
    alert_env.setenv(alerts.WEBHOOK_URL_ENV, closed_port_url())
    fail(seeded, 2, "contacts", 3)
    with dg.instance_for_test() as instance:
        sensor = Sensor(instance, database_url, warehouse_config)

        first = sensor.tick()  # connection refused
        assert isinstance(first, dg.SensorResult) and len(first.asset_events) == 1
        assert "webhook failed" in first.skip_reason.skip_message
        assert sensor.state()["incidents"]["2/contacts/failing"]["notified"] is False
        warnings = [message for level, message in sensor.logs.records if level == "WARNING"]
        assert len(warnings) == 1 and "retrying at the next evaluation" in warnings[0]
        assert "SECRETPART" not in warnings[0]  # the webhook's secret path is never logged

        second = sensor.tick()  # still down: no new incident, still to deliver
        assert isinstance(second, dg.SkipReason) and "to retry" in second.skip_message
        assert sensor.state()["incidents"]["2/contacts/failing"]["notified"] is False

        alert_env.setenv(alerts.WEBHOOK_URL_ENV, webhook.url)  # back up
        third = sensor.tick()
        assert isinstance(third, dg.SkipReason) and "delivered 1 alert(s)" in third.skip_message
        (text,) = webhook.texts
        assert "organization 2 (" in text and "table `contacts` is FAILING: 3 consecutive failed syncs" in text
        assert "Last error: Forbidden: 403 Access Denied" in text
        assert sensor.state()["incidents"]["2/contacts/failing"]["notified"] is True

        assert isinstance(sensor.tick(), dg.SkipReason)
        assert len(webhook.posts) == 1  # delivered once


def test_without_a_webhook_incidents_are_only_logged_and_observed(seeded, database_url, alert_env, warehouse_config):
    fail(seeded, 1, "flows", 5)
    with dg.instance_for_test() as instance:
        sensor = Sensor(instance, database_url, warehouse_config)
        assert isinstance(sensor.tick(), dg.SensorResult)
        assert sensor.state()["incidents"]["1/flows/failing"]["notified"] is True  # nothing to retry
        assert isinstance(sensor.tick(), dg.SkipReason)


# -- the webhook and settings -----------------------------------------------------------------------------------


def test_post_webhook_sends_slack_json_and_fails_clearly(webhook):
    alerts.post_webhook(webhook.url, "org 1: <!channel> & co")
    assert webhook.posts[-1]["json"] == {"text": "org 1: &lt;!channel&gt; &amp; co"}  # no mention can fire

    webhook.status = 500
    with pytest.raises(alerts.WebhookError, match=r"at 127\.0\.0\.1 answered HTTP 500: no_service") as refused:
        alerts.post_webhook(webhook.url, "x")
    assert "SECRETPART" not in str(refused.value)
    with pytest.raises(alerts.WebhookError, match="unreachable") as down:
        alerts.post_webhook(closed_port_url(), "x", timeout=2)
    assert "SECRETPART" not in str(down.value)
    with pytest.raises(alerts.WebhookError, match="http"):
        alerts.post_webhook("file:///etc/passwd", "x")


def test_settings_from_the_environment():
    assert alerts.AlertSettings.from_env({}) == alerts.AlertSettings(None, timedelta(minutes=10), 3)
    settings = alerts.AlertSettings.from_env({
        alerts.WEBHOOK_URL_ENV: "https://hooks.slack.com/services/x", alerts.STALL_MINUTES_ENV: "30", alerts.FAILURES_ENV: "5",
    })
    assert settings == alerts.AlertSettings("https://hooks.slack.com/services/x", timedelta(minutes=30), 5)
    with pytest.raises(ValueError, match=alerts.FAILURES_ENV):
        alerts.AlertSettings.from_env({alerts.FAILURES_ENV: "three"})


def test_caught_up_tenants_raise_no_alert_however_long_they_idle(seeded, database_url, webhook, alert_env, warehouse_config):
    alert_env.setenv(alerts.WEBHOOK_URL_ENV, webhook.url)
    with dg.instance_for_test() as instance:
        sensor = Sensor(instance, database_url, warehouse_config)

        assert isinstance(sensor.tick(), dg.SkipReason)
        sensor.time_passes(timedelta(hours=6))
        assert isinstance(sensor.tick(), dg.SkipReason)
        assert observations(instance, "messages") == []

    assert webhook.posts == []
