"""Each SQL format read back as its client (psql, the sqlite3 shell) reads it."""
