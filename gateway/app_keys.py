"""Typed keys (`web.AppKey`) for the objects the app factory shares with handlers and jobs.

It imports the classes it names, for their types only, and nothing imports back from handlers:
every module of `gateway` can use these keys without a cycle.
"""

from __future__ import annotations

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from adapters.headend import HeadEnd
from adapters.webhooks import WebhookSender
from gateway.auth import DeviceTokenCache, KeyCache, LegacyMeters
from gateway.settings import Settings
from scheduler.alerts import BalanceAlertJob
from scheduler.deliveries import DeliveryJob
from scheduler.dispatcher import CommandDispatcher
from scheduler.partitions import PartitionJob
from scheduler.reconcile import ReconcileJob
from scheduler.rollup import RollupJob
from scheduler.runner import JobRunner
from storage.clock import Clock
from storage.db.engine import Database
from storage.ingest.writer import ReadingWriter

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
CLOCK = web.AppKey("clock", Clock)
KEYS = web.AppKey("keys", KeyCache)
DEVICES = web.AppKey("devices", DeviceTokenCache)
LEGACY = web.AppKey("legacy", LegacyMeters)  # meters allowed to post without a token
WRITER = web.AppKey("writer", ReadingWriter)
ROLLUP = web.AppKey("rollup", RollupJob)
SCHEDULER = web.AppKey("scheduler", AsyncIOScheduler)
CALLBACKS = web.AppKey("callbacks", WebhookSender)
DELIVERIES = web.AppKey("deliveries", DeliveryJob)
HEADEND = web.AppKey("headend", HeadEnd)
DISPATCHER = web.AppKey("dispatcher", CommandDispatcher)
RUNNER = web.AppKey("runner", JobRunner)
RECONCILER = web.AppKey("reconciler", ReconcileJob)
PARTITIONS = web.AppKey("partitions", PartitionJob)
ALERTS = web.AppKey("alerts", BalanceAlertJob)
ACTOR = web.RequestKey("actor", str)  # who makes this request, for the audit trail: "key:<name>", "user:<name>"
