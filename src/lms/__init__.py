"""lms: an open-source learning-management backend."""
