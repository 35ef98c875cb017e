"""Where rows and definitions come from: one module per kind of database."""
