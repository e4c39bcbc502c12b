"""Choosing the video store from the settings: its own module, so the stores (storage.py's local
files, cloudinary.py) need not import each other."""

from __future__ import annotations

from lms.integrations.cloudinary import CloudinaryVideoStorage
from lms.integrations.storage import LocalVideoStorage, VideoStorage
from lms.settings import Settings


def make_storage(settings: Settings) -> VideoStorage:
    """Cloudinary when CLOUDINARY_URL is set, else local files."""
    if settings.cloudinary_url:
        return CloudinaryVideoStorage(settings)
    return LocalVideoStorage(settings)
