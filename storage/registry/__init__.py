"""What staff register: sites, meters, DGs and API keys, one module per entity; meter changes."""
