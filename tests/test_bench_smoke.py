"""The bench's code paths, tiny: so ``python -m bench`` keeps working. No figure is checked here —
speed is measured by the bench itself, never by a timed test."""

from __future__ import annotations

import pytest

from bench.decode import VECTORS
from bench.run import Profile, run, table
from drivers import Transport

pytestmark = pytest.mark.slow


def test_every_simulated_device_is_answered() -> None:
    from bench.frames import device

    # device() itself raises when a frame is not decoded to a report with a reply.
    made = [device(index, Transport.TCP) for index in range(8)] + [
        device(index, Transport.UDP) for index in range(6)
    ]
    assert {item.protocol for item in made} == {"gps103", "h02", "tk103", "watch", "teltonika"}
    assert len({item.device_id for item in made if item.transport is Transport.TCP}) == 8


def test_smoke_run_fills_every_figure() -> None:
    results = run(Profile.smoke())
    assert results["ingest"]["reports"] > 0
    assert results["ingest"]["closed"] == 0
    assert results["drain"]["reports"] == Profile.smoke().drain_reports
    assert results["memory"]["connections"] == Profile.smoke().idle_connections
    assert results["wear"]["reports"] > 0
    assert results["startup"]["runs"] == 1
    if VECTORS.is_dir():
        assert results["decode"]["gps103"]["frames_per_s"] > 0
    printed = table(results)
    for figure in ("ingest", "drain", "memory", "SD wear", "start-up"):
        assert figure in printed
