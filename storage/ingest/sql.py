"""Ingest's statements: one set-based path for every group, built from `storage.ingest.rules` with
SQLAlchemy Core and compiled for the connection's dialect once, at start-up.

A group (every reading of the requests one group commit takes) is loaded into the temp table
`ingest_incoming`, then these statements run in order, in one transaction, with no Python per
reading and no parameters (the group's receive time is the one row of `ingest_group`):

1. `lock` (PostgreSQL): the group's meters FOR UPDATE in meter order, so several gateway
   processes never deadlock and each judges the other's committed readings. (SQLite's writer
   excludes other writers with BEGIN IMMEDIATE.)
2. `classify`: each reading's outcome (`Classification`), DG part (`DgShare`) and charge
   (`Charge`), into `ingest_work`; the DG time and tariffs once per (site, half hour).
   Repeats, conflicts, unknown, foreign and retired meters and DG changes within the group are
   ordinary rows here: there is no other path.
3. `insert_readings`, `insert_conflicts`: the stored readings, the conflicts.
4. `sum_charged`, `update_meters`: per meter, the registers and balance (`Registers`).
5. `queue_cuts`: a cut for each meter the group took to zero or below (`CutDecision`).
6. `results`: the readings that were not simply stored (none, in the usual case).

Loading the group is the one thing spelled per dialect (`storage.ingest.run`): multi-row VALUES
on SQLite (measured: half the CPU of a JSON array read by `json_each`, which itself was cheaper
than reading the JSON in `classify`), typed arrays read by `unnest` on PostgreSQL.
Parameterless statements let PostgreSQL take steps 1–5 as one script, BEGIN to COMMIT, in one
round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import Dialect
from sqlalchemy.schema import CreateTable

from storage.db.models import Meter, Reading, ReadingConflict
from storage.db.types import Energy, Money, UtcTime
from storage.ingest.rules import RULES, OutcomeCode, Rules, SlotColumns, from_units, in_units, table_of

# The working tables, in each writer connection's own temp schema. SQLite empties them before
# its commit (`clear`); PostgreSQL as it loads the next group (`storage.ingest.run`), so that the
# results can be read after the commit.
WORK = sa.MetaData()
_TEMP = {"prefixes": ["TEMPORARY"]}
group = sa.Table("ingest_group", WORK, sa.Column("received_at", UtcTime, nullable=False), **_TEMP)
scope = sa.Table(
    "ingest_scope",
    WORK,
    # No key: PostgreSQL replaces the previous group's rows in the statement that adds these.
    sa.Column("scope", sa.Integer, nullable=False),
    sa.Column("site_id", sa.String, nullable=False),
    **_TEMP,
)
incoming = sa.Table(
    "ingest_incoming",
    WORK,
    sa.Column("idx", sa.Integer, nullable=False),  # the reading's place in the group
    sa.Column("meter_no", sa.BigInteger, nullable=False),
    sa.Column("interval_start", UtcTime, nullable=False),
    sa.Column("interval_end", UtcTime, nullable=False),
    sa.Column("wh", sa.BigInteger, nullable=False),
    sa.Column("source", sa.String),  # as the packet gave it
    sa.Column("scope", sa.Integer, nullable=False),  # 0: any site; n: the sites of ingest_scope n
    **_TEMP,
)
work = sa.Table(
    "ingest_work",
    WORK,
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("meter_no", sa.BigInteger, nullable=False),
    sa.Column("interval_start", UtcTime, nullable=False),
    sa.Column("interval_end", UtcTime, nullable=False),
    sa.Column("wh", sa.BigInteger, nullable=False),
    sa.Column("dg_wh", sa.BigInteger),  # the DG part of wh
    sa.Column("source", sa.String),
    sa.Column("charge", sa.BigInteger),  # paise, both parts
    sa.Column("dg_charge", sa.BigInteger),  # paise, the DG part
    sa.Column("outcome", sa.Integer, nullable=False),  # an OutcomeCode
    sa.Column("kept_wh", sa.BigInteger),  # what a duplicate or conflict was compared with
    **_TEMP,
)
charged = sa.Table(
    "ingest_charged",
    WORK,
    # INTEGER on SQLite makes the key the rowid: one B-tree, not a table and an index (the
    # update and the cuts look each meter up in it).
    sa.Column("meter_no", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False),
    sa.Column("grid_wh", sa.BigInteger, nullable=False),
    sa.Column("dg_wh", sa.BigInteger, nullable=False),
    sa.Column("charge", sa.BigInteger, nullable=False),
    sa.Column("last_end", UtcTime, nullable=False),
    **_TEMP,
)

meter = table_of(Meter)
reading = table_of(Reading)
conflict = table_of(ReadingConflict)


def _received_at() -> sa.ScalarSelect[object]:
    return sa.select(group.c.received_at).scalar_subquery()


def classify(rules: Rules, *, repeats: bool = True) -> sa.Insert:
    """Every reading of the group judged, with the DG share, source and charge it would be
    stored with.

    `repeats=False` is the same statement for a group known to hold each (meter, interval) once
    (the usual case): every reading is then the first of its interval in the group, and the
    window that finds the first (a sort of the whole group, a sixth of the statement) is left out.
    """
    i = incoming
    # (scope, site) IN the pairs: a lookup in one index built per statement, where a correlated
    # EXISTS ran a subquery per reading.
    in_scope = sa.or_(
        i.c.scope == 0, sa.tuple_(i.c.scope, meter.c.site_id).in_(sa.select(scope.c.scope, scope.c.site_id))
    )
    standing = rules.classification.standing(
        visible=sa.and_(meter.c.meter_no.is_not(None), in_scope), active=meter.c.active
    )
    # The DG time and the tariffs of each (site, half hour) of the group, once each: a group is
    # mostly many meters of a few sites in one half hour.
    distinct_slots = (
        sa.select(meter.c.site_id, i.c.interval_start, i.c.interval_end)
        .distinct()
        .select_from(i.join(meter, meter.c.meter_no == i.c.meter_no))
        .subquery("distinct_slots")
    )
    slot = SlotColumns(distinct_slots.c.site_id, distinct_slots.c.interval_start, distinct_slots.c.interval_end)
    slots = (
        sa.select(
            slot.site_id,
            slot.interval_start,
            rules.dg_share.on_seconds(slot).label("dg_seconds"),
            rules.charge.tariff(slot, "grid").label("grid_paise"),
            rules.charge.tariff(slot, "dg").label("dg_paise"),
        )
        .cte("slots")
        .prefix_with("MATERIALIZED")
    )
    # The stored reading of the same interval, if any, by its key (the writer's PostgreSQL
    # connection plans nested loops only, so this is a lookup in the month's partition there too).
    stored = reading.alias("stored")
    stored_wh = in_units(stored.c.kwh)
    dg_wh = rules.dg_share.dg_wh(i.c.wh, i.c.source, slots.c.dg_seconds)
    judged = (
        sa.select(
            i.c.idx,
            i.c.meter_no,
            i.c.interval_start,
            i.c.interval_end,
            i.c.wh,
            dg_wh.label("dg_wh"),
            i.c.source.label("given_source"),
            rules.charge.of_meter(meter.c.role, slots.c.grid_paise).label("grid_paise"),
            rules.charge.of_meter(meter.c.role, slots.c.dg_paise).label("dg_paise"),
            standing.label("standing"),
            stored_wh.label("stored_wh"),
        )
        .select_from(
            i.outerjoin(meter, meter.c.meter_no == i.c.meter_no)
            .outerjoin(slots, sa.and_(slots.c.site_id == meter.c.site_id, slots.c.interval_start == i.c.interval_start))
            .outerjoin(
                stored, sa.and_(stored.c.meter_no == i.c.meter_no, stored.c.interval_start == i.c.interval_start)
            )
        )
        .cte("judged")
    )
    if repeats:  # the window functions below read it twice: worked out once (measured: inlined,
        # it costs a tenth more when each (meter, interval) comes once, so then it is not kept)
        judged = judged.prefix_with("MATERIALIZED")
    j = judged.c
    same_interval = {
        "partition_by": [j.meter_no, j.interval_start, j.standing]
    }  # among OPEN ones: first come first kept
    first_wh = sa.func.first_value(j.wh).over(order_by=j.idx, **same_interval) if repeats else j.wh
    first_in_group = sa.func.min(j.idx).over(**same_interval) == j.idx if repeats else sa.true()
    grid_charge = rules.charge.paise(j.wh - j.dg_wh, j.grid_paise)
    dg_charge = rules.charge.paise(j.dg_wh, j.dg_paise)
    outcome = rules.classification.outcome(
        standing=j.standing,
        wh=j.wh,
        stored_wh=j.stored_wh,
        first_in_group=first_in_group,
        first_wh_in_group=first_wh,
    )
    columns = [
        "idx", "meter_no", "interval_start", "interval_end", "wh", "dg_wh", "source", "charge", "dg_charge",
        "outcome", "kept_wh",
    ]  # fmt: skip
    return sa.insert(work).from_select(
        columns,
        sa.select(
            j.idx,
            j.meter_no,
            j.interval_start,
            j.interval_end,
            j.wh,
            j.dg_wh,
            rules.dg_share.label(j.wh, j.given_source, j.dg_wh),
            grid_charge + dg_charge,
            dg_charge,
            outcome,
            rules.classification.kept_wh(j.stored_wh, first_wh),
        ),
    )


def insert_readings() -> sa.Insert:
    """The stored readings, with their source, charge and DG parts."""
    w = work.c
    return sa.insert(reading).from_select(
        ["meter_no", "interval_start", "kwh", "source", "charge", "dg_kwh", "dg_charge", "received_at"],
        sa.select(
            w.meter_no,
            w.interval_start,
            from_units(w.wh, Energy),
            w.source,
            from_units(w.charge, Money),
            from_units(w.dg_wh, Energy),
            from_units(w.dg_charge, Money),
            _received_at(),
        ).where(w.outcome == OutcomeCode.STORED),
    )


def insert_conflicts() -> sa.Insert:
    """A `reading_conflict` row per conflict, in the group's order."""
    w = work.c
    return sa.insert(conflict).from_select(
        ["meter_no", "interval_start", "stored_kwh", "offered_kwh", "received_at"],
        sa.select(w.meter_no, w.interval_start, from_units(w.kept_wh, Energy), from_units(w.wh, Energy), _received_at())
        .where(w.outcome == OutcomeCode.CONFLICT)
        .order_by(w.idx),
    )


