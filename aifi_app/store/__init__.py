"""The durable queue: SQLite database, study and job states, audit log."""
