"""Where `gateway serve` keeps prometheus-client's multiprocess files (no metric imported here).

prometheus-client chooses between in-process values and multiprocess files when it is first
imported, from PROMETHEUS_MULTIPROC_DIR: the CLI calls this before anything imports it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path


def share_metrics_between_workers() -> None:
    """Put prometheus-client in multiprocess mode for `--workers N`, before any metric exists.

    The mode is chosen when prometheus-client is imported, from PROMETHEUS_MULTIPROC_DIR: this
    sets it (a fresh private directory, removed on exit) unless the operator did (the systemd
    unit points it at its RuntimeDirectory). Files left there by an earlier run are removed:
    their counts belong to processes that are gone.
    """
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the metrics directory was set")
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        Path(given).mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink(missing_ok=True)
        return
    directory = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    arbiter = os.getpid()

    def remove() -> None:  # gunicorn's workers exit through atexit too: only the arbiter removes it
        if os.getpid() == arbiter:
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