def sum_charged(rules: Rules, *, one_reading_each: bool = False) -> sa.Insert:
    """Per meter with stored readings: what they add to its registers and take from its balance.

    `one_reading_each=True` is the same statement for a group in which each meter comes once
    (a concentrator's batch, a single packet): the readings' own values, without the GROUP BY.
    """
    w = work.c
    sums = rules.registers.sums(w.wh, w.dg_wh, w.charge, w.interval_end, one_reading_each=one_reading_each)
    summed = sa.select(w.meter_no, *sums.values()).where(w.outcome == OutcomeCode.STORED)
    return sa.insert(charged).from_select(
        ["meter_no", *sums], summed if one_reading_each else summed.group_by(w.meter_no)
    )


def update_meters(rules: Rules) -> sa.Update:
    """The registers, balances and last reading times of the charged meters."""
    # The meters by the IN, all their new values from one lookup of their sums (a row value):
    # both databases then start from the few charged meters (with a join, each planner chose to
    # scan every meter: the temp tables' sizes are guesses).
    new_values = rules.registers.meter_values(meter, {name: charged.c[name] for name in charged.c.keys()})
    columns = sa.tuple_(*(meter.c[name] for name in new_values))
    row = sa.select(*new_values.values()).where(charged.c.meter_no == meter.c.meter_no).scalar_subquery()
    return sa.update(meter).where(meter.c.meter_no.in_(sa.select(charged.c.meter_no))).values({columns: row})


