"""Read-only views: what iSocietyManager polls, what the portal shows, statements and reports."""
