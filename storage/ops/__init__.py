"""Operations: backups and restores, partitions and retention, locks, notifications, the WAL."""
