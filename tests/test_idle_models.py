"""Idle models leave memory: the daemon unloads them after `extractors.unload_idle_seconds` without
images and loads them again for the next image."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from core.config import load_config
from core.extractors.base import SidecarResult
from core.extractors.registry import run_pass
from daemon.app import build_ctx
from daemon.extractors.idle_models import unload_models
from tests.helpers import REPO, DaemonProc, db_rows, decoded, textured, wait_for, write_config, write_png


def hands_done(root: Path) -> int:
    return len(db_rows(root, "select 1 from jobs where kind = 'hands' and state = 'done'"))


def test_daemon_unloads_idle_models_and_reloads_them_for_the_next_image(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root, {"extractors": {"enabled": ["phash", "hands"], "unload_idle_seconds": 1.0}})
    with DaemonProc(root) as d:
        write_png(root / "inbox" / "a.png", textured(1, w=256, h=384))
        wait_for(lambda: hands_done(root) == 1, timeout=90, what="hands on the first image")
        wait_for(lambda: "unloaded idle models (hands)" in d.output(), timeout=30, what="the unload")
        write_png(root / "inbox" / "b.png", textured(2, w=256, h=384))
        wait_for(lambda: hands_done(root) == 2, timeout=90, what="hands on the next image, model loaded again")
        wait_for(lambda: d.output().count("unloaded idle models (hands)") == 2, timeout=30, what="the second unload")


def _rss_mb() -> float:
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(os.getpid())], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024


def test_unloading_frees_the_models_memory_and_the_next_pass_loads_them_again(tmp_path: Path) -> None:
    """U2-Netp (ONNX Runtime) and the selfie segmenter (MediaPipe): the session and the graph are
    really gone after an unload (their memory back to the OS, not only a flag), and the next pass
    builds them again with the same results.

    Measured in a fresh process: the test process's RSS depends on every test before it (memory
    earlier tests freed but kept is reused by the load), which made the figures order-dependent."""
    code = f"from pathlib import Path; from tests.test_idle_models import unload_cycle; unload_cycle(Path({str(tmp_path)!r}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-4000:]


def unload_cycle(tmp_path: Path) -> None:
    cfg = load_config(None, root=tmp_path / "root", env={}, overrides={"extractors": {"enabled": ["saliency"]}})
    ctx = build_ctx(cfg)
    (sal,) = ctx.extractors
    images = [decoded(textured(3, w=256, h=384))]
    assert sal.availability().available
    gc.collect()
    before = _rss_mb()
    first = run_pass(ctx.extractors, images, {})[images[0].sha256]["saliency"]
    loaded = _rss_mb()
    assert sal.loaded
    assert unload_models(ctx) == ["saliency"]
    after = _rss_mb()
    assert not sal.loaded
    # Loading took hundreds of MB (ONNX Runtime's arena); most of it must be back.
    assert loaded - before > 100
    assert after - before < (loaded - before) / 2, (before, loaded, after)
    again = run_pass(ctx.extractors, images, {})[images[0].sha256]["saliency"]
    assert sal.loaded
    assert isinstance(first, SidecarResult) and isinstance(again, SidecarResult)
    assert first.payload == again.payload
    assert np.array_equal(first.arrays["subject"], again.arrays["subject"])
    unload_models(ctx)
    ctx.store.close()


def test_mediapipe_comes_without_matplotlib_until_its_drawing_helpers_are_used() -> None:
    """mediapipe's package import pulls in matplotlib.pyplot for drawing helpers bestshot never
    calls (28 MB that stayed resident through every unload); they now load on first use."""
    code = (
        "import sys\n"
        "from core.extractors.mp_import import import_mediapipe\n"
        "mp = import_mediapipe()\n"
        "assert mp.solutions.hands.Hands and mp.solutions.selfie_segmentation.SelfieSegmentation\n"
        "print('matplotlib' in sys.modules)\n"
        "from mediapipe.python.solutions.drawing_utils import DrawingSpec\n"
        "assert mp.solutions.drawing_styles.get_default_hand_landmarks_style() and DrawingSpec()\n"
        "print('matplotlib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["False", "True"]
