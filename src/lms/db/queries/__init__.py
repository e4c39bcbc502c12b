"""Raw SQL for the hot paths, one module per area, run on the engine's asyncpg pool."""
