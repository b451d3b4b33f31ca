"""A short version of bench/load.py: concurrent users, bounded loops, zero failures, bounded memory."""

from __future__ import annotations

import pytest

from bench.load import run_load
from tests.live_server import running_app


@pytest.mark.slow
def test_concurrent_users_all_succeed_and_memory_stays_bounded(tiny_weights, tmp_path) -> None:
    with running_app(tiny_weights, tmp_path) as app:
        result = run_load(app.url, app.pid, users=4, max_requests=60, max_seconds=300, warmup=3)
    assert result.failures == []
    assert result.requests == 60  # every loop stopped at the request bound, none ran away
    assert result.rss_after_mb - result.rss_before_mb < 100
