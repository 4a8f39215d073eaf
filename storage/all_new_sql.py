"""The SQL of ingest's all-new path (see `storage.batch_sql`): a group of readings that are all
new, for known active meters in the caller's sites, stored with every effect by set-based
statements instead of reading by reading.

Both dialects compute the same things the careful path computes in Python (`storage.ingest`):
the source (a reading without one came from a DG if some DG of its site was ON at any moment
of its half hour: ON at its start, i.e. the latest change at or before it, two at one instant
counting as ON, or turned ON within it), the charge (kWh × the site's tariff for that source,
rounded half-up to the paisa), the registers, balances and last reading time, and a cut for
each charged meter of an auto-cut site whose balance is now ≤ 0 and that has none pending.
`tests/test_ingest_paths.py` holds the two paths to the same results.
"""

from __future__ import annotations

try:
    from asyncpg.exceptions import DivisionByZeroError
except ModuleNotFoundError:  # the plain install (SQLite only): no PostgreSQL statement can raise it

    class DivisionByZeroError(Exception):  # type: ignore[no-redef]
        """Stands in for asyncpg's error without the `postgres` extra."""

# SQLite

# The all-new path's working tables, in the connection's in-memory temp schema. Without
# statistics the planner would scan every meter to join them (measured: 0.5 ms a statement for
# a group of 32 among 10,000 meters): the IN and CROSS JOINs below make it start from them.
INCOMING_TABLES = (
    "CREATE TEMP TABLE IF NOT EXISTS incoming (meter_no INTEGER NOT NULL, interval_start TEXT NOT NULL, "
    "interval_end TEXT NOT NULL, kwh INTEGER NOT NULL, source TEXT NOT NULL, charge INTEGER NOT NULL)",
    "CREATE TEMP TABLE IF NOT EXISTS charged (meter_no INTEGER PRIMARY KEY, grid INTEGER NOT NULL, "
    "dg INTEGER NOT NULL, charge INTEGER NOT NULL, last_end TEXT NOT NULL)",
    "CREATE TEMP TABLE IF NOT EXISTS scope (scope INTEGER NOT NULL, site_id TEXT NOT NULL, "
    "PRIMARY KEY (scope, site_id)) WITHOUT ROWID",
)
# The group (a JSON array of [meter, start, end, Wh, source, scope]) priced: the rows of active
# meters of their scope's sites (temp.scope; scope 0: any site), with their source and charge.
PRICE_INCOMING = """
INSERT INTO temp.incoming (meter_no, interval_start, interval_end, kwh, source, charge)
SELECT meter_no, interval_start, interval_end, kwh, source,
    (kwh * CASE source WHEN 'dg' THEN tariff_dg ELSE tariff_grid END + 500) / 1000
FROM (
    SELECT i.meter_no, i.interval_start, i.interval_end, i.kwh, s.tariff_grid, s.tariff_dg,
        CASE WHEN i.source IS NOT NULL THEN i.source
        WHEN EXISTS (SELECT 1 FROM dg AS d WHERE d.site_id = m.site_id AND (
            (SELECT c.status FROM dg_status_change AS c WHERE c.site_id = d.site_id AND c.dg_no = d.dg_no
                AND c.at <= i.interval_start ORDER BY c.at DESC, c.status DESC LIMIT 1) = 'ON'
            OR EXISTS (SELECT 1 FROM dg_status_change AS c WHERE c.site_id = d.site_id AND c.dg_no = d.dg_no
                AND c.at > i.interval_start AND c.at < i.interval_end AND c.status = 'ON')))
        THEN 'dg' ELSE 'grid' END AS source
    FROM (
        SELECT value ->> 0 AS meter_no, value ->> 1 AS interval_start, value ->> 2 AS interval_end,
            value ->> 3 AS kwh, value ->> 4 AS source, value ->> 5 AS scope
        FROM json_each(?1)
    ) AS i
    CROSS JOIN meter AS m ON m.meter_no = i.meter_no CROSS JOIN site AS s ON s.id = m.site_id
    WHERE m.active AND (i.scope = 0 OR EXISTS (
        SELECT 1 FROM temp.scope AS sc WHERE sc.scope = i.scope AND sc.site_id = m.site_id))
)
"""
INSERT_INCOMING = """
INSERT INTO reading (meter_no, interval_start, kwh, source, charge, received_at)
SELECT meter_no, interval_start, kwh, source, charge, ?1 FROM temp.incoming WHERE true
ON CONFLICT DO NOTHING
"""
SUM_CHARGED = """
INSERT INTO temp.charged (meter_no, grid, dg, charge, last_end)
SELECT meter_no, sum(CASE source WHEN 'dg' THEN 0 ELSE kwh END), sum(CASE source WHEN 'dg' THEN kwh ELSE 0 END),
    sum(charge), max(interval_end)
FROM temp.incoming GROUP BY meter_no
"""
UPDATE_CHARGED = """
UPDATE meter SET grid_kwh = grid_kwh + c.grid, dg_kwh = dg_kwh + c.dg, balance = balance - c.charge,
    last_reading_at = CASE WHEN last_reading_at IS NULL OR last_reading_at < c.last_end THEN c.last_end
    ELSE last_reading_at END
FROM temp.charged AS c WHERE meter.meter_no IN (SELECT meter_no FROM temp.charged) AND meter.meter_no = c.meter_no
"""
CUT_CHARGED = """
INSERT INTO command (meter_no, action, reason, params, state, result, created_at, updated_at)
SELECT m.meter_no, 'cut', ?1, '{}', 'requested', '', ?2, ?2
FROM temp.charged AS c CROSS JOIN meter AS m ON m.meter_no = c.meter_no CROSS JOIN site AS s ON s.id = m.site_id
WHERE s.auto_cut AND m.relay_on AND c.charge > 0 AND m.balance <= 0
    AND NOT EXISTS (SELECT 1 FROM command AS x WHERE x.meter_no = m.meter_no AND x.action = 'cut'
        AND x.state IN ('requested', 'sent'))
"""

