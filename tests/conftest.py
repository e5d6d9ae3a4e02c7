import os, warnings
from pathlib import Path
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Two tiers. `pytest` runs the fast one: the unit tests, every notebook without its `#| slow` cells, the report check.
# `pytest --slow` (or MEDSSL_SLOW=1) adds the slow one: the tests marked `slow` (the JupyterLab UI test, the kill-and-resume
# and torchrun tests) and the notebooks' `#| slow` cells; `pytest --slow -m slow` runs the slow tier alone, as CI does after the fast one.
def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the slow tier: tests marked slow and the notebooks' `#| slow` cells")

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: the slow tier (runs with --slow or MEDSSL_SLOW=1)")

def slow_tier(config) -> bool:
    return bool(config.getoption("--slow") or os.environ.get("MEDSSL_SLOW"))

def _chapter_seconds() -> dict:
    "Each chapter's measured fast-default time (results/chapter_times.csv, written by `medssl time-chapters`), to start the longest first."
    import csv
    f = ROOT / "results" / "chapter_times.csv"
    if not f.exists(): return {}
    return {r["chapter"] + ".ipynb": float(r["seconds"]) for r in csv.DictReader(f.open()) if r.get("slow_cells") == "False"}

def pytest_collection_modifyitems(config, items):
    # the notebooks first, longest first, so that parallel workers (`-n`) do not end waiting on one long chapter
    secs = _chapter_seconds()
    def key(it):
        cs = getattr(it, "callspec", None); nb = cs.params.get("nb") if cs else None
        return (0, -secs.get(str(nb).split("nbs/", 1)[-1], 60.0)) if nb is not None else (1, 0.0)
    items.sort(key=key)
    if slow_tier(config): return
    slow = [it for it in items if it.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [it for it in items if not it.get_closest_marker("slow")]

def data_dir():
    "The folder with real MedMNIST files: $MEDSSL_DATA, else medmnist's own default folder when it holds any."
    d = os.environ.get("MEDSSL_DATA")
    if d and Path(d).is_dir(): return Path(d)
    import medmnist.info
    default = Path(medmnist.info.DEFAULT_ROOT)
    return default if default.is_dir() and any(default.glob("*.npz")) else None

@pytest.fixture
def real_data():
    d = data_dir()
    if d is None: pytest.skip("no real MedMNIST files: set MEDSSL_DATA to a folder holding them")
    return d

@pytest.fixture
def no_data(tmp_path, monkeypatch):
    "An environment with no MedMNIST files anywhere: empty root, no MEDSSL_DATA, medmnist's default pointed at an empty folder."
    import medmnist.info
    monkeypatch.delenv("MEDSSL_DATA", raising=False)
    empty = tmp_path / "default_root"; empty.mkdir()
    monkeypatch.setattr(medmnist.info, "DEFAULT_ROOT", str(empty))
    return tmp_path

# Threads per test process: the cores shared among pytest-xdist's workers (`-n`), at most 2, so that two workers on two cores
# do not each start two OpenMP threads that wait on each other. The notebooks a worker runs inherit it via OMP_NUM_THREADS.
THREADS = max(1, min(2, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
if "PYTEST_XDIST_WORKER" in os.environ: os.environ["OMP_NUM_THREADS"] = str(THREADS)

@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(THREADS)

@pytest.fixture(scope="session")
def chromium():
    "Skip (or, with MEDSSL_REQUIRE_BROWSER set, as CI does, fail) when headless Chromium and chromedriver are not installed."
    import shutil
    if not (any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")) and shutil.which("chromedriver")):
        if os.environ.get("MEDSSL_REQUIRE_BROWSER"): pytest.fail("MEDSSL_REQUIRE_BROWSER is set but Chromium or chromedriver is missing")
        pytest.skip("no Chromium here: apt-get install chromium chromium-driver")
