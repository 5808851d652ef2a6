"""Columns copied from other tables, joined on the worker (glific_bq.joins), against Glific's real
schema: the same values the correlated subqueries of Glific's layout give, read in the extract's
own snapshot, over pages that share keys (the cache) and ids read as a range or as a list."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from glific_bq import extract, layouts, registry
from glific_bq.extract import Pass
from glific_bq.joins import Fetch, Join, Joiner, Rows, key_column
from glific_bq.layouts.rows import prepare
from glific_bq.local import glific_writes as gw
from glific_bq.schema import reflect_columns
from glific_bq.warehouse import SOURCE_ID

from .helpers import add_organization

AT = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=1)

#: What the layout copied into messages with correlated subqueries, for comparison.
EXPECTED = """
SELECT t.id,
  (SELECT c.phone FROM contacts c WHERE c.id = t.contact_id) AS contact_phone,
  (SELECT c.name FROM contacts c WHERE c.id = t.contact_id) AS contact_name,
  (SELECT c.phone FROM contacts c WHERE c.id = t.sender_id) AS sender_phone,
  (SELECT c.phone FROM contacts c WHERE c.id = t.receiver_id) AS receiver_phone,
  (SELECT u.name FROM users u WHERE u.id = t.user_id) AS user_name,
  (SELECT f.name FROM flows f WHERE f.id = t.flow_id) AS flow_name,
  (SELECT f.uuid::text FROM flows f WHERE f.id = t.flow_id) AS flow_uuid,
  COALESCE((SELECT string_agg(tg.label, ', ' ORDER BY mt.id) FROM messages_tags mt
            JOIN tags tg ON tg.id = mt.tag_id WHERE mt.message_id = t.id), '') AS tags_label,
  (SELECT l.latitude::text FROM locations l WHERE l.message_id = t.id ORDER BY l.id LIMIT 1) AS latitude
