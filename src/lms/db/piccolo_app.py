"""Piccolo app config: registers our tables and where their migrations live."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from lms.db.tables import ALL_TABLES

APP_CONFIG = AppConfig(
    app_name="lms",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=ALL_TABLES,
    migration_dependencies=[],
    commands=[],
)
