"""A small pretraining run in its own process, for the kill-and-resume tests (tests/test_faults.py).

    python tests/fit_child.py CKPT_DIR OUT [KILL_AT_SAVE]

Trains SimCLR (ResNet-10 of width 8) on 256 synthetic images for 6 epochs with a checkpoint after every epoch, resuming
from CKPT_DIR/last.pt when it is there, and writes the final weights and history to OUT. With KILL_AT_SAVE = n, the
n-th checkpoint write of this process sends SIGKILL to itself halfway through writing the bytes."""
import io, os, signal, sys
import torch
from medssl_nb.core import set_seed, atomic_torch_save
from medssl_nb.data import synthetic
from medssl_nb.backbones import ResNet
from medssl_nb.methods import SimCLR
from medssl_nb.fit import fit, FitConfig

EPOCHS = 6

def main(ckpt_dir, out, kill_at_save=0):
    torch.set_num_threads(1)
    if kill_at_save:
        real_save, n = torch.save, [0]
        def dying_save(obj, f, *a, **k):
            n[0] += 1
            if n[0] < kill_at_save: return real_save(obj, f, *a, **k)
            buf = io.BytesIO(); real_save(obj, buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2]); f.flush(); os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
    x = synthetic(n_train=256, n_val=8, n_test=8, seed=0).train.x
    set_seed(0)
    m = SimCLR(ResNet(1, 10, width=8), proj_hidden=64, proj_dim=32)
    res = fit(m, x, FitConfig(epochs=EPOCHS, batch_size=32, lr=2e-3, ckpt_dir=ckpt_dir, progress=False))
    atomic_torch_save({"model": res.method.state_dict(), "history": res.history, "resumed_from": res.resumed_from}, out)

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
