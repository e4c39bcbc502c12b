"""A real LRS (Ralph, file-system backend) on loopback, one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.lrs import Ralph, running_ralph


@pytest.fixture(scope="module")
def ralph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ralph]:
    with running_ralph(tmp_path_factory.mktemp("ralph")) as lrs:
        yield lrs
