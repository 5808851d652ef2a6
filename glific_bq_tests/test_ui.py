"""The Dagster UI over the real stack, as the demo runs it.

Embedded PostgreSQL with sample data (3 organizations), the BigQuery emulator and ``dagster dev``
as a subprocess; we wait until the ``sync_every_minute`` schedule's first tick has run ``sync_job``
successfully, then look at the UI in headless Chromium (driven by Playwright, using the system's
Chromium): the catalog lists every ``bigquery/<table>`` and ``postgres/<table>`` asset, the schedule
and the sensor are switched on, ``bigquery/messages`` sits downstream of ``postgres/messages`` with
all partitions filled, and tenants ``1``, ``2`` and ``3`` are materialized. The webserver's GraphQL
API and the emulator are checked too, so a failure says whether the data or the page is wrong.

Screenshots and the ``dagster dev`` log are written to ``artifacts/ui/`` (git-ignored).

The run comes from the schedule itself, not from a ``launchRun`` of ours: it is what proves the
schedule and the daemon work, and costs at most one minute of waiting (the cron fires on the
minute). Without a Chromium binary the test is skipped, except under ``CI=true``, where CI is
expected to have installed one (``.ci/run``) and a missing browser is an error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from glific_bq import watermarks
from glific_bq.local.sample_data import DEMO_CIPHER_KEY, create_schema, enable_bigquery, seed
from glific_bq.registry import TABLES
from glific_bq.tenants import get_organization
from glific_bq.warehouse import Warehouse, WarehouseConfig

from .helpers import warehouse_rows

pytestmark = pytest.mark.ui

PROJECT = Path(__file__).resolve().parents[1]
ARTIFACTS = PROJECT / "artifacts" / "ui"
LOCATION = "glific_bq.definitions"  # the code location workspace.yaml defines
ORGANIZATIONS = 3  # the first two turn BigQuery on, the third turns it off again (enable_bigquery)
TENANTS = ["1", "2"]
MESSAGES_PER_TENANT = 100
STARTUP_DEADLINE_S = 90  # dagster dev answering with the code location loaded
SYNC_DEADLINE_S = 150  # from starting dagster dev to a successful scheduled sync_job run
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Sanitized environment: whatever points the developer's shell at real projects is dropped.
INHERITED_PREFIXES = ("GLIFIC_", "BIGQUERY_", "DAGSTER_", "GOOGLE_APPLICATION_CREDENTIALS")

# `dagster dev` maps SIGTERM to its SIGINT handler. A process started with SIGINT ignored (a
# background job of a non-interactive shell, as some CI runners start the tests) would then
# ignore SIGTERM too; restore SIGINT's default handler first, then run `python -m dagster`.
DAGSTER_MAIN = (
    "import runpy, signal, sys; "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'dagster'; "
    "runpy.run_module('dagster', run_name='__main__', alter_sys=True)"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def find_chromium() -> str | None:
    """``$CHROMIUM`` if set, else the first Chromium-like binary on ``PATH``."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="session")  # session: checked before the session's servers start
