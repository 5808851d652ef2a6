"""Retention of old tick runs (glific_bq.defs.retention), against a real Dagster instance on
SQLite storage: materializations come from real runs of small jobs, and the clock is injected
(a pass "20 days later") instead of waiting."""

import os
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.storage.runs.schema import RunsTable

from glific_bq.defs.retention import (
    FAILED_RETENTION_DAYS_ENV,
    RETENTION_DAYS_ENV,
    RetentionPolicy,
    latest_materialization_runs,
    prune_runs,
    retention_job,
)

MESSAGES = dg.AssetKey(["bigquery", "messages"])
CONTACTS = dg.AssetKey(["bigquery", "contacts"])


class Synced(dg.Config):
    partitions: list[str]
    tables: list[str] = ["messages"]
    fail: bool = False


@dg.op(out={})
def record_syncs(context: dg.OpExecutionContext, config: Synced):
    """What the tick's op does per synced pair: one materialization of bigquery/<table> per tenant."""
    for table in config.tables:
        for partition in config.partitions:
            context.log_event(dg.AssetMaterialization(asset_key=["bigquery", table], partition=partition,
                                                      metadata={"rows_inserted": 1}))
    print("synced")  # captured: the run's compute logs go with it
    if config.fail:
        raise dg.Failure("one tenant-table failed")


@dg.job(name="sync_job")
def tick_like_job():
    record_syncs()


@dg.job(name="resync_job")
def hand_started_job():
    record_syncs()


