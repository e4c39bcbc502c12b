"""Database: Piccolo tables and migrations, the engine and its asyncpg pool, raw hot-path queries."""
