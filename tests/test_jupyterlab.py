"""Chapters run the way a learner runs them: JupyterLab started headless on a free local port, each chapter opened in
headless Chromium and run with "Run All Cells" through the UI, until the kernel is idle. A chapter passes when every code
cell ran, no output area shows an error, a warning or anything else on stderr, and its figures are drawn.

The chapters run on a copy of `nbs/` and `results/` (JupyterLab autosaves, and the committed notebooks must stay as they
are). Like the site test, it needs Chromium and chromedriver; CI installs them and sets MEDSSL_REQUIRE_BROWSER=1."""
import os, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

pytestmark = pytest.mark.slow      # the slow tier: pytest --slow
ROOT = Path(__file__).resolve().parents[1]
# a foundation chapter, a method chapter and a study chapter (none with `#| slow` cells, which this run would include)
CHAPTERS = ["02_views.ipynb", "methods/14_redundancy.ipynb", "22_imbalance.ipynb"]

def _free_port() -> int:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

@pytest.fixture(scope="module")
def lab(tmp_path_factory, chromium):
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "nbs", root / "nbs"); shutil.copytree(ROOT / "results", root / "results")
    port, token = _free_port(), os.urandom(12).hex()
    log = open(root / "lab.log", "w")
    srv = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
                            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root / 'nbs'}", "--LabApp.expose_app_in_browser=True"],
                           stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MPLBACKEND": "module://matplotlib_inline.backend_inline"})
    t0 = time.time()
    while True:
        try: urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2); break
        except OSError:
            if srv.poll() is not None or time.time() - t0 > 90:
                srv.kill(); pytest.fail(f"JupyterLab did not start: {(root / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    from medssl_nb.site import headless_chromium
    driver = headless_chromium()
    yield driver, f"http://127.0.0.1:{port}", token
    driver.quit(); srv.terminate(); srv.wait(20)

_KERNEL = """const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
const cells = w && w.content && w.content.model ? [...w.content.model.cells].filter(c => c.type === 'code') : [];
return {status: k ? k.status : 'none', connected: k ? k.connectionStatus === 'connected' : false,
        prompts: [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim()),
        counts: cells.map(c => c.executionCount),
        bad: cells.flatMap(c => c.outputs.toJSON()).filter(o => o.output_type === 'error' || (o.output_type === 'stream' && o.name === 'stderr'))
                  .map(o => o.output_type === 'error' ? o.ename + ': ' + o.evalue : String(o.text).slice(0, 500))};"""
_IMAGES = "return [...document.querySelectorAll('.jp-RenderedImage img')].map(i => i.complete && i.naturalWidth > 0);"

def _wait(driver, ok, limit: float, what: str):
    t0 = time.time()
    while True:
        st = driver.execute_script(_KERNEL)
        if st["status"] == "dead": pytest.fail(f"the kernel died while {what}")
        if ok(st): return st
        if time.time() - t0 > limit: pytest.fail(f"timed out after {limit:.0f} s while {what}: {st}")
        time.sleep(1)

@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_all_in_jupyterlab(lab, chapter):
    driver, url, token = lab
    driver.get(f"{url}/lab/tree/{chapter}?token={token}&reset")
    _wait(driver, lambda s: s["connected"] and s["status"] == "idle" and s["counts"], 180, "starting the kernel")
    n_cells = len(driver.execute_script(_KERNEL)["counts"])
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    time.sleep(2)                                                              # the queued cells show [*] from here on
    busy = lambda s: s["status"] != "idle" or any("*" in p for p in s["prompts"])
    _wait(driver, lambda s: not busy(s), 900, "running all cells"); time.sleep(2)
    st = _wait(driver, lambda s: not busy(s), 900, "running all cells")       # still idle two seconds later: done
    images = driver.execute_script(_IMAGES)
    assert n_cells and len(st["counts"]) == n_cells and all(st["counts"]), st["counts"]   # every code cell ran (an error stops Run All)
    assert st["bad"] == [], f"{chapter}: errors or warnings in the output:\n" + "\n---\n".join(st["bad"])
    assert images and all(images), f"{chapter}: figures not drawn: {images}"
