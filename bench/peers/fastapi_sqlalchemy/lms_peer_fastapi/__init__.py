"""lms's five hot endpoints the way most Python teams would write them: FastAPI, SQLAlchemy 2's
async ORM on asyncpg, Pydantic v2 response models, Uvicorn (a benchmark peer of lms)."""
