"""PostgreSQL LISTEN/NOTIFY: how one API process tells the others that something changed."""
