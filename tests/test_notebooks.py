"""Every notebook in nbs/, executed by nbdev's own test machinery (`nbdev.test.test_nb`, as `nbdev_test` does), one
pytest test per notebook. Cells flagged with settings.ini's tst_flags (`#| slow`) are skipped; set MEDSSL_NB_FLAGS='slow'
to run them too.

Each notebook runs in a fresh interpreter, as nbdev_test runs them in worker processes, so one notebook's state (or a
native crash, such as the oneDNN channels_last bug that `medssl_nb.core.channels_last_ok` now avoids) cannot leak into
the next or take the whole pytest session down with it."""
import os, subprocess, sys
from pathlib import Path
import pytest
from nbdev.config import get_config

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and not p.name.startswith("_"))
RUNNER = ("import sys; from pathlib import Path; from nbdev.test import test_nb; "
          "ok, t = test_nb(Path(sys.argv[1]), skip_flags=sys.argv[2].split(), force_flags=sys.argv[3].split(), showerr=True); "
          "print(f'{Path(sys.argv[1]).name}: {t:.1f} s'); sys.exit(0 if ok else 1)")

@pytest.mark.parametrize("nb", NBS, ids=[str(p.relative_to(ROOT / "nbs")) for p in NBS])
def test_notebook(nb):
    skip, force = get_config().tst_flags, os.environ.get("MEDSSL_NB_FLAGS", "")
    r = subprocess.run([sys.executable, "-c", RUNNER, str(nb), skip, force], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, f"{nb.name} failed (exit code {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-8000:]}"

def test_all_notebooks_found():
    assert len(NBS) >= 10 and (ROOT / "nbs" / "index.ipynb") in NBS
