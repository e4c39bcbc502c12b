"""Serves Ralph's LRS API on loopback, file-system backend, for the tests (tests/support/lrs.py
runs it with tests/lrs/.venv's interpreter: `python serve.py HOST PORT`).

Ralph 5.1.0's file-system LRS backend writes with the data backend's default operation, CREATE,
which refuses to write to a file that exists: every POST after the first that stores something
answers 500 ("fs_lrs.jsonl already exists and overwrite is not allowed"). Appending is what an LRS
file needs, so this sets that default before serving; nothing else of Ralph is changed.
"""

import sys

import uvicorn
from ralph.backends.data.base import BaseOperationType
from ralph.backends.lrs.fs import FSLRSBackend

FSLRSBackend.default_operation_type = BaseOperationType.APPEND

if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run("ralph.api:app", host=host, port=port, log_level="warning")
