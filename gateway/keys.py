"""Typed keys for objects shared on the application. A leaf module: no imports of ours but types."""

from __future__ import annotations

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from adapters.headend import HeadEnd
from adapters.webhooks import WebhookSender
from gateway.auth import DeviceTokenCache, KeyCache, LegacyMeters
from gateway.settings import Settings
from scheduler.alerts import BalanceAlertJob
from scheduler.commands import CommandDispatcher
from scheduler.deliveries import DeliveryJob
from scheduler.partitions import PartitionJob
from scheduler.reconcile import ReconcileJob
from scheduler.rollup import RollupJob
from scheduler.runner import JobRunner
from storage.clock import Clock
from storage.engine import Database
from storage.writer import ReadingWriter

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
