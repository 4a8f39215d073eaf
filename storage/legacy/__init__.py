"""The seed's legacy files: today's readings and the master database file, and its importer."""
