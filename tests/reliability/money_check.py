"""The money check after a fault run (tests/reliability/money.py): the clients' orders, the
gateway's database and the head-end's books must tell the same story.

- Every recharge the head-end applied is a `success` here with exactly one ledger credit of its
  amount, and every `success` here was applied by the head-end ("lost" and "credited here only").
- No order (one client request, retried or not) became two recharges, two head-end credits or
  two ledger credits ("credited twice").
- Every recharge is final and, no refusal being injected, `success`; every order the client
  followed to its end was answered `success` with the transaction id, token and balance the
  database and the head-end hold ("reply mismatches").
- For every meter: stored balance = opening + credits + adjustments − Σ reading charges
  (`storage.money.ledger.check_ledger`), and the head-end's credited total = the ledger's credits
  ("ledger mismatches").
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from storage.db.engine import Database
from storage.db.models import LedgerEntry, Recharge
from storage.money.ledger import check_ledger
from tests.reliability.gatewayproc import FIRST_METER


@dataclass
class Order:
    """One recharge as the client asked for it, and what it was told in the end."""

    number: int
    meter_no: int
    amount: Decimal
    key: str | None
    attempts: int = 0
    in_doubt: bool = False  # a request was sent and its answer never came
    outcome: str = ""  # "success", "no answer" (in doubt without a key), or what went wrong
    transaction_id: str = ""
    token: str = ""
    balance: str = ""

    def answered(self, data: dict[str, str]) -> None:
        """Record call 3's success answer."""
        self.outcome = "success"
        self.transaction_id, self.token, self.balance = data["transaction_id"], data["token"], data["balance"]


