"""lms: an open-source learning-management backend."""

import os

# Piccolo finds its engine through this module path; set it before any table is touched so the
# `piccolo` CLI and our own code agree without a piccolo_conf.py on the import path.
os.environ.setdefault("PICCOLO_CONF", "lms.db.piccolo_conf")
