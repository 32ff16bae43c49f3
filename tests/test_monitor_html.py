"""The HTML drift report: self-contained, every column drawn, names escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from prodgate.monitor.drift import drift
from prodgate.monitor.html import render
from prodgate.monitor.profile import against, profile
from prodgate.monitor.quality import quality


def test_a_self_contained_report_with_drift_over_time() -> None:
    rng = np.random.default_rng(9)
    ref = pd.DataFrame(
        {
            "amount": rng.gamma(2, 100, 5000),
            "<script>": rng.choice(["a", "b"], 5000),
            "children": rng.integers(0, 3, 5000),
        }
    )
    cur = ref.sample(1000, random_state=2).assign(amount=lambda f: f["amount"] * 1.5)
    p = profile(ref)
    c = against(p, cur)
    report = drift(p, c)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    points = [(start + timedelta(minutes=5 * i), i / 10) for i in range(8)]
    page = render(p, c, report, quality(p, c), title="Drift <claims>", over_time=points)
    assert page.startswith("<!doctype html>")
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "Drift &lt;claims&gt;" in page
    assert re.search(r"(src|href)=", page) is None  # nothing fetched from anywhere
    assert page.count("<div class='card'>") == 3
    assert page.count("<svg") == 4  # three columns and the timeline
    assert "polyline" in page
    assert "Dataset drift: <b>" in page
