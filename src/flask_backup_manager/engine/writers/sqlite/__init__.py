"""The ``sqlite3`` and ``sqlite3_db`` formats, from each kind of source."""
