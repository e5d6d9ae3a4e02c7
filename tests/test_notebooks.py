"""Every notebook in nbs/, executed by nbdev's own test machinery (cells flagged with settings.ini's tst_flags are skipped;
set MEDSSL_NB_FLAGS='slow' to run them too)."""
import os
from pathlib import Path
import pytest
from nbdev.test import test_nb as run_nb
from nbdev.config import get_config

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and not p.name.startswith("_"))

@pytest.mark.parametrize("nb", NBS, ids=[str(p.relative_to(ROOT / "nbs")) for p in NBS])
def test_notebook(nb, monkeypatch):
    monkeypatch.chdir(ROOT)
    skip = get_config().tst_flags.split()
    force = os.environ.get("MEDSSL_NB_FLAGS", "").split()
    ok, seconds = run_nb(nb, skip_flags=skip, force_flags=force, showerr=True)
    assert ok, f"{nb.name} failed (traceback above)"

def test_all_notebooks_found():
    assert len(NBS) >= 10
