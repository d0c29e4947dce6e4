"""The fault suite's code paths, tiny: a few of its cheapest attacks, run as ``python -m bench.faults``
runs them (a real relay process, mosquitto, the trackers' process), must pass; and a row that lost an
acknowledged report or missed a stall must fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults import Row, Size, run_attack, table, verdict

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("number", [1, 3, 14])
def test_cheap_attacks_pass_against_the_real_relay(tmp_path: Path, number: int) -> None:
    row = run_attack(number, tmp_path, Size.smoke())
    assert row.ok, (row.failures(), row)
    # The row measured something: trackers answered and delivered, memory sampled.
    assert row.acknowledged > 0 and row.delivered == row.acknowledged and row.lost == 0
    assert row.peak_rss_mb > 0 and row.resumed and row.p99_ok
    assert row.checks and all(row.checks.values())


def test_a_row_fails_for_a_loss_a_missed_stall_or_a_failed_check() -> None:
    good = Row(1, "fine", acknowledged=10, stored=10, delivered=10, peak_rss_mb=40, p99_ok=True, resumed=True)
    lost = Row(2, "lossy", acknowledged=10, stored=8, delivered=8, lost=2, resumed=True)
    page = Row(3, "damaged page", acknowledged=10, lost=2, allowed_lost=2, resumed=True)
    stall = Row(4, "stall", healthz="no 503 for the stall", healthz_ok=False, resumed=True)
    check = Row(5, "check", resumed=True, checks={"deadline fired": False})
    skipped = Row(15, "clock jump", skipped="no safe way")
    assert good.ok and page.ok and skipped.ok
    assert lost.failures() == ["lost 2"]
    assert stall.failures() == ["stall not shown by /healthz"]
    assert check.failures() == ["deadline fired"]
    rows = [good, lost, page, stall, check, skipped]
    assert verdict(rows) == (
        "FAILED: 2 (lost 2); 4 (stall not shown by /healthz); 5 (deadline fired) (1 skipped: 15)"
    )
    assert verdict([good, page, skipped]) == "all 2 rows ok (1 skipped: 15)"
    printed = table(rows)
    assert printed.count("FAIL") == 3 and "SKIP" in printed and "2 (<= 2 allowed)" in printed
