"Faults survived: SIGKILL during training or in the middle of a checkpoint write, then resume; a full disk during a run."
import os, random, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from medssl_nb.core import MedSSLError, set_seed
from medssl_nb.data import synthetic
from medssl_nb.backbones import ResNet
from medssl_nb.methods import SimCLR
from medssl_nb.fit import fit, FitConfig

HERE = Path(__file__).resolve().parent
CHILD = HERE / "fit_child.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
TIMING = ("seconds", "images_per_s")   # wall-clock fields of the history: the only ones allowed to differ

def child(ckpt, out, kill_at_save=0, wait=True):
    args = [sys.executable, str(CHILD), str(ckpt), str(out)] + ([str(kill_at_save)] if kill_at_save else [])
    p = subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait: p.wait(timeout=600)
    return p

@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    d = tmp_path_factory.mktemp("straight")
    p = child(d / "ck", d / "out.pt"); assert p.returncode == 0, p.stderr.read()[-2000:]
    return torch.load(d / "out.pt", weights_only=False)

def same_run(a, b):
    for (k, p), q in zip(a["model"].items(), b["model"].values()): assert torch.equal(p, q), f"weights differ at {k}"
    assert len(a["history"]) == len(b["history"])
    for ha, hb in zip(a["history"], b["history"]):
        assert {k: v for k, v in ha.items() if k not in TIMING} == {k: v for k, v in hb.items() if k not in TIMING}

def epoch_of(ckpt):
    try: return torch.load(ckpt, weights_only=False)["epoch"]
    except Exception: return 0

@pytest.mark.slow
@pytest.mark.parametrize("after_epoch", [0, 2, 4])
def test_sigkill_during_training_then_resume_is_bit_identical(straight, tmp_path, after_epoch):
    "Kill at a random moment after `after_epoch` checkpoints (0: before the first one), then run the same command again."
    ck, out = tmp_path / "ck", tmp_path / "out.pt"
    p = child(ck, out, wait=False)
    t0 = time.time()
    while after_epoch and epoch_of(ck / "last.pt") < after_epoch:
        assert p.poll() is None, "the run ended before it could be killed"
        assert time.time() - t0 < 300; time.sleep(0.05)
    time.sleep(random.Random(after_epoch).uniform(0.0, 0.5))
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL and not out.exists()
    e = epoch_of(ck / "last.pt"); assert e >= after_epoch
    q = child(ck, out); assert q.returncode == 0, q.stderr.read()[-2000:]
    resumed = torch.load(out, weights_only=False)
    assert resumed["resumed_from"] == (e or None)   # from the last complete checkpoint; afresh when the kill came before the first
    same_run(straight, resumed)

@pytest.mark.slow
@pytest.mark.parametrize("kill_at_save", [1, 3])
def test_sigkill_while_writing_a_checkpoint(straight, tmp_path, kill_at_save):
    "SIGKILL halfway through writing checkpoint n: last.pt stays checkpoint n-1 (or absent), and the resumed run ends where an uninterrupted one does."
    ck, out = tmp_path / "ck", tmp_path / "out.pt"
    p = child(ck, out, kill_at_save=kill_at_save)
    assert p.returncode == -signal.SIGKILL
    assert epoch_of(ck / "last.pt") == kill_at_save - 1                     # the previous complete checkpoint, intact
    assert list(ck.glob(".last.pt.*.tmp")), "the killed write left its temporary file (the test killed it mid-write)"
    q = child(ck, out); assert q.returncode == 0, q.stderr.read()[-2000:]
    assert not list(ck.glob(".last.pt.*.tmp")), "resuming clears the dead write's temporary file"
    resumed = torch.load(out, weights_only=False)
    assert resumed["resumed_from"] == (kill_at_save - 1 or None)
    same_run(straight, resumed)

def test_full_disk_mid_run_fails_clearly_and_keeps_previous_checkpoint(tmp_path, monkeypatch):
    x = synthetic(n_train=64, n_val=8, n_test=8, seed=0).train.x
    cfg = FitConfig(epochs=3, batch_size=32, ckpt_dir=str(tmp_path), progress=False)
    real_save, n = torch.save, [0]
    def save(obj, f, *a, **k):
        n[0] += 1
        if n[0] == 2: f.write(b"partial"); raise OSError(28, "No space left on device")
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", save)
    set_seed(0)
    with pytest.raises(MedSSLError, match="No space left on device.*untouched"):
        fit(SimCLR(ResNet(1, 10, width=8), proj_hidden=64, proj_dim=32), x, cfg)
    monkeypatch.undo()
    assert torch.load(tmp_path / "last.pt", weights_only=False)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
