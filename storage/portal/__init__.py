"""Web portal accounts: residents and staff, their passwords and their life cycle."""
