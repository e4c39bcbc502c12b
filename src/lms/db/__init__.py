"""Database: Piccolo tables and migrations, the engine and its asyncpg pool, queries by area."""