def queue_cuts(rules: Rules) -> sa.Insert:
    """A requested cut for each charged meter the cut decision says is due."""
    charge = sa.select(charged.c.charge).where(charged.c.meter_no == meter.c.meter_no).scalar_subquery()
    return rules.cut.queue(meter_nos=sa.select(charged.c.meter_no), charged_paise=charge, at=_received_at())


def lock_meters() -> sa.Select[tuple[int]]:
    """The group's meters, locked in meter order until commit (PostgreSQL)."""
    return (
        sa.select(meter.c.meter_no)
        .where(meter.c.meter_no.in_(sa.select(incoming.c.meter_no)))
        .order_by(meter.c.meter_no)
        .with_for_update()
    )


def results() -> sa.Select[tuple[int, int, int | None]]:
    """(place in the group, outcome, kept Wh) of every reading not simply stored."""
    return sa.select(work.c.idx, work.c.outcome, work.c.kept_wh).where(work.c.outcome != OutcomeCode.STORED)


@dataclass(frozen=True)
class IngestStatements:
    """The statements as SQL text for one dialect (see the module docstring for their order)."""

    create_tables: tuple[str, ...]
    lock: str | None  # None on SQLite
    classify: str
    classify_once_each: str  # the same for a group without repeated (meter, interval)
    record: tuple[str, ...]  # insert_readings … queue_cuts
    record_one_each: tuple[str, ...]  # the same for a group in which each meter comes once
    results: str
    clear: tuple[str, ...]
    analyze: str  # the working tables' statistics (PostgreSQL)
    vacuum: str  # the working tables' dead rows (PostgreSQL: no autovacuum for temp tables)

    @classmethod
    def compile(cls, dialect: Dialect, rules: Rules = RULES) -> IngestStatements:
        """The statements built from `rules`, compiled for this dialect: once per process (each
        database opened, in tests each app, would otherwise spend ~25 ms compiling them)."""
        key = (type(dialect), dialect.server_version_info, rules)
        compiled = _COMPILED.get(key)
        if compiled is None:
            compiled = _COMPILED[key] = cls._compile(dialect, rules)
        return compiled

    @classmethod
    def _compile(cls, dialect: Dialect, rules: Rules) -> IngestStatements:
        def sql(statement: sa.Executable) -> str:
            return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))

        def record(*, one_reading_each: bool) -> tuple[str, ...]:
            return tuple(
                sql(statement)
                for statement in (
                    insert_readings(),
                    insert_conflicts(),
                    sum_charged(rules, one_reading_each=one_reading_each),
                    update_meters(rules),
                    queue_cuts(rules),
                )
            )

        postgres = dialect.name == "postgresql"
        return cls(
            create_tables=tuple(sql(CreateTable(table, if_not_exists=True)) for table in WORK.sorted_tables),
            lock=sql(lock_meters()) if postgres else None,
            classify=sql(classify(rules)),
            classify_once_each=sql(classify(rules, repeats=False)),
            record=record(one_reading_each=False),
            record_one_each=record(one_reading_each=True),
            results=sql(results()),
            clear=tuple(sql(sa.delete(table)) for table in WORK.sorted_tables),
            analyze="ANALYZE " + ", ".join(table.name for table in WORK.sorted_tables),
            vacuum="VACUUM " + ", ".join(table.name for table in WORK.sorted_tables),
        )


_COMPILED: dict[tuple[object, ...], IngestStatements] = {}  # (dialect class, server version, rules) → statements
