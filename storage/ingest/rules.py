"""The money rules of ingest, each written once, as SQL expressions both dialects are built from.

A reading's effects are decided by five rules, and each has exactly one definition here:

- `DgShare`: how much of its energy came from a DG (by the seconds a DG of its site ran in its
  half hour, `dg_state_in_force`'s tie-break included; all or none when the packet says);
- `Charge`: what each part costs, at the tariff in force at the interval's start (nothing for
  a bulk meter: only flats are billed, `storage.registry.meter_roles.billed`);
- `Registers`: how it moves its meter's grid and DG registers, balance and last reading time;
- `CutDecision`: whether its meter is cut (at or below −grace; `cut_pending`: "no cut pending"
  is its other half);
- `Classification`: whether it is stored, a duplicate, a conflict, or for an unknown (or foreign)
  or retired meter.

Why SQLAlchemy Core expressions, not SQL text per dialect nor Python: ingest must be set-based
(a group commit of thousands of readings costs a handful of statements, no Python per reading),
so the rules must be SQL; written as Core they are composed into statements once
(`storage.ingest.sql`) and compiled for each dialect at start-up, so SQLite and PostgreSQL run
the same rule and a rule change is an edit here. What differs by dialect is only how a value is
stored, and that is spelled in two small compiled constructs, `in_units` and `from_units`: the
rules compute in integer units (watt-hours, paise), which is what SQLite stores and what
PostgreSQL's `numeric` columns convert to exactly. An integer formula also needs no rounding
mode, the one thing the two databases' `round` would not agree on.

Each rule is a small frozen class, so that a later rule is a change to one method, or a
subclass handed to `storage.ingest.sql.IngestStatements` (which is how the mutation tests seed
mistakes). The DG share and the tariffs depend only on a site's half hour, so the statements
work them out once per (site, half hour) of a group, not per reading.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import SQLModel

from storage.calendar import HALF_HOUR
from storage.db.models import Command, DgStatusChange, DieselGenerator, Meter, Site, Tariff
from storage.db.types import Fixed
from storage.money.command_log import CUT_REASON, PENDING
from storage.money.policy import cut_threshold
from storage.registry.meter_roles import billed

DG, GRID, MIX = "dg", "grid", "mix"
CUT = "cut"


# Storage units: the one place where the dialects differ.


class in_units(FunctionElement[int]):
    """A `Money` or `Energy` column's value in integer units (paise, watt-hours)."""

    type = sa.BigInteger()
    inherit_cache = True


class from_units(FunctionElement[Any]):
    """Integer units as the stored value of a `Money` or `Energy` column (`type_`)."""

    inherit_cache = True

    def __init__(self, value: ColumnElement[int], type_: Fixed) -> None:
        super().__init__(value)
        self.type = type_


def _scale(element: FunctionElement[Any], fixed: Any) -> int:
    if not isinstance(fixed, Fixed):
        raise TypeError(f"{type(element).__name__} needs a Money or Energy value, not {fixed!r}")
    return fixed.scale


@compiles(in_units, "sqlite")
@compiles(from_units, "sqlite")
def _units_on_sqlite(element: FunctionElement[Any], compiler: Any, **kw: Any) -> str:
    (value,) = element.clauses
    return str(compiler.process(value, **kw))  # SQLite stores the integer units themselves


@compiles(in_units, "postgresql")
def _in_units_on_postgres(element: in_units, compiler: Any, **kw: Any) -> str:
    (value,) = element.clauses
    return f"CAST({compiler.process(value, **kw)} * {10 ** _scale(element, value.type)} AS BIGINT)"


@compiles(from_units, "postgresql")
def _from_units_on_postgres(element: from_units, compiler: Any, **kw: Any) -> str:
    (value,) = element.clauses
    scale = _scale(element, element.type)
    return f"CAST({compiler.process(value, **kw)} AS NUMERIC(18, {scale})) / {10**scale}"


def table_of(model: type[SQLModel]) -> sa.Table:
    """A model's table, typed (SQLModel does not declare `__table__`)."""
    return cast(sa.Table, sa.inspect(model).local_table)


# The rules.


def change_order(at: Any, status: Any, *, in_force_first: bool = False) -> tuple[Any, Any]:
    """The order in which a DG's ON/OFF changes take effect: by time and, at one instant, OFF
    before ON (`'OFF' < 'ON'`), so that two changes at one instant leave the DG ON.
    `in_force_first`: the reverse, the change in force at the end first."""
    return (at.desc(), status.desc()) if in_force_first else (at, status)


