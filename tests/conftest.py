"""Fixtures shared by the suite. Servers are real and listen on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import count

import pytest
from sanic import Sanic

from ._support import new_secret

Sanic.test_mode = True

_app_ids = count()

#: In CI (CI=true, or WSAUTH_REQUIRE_ALL=1) a missing Redis, Chromium or node
#: fails the run instead of skipping: CI must run every test.
REQUIRE_ALL = os.environ.get("WSAUTH_REQUIRE_ALL") == "1" or os.environ.get("CI") == "true"


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason`` on a developer machine; fail in CI."""
    if REQUIRE_ALL:
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def app_name() -> Iterator[str]:
    yield f"wsauth_test_{next(_app_ids)}"


# Redis fixtures (the shared server, a per-test key prefix, private servers).
from .redis_support import key_prefix, private_redis, redis_servers, redis_url  # noqa: E402,F401
