"""Every notebook in nbs/, executed by nbdev's own test machinery (`nbdev.test.test_nb`, as `nbdev_test` does), one
pytest test per notebook. In the fast tier, cells flagged with settings.ini's tst_flags (`#| slow`) are skipped; the slow
tier (`pytest --slow`) runs each notebook that has such cells, or a `LIVE = live_runs()` experiment, again with them and with
`MEDSSL_LIVE=1` (`test_notebook_with_slow_cells`).

Each notebook runs in its own process, as nbdev_test runs them in worker processes, so one notebook's state (or a
native crash, such as the oneDNN channels_last bug that `medssl_nb.core.channels_last_ok` now avoids) cannot leak into
the next or take the whole pytest session down with it. The process is forked from a server that has imported torch, pandas,
scikit-learn and the package once (tests/nb_child.py), which saves each notebook ~5 s of imports; where the platform has no
fork server, each notebook gets a fresh interpreter (`run_chapter`, the runner `medssl time-chapters` times)."""
import json, os, re, sys, tempfile
import multiprocessing as mp
from pathlib import Path
import pytest
from nbdev.config import get_config
from medssl_nb.site import run_chapter

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and not p.name.startswith("_"))

def _source(p: Path) -> str: return "\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"])
# the notebooks with a slow tier: `#| slow` cells, or a `LIVE = live_runs()` experiment (run_chapter sets MEDSSL_LIVE=1 with 'slow')
SLOW_NBS = [p for p in NBS if re.search(r"^#\|\s*slow\b", _source(p), re.M) or "LIVE = live_runs()" in _source(p)]

TIMEOUT = 3600
_SERVER = None

def _fork_server():
    "The forkserver context, its preload set on first use (None where the platform has no fork server)."
    global _SERVER
    if _SERVER is None and "forkserver" in mp.get_all_start_methods():
        sys.path.insert(0, str(Path(__file__).parent))
        import nb_child
        _SERVER = mp.get_context("forkserver"); _SERVER.set_forkserver_preload(nb_child.PRELOAD)
    return _SERVER

def run_notebook(nb: Path, force: str = ""):
    env = {"MEDSSL_LIVE": "1" if "slow" in force.split() else "0"}       # as run_chapter sets it
    ctx = _fork_server()
    if ctx is None:
        r = run_chapter(nb, force, get_config().tst_flags, cwd=ROOT)
        assert r.returncode == 0, f"{nb.name} failed (exit code {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-8000:]}"
        return
    import nb_child
    fd, log = tempfile.mkstemp(suffix=".log"); os.close(fd)
    try:
        p = ctx.Process(target=nb_child.run, args=(str(nb), get_config().tst_flags, force, env, str(ROOT), log))
        p.start(); p.join(TIMEOUT)
        if p.is_alive(): p.kill(); p.join()
        out = Path(log).read_text(errors="replace")
    finally: os.unlink(log)
    assert p.exitcode == 0, f"{nb.name} failed (exit code {p.exitcode}):\n{out[-10000:]}"

@pytest.mark.parametrize("nb", NBS, ids=[str(p.relative_to(ROOT / "nbs")) for p in NBS])
def test_notebook(nb):
    run_notebook(nb, os.environ.get("MEDSSL_NB_FLAGS", ""))

@pytest.mark.slow
@pytest.mark.parametrize("nb", SLOW_NBS, ids=[str(p.relative_to(ROOT / "nbs")) for p in SLOW_NBS])
def test_notebook_with_slow_cells(nb):
    run_notebook(nb, "slow")

def test_all_notebooks_found():
    assert len(NBS) >= 10 and (ROOT / "nbs" / "index.ipynb") in NBS
    assert ROOT / "nbs" / "22_imbalance.ipynb" in SLOW_NBS and ROOT / "nbs" / "00_core.ipynb" not in SLOW_NBS
    assert ROOT / "nbs" / "21_volumetric.ipynb" not in SLOW_NBS       # its experiments are long ones (MEDSSL_LIVE=all), left to their recording
