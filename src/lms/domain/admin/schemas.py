"""Bodies of /admin/users, /admin/settings and /admin/audit."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from msgspec import UNSET, Meta, UnsetType

from lms.api.schemas import CamelStruct
from lms.domain.admin.system_settings import RuntimeSettings
from lms.domain.auth.schemas import RoleName


class UserUpdate(CamelStruct, forbid_unknown_fields=True):
    json_schema_extra: ClassVar[dict[str, Any]] = {"minProperties": 1}

    role: RoleName | UnsetType = UNSET
    is_active: bool | UnsetType = UNSET


class SystemSettingsOut(CamelStruct):
    registration_open: bool
    otp_ttl_seconds: int
    otp_max_attempts: int
    completion_threshold_percent: float
    require_watch_to_complete: bool
    max_upload_bytes: int
    updated_at: datetime | None
    updated_by: uuid.UUID | None

    @classmethod
    def of(cls, value: RuntimeSettings) -> SystemSettingsOut:
        return cls(
            registration_open=value.registration_open,
            otp_ttl_seconds=value.otp_ttl_seconds,
            otp_max_attempts=value.otp_max_attempts,
            completion_threshold_percent=float(value.completion_threshold_percent),
            require_watch_to_complete=value.require_watch_to_complete,
            max_upload_bytes=value.max_upload_bytes,
            updated_at=value.updated_at,
            updated_by=value.updated_by,
        )


class SystemSettingsUpdate(CamelStruct, forbid_unknown_fields=True):
    json_schema_extra: ClassVar[dict[str, Any]] = {"minProperties": 1}

    registration_open: bool | UnsetType = UNSET
    otp_ttl_seconds: Annotated[int, Meta(ge=60, le=86400)] | UnsetType = UNSET
    otp_max_attempts: Annotated[int, Meta(ge=1, le=20)] | UnsetType = UNSET
    completion_threshold_percent: Annotated[float, Meta(ge=0.01, le=100)] | UnsetType = UNSET
    require_watch_to_complete: bool | UnsetType = UNSET
    max_upload_bytes: Annotated[int, Meta(ge=1024**2, le=1024**4)] | UnsetType = UNSET

    def changes(self) -> dict[str, object]:
        values: dict[str, object] = {}
        for field in self.__struct_fields__:
            value = getattr(self, field)
            if value is UNSET:
                continue
            if field == "completion_threshold_percent":
                value = Decimal(str(value)).quantize(Decimal("0.01"))
            values[field] = value
        return values
