"""`/metrics` under `gateway serve --workers 2`: counters add up across workers, whichever answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.test_scale_out import METERS, fleet, gateway_serve, healthy, packets, postgresql_only

__all__ = ["fleet"]  # the fixture, used by name below


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called `name`, by its labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def stored_by_worker(metrics_dir: Path) -> dict[str, float]:
    """Packets stored by each worker (pid), read from its own file."""
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        merged = MultiProcessCollector.merge([str(path)])
        counts[path.stem.rsplit("_", 1)[1]] = sum(
            sample.value
            for metric in merged
            for sample in metric.samples
            if sample.name == "gateway_ingest_packets_total" and sample.labels.get("outcome") == "stored"
        )
    return counts


@postgresql_only
async def test_every_scrape_of_a_two_worker_gateway_counts_every_packet(
    database_url: str, fleet: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left by an earlier run")  # must not be read
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    unsent = packets(METERS[0], 400)
    headers = {"Authorization": f"Bearer {fleet[str(METERS[0])]}"}
    sent = 0
    with gateway_serve(database_url, tmp_path, "--workers", "2") as (base, _process):
        connector = aiohttp.TCPConnector(force_close=True)  # a connection each: either worker may take it
        async with aiohttp.ClientSession(connector=connector) as session:
            await healthy(session, base)
            assert "999999" not in stored_by_worker(metrics_dir)  # the stale file was removed

            async def post(packet: dict[str, object]) -> None:
                async with session.post(f"{base}/meter", json=packet, headers=headers) as response:
                    assert response.status == 200

            # Until both workers have stored some (so no one worker's own count is the total).
            while len([n for n in stored_by_worker(metrics_dir).values() if n]) < 2:
                batch, unsent = unsent[:16], unsent[16:]
                assert batch, f"one worker took every connection: {stored_by_worker(metrics_dir)}"
                await asyncio.gather(*(post(packet) for packet in batch))
                sent += len(batch)
            scrapes = []
            for _ in range(8):
                async with session.get(f"{base}/metrics") as response:
                    assert response.status == 200
                    scrapes.append(await response.text())
    assert sum(stored_by_worker(metrics_dir).values()) == sent
    stored = (("outcome", "stored"), ("reason", ""))
    meter_ok = (("method", "POST"), ("route", "/meter"), ("status", "200"))
    for text in scrapes:
        assert samples(text, "gateway_ingest_packets_total")[stored] == sent
        assert samples(text, "gateway_http_request_duration_seconds_count")[meter_ok] == sent
