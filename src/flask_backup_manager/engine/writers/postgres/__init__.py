"""The ``postgres`` format (gzipped SQL for psql), from each kind of source."""
