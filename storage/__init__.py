"""The smart-meter store: SQLModel tables, the engine, transactional operations, migrations.

Imports nothing of ours. Everything the HTTP handlers and the scheduled jobs both need
(recording readings, settling money, rolling days up) lives here as store functions.
"""