def chromium() -> str:
    path = find_chromium()
    if path is None:
        reason = (
            f"no Chromium binary found (looked for $CHROMIUM, then {', '.join(CHROMIUM_NAMES)} on PATH); "
            "install one, e.g. `apt-get install chromium`"
        )
        if in_ci():
            pytest.fail(f"CI=true but {reason}: .ci/run should have installed it", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture
def artifacts() -> Path:
    """``artifacts/ui/``, emptied so that no screenshot of an earlier run passes for this one."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture
def glific_url(database_url) -> str:
    """A fresh database with Glific's schema, the watermark table, a small sample and the demo's
    BigQuery settings (two organizations synced into their own projects, one switched off)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_schema(conn)
        watermarks.ensure_table(conn)
        seed(conn, organizations=ORGANIZATIONS, messages_per_org=MESSAGES_PER_TENANT, contacts_per_org=30)
        assert sorted(map(str, enable_bigquery(conn))) == TENANTS
    return database_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DagsterDev:
    url: str
    process: subprocess.Popen
    log: Path
    started: float  # time.monotonic() at launch
    warehouse: WarehouseConfig

    def graphql(self, query: str, **variables: object) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        if answer.get("errors"):
            raise AssertionError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"dagster dev exited with {self.process.returncode}; see {self.log}\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The end of the ``dagster dev`` log, without the beta warnings every process repeats."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        noise = ("BetaWarning", "return fn(*args, **kwargs)")
        kept = [line for line in text.splitlines() if line.strip() and not any(n in line for n in noise)]
        return "\n".join(kept[-lines:])


def stop_process_group(process: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM the process group: ``dagster dev`` shuts down its webserver, daemon, code server and
    any run in flight (none of them leaves the group). Whatever is left after ``grace`` seconds,
    including orphans of the group, gets SIGKILL."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the whole group is gone: the clean path
    process.wait(10)


@pytest.fixture
def dagster_dev(glific_url, bigquery_emulator, tmp_path, artifacts) -> Iterator[DagsterDev]:
    """``dagster dev`` on a free port, over a temporary DAGSTER_HOME holding the repo's dagster.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    dataset_template = f"ui{uuid.uuid4().hex[:8]}_{{phone}}"  # the emulator is shared by the session
    env = {k: v for k, v in os.environ.items() if not k.startswith(INHERITED_PREFIXES)}
    env.update(
        bigquery_emulator.environment(),  # GLIFIC_BQ_PROJECT, BIGQUERY_EMULATOR_HOST, BIGQUERY_STORAGE_EMULATOR_HOST
        GLIFIC_DATABASE_URL=glific_url,
        GLIFIC_BQ_DATASET_TEMPLATE=dataset_template,
        CIPHER_KEY=DEMO_CIPHER_KEY,  # Glific's own variable: the keys come from its credentials table
        DAGSTER_HOME=str(home),
    )
    port = free_port()
    log = artifacts / "dagster-dev.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-c", DAGSTER_MAIN, "dev", "-w", str(PROJECT / "workspace.yaml"),
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, stopped as one
        )
    dev = DagsterDev(
        url=f"http://127.0.0.1:{port}",
        process=process,
        log=log,
        started=time.monotonic(),
        warehouse=WarehouseConfig(
            project=bigquery_emulator.project,
            dataset_template=dataset_template,
            emulator_host=bigquery_emulator.rest_url,
            storage_emulator_host=bigquery_emulator.grpc_endpoint,
            cipher_key=DEMO_CIPHER_KEY,
        ),
    )
    try:
        wait_until_loaded(dev)
        yield dev
    finally:
        stop_process_group(process)


REPOSITORIES = """
{ repositoriesOrError {
    __typename
    ... on PythonError { message }
    ... on RepositoryConnection { nodes {
        name location { name }
        schedules { name scheduleState { status } }
        sensors { name sensorState { status } }
    } }
} }
"""


def automation_status(dev: DagsterDev) -> dict[str, str]:
    """``{schedule or sensor name: status}`` across the loaded repositories."""
    answer = dev.graphql(REPOSITORIES)["repositoriesOrError"]
    if answer["__typename"] != "RepositoryConnection":
        raise AssertionError(f"repositories failed to load: {answer}")
    status = {}
    for repository in answer["nodes"]:
        status |= {s["name"]: s["scheduleState"]["status"] for s in repository["schedules"]}
        status |= {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
    return status


def wait_until_loaded(dev: DagsterDev) -> None:
    """Until the webserver answers and has loaded our code location (its schedule is listed)."""
    last_error: object = None
    while time.monotonic() - dev.started < STARTUP_DEADLINE_S:
        dev.check_alive()
        try:
            if "sync_every_minute" in automation_status(dev):
                return
        except (urllib.error.URLError, ConnectionError, AssertionError, TimeoutError) as error:
            last_error = error
        time.sleep(1)
    pytest.fail(f"dagster dev did not load {LOCATION} within {STARTUP_DEADLINE_S}s "
                f"(last error: {last_error}); see {dev.log}\n{dev.log_tail()}")


SCHEDULED_RUNS = """
query ($tags: [ExecutionTag!]) {
  runsOrError(filter: {pipelineName: "sync_job", tags: $tags}) {
    __typename
    ... on Runs { results { runId status startTime endTime tags { key value } } }
    ... on PythonError { message }
  }
}
"""


def wait_for_scheduled_sync(dev: DagsterDev) -> dict:
    """The first ``sync_job`` run launched by ``sync_every_minute``, once it succeeded."""
    tags = [{"key": "dagster/schedule_name", "value": "sync_every_minute"}]
    runs: list[dict] = []
    while time.monotonic() - dev.started < SYNC_DEADLINE_S:
        dev.check_alive()
        answer = dev.graphql(SCHEDULED_RUNS, tags=tags)["runsOrError"]
        runs = answer.get("results", [])
        for run in runs:
            if run["status"] == "SUCCESS":
                return run
            if run["status"] in ("FAILURE", "CANCELED"):
                pytest.fail(f"scheduled sync_job run {run['runId']} ended {run['status']}; "
                            f"see {dev.url}/runs/{run['runId']} and {dev.log}\n{dev.log_tail()}")
        time.sleep(2)
    pytest.fail(f"no successful scheduled sync_job run within {SYNC_DEADLINE_S}s of starting dagster dev "
                f"(runs so far: {runs}); see {dev.log}\n{dev.log_tail()}")


ASSETS = """
{ assetNodes {
    assetKey { path }
    assetPartitionStatuses {
      __typename
      ... on DefaultPartitionStatuses { materializedPartitions failedPartitions materializingPartitions }
    }
} }
"""


def check_api(dev: DagsterDev) -> int:
    """What the pages should show, read from the webserver's GraphQL API; returns the number of
    assets (the catalog's rows)."""
    status = automation_status(dev)
    assert status.get("sync_every_minute") == "RUNNING", status
    assert status.get("tenant_discovery") == "RUNNING", status

    nodes = {"/".join(n["assetKey"]["path"]): n for n in dev.graphql(ASSETS)["assetNodes"]}
    for spec in TABLES:
        assert f"postgres/{spec.name}" in nodes, sorted(nodes)
        partitions = nodes[f"bigquery/{spec.name}"]["assetPartitionStatuses"]
        assert sorted(partitions["materializedPartitions"], key=int) == TENANTS, (spec.name, partitions)
        assert partitions["failedPartitions"] == [], (spec.name, partitions)
    return len(nodes)


def check_bigquery(dev: DagsterDev, database_url: str) -> None:
    """Every tenant's messages arrived in its own dataset of its own project (its key's), and the
    organization that switched BigQuery off has no dataset anywhere."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        organizations = [get_organization(conn, int(key)) for key in TENANTS]
    for organization in organizations:
        warehouse = Warehouse(dev.warehouse, organization)
        try:
            rows = warehouse_rows(warehouse, "messages")
        finally:
            warehouse.close()
        assert len(rows) == MESSAGES_PER_TENANT, (organization.id, len(rows))
        # Glific's layout: a dataset per bot number, rows carrying their contacts' phones.
        assert warehouse.dataset.endswith(organization.phone)
        assert warehouse.dataset_ref.startswith(f"{organization.shortcode}-analytics."), warehouse.dataset_ref
        with psycopg.connect(database_url, autocommit=True) as conn:
            phones = {p for (p,) in conn.execute("SELECT phone FROM contacts WHERE organization_id = %s",
                                                 (organization.id,))}
        assert {row["contact_phone"] for row in rows} <= phones


def dismiss_community_modal(page) -> bool:
    """A fresh instance greets its first visitor with "Join the Dagster community" (after a
    second's delay): skip it as a user would, so that it covers neither checks nor screenshots.
    Should it come up later anyway, Playwright skips it before the next check."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    skip = page.get_by_role("button", name="Skip", exact=True)
    try:
        skip.wait_for(state="visible", timeout=10_000)
        shown = True
    except PlaywrightTimeout:
        shown = False  # not shown (already dismissed on this instance)
    else:
        skip.click()
        skip.wait_for(state="hidden")
    # Registered only now: a handler clicks as soon as the button appears, even during wait_for.
    page.add_locator_handler(skip, lambda button: button.click())
    return shown


def test_ui_shows_the_minute_sync(chromium, dagster_dev, glific_url, artifacts, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    run = wait_for_scheduled_sync(dagster_dev)
    synced_after = time.monotonic() - dagster_dev.started
    assets = check_api(dagster_dev)
    check_bigquery(dagster_dev, glific_url)

    url = dagster_dev.url
    with sync_playwright() as playwright:
        # A persistent context on a new, empty profile directory: no state from any earlier run.
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000},
        )
        page = context.new_page()
        page.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)
        try:
            # Catalog: every synced table and its PostgreSQL source. A window tall enough for the
            # virtualized list to render every row (64 px each).
            page.set_viewport_size({"width": 1600, "height": max(1000, 200 + 64 * assets)})
            page.goto(f"{url}/assets")
            modal = dismiss_community_modal(page)
            for spec in TABLES:
                for group in ("bigquery", "postgres"):
                    expect(page.locator(f'a[href="/assets/{group}/{spec.name}"]')).to_be_visible()
            page.screenshot(path=artifacts / "catalog.png", full_page=True)
            page.set_viewport_size({"width": 1600, "height": 1000})

            # Automation: the schedule and the sensor are switched on.
            page.goto(f"{url}/automation")
            for name, kind in (("sync_every_minute", "Every minute"), ("tenant_discovery", "sensor")):
                row = page.locator("[data-index]").filter(has_text=name)
                expect(row).to_have_count(1)
                expect(row).to_contain_text(kind)
                expect(row.get_by_role("checkbox").last).to_be_checked()  # the on/off switch
            page.screenshot(path=artifacts / "automation.png")

            # Lineage of bigquery/messages: postgres/messages upstream, the report views downstream,
            # every partition filled.
            page.goto(f"{url}/assets/bigquery/messages?view=lineage")
            groups = page.locator("foreignObject").filter(has_not_text="Latest event")
            nodes = page.locator("foreignObject").filter(has_text="Latest event")  # asset nodes
            expect(groups.filter(has_text="postgres")).to_have_count(1)
            expect(groups.filter(has_text="bigquery")).to_have_count(1)
            expect(groups.filter(has_text="reports")).to_have_count(1)
            source = nodes.filter(has_text="Postgres")  # its kind tag
            expect(source).to_have_count(1)
            target = nodes.filter(has_text="BigQuery").filter(has_text=re.compile(r"^\s*messages\s*Latest event"))
            expect(target).to_have_count(1)
            expect(source).to_contain_text("messages")
            expect(target).to_contain_text("messages")
            expect(target).to_contain_text("100% filled")
            expect(target).to_contain_text(f"{len(TENANTS)} partitions")
            expect(page.get_by_text("Loading...")).to_have_count(0)
            page.screenshot(path=artifacts / "lineage-bigquery-messages.png")

            # Partitions of bigquery/messages: all three tenants materialized, each in its dataset.
            for key in reversed(TENANTS):  # tenant 1 last: its page is the screenshot
                page.goto(f"{url}/assets/bigquery/messages?view=partitions&partition={key}")
                expect(page.get_by_text(f"Materialized ({len(TENANTS)})")).to_be_visible()
                expect(page.get_by_text("Missing (0)")).to_be_visible()
                expect(page.get_by_text("Failed (0)")).to_be_visible()
                expect(page.get_by_text("Materialized", exact=True)).to_be_visible()  # this tenant's tag
                with psycopg.connect(glific_url, autocommit=True) as conn:
                    organization = get_organization(conn, int(key))
                dataset = dagster_dev.warehouse.dataset_for(organization)
                expect(page.get_by_text(f"{organization.shortcode}-analytics.{dataset}", exact=True)).to_be_visible()
                expect(page.get_by_text(run["runId"][:8], exact=True)).to_be_visible()  # the scheduled run
            page.screenshot(path=artifacts / "partitions-bigquery-messages-1.png")

            # The roster: who is synced into which project, and why organization 3 is not.
            page.goto(f"{url}/assets/glific/tenant_roster")
            expect(page.get_by_text("BigQuery credential switched off").first).to_be_visible()
            expect(page.get_by_text("saathi-analytics.", exact=False).first).to_be_visible()
            page.screenshot(path=artifacts / "tenant-roster.png")
        except BaseException:
            try:
                page.screenshot(path=artifacts / "failure.png")
            except Exception as error:  # never hide the test's own failure
                print(f"no failure screenshot: {error}")
            raise
        finally:
            context.close()

    print(f"\nscheduled sync_job run {run['runId']} succeeded {synced_after:.0f}s after dagster dev started; "
          f"community modal {'skipped' if modal else 'not shown'}; screenshots in {artifacts}")
