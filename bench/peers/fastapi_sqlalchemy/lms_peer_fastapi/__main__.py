"""python -m lms_peer_fastapi [--host H] [--port P] [--workers N]: the app under Uvicorn."""

from __future__ import annotations

import argparse
import os

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m lms_peer_fastapi")
    parser.add_argument("--host", default=os.environ.get("LMS_HOST") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("LMS_PORT") or 8000))
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "lms_peer_fastapi.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        backlog=2048,
    )


if __name__ == "__main__":
    main()
