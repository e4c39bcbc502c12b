"""The express-prisma peer writes numbers in its messages as lms (Python) does: its pyFixed is
Python's format(x, ".Nf"), exact ties to the even digit included (JS's toFixed takes the larger:
a lesson of 646.5 s made the peer say "647 s" where lms says "646 s", and the bench's same-bytes
check left the peer out of a whole run)."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[2] / "bench" / "peers" / "express_prisma" / "src"


def test_py_fixed_is_pythons_format() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the express-prisma peer needs Node.js 20)")
    source = (SERVER / "server.js").read_text()
    found = re.search(r"^function pyFixed\(.*?^}\n", source, re.S | re.M)
    assert found, "pyFixed is gone from server.js"
    rng = random.Random(7)
    cases = [
        (x, d) for x in (646.5, 647.5, 2.5, 3.5, 0.5, 0.15, 94.25, 94.35, 100.0) for d in (0, 1)
    ]
    cases += [(rng.randint(0, 20000) / 8, rng.choice((0, 1, 2))) for _ in range(300)]  # ties
    cases += [(rng.uniform(0, 5000), rng.choice((0, 1, 2))) for _ in range(300)]
    script = found.group(0) + (
        "const cases = JSON.parse(process.argv[1]);"
        "console.log(JSON.stringify(cases.map(([x, d]) => pyFixed(x, d))));"
    )
    out = subprocess.run(
        [node, "-e", script, json.dumps(cases)], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == [format(x, f".{d}f") for x, d in cases]
