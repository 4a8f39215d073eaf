"""The portal's cookie key, from `GATEWAY_SECRET_KEY` or made on first start.

- Set: used as given (at least 32 characters). Every process of one deployment needs the same.
- Unset on SQLite: a random key is written once to `secret_key` beside the database file
  (`var/secret_key` by default, mode 0600) and read back on later starts, so sessions
  survive restarts with nothing to configure.
- Unset on PostgreSQL: a random key for this process only, with a warning. Sessions then end
  when the process restarts and do not carry between processes: set the variable there.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from pathlib import Path

from sqlalchemy.engine import make_url

from gateway.settings import Settings

log = logging.getLogger("gateway.portal")
KEY_FILE_NAME = "secret_key"


def fernet_key(secret: str) -> bytes:
    """The Fernet key (32 bytes, url-safe base64) derived from a secret of any length."""
    digest = hashlib.sha256(b"meter-gateway portal session\0" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest)


def key_file(settings: Settings) -> Path | None:
    """Where the generated key is kept: beside the SQLite file; None for PostgreSQL or memory."""
    if not settings.is_sqlite:
        return None
    database = make_url(settings.database_url).database
    if not database or database == ":memory:":
        return None
    return Path(database).parent / KEY_FILE_NAME


def secret_key(settings: Settings) -> str:
    """The secret to derive cookie keys from (see the module docstring for where it comes from)."""
    if settings.secret_key:
        return settings.secret_key.get_secret_value()
    path = key_file(settings)
    if path is None:
        log.warning(
            "GATEWAY_SECRET_KEY is not set: portal sessions use a key of this process only "
            "(they end on restart and are not shared between processes); set it in production"
        )
        return secrets.token_urlsafe(32)
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    generated = secrets.token_urlsafe(32)
    try:
        # O_EXCL: if another process wrote the file first, use theirs.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(generated + "\n")
    log.info("generated the portal's secret key in %s", path)
    return generated