FROM messages t WHERE t.organization_id = %s ORDER BY t.id
"""
COMPARED = ["id", "contact_phone", "contact_name", "sender_phone", "receiver_phone", "user_name", "flow_name",
            "flow_uuid", "tags_label", "latitude"]


def _messages(db, organization_id: int, count: int) -> dict:
    bot = db.execute("SELECT contact_id FROM organizations WHERE id = %s", (organization_id,)).fetchone()[0]
    language = gw._default_language(db, organization_id)
    contacts = [gw.contact(db, organization_id, f"91977{organization_id:03d}{i:04d}", name=f"Contact {i} 😀", at=AT)
                for i in range(7)]
    staff = gw.user(db, organization_id, f"91966{organization_id:03d}0001", "Ravi", at=AT)
    flow = gw.flow(db, organization_id, f"Quiz {organization_id}", at=AT)
    tags = [gw.insert_one(db, "tags", at=AT, organization_id=organization_id, label=label, shortcode=label.lower(),
                          language_id=language) for label in ("Greeting", "Quiz", "नमस्ते")]
    ids = []
    for i in range(count):
        contact = contacts[i % len(contacts)]
        ids.append(gw.message(db, organization_id, contact, bot, inbound=i % 3 != 0, body=f"m{i}",
                              flow_id=flow if i % 4 == 0 else None, user_id=staff if i % 5 == 0 else None, at=AT))
    for i, message in enumerate(ids):
        for tag in tags[: i % 4]:  # none, one, two or three tags
            gw.tag_message(db, organization_id, message, tag, at=AT)
        if i % 6 == 0:
            gw.insert_one(db, "locations", at=AT, organization_id=organization_id, message_id=message,
                          contact_id=contacts[0], latitude=18.5 + i, longitude=73.8)
    return {"ids": ids, "contacts": contacts}


def _shape(db, table: str = "messages"):
    spec = registry.table(table, registry.GLIFIC_TABLES)
    return layouts.shape_for(layouts.Layout.GLIFIC, spec, reflect_columns(db, spec.source))


def _pages(source, shape, organization_id: int, page_rows: int, pass_=Pass.INSERT, **bound):
    query = extract.build_query(shape, pass_)
    source.reader.commit()
    return extract.pages(source.reader, query, pass_, organization_id=organization_id, timezone="Asia/Kolkata",
                         page_rows=page_rows, export_snapshot=True, **{"id_bound": 0, **bound})


def test_joined_columns_equal_the_subqueries_across_pages_and_tenants(db, source):
    one, two = add_organization(db), add_organization(db)
    _messages(db, one.id, 40)
    _messages(db, two.id, 25)  # interleaved ids of another tenant inside the first one's id range
    shape = _shape(db)
    assert {"contact_phone", "sender_phone", "tags_label", "latitude", "flow_name"} <= set(shape.joins)
    for organization in (one, two):
        got = []
        for page in _pages(source, shape, organization.id, page_rows=7):  # keys repeat across pages: cached
            rows, rejected = prepare(page.rows, shape, "Asia/Kolkata", source.joiner, page.snapshot, organization.id)
            assert not rejected
            assert not [c for c in rows.column_names if c.startswith("_glific_bq") and c != SOURCE_ID]  # never sent
            got += rows.select(COMPARED).to_pylist()
        source.reader.commit()
        expected = [dict(zip(COMPARED, r, strict=True)) for r in db.execute(EXPECTED, (organization.id,)).fetchall()]
        assert got == expected
        assert {r["tags_label"] for r in got} >= {"", "Greeting", "Greeting, Quiz, नमस्ते"}


def test_ids_far_apart_get_their_own_values(db, source):
    """The update pass's and redrive's pages hold ids far apart (read by list, not as one range):
    each row still gets exactly its own tags."""
    org = add_organization(db)
    made = _messages(db, org.id, 30)
    shape = _shape(db)
    wanted = made["ids"][::9]  # sparse: span far above DENSE_SPAN times their number
    query = extract.build_query(shape, Pass.BY_ID)
    source.reader.commit()
    rows, snapshot = extract.rows_by_id(source.reader, query, org.id, "UTC", wanted, export_snapshot=True)
    rows, _ = prepare(rows, shape, "UTC", source.joiner, snapshot, org.id)
    source.reader.commit()
    expected = {r[0]: r[8] for r in db.execute(EXPECTED, (org.id,)).fetchall()}
    assert {r["id"]: r["tags_label"] for r in rows.select(["id", "tags_label"]).to_pylist()} == \
        {i: expected[i] for i in wanted}


def test_joins_read_the_extracts_snapshot(db, source):
    """A contact renamed after the extract read its page, before the join, is joined as the
    snapshot saw it: the page is exactly what one query would have given (the rename reaches
    the rows by glific_bq.lookups); a new extract sees the new name."""
    org = add_organization(db)
    made = _messages(db, org.id, 5)
    shape = _shape(db)
    pages = _pages(source, shape, org.id, page_rows=100)
    page = next(pages)
    gw.update(db, "contacts", made["contacts"][1], name="Renamed")
    rows, _ = prepare(page.rows, shape, "UTC", source.joiner, page.snapshot, org.id)
    assert "Renamed" not in rows.column("contact_name").to_pylist()
    pages.close()
    source.reader.commit()
    page = next(_pages(source, shape, org.id, page_rows=100))
    rows, _ = prepare(page.rows, shape, "UTC", source.joiner, page.snapshot, org.id)
    source.reader.commit()
    assert "Renamed" in rows.column("contact_name").to_pylist()


def test_missing_keys_give_null_or_the_default(database_url, db):
    org = add_organization(db)
    made = _messages(db, org.id, 3)
    contact = Fetch("public.contacts x")
    joins = {"phone": Join(contact, "x.phone", "contact_id"),
             "tags_label": Join(Fetch("public.messages_tags x JOIN public.tags tg ON tg.id = x.tag_id", "x.message_id",
                                      Rows.GROUP), "string_agg(tg.label, ', ')", "id", default="")}
    rows = pa.table({"phone": pa.nulls(3, pa.string()), "tags_label": pa.nulls(3, pa.string()),
                     key_column("contact_id"): pa.array([made["contacts"][0], None, 10**12], pa.int64()),
                     key_column("id"): pa.array([10**12, 10**12 + 1, 10**12 + 2], pa.int64())})
    with db.transaction():  # a snapshot to join in, held open as the extract holds its own
        snapshot = db.execute("SELECT pg_export_snapshot()").fetchone()[0]
        joiner = Joiner(database_url)
        try:
            filled = joiner.fill(rows, joins, snapshot, org.id)
        finally:
            joiner.close()
    phone = db.execute("SELECT phone FROM contacts WHERE id = %s", (made["contacts"][0],)).fetchone()[0]
    assert filled.column("phone").to_pylist() == [phone, None, None]
    assert filled.column("tags_label").to_pylist() == ["", "", ""]


def test_a_page_cannot_skip_its_joins(db, source):
    org = add_organization(db)
    _messages(db, org.id, 2)
    shape = _shape(db)
    page = next(_pages(source, shape, org.id, page_rows=10))
    with pytest.raises(ValueError, match="copies columns from other tables"):
        prepare(page.rows, shape, "UTC")
    source.reader.commit()
    with pytest.raises(Exception, match="snapshot"):  # the exporting transaction is over
        prepare(page.rows, shape, "UTC", source.joiner, page.snapshot, org.id)
    raw = layouts.shape_for(layouts.Layout.RAW, registry.table("messages", registry.RAW_TABLES),
                            reflect_columns(db, "messages"))
    assert not raw.joins


def test_a_row_naming_another_organizations_rows_joins_nothing_of_theirs(db, source):
    """Glific's foreign keys allow a message of one organization to name another's contact, user,
    flow or tag: what is joined comes only from the message's own organization."""
    mine, theirs = add_organization(db), add_organization(db)
    made = _messages(db, mine.id, 3)
    other = _messages(db, theirs.id, 1)
    foreign_contact = other["contacts"][0]
    foreign_tag = db.execute("SELECT id FROM tags WHERE organization_id = %s LIMIT 1", (theirs.id,)).fetchone()[0]
    foreign_flow = db.execute("SELECT id FROM flows WHERE organization_id = %s LIMIT 1", (theirs.id,)).fetchone()[0]
    gw.update(db, "tags", foreign_tag, at=AT, label="Their own tag")
    gw.update(db, "flows", foreign_flow, at=AT, name="Their own flow")
    message = made["ids"][0]
    gw.update(db, "messages", message, at=AT, contact_id=foreign_contact, sender_id=foreign_contact,
              flow_id=foreign_flow)
    gw.tag_message(db, mine.id, message, foreign_tag, at=AT)  # a tag of theirs on a message of mine
    secrets = {db.execute("SELECT phone FROM contacts WHERE id = %s", (foreign_contact,)).fetchone()[0],
               db.execute("SELECT label FROM tags WHERE id = %s", (foreign_tag,)).fetchone()[0],
               db.execute("SELECT name FROM flows WHERE id = %s", (foreign_flow,)).fetchone()[0]}
    shape = _shape(db)

    page = next(_pages(source, shape, mine.id, page_rows=100))
    rows, rejected = prepare(page.rows, shape, "UTC", source.joiner, page.snapshot, mine.id)
    source.reader.commit()

    # Its contact_phone is REQUIRED in Glific's schema: the message is set aside, saying why,
    # rather than sent with another organization's phone.
    assert message not in rows.column("id").to_pylist()
    (refused,) = rejected
    assert refused.row["id"] == message and "contact_phone" in refused.error
    assert (refused.row["sender_phone"], refused.row["flow_name"]) == (None, None)
    sent = [*rows.to_pylist(), refused.row]
    assert not any(s in str(v) for r in sent for v in r.values() for s in secrets)


def test_every_joined_table_is_read_for_the_synced_organization_only(db):
    """Each table a join reads has the organization_id its fetch binds (and only global tables
    and organizations, copied into the platform's tables only, are read unbound): a new join
    cannot silently read across organizations."""
    import re

    from glific_bq.layouts import glific as glific_layout

    fetches = {j.fetch for spec in (*registry.GLIFIC_TABLES, *registry.PLATFORM_TABLES)
               for j in layouts.shape_for(layouts.Layout.GLIFIC, spec, reflect_columns(db, spec.source)).joins.values()}
    assert fetches
    for fetch in fetches:
        aliases = {alias: table for table, alias in re.findall(r"(\w+\.\w+) (\w+)", fetch.source)}
        for alias, table in aliases.items():
            schema, name = table.split(".")
            has_org = db.execute("SELECT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = %s "
                                 "AND table_name = %s AND column_name = 'organization_id')", (schema, name)).fetchone()[0]
            unbound = name in glific_layout._UNBOUND  # organizations: its organization_id is not its tenant
            assert (alias in fetch.tenant) == (has_org and not unbound), (fetch.source, alias)
