"""Run one notebook in a process forked from a server that has already imported the heavy libraries, for tests/test_notebooks.py.

Every notebook still runs in its own process (its state, or a native crash, cannot reach the next one), but the ~5 s that a
fresh interpreter spends importing torch, pandas, scikit-learn and the package is paid once per pytest worker instead of
once per notebook. `medssl time-chapters` keeps a fresh interpreter per chapter, since a learner pays those imports."""
import os, sys
from pathlib import Path

# imported once by the fork server (multiprocessing's forkserver preload); a notebook's own imports of them then cost nothing
PRELOAD = ["torch", "numpy", "pandas", "scipy.stats", "sklearn.linear_model", "matplotlib.pyplot", "nbdev.test",
           "medssl_nb.data", "medssl_nb.methods", "medssl_nb.fit", "medssl_nb.evaluate", "medssl_nb.study", "nb_child"]

def run(nb: str, skip: str, force: str, env: dict, cwd: str, log: str):
    "In the forked child: send stdout and stderr (native output included) to `log`, set `env`, run the notebook as nbdev_test does."
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1); os.dup2(fd, 2); os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False); sys.stderr = open(2, "w", buffering=1, closefd=False)
    os.environ.update(env); os.chdir(cwd)
    from nbdev.test import test_nb
    ok, t = test_nb(Path(nb), skip_flags=skip.split(), force_flags=force.split(), showerr=True)
    print(f"{Path(nb).name}: {t:.1f} s")
    sys.stdout.flush(); sys.stderr.flush()
    sys.exit(0 if ok else 1)
