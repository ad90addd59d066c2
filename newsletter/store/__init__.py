"""The subscriber store: SQLAlchemy Core over SQLite (default) or PostgreSQL."""