@pytest.fixture
def instance(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        yield instance


def run(instance, job=tick_like_job, **config) -> str:
    result = job.execute_in_process(instance=instance, raise_on_error=False,
                                    run_config={"ops": {"record_syncs": {"config": config}}})
    return result.run_id


def later(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def exists(instance, run_id: str) -> bool:
    return instance.get_run_record_by_id(run_id) is not None


def test_old_runs_are_deleted_with_their_events_and_files(instance):
    old = run(instance, partitions=["1", "2"])
    new = run(instance, partitions=["1", "2"])
    assert prune_runs(instance, RetentionPolicy(), now=later(1)).deleted == []  # young: kept

    pruned = prune_runs(instance, RetentionPolicy(), now=later(20))

    assert pruned.deleted == [old]
    assert not exists(instance, old) and exists(instance, new)
    assert [r.run_id for r in instance.fetch_materializations(MESSAGES, limit=10).records] == [new, new]
    assert not os.path.exists(instance.event_log_storage.path_for_shard(old))  # SQLite: the run's own events
    assert not os.path.exists(os.path.join(instance.root_directory, "storage", old))  # compute logs
    assert os.path.exists(os.path.join(instance.root_directory, "storage", new))


def test_a_run_holding_the_latest_materialization_of_a_partition_is_kept(instance):
    both = run(instance, partitions=["1", "2"], tables=["messages", "contacts"])
    run(instance, partitions=["1"], tables=["messages", "contacts"])
    run(instance, partitions=["2"], tables=["messages"])  # contacts of 2: still `both`'s

    assert prune_runs(instance, RetentionPolicy(), now=later(20)).deleted == []
    assert exists(instance, both)
    assert instance.get_materialized_partitions(CONTACTS) == {"1", "2"}
    latest = instance.event_log_storage.get_latest_storage_id_by_partition(
        CONTACTS, dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert {r.run_id for r in instance.fetch_materializations(
        dg.AssetRecordsFilter(CONTACTS, storage_ids=[latest["2"]]), limit=1).records} == {both}

    run(instance, partitions=["2"], tables=["contacts"])  # now superseded everywhere
    assert prune_runs(instance, RetentionPolicy(), now=later(20)).deleted == [both]


def test_failed_runs_are_kept_for_their_own_age(instance):
    failed = run(instance, partitions=["1"], fail=True)
    assert instance.get_run_record_by_id(failed).dagster_run.status == dg.DagsterRunStatus.FAILURE
    succeeded = run(instance, partitions=["1"])
    policy = RetentionPolicy(keep_days=14, keep_failed_days=30)

    assert prune_runs(instance, policy, now=later(20)).deleted == []
    assert prune_runs(instance, policy, now=later(31)).deleted == [failed]
    assert exists(instance, succeeded)


def test_runs_of_other_jobs_are_untouched_unless_named(instance):
    hand = run(instance, hand_started_job, partitions=["1"])
    run(instance, partitions=["1"])

    assert prune_runs(instance, RetentionPolicy(), now=later(60)).deleted == []
    assert exists(instance, hand)
    assert prune_runs(instance, RetentionPolicy(jobs=("sync_job", "resync_job")), now=later(60)).deleted == [hand]


def test_a_second_pass_finds_nothing(instance):
    for _ in range(3):
        run(instance, partitions=["1", "2"])
    first = prune_runs(instance, RetentionPolicy(), now=later(20))
    assert len(first.deleted) == 2 and not first.more

    assert prune_runs(instance, RetentionPolicy(), now=later(20)).deleted == []


def test_a_pass_deletes_at_most_max_runs_oldest_first(instance):
    runs = [run(instance, partitions=["1"]) for _ in range(4)]
    policy = RetentionPolicy(max_runs=2)

    first = prune_runs(instance, policy, now=later(20))
    assert first.deleted == runs[:2] and first.more
    second = prune_runs(instance, policy, now=later(20))
    assert second.deleted == [runs[2]] and not second.more and second.kept_as_latest == 1


def test_the_latest_holders_are_found_in_a_few_queries_per_asset(instance):
    run(instance, partitions=[str(p) for p in range(40)], tables=["messages", "contacts"])
    last = run(instance, partitions=[str(p) for p in range(20)], tables=["messages", "contacts"])
    queries = []
    storage = instance.event_log_storage
    original = storage.get_latest_storage_id_by_partition

    def counted(*args, **kwargs):
        queries.append(args)
        return original(*args, **kwargs)

    storage.get_latest_storage_id_by_partition = counted
    holders = latest_materialization_runs(instance)
    assert len(holders) == 2 and last in holders
    assert len(queries) == 2  # one per asset key, whatever the number of partitions


def test_the_job_prunes_with_its_config_over_the_environment(instance, monkeypatch):
    old = run(instance, partitions=["1"])
    run(instance, partitions=["1"])
    monkeypatch.setenv(RETENTION_DAYS_ENV, "2")
    with instance.run_storage.connect() as conn:  # both runs made 3 days ago, in the storage itself
        conn.execute(RunsTable.update().values(create_timestamp=datetime.now() - timedelta(days=3)))

    config = {"ops": {"delete_expired_runs": {"config": {"keep_days": 5}}}}
    assert retention_job.execute_in_process(instance=instance, run_config=config).success
    assert exists(instance, old)  # 5 days from the run config win over 2 from the environment
    assert retention_job.execute_in_process(instance=instance).success
    assert not exists(instance, old)


def test_the_policy_reads_the_environment_and_refuses_nonsense():
    assert RetentionPolicy.from_env({}) == RetentionPolicy(keep_days=14, keep_failed_days=30)
    policy = RetentionPolicy.from_env({RETENTION_DAYS_ENV: "7", FAILED_RETENTION_DAYS_ENV: "90"}, max_runs=10)
    assert (policy.keep_days, policy.keep_failed_days, policy.max_runs) == (7, 90, 10)
    with pytest.raises(ValueError, match=RETENTION_DAYS_ENV):
        RetentionPolicy.from_env({RETENTION_DAYS_ENV: "two weeks"})
    with pytest.raises(ValueError, match="at least a day"):
        RetentionPolicy(keep_days=0)


def test_the_job_and_its_daily_schedule_are_registered(monkeypatch):
    monkeypatch.setenv("GLIFIC_DATABASE_URL", "postgresql://nowhere/none")
    monkeypatch.setenv("GLIFIC_BQ_PROJECT", "some-project")
    from glific_bq.definitions import defs

    assert defs.resolve_job_def("retention_job")
    schedule = defs.resolve_schedule_def("retention_daily")
    assert schedule.job_name == "retention_job" and schedule.cron_schedule == "20 4 * * *"