def dg_state_in_force(site_id: Any, dg_no: Any, at: Any) -> sa.ScalarSelect[str]:
    """A DG's state at an instant: its latest ON/OFF change at or before it (`change_order`: two
    changes at one instant count as ON); NULL (i.e. OFF) before its first change."""
    change = table_of(DgStatusChange).alias("state")
    return (
        sa.select(change.c.status)
        .where(change.c.site_id == site_id, change.c.dg_no == dg_no, change.c.at <= at)
        .order_by(*change_order(change.c.at, change.c.status, in_force_first=True))
        .limit(1)
        .correlate_except(change)
        .scalar_subquery()
    )


class seconds_between(FunctionElement[int]):
    """Whole seconds from one UTC instant to a later one (rounded): the one date arithmetic the
    dialects spell differently."""

    type = sa.BigInteger()
    inherit_cache = True


@compiles(seconds_between, "sqlite")
def _seconds_on_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"CAST(ROUND(({end} - {start}) / 1000000.0) AS INTEGER)"  # UtcTime: microseconds


@compiles(seconds_between, "postgresql")
def _seconds_on_postgres(element: seconds_between, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"CAST(ROUND(EXTRACT(EPOCH FROM ({end} - {start}))) AS BIGINT)"


class SlotColumns(NamedTuple):
    """A site's half hour, as the per-slot rules see it (every reading of a site's half hour
    shares its DG time and tariff)."""

    site_id: ColumnElement[str]
    interval_start: ColumnElement[dt.datetime]
    interval_end: ColumnElement[dt.datetime]


INTERVAL_SECONDS = int(HALF_HOUR.total_seconds())


@dataclass(frozen=True)
class DgShare:
    """How much of a reading's energy came from a DG: all of it or none if the packet said
    (`source`); else its share of the half hour during which some DG of its site was ON
    (`DG_STATE_IN_FORCE`: two changes at one instant count as ON), rounded half-up to the Wh, so
    the grid and DG parts add up to the reading exactly."""

    def any_on(self, site_id: Any, at: Any) -> ColumnElement[bool]:
        """Some DG of the site is ON at that instant."""
        dg = table_of(DieselGenerator).alias("site_dg")
        return (
            sa.select(dg.c.dg_no)
            .where(dg.c.site_id == site_id, dg_state_in_force(dg.c.site_id, dg.c.dg_no, at) == "ON")
            .correlate_except(dg)
            .exists()
        )

    def on_seconds(self, slot: SlotColumns) -> ColumnElement[int]:
        """Seconds of the half hour during which some DG of the site was ON.

        The half hour is cut at each instant a DG of the site changed within it; each piece counts
        if some DG was ON at its start. (Pieces from instants, not from change rows: two changes at
        one instant start one piece.)
        """
        change = table_of(DgStatusChange)
        within = sa.and_(change.c.at > slot.interval_start, change.c.at < slot.interval_end)

        def next_cut(after: Any, name: str) -> ColumnElement[Any]:
            later = change.alias(name)
            first = (
                sa.select(sa.func.min(later.c.at))
                .where(later.c.site_id == slot.site_id, later.c.at > after, later.c.at < slot.interval_end)
                .correlate_except(later)
                .scalar_subquery()
            )
            return sa.func.coalesce(first, slot.interval_end)

        head = sa.case(
            (
                self.any_on(slot.site_id, slot.interval_start),
                seconds_between(slot.interval_start, next_cut(slot.interval_start, "first_cut")),
            ),
            else_=0,
        )
        cut = change.alias("cut")
        same_instant = change.alias("same_instant")
        earlier_at_instant = (
            sa.select(same_instant.c.id)
            .where(same_instant.c.site_id == cut.c.site_id, same_instant.c.at == cut.c.at, same_instant.c.id < cut.c.id)
            .correlate_except(same_instant)
            .exists()
        )
        piece = sa.case(
            (self.any_on(slot.site_id, cut.c.at), seconds_between(cut.c.at, next_cut(cut.c.at, "next_cut"))), else_=0
        )
        tail = (
            sa.select(sa.func.coalesce(sa.func.sum(piece), 0))
            .where(
                cut.c.site_id == slot.site_id,
                cut.c.at > slot.interval_start,
                cut.c.at < slot.interval_end,
                sa.not_(earlier_at_instant),
            )
            .correlate_except(cut)
            .scalar_subquery()
        )
        changes_within = (
            sa.select(change.c.id).where(change.c.site_id == slot.site_id, within).correlate_except(change).exists()
        )
        # Most half hours have no change in them: then the piece from the start is the whole of it.
        seconds = sa.case(
            (changes_within, head + tail),
            else_=sa.case((self.any_on(slot.site_id, slot.interval_start), INTERVAL_SECONDS), else_=0),
        )
        return sa.cast(seconds, sa.BigInteger)  # PostgreSQL's SUM of integers is numeric: keep Wh whole

    def dg_wh(self, wh: Any, given_source: Any, on_seconds: Any) -> ColumnElement[int]:
        """The DG part of a reading's Wh."""
        return sa.case(
            (given_source == DG, wh),
            (given_source == GRID, 0),
            else_=(wh * on_seconds + INTERVAL_SECONDS // 2) // INTERVAL_SECONDS,
        )

    def label(self, wh: Any, given_source: Any, dg_wh: Any) -> ColumnElement[str]:
        """The reading's `source`: the packet's own, else "grid", "dg" or "mix" by its parts."""
        return sa.case(
            (given_source.is_not(None), given_source),
            (dg_wh == 0, sa.literal(GRID)),
            (dg_wh == wh, sa.literal(DG)),
            else_=sa.literal(MIX),
        )


@dataclass(frozen=True)
class Charge:
    """What a reading costs: each part's kWh × the site's tariff for that source in force at the
    interval's start (whenever the packet arrives), rounded half-up to the paisa. In integer
    units: (Wh × paise per kWh + 500) // 1000, exact on both dialects."""

    def tariff(self, slot: SlotColumns, column: str) -> ColumnElement[int]:
        """The site's `grid` or `dg` tariff in force at the interval's start, in paise per kWh."""
        tariff = table_of(Tariff).alias(f"tariff_{column}")
        return (
            sa.select(in_units(tariff.c[column]))
            .where(tariff.c.site_id == slot.site_id, tariff.c.effective_from <= slot.interval_start)
            .order_by(tariff.c.effective_from.desc())
            .limit(1)
            .correlate_except(tariff)
            .scalar_subquery()
        )

    def of_meter(self, role: Any, tariff_paise: Any) -> ColumnElement[int]:
        """The tariff a meter pays, in paise per kWh: the site's for a flat, nothing for a bulk
        meter (an incomer or a DG's energy meter is measured, never billed). A charge of nothing
        also means no cut (`CutDecision` needs a charge) and no balance change."""
        return sa.case((billed(role), tariff_paise), else_=0)

    def paise(self, wh: Any, tariff_paise: Any) -> ColumnElement[int]:
        """The charge of `wh` at a tariff, in paise."""
        return (wh * tariff_paise + 500) // 1000


@dataclass(frozen=True)
class Registers:
    """A stored reading advances its meter's grid and DG registers by its parts, debits its
    charge from the balance, and moves the last reading time to its interval's end if later."""

    def sums(
        self, wh: Any, dg_wh: Any, charge: Any, interval_end: Any, *, one_reading_each: bool = False
    ) -> dict[str, ColumnElement[Any]]:
        """Per meter, over its stored readings: grid Wh, DG Wh, paise charged, latest interval end.

        `one_reading_each`: each meter has one reading, whose own values are its sums (a group
        of many meters: the statement then needs no GROUP BY, a sort of the whole group).
        """
        total = _itself if one_reading_each else sa.func.sum
        latest = _itself if one_reading_each else sa.func.max
        return {
            "grid_wh": total(wh - dg_wh),
            "dg_wh": total(dg_wh),
            "charge": total(charge),
            "last_end": latest(interval_end),
        }

    def meter_values(self, meter: sa.Table, sums: Mapping[str, ColumnElement[Any]]) -> dict[str, ColumnElement[Any]]:
        """The meter's new columns, given its `sums` (named as `sums` names them)."""
        c = meter.c
        last_end = sums["last_end"]
        return {
            "grid_kwh": from_units(in_units(c.grid_kwh) + sums["grid_wh"], c.grid_kwh.type),
            "dg_kwh": from_units(in_units(c.dg_kwh) + sums["dg_wh"], c.dg_kwh.type),
            "balance": from_units(in_units(c.balance) - sums["charge"], c.balance.type),
            "last_reading_at": sa.case(
                (sa.or_(c.last_reading_at.is_(None), c.last_reading_at < last_end), last_end),
                else_=c.last_reading_at,
            ),
        }


def _itself(value: ColumnElement[Any]) -> ColumnElement[Any]:
    return value


def cut_pending(meter_no: Any) -> ColumnElement[bool]:
    """The meter already has a cut on its way to the head-end (requested or sent)."""
    command = table_of(Command).alias("pending")
    return (
        sa.select(command.c.id)
        .where(command.c.meter_no == meter_no, command.c.action == CUT, command.c.state.in_(PENDING))
        .correlate_except(command)
        .exists()
    )


@dataclass(frozen=True)
class CutDecision:
    """A meter is cut when something just charged it (readings, or the fixed daily charge) and
    its balance is now at or below the site's cut threshold (`storage.money.policy.cut_threshold`,
    the dispatcher's too), on a site that cuts automatically, while it is in service, its supply
    is on and no cut is pending. (When it may be carried out, no-cut windows decide:
    `storage.money.command_log.claim_due`.)"""

    def due(self, *, meter: sa.Table, site: sa.FromClause, charged_paise: ColumnElement[int]) -> ColumnElement[bool]:
        """Whether to queue a cut for this meter (its balance already debited)."""
        return sa.and_(
            site.c.auto_cut,
            meter.c.active,
            meter.c.relay_on,
            charged_paise > 0,
            in_units(meter.c.balance) <= cut_threshold(in_units(site.c.grace_amount)),
            sa.not_(cut_pending(meter.c.meter_no)),
        )

    def queue(self, *, meter_nos: Any, charged_paise: ColumnElement[int], at: ColumnElement[Any]) -> sa.Insert:
        """A requested cut, created `at`, for each meter of `meter_nos` (a subquery of meter
        numbers) that `due` says is due: how ingest (`storage.ingest.sql.queue_cuts`) and the
        fixed daily charge (`storage.money.ledger.debit_fixed_charges`) queue their cuts.
        `charged_paise` may refer to the meter's columns."""
        meter, site, command = table_of(Meter), table_of(Site), table_of(Command)
        return sa.insert(command).from_select(
            ["meter_no", "action", "reason", "params", "state", "result", "attempts", "created_at", "updated_at"],
            sa.select(
                meter.c.meter_no,
                sa.literal(CUT),
                sa.literal(CUT_REASON),
                sa.literal_column("'{}'"),  # JSON: text both databases take as the column's type
                sa.literal("requested"),
                sa.literal(""),
                sa.literal(0),
                at,
                at,
            )
            .select_from(meter.join(site, site.c.id == meter.c.site_id))
            # Meters looked up by the IN (a join made SQLite scan every meter: ingest's temp
            # tables have no statistics).
            .where(meter.c.meter_no.in_(meter_nos), self.due(meter=meter, site=site, charged_paise=charged_paise))
            .order_by(meter.c.meter_no),
            include_defaults=False,
        )


@dataclass(frozen=True)
class Classification:
    """What becomes of a reading, first rule first: a meter that is unknown or outside the
    caller's sites (one answer for both, so a key learns nothing of other sites) → unknown; a
    retired meter → retired; an interval already stored → duplicate if the same Wh, else conflict
    (the first value kept); a reading repeated within the group is judged against the first of its
    interval in the group; anything else → stored."""

    UNSEEN, RETIRED, OPEN = 0, 1, 2  # a meter's standing for the caller

    def standing(self, *, visible: ColumnElement[bool], active: ColumnElement[bool]) -> ColumnElement[int]:
        """UNSEEN (unknown, or not in the caller's sites), RETIRED, or OPEN to readings."""
        return sa.case((sa.not_(visible), self.UNSEEN), (sa.not_(active), self.RETIRED), else_=self.OPEN)

    def outcome(
        self,
        *,
        standing: ColumnElement[int],
        wh: ColumnElement[int],
        stored_wh: ColumnElement[int | None],
        first_in_group: ColumnElement[bool],
        first_wh_in_group: ColumnElement[int],
    ) -> ColumnElement[int]:
        """An `OutcomeCode` as SQL (`first_…_in_group`: among the readings of its interval that
        are OPEN)."""
        return sa.case(
            (standing == self.UNSEEN, OutcomeCode.UNKNOWN_METER),
            (standing == self.RETIRED, OutcomeCode.RETIRED_METER),
            (stored_wh.is_not(None), sa.case((stored_wh == wh, OutcomeCode.DUPLICATE), else_=OutcomeCode.CONFLICT)),
            (first_in_group, OutcomeCode.STORED),
            (first_wh_in_group == wh, OutcomeCode.DUPLICATE),
            else_=OutcomeCode.CONFLICT,
        )

    def kept_wh(
        self, stored_wh: ColumnElement[int | None], first_wh_in_group: ColumnElement[int]
    ) -> ColumnElement[int]:
        """The Wh a duplicate or conflict is compared with: the stored value, else the group's first."""
        return sa.func.coalesce(stored_wh, first_wh_in_group)


class OutcomeCode:
    """`storage.ingest.readings.Outcome` as the integers the statements compute."""

    STORED, DUPLICATE, CONFLICT, UNKNOWN_METER, RETIRED_METER = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Rules:
    """The rules one set of ingest statements is built from."""

    dg_share: DgShare = DgShare()
    charge: Charge = Charge()
    registers: Registers = Registers()
    cut: CutDecision = CutDecision()
    classification: Classification = Classification()


RULES = Rules()
