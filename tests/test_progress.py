from __future__ import annotations

from daemon.extractors.progress import DrainProgress


def test_progress_line_says_n_of_m_rate_and_eta() -> None:
    now = [100.0]
    p = DrainProgress(every=5.0, clock=lambda: now[0])
    p.before_pass()
    assert p.step(0, 0) is None  # nothing was pending: nothing to say
    p.before_pass()
    now[0] = 102.0
    assert p.step(8, 32) == "sidecars: 8 of 40 images, 4.00 img/s, ETA 8 s"
    p.before_pass()
    now[0] = 104.0
    assert p.step(8, 24) is None  # within `every` of the last line
    p.before_pass()
    now[0] = 110.0
    assert p.step(8, 16) == "sidecars: 24 of 40 images, 2.40 img/s, ETA 7 s"
    p.before_pass()
    now[0] = 120.0
    assert p.step(16, 0) == "sidecars: 40 of 40 images done in 20 s (2.00 img/s)"
    p.before_pass()
    now[0] = 121.0
    assert p.step(1, 100) == "sidecars: 1 of 101 images, 1.00 img/s, ETA 1 min 40 s"  # a new drain
