"""The one settings object: environment variables `GATEWAY_*`, CLI flags over them."""

from __future__ import annotations

import ipaddress
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from storage.days import CATCH_UP_DAYS
from storage.db.engine import missing_driver

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/gateway.db"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated addresses or networks ("10.0.0.0/8, ::1"); ValueError names a bad entry."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {entry!r}") from None
    return tuple(networks)


# Secrets that may be given as a file instead (`GATEWAY_<NAME>_FILE`, e.g. a systemd credential):
# the file's content, without its trailing newline, is the value.
SECRET_FILES = {
    "database_url_file": "database_url",
    "headend_token_file": "headend_token",
    "secret_key_file": "secret_key",
}


class Settings(BaseSettings):
    """Frozen configuration. Every field is `GATEWAY_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", frozen=True, extra="forbid")

    database_url: str = Field(default=DEFAULT_DATABASE_URL, repr=False)  # may hold a password
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    log_level: str = "INFO"
    # Ingest. `ingest_auth` is gone: GATEWAY_INGEST_AUTH=off turned off every check for every
    # meter. Legacy meters without a token are now flagged one by one (`gateway meter
    # legacy-ingest`); setting it off is refused at start so nobody believes it still applies.
    ingest_auth: bool | None = Field(default=None, exclude=True)
    max_packet_age_days: int = Field(default=35, ge=1)
    max_interval_kwh: Decimal = Field(default=Decimal(500), gt=0)
    max_batch: int = Field(default=5000, ge=1)
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    writer_queue_packets: int = Field(default=50_000, ge=1)
    writer_batch_packets: int = Field(default=5_000, ge=1)
    # Head-end and callbacks
    headend_url: str | None = None
    headend_token: SecretStr | None = None
    callback_allow_private: bool = False
    callback_every_seconds: int = Field(default=5, ge=1, le=60)  # the delivery job's periodic pass
    callback_horizon_hours: float = Field(default=72, gt=0)  # undelivered DG events are retried this long
    recharge_max: Decimal = Field(default=Decimal("100000.00"), gt=0)
    headend_attempt_seconds: float = Field(default=5.0, gt=0)  # one HTTP attempt
    headend_deadline_seconds: float = Field(default=15.0, gt=0)  # one call, retries included
    commands_every_seconds: int = Field(default=10, ge=1, le=3600)  # the command dispatcher job
    alerts_every_seconds: int = Field(default=30, ge=1, le=3600)  # the balance alert job
    # Data-quality flags (storage/reads/quality.py): a spike is above this × the half hour's 14-day median;
    # a zero run this many half hours long; a late reading this many minutes after its interval.
    quality_spike_factor: Decimal = Field(default=Decimal(4), gt=0)
    quality_zero_run: int = Field(default=8, ge=1, le=48)
    quality_late_minutes: int = Field(default=180, ge=1)
    command_deadline_minutes: int = Field(default=1440, ge=1)  # a queued cut/restore is retried this long
    reconcile_every_seconds: int = Field(default=30, ge=1, le=3600)  # the reconciliation job
    recharge_expiry_minutes: int = Field(default=1440, ge=1)  # an unconfirmed recharge then ends as error
    # A command or recharge sent this long ago without an answer recorded was orphaned by a process
    # that died: the jobs take it over. Unset: max(120, 4 × headend_deadline_seconds).
    orphan_after_seconds: float | None = Field(default=None, gt=0)
    # Scheduled jobs (off: this process runs none, e.g. when another one does)
    scheduler: bool = True
    rollup_every_minutes: int = Field(default=5, ge=1, le=60)
    # Scale-out: processes of `gateway serve` (PostgreSQL only), and how long readings are kept
    # (unset: for ever). Daily totals are kept either way.
    workers: int = Field(default=1, ge=1, le=64)
    retention_days: int | None = Field(default=None, ge=1)
    # Web portal: the key that signs and encrypts session cookies (unset: see gateway/portal/secret.py),
    # and whether cookies are sent over HTTPS only (turn on behind TLS).
    secret_key: SecretStr | None = Field(default=None, min_length=32)
    cookie_secure: bool = False
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated
    # addresses or networks, e.g. "127.0.0.1,10.0.0.0/8"); empty: the peer is the client.
    trusted_proxies: str = ""
    # SQLite backups (the backup job and `gateway backup`; PostgreSQL is backed up with pg_dump)
    backup_dir: Path | None = None  # None: `backups/` beside the database file (var/backups by default)
    backup_every_minutes: int = Field(default=120, ge=1)
    backup_keep: int = Field(default=12, ge=1)
    # Input only: files holding the secrets above (SECRET_FILES); read once, then left unset.
    database_url_file: Path | None = None
    headend_token_file: Path | None = None
    secret_key_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for file_field, field in SECRET_FILES.items():
            path = data.pop(file_field, None)
            if path is None:
                continue
            if data.get(field) is not None:
                raise ValueError(f"give {field} or {file_field}, not both")
            try:
                data[field] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ValueError(f"{file_field}: cannot read {path}: {exc.strerror or exc}") from None
        return data

    @field_validator("database_url")
    @classmethod
    def _driver_installed(cls, value: str) -> str:
        if (why := missing_driver(value)) is not None:
            raise ValueError(why)
        return value

    @field_validator("ingest_auth")
    @classmethod
    def _no_global_ingest_switch(cls, value: bool | None) -> bool | None:
        if value is False:
            raise ValueError(
                "GATEWAY_INGEST_AUTH=off is no longer supported: allow legacy meters one by one with "
                "`gateway meter legacy-ingest METER_NO on` (credentials that are sent are always checked)"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        parse_networks(value)  # ValueError names the entry that is not an address or network
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        """GATEWAY_TRUSTED_PROXIES as networks (an address is a network of one)."""
        return parse_networks(self.trusted_proxies)

    @model_validator(mode="after")
    def _orphans_outlast_a_headend_call(self) -> Settings:
        # Taking over a recharge or command still in flight would be safe (the head-end is
        # idempotent by id) but would send it twice: wait longer than a call may take.
        if self.orphan_after_seconds is not None and self.orphan_after_seconds <= self.headend_deadline_seconds:
            raise ValueError("orphan_after_seconds must be longer than headend_deadline_seconds")
        return self

    @property
    def orphaned_after(self) -> float:
        """Seconds after which an unanswered command or recharge is taken over by the jobs."""
        if self.orphan_after_seconds is not None:
            return self.orphan_after_seconds
        return max(120.0, 4 * self.headend_deadline_seconds)

    @model_validator(mode="after")
    def _retention_outlasts_late_packets(self) -> Settings:
        # A day is re-rolled from its readings when a late packet lands in it, and the rollup
        # catches up on days up to 40 back: readings must outlive both, or a re-roll would
        # write a day's totals from half its readings.
        shortest = max(self.max_packet_age_days, CATCH_UP_DAYS) + 2
        if self.retention_days is not None and self.retention_days < shortest:
            raise ValueError(
                f"retention_days must be at least {shortest}: longer than max_packet_age_days and the rollup's catch-up"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        """True on the embedded SQLite default."""
        return self.database_url.startswith("sqlite")

    @property
    def backup_path(self) -> Path:
        """Where the backup job and `gateway backup` put backups."""
        if self.backup_dir is not None:
            return self.backup_dir
        database = make_url(self.database_url).database or "gateway.db"
        return Path(database).parent / "backups"

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given fields replaced (None means: keep); used for CLI flags."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return Settings(**{**self.model_dump(), **given}) if given else self
