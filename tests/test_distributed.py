"DDP on the CPU with gloo: two ranks x batch B against one process with batch 2B (SimCLR, MoCo v3, DINO; DiRA, GL-MAE and multi-task pretraining in the slow tier); torchrun end to end."
import json, os, subprocess, sys
from pathlib import Path
import pytest, torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ddp_step  # noqa: E402

def torchrun(*args, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE.parent)

@pytest.mark.parametrize("method", ["simclr", "mocov3", "dino", pytest.param("dira", marks=pytest.mark.slow), pytest.param("glmae", marks=pytest.mark.slow),
                                    pytest.param("multitask", marks=pytest.mark.slow)])
def test_two_ranks_match_one_process(method, tmp_path):
    r = torchrun(HERE / "ddp_step.py", method, tmp_path / "ddp.pt")
    assert r.returncode == 0, r.stderr[-3000:]
    ddp, one = torch.load(tmp_path / "ddp.pt"), ddp_step.one_process(method)
    assert abs(ddp["loss"] - one["loss"]) <= 1e-5 * abs(one["loss"]) + 1e-6, (ddp["loss"], one["loss"])
    assert ddp["grads"].keys() == one["grads"].keys() and len(one["grads"]) > 10
    # Float tolerance (the same sums in another order): relative error (l2) of each tensor <= 1e-4. A tensor whose values are
    # below 1e-5 of the largest in the model is zero up to rounding (a bias feeding a batch norm gets no gradient): there the
    # absolute difference must stay below 1e-5 of that largest value. Measured here: <= 3e-6 relative on every real gradient.
    for what in ("grads", "state"):   # gradients; global batch-norm statistics and DINO's centre after the step
        if what == "state" and not one[what]: continue   # GL-MAE's ViT has no batch norm and no centre
        top = max(v.abs().max().item() for v in one[what].values())
        for k, g in one[what].items():
            diff = ddp[what][k] - g
            if g.abs().max().item() < 1e-5 * top: ok, why = diff.abs().max().item() <= 1e-5 * top, f"numerically zero tensor differs by {diff.abs().max().item():.3g}"
            else: rel = (diff.norm() / g.norm()).item(); ok, why = rel <= 1e-4, f"relative error {rel:.3g}"
            assert ok, f"{method} {what} {k}: {why}"

def test_single_rank_grads_differ_without_gathering():
    "The test above can fail: one rank's half alone gives another loss than the whole batch."
    m = ddp_step.build("simclr")
    half = ddp_step.step(m, m, ddp_step.batch()[:ddp_step.B])
    assert abs(half["loss"] - ddp_step.one_process("simclr")["loss"]) > 1e-3

@pytest.mark.slow
def test_torchrun_pretrain_end_to_end(tmp_path):
    r = torchrun("-m", "medssl_nb.cli", "pretrain", "--synthetic", "--epochs", "2", "--batch-size", "16", "--width", "8", "--depth", "10",
                 "--fractions", "1.0", "--no-progress", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert [f for f in files if f.endswith(".json")] == ["synthetic2d_simclr_seed0.json"], files   # written once, by rank 0
    rep = json.loads((tmp_path / "out" / "synthetic2d_simclr_seed0.json").read_text())
    assert len(rep["history"]) == 2 and all(h["loss"] == h["loss"] for h in rep["history"])
    ck = torch.load(tmp_path / "out" / "checkpoints" / "synthetic2d_simclr_seed0" / "last.pt", weights_only=False)
    assert ck["world_size"] == 2 and len(ck["rng_ranks"]) == 2
    assert not torch.equal(ck["rng_ranks"][0]["torch"], ck["rng_ranks"][1]["torch"])   # each rank its own augmentations