# PostgreSQL


class NotAllNew:
    """How the PostgreSQL statement says "not all new": it divides by zero, which aborts the
    statement (and its savepoint) before anything of it is kept."""

    postgres_error = DivisionByZeroError


# One statement. Meters are locked FOR UPDATE in meter order first (MATERIALIZED: before anything
# else), as on the careful path, so that several gateway processes never deadlock.
PG_STORE_ALL_NEW = """
WITH incoming AS (
    SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[], $4::varchar[], $5::int[])
        AS i(meter_no, interval_start, wh, source, scope)
), locked AS MATERIALIZED (
    SELECT m.meter_no, m.site_id, s.tariff_grid, s.tariff_dg
    FROM meter AS m JOIN site AS s ON s.id = m.site_id
    WHERE m.meter_no = ANY($1::bigint[]) AND m.active
    ORDER BY m.meter_no FOR UPDATE OF m
), sourced AS (
    SELECT i.meter_no, i.interval_start, i.wh::numeric / 1000 AS kwh, l.tariff_grid, l.tariff_dg,
        CASE WHEN i.source IS NOT NULL THEN i.source
        WHEN EXISTS (SELECT 1 FROM dg AS d WHERE d.site_id = l.site_id AND (
            (SELECT c.status FROM dg_status_change AS c WHERE c.site_id = d.site_id AND c.dg_no = d.dg_no
                AND c.at <= i.interval_start ORDER BY c.at DESC, c.status DESC LIMIT 1) = 'ON'
            OR EXISTS (SELECT 1 FROM dg_status_change AS c WHERE c.site_id = d.site_id AND c.dg_no = d.dg_no
                AND c.at > i.interval_start AND c.at < i.interval_start + interval '30 minutes'
                AND c.status = 'ON')))
        THEN 'dg' ELSE 'grid' END AS source
    FROM incoming AS i JOIN locked AS l ON l.meter_no = i.meter_no
    WHERE i.scope = 0 OR EXISTS (
        SELECT 1 FROM unnest($6::int[], $7::varchar[]) AS sc(scope, site_id)
        WHERE sc.scope = i.scope AND sc.site_id = l.site_id)
), inserted AS (
    INSERT INTO reading (meter_no, interval_start, kwh, source, charge, received_at)
    SELECT meter_no, interval_start, kwh, source,
        round(kwh * CASE source WHEN 'dg' THEN tariff_dg ELSE tariff_grid END, 2), $8
    FROM sourced
    ON CONFLICT DO NOTHING
    RETURNING meter_no, interval_start, kwh, source, charge
), charged AS (
    SELECT meter_no, sum(CASE source WHEN 'dg' THEN 0 ELSE kwh END) AS grid,
        sum(CASE source WHEN 'dg' THEN kwh ELSE 0 END) AS dg, sum(charge) AS charge,
        max(interval_start) + interval '30 minutes' AS last_end
    FROM inserted GROUP BY meter_no
), updated AS (
    UPDATE meter SET grid_kwh = meter.grid_kwh + c.grid, dg_kwh = meter.dg_kwh + c.dg,
        balance = meter.balance - c.charge, last_reading_at = GREATEST(meter.last_reading_at, c.last_end)
    FROM charged AS c WHERE meter.meter_no = c.meter_no
    RETURNING meter.meter_no, meter.site_id, meter.balance, meter.relay_on, c.charge
), cuts AS (  -- run to completion although nothing reads it
    INSERT INTO command (meter_no, action, reason, params, state, result, created_at, updated_at)
    SELECT u.meter_no, 'cut', $9, '{}', 'requested', '', $8, $8
    FROM updated AS u JOIN site AS s ON s.id = u.site_id
    WHERE s.auto_cut AND u.relay_on AND u.charge > 0 AND u.balance <= 0
        AND NOT EXISTS (SELECT 1 FROM command AS x WHERE x.meter_no = u.meter_no AND x.action = 'cut'
            AND x.state IN ('requested', 'sent'))
)
SELECT 1 / (CASE WHEN (SELECT count(*) FROM inserted) = $10 THEN 1 ELSE 0 END)
"""
