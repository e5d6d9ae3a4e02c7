"The training loop: learning, collapse monitor, resume equivalence, NaN guard, checkpoint safety."
import math, os, pytest, torch
from medssl_nb.core import MedSSLError, set_seed, atomic_torch_save
from medssl_nb.data import synthetic
from medssl_nb.backbones import ResNet
from medssl_nb.methods import SimCLR
from medssl_nb.fit import fit, FitConfig, NonFiniteLossError, CheckpointMismatchError, epoch_order, lr_lambda

@pytest.fixture(scope="module")
def tiny():
    return synthetic(n_train=256, n_val=8, n_test=8, seed=0).train.x

def _method(seed=0, width=8):
    set_seed(seed); return SimCLR(ResNet(1, 10, width=width), proj_hidden=64, proj_dim=32)

def test_tiny_fit_lowers_loss_without_collapse(tiny):
    res = fit(_method(), tiny, FitConfig(epochs=8, batch_size=64, lr=3e-3, progress=False))
    h = res.history
    assert len(h) == 8 and h[-1]["loss"] < h[0]["loss"] - 0.05
    assert h[-1]["emb_std"] > 0.5 * 32 ** -0.5  # spread embeddings, not a collapsed point

@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_equivalence(tiny, tmp_path, precision):
    cfg = lambda d: FitConfig(epochs=2, batch_size=32, precision=precision, ckpt_dir=str(d), progress=False)
    straight = fit(_method(), tiny, cfg(tmp_path / "a")).method
    first = fit(_method(), tiny, cfg(tmp_path / "b"), stop_after_epochs=1)
    assert len(first.history) == 1
    resumed = fit(_method(seed=123), tiny, cfg(tmp_path / "b"))  # a fresh process would build a fresh model
    assert resumed.resumed_from == 1 and len(resumed.history) == 2
    for (k, p), q in zip(straight.state_dict().items(), resumed.method.state_dict().values()):
        assert torch.equal(p, q), k

def test_resume_refuses_other_config_or_method(tiny, tmp_path):
    fit(_method(), tiny, FitConfig(epochs=1, batch_size=32, ckpt_dir=str(tmp_path), progress=False))
    with pytest.raises(CheckpointMismatchError, match="lr"):
        fit(_method(), tiny, FitConfig(epochs=1, batch_size=32, lr=0.5, ckpt_dir=str(tmp_path), progress=False))
    with pytest.raises(CheckpointMismatchError, match="written by"):
        fit(SimCLR(ResNet(1, 10, width=8), temperature=0.2, proj_hidden=64, proj_dim=32), tiny,
            FitConfig(epochs=1, batch_size=32, ckpt_dir=str(tmp_path), progress=False))

def test_nan_loss_stops_clearly_and_keeps_checkpoint(tiny, tmp_path):
    fit(_method(), tiny, FitConfig(epochs=1, batch_size=32, ckpt_dir=str(tmp_path), progress=False))
    before = (tmp_path / "last.pt").read_bytes()
    class Bad(SimCLR):
        n = 0
        def loss(self, x):
            out = super().loss(x); Bad.n += 1
            if Bad.n > 2: out["loss"] = out["loss"] * float("inf")
            return out
    set_seed(0)
    with pytest.raises(NonFiniteLossError, match="lower lr"):
        fit(Bad(ResNet(1, 10, width=8), proj_hidden=64, proj_dim=32), tiny,
            FitConfig(epochs=3, batch_size=32, ckpt_dir=str(tmp_path / "bad"), progress=False))
    assert (tmp_path / "last.pt").read_bytes() == before

def test_checkpoint_write_failure_leaves_previous(tmp_path, monkeypatch):
    p = tmp_path / "last.pt"; atomic_torch_save({"v": 1}, p)
    def failing_save(obj, f): f.write(b"partial"); raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(MedSSLError, match="untouched"): atomic_torch_save({"v": 2}, p)
    monkeypatch.undo()
    assert torch.load(p)["v"] == 1 and sorted(x.name for x in tmp_path.iterdir()) == ["last.pt"]

def test_unwritable_output_folder_is_clear(tmp_path):
    f = tmp_path / "file"; f.write_text("x")
    with pytest.raises(MedSSLError, match="writable"): atomic_torch_save({}, f / "sub" / "last.pt")

def test_bad_inputs(tiny):
    with pytest.raises(MedSSLError, match="uint8"): fit(_method(), tiny.float(), FitConfig(epochs=1, progress=False))
    with pytest.raises(MedSSLError, match="shape"): fit(_method(), tiny[:, 0], FitConfig(epochs=1, progress=False))
    with pytest.raises(MedSSLError, match="lr"): fit(_method(), tiny, FitConfig(lr=float("nan"), progress=False))
    with pytest.raises(MedSSLError, match="precision"): fit(_method(), tiny, FitConfig(precision="fp8", progress=False))

def test_data_order_and_schedule():
    assert torch.equal(epoch_order(50, 0, 3), epoch_order(50, 0, 3)) and not torch.equal(epoch_order(50, 0, 3), epoch_order(50, 0, 4))
    shards = torch.cat([epoch_order(50, 0, 1, r, 2) for r in range(2)])
    assert sorted(shards.tolist()) == list(range(50))
    f = lr_lambda(10, 100)
    assert math.isclose(f(9), 1.0) and f(0) < f(5) < f(9) and f(99) < 0.01