@dataclass
class MoneyReport:
    """What the clients were told, what the database and the head-end hold, and what disagrees."""

    orders: int = 0
    keyed: int = 0
    acknowledged: int = 0  # orders the client saw end in success
    in_doubt_keyed: int = 0  # no answer to a request, resent with its key
    in_doubt_unkeyed: int = 0  # no answer, not resent (no key)
    unkeyed_taken: int = 0  # of those, found in the database (settled without the client)
    unkeyed_never_taken: int = 0  # of those, never written: no money moved
    recharges: int = 0  # rows in the database
    headend_applied: int = 0
    credited_twice: int = 0  # must be 0
    lost: int = 0  # applied by the head-end or acknowledged, not credited here: must be 0
    credited_here_only: int = 0  # credited here, never applied by the head-end: must be 0
    not_final: int = 0  # recharges still requested/waiting: must be 0
    not_success: int = 0  # recharges ended as error (nothing is refused in these runs): must be 0
    unresolved_orders: list[str] = field(default_factory=list)  # orders not ended in success: must be empty
    reply_mismatches: int = 0  # must be 0
    ledger_mismatches: int = 0  # meters; must be 0
    meters: int = 0
    opening: Decimal = Decimal(0)
    credits: Decimal = Decimal(0)
    debits: Decimal = Decimal(0)
    balance: Decimal = Decimal(0)
    readings: int = 0
    answers: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no rupee is missing or doubled and every reply agrees."""
        return not (
            self.credited_twice
            or self.lost
            or self.credited_here_only
            or self.not_final
            or self.not_success
            or self.unresolved_orders
            or self.reply_mismatches
            or self.ledger_mismatches
        )

    def lines(self) -> list[str]:
        """The report as text."""
        return [
            f"recharges sent: {self.orders:,} ({self.keyed:,} with an Idempotency-Key), acknowledged: "
            f"{self.acknowledged:,}; in the database: {self.recharges:,}, applied by the head-end: "
            f"{self.headend_applied:,}",
            f"in doubt (sent, no answer): {self.in_doubt_keyed + self.in_doubt_unkeyed} — with a key, resent: "
            f"{self.in_doubt_keyed}; without, not resent: {self.in_doubt_unkeyed} (settled by reconciliation: "
            f"{self.unkeyed_taken}, never taken: {self.unkeyed_never_taken})",
            f"credited twice: {self.credited_twice}, lost: {self.lost}, credited here only: {self.credited_here_only}",
            f"not final: {self.not_final}, not success: {self.not_success}, orders unresolved: "
            f"{len(self.unresolved_orders)} {self.unresolved_orders[:3] or ''}".rstrip(),
            f"reply mismatches: {self.reply_mismatches}, ledger mismatches (meters): {self.ledger_mismatches} of "
            f"{self.meters}",
            f"ledger: opening {self.opening} + credits {self.credits} − debits {self.debits} = {self.balance} "
            f"(Σ balances); readings acknowledged: {self.readings:,}",
            f"answers to call 3: {dict(sorted(self.answers.items()))}; run time {self.seconds:.1f} s",
            "RESULT: " + ("OK" if self.ok else "BROKEN PROMISE"),
        ]


async def check_money(db: Database, orders: list[Order], headend: dict[str, Any], *, meters: int) -> MoneyReport:
    """Compare the orders, the database (recharges, ledger, balances) and the head-end's state."""
    async with db.reader() as session:
        rows = list((await session.execute(select(Recharge))).scalars())
        credits = (
            await session.execute(
                select(LedgerEntry.transaction_id, LedgerEntry.meter_no, LedgerEntry.amount).where(
                    LedgerEntry.kind == "credit"
                )
            )
        ).all()
    report = MoneyReport(orders=len(orders), keyed=sum(o.key is not None for o in orders), recharges=len(rows))
    by_amount: dict[Decimal, list[Recharge]] = collections.defaultdict(list)
    for row in rows:
        by_amount[row.amount].append(row)
    entries: collections.Counter[str | None] = collections.Counter(tid for tid, _, _ in credits)
    applied = {tid: c for tid, c in headend.get("credits", {}).items() if c["state"] == "applied"}
    applied_by_amount = collections.Counter(Decimal(c["amount"]) for c in applied.values())
    report.headend_applied = len(applied)

    # Per database row: final, success, credited once here and applied once at the head-end.
    for row in rows:
        report.not_final += row.state not in ("success", "error")
        report.not_success += row.state == "error"
        credited = entries[row.transaction_id]
        report.credited_twice += credited > 1
        if row.state == "success" and row.transaction_id not in applied:
            report.credited_here_only += 1
        if row.transaction_id in applied and (row.state != "success" or credited == 0):
            report.lost += 1
    report.lost += sum(1 for tid in applied if tid not in {r.transaction_id for r in rows})

    # Per order: one recharge, one head-end credit, and what the client was told matches both.
    for order in orders:
        found = by_amount.get(order.amount, [])
        report.credited_twice += len(found) > 1 or applied_by_amount[order.amount] > 1
        if order.in_doubt and order.key is not None:
            report.in_doubt_keyed += 1
        elif order.in_doubt:
            report.in_doubt_unkeyed += 1
            report.unkeyed_taken += bool(found)
            report.unkeyed_never_taken += not found
        if order.outcome == "success":
            report.acknowledged += 1
            if not found or found[0].state != "success":
                report.lost += 1
            elif _reply_differs(order, found[0], applied.get(found[0].transaction_id)):
                report.reply_mismatches += 1
        elif order.outcome != "no answer":
            report.unresolved_orders.append(f"#{order.number}: {order.outcome}")

    # Per meter: the ledger identity, and the head-end's books against ours.
    credited_here: collections.Counter[int] = collections.Counter()
    for _, meter_no, amount in credits:
        credited_here[meter_no] += amount
    headend_meters = headend.get("meters", {})
    report.meters = meters
    for meter_no in range(FIRST_METER, FIRST_METER + meters):
        check = await check_ledger(db, meter_no=meter_no)
        theirs = Decimal(headend_meters.get(str(meter_no), {}).get("credited", "0"))
        report.ledger_mismatches += not check.ok or theirs != credited_here[meter_no] or check.adjustments != 0
        report.opening += check.opening
        report.credits += check.credits
        report.debits += check.debits
        report.balance += check.balance
    return report


def _reply_differs(order: Order, row: Recharge, headend_credit: dict[str, Any] | None) -> bool:
    """True when the client's success answer is not the recharge the database and head-end hold."""
    token = headend_credit["token"] if headend_credit else None
    if order.key is None and not order.token:  # followed through call 4 only: it has the id, not the token
        return order.transaction_id != row.transaction_id
    told = (order.transaction_id, order.token, Decimal(order.balance))
    return told != (row.transaction_id, token, row.balance_after) or row.token != token
