"""One training step of SimCLR, MoCo v3, DINO, DiRA, GL-MAE or multi-task pretraining for the two-process equivalence test (tests/test_distributed.py).

Under `torchrun --nproc_per_node=2 tests/ddp_step.py METHOD OUT`, each rank takes its half of a fixed batch of 2B images,
runs the step through DistributedDataParallel with batch norm over the global batch, and rank 0 writes the loss
(averaged over ranks), DDP's averaged gradients and the state after the step's `on_step_end` to OUT.
`one_process(METHOD)` computes the same step in one process on the whole batch. The random views are replaced by fixed,
per-image transforms (identity, flips, a smaller resize), so both runs see the same views; DiRA's perturbation and GL-MAE's masks
are fixed patterns, the same for every image. Multi-task pretraining gets two tasks, alternating image by image (so each rank's half holds
as many images of each task as the other's), with fixed labels."""
import os, sys
import torch
from medssl_nb.core import set_seed
from medssl_nb.backbones import ResNet
from medssl_nb.methods import build_method
from medssl_nb.views import prepare
from medssl_nb.distributed import init_distributed, dist_info, sync_batchnorm, all_reduce_mean

B = 8   # images per rank


def batch() -> torch.Tensor:
    return torch.randint(0, 256, (2 * B, 1, 28, 28), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def labels(method: str):
    "Fixed task_targets rows for the whole batch (multi-task pretraining only): task i % 2, a binary and a 3-class task."
    if method != "multitask": return None
    i = torch.arange(2 * B)
    return torch.stack([i % 2, torch.randint(0, 2, (2 * B,), generator=torch.Generator().manual_seed(2)) + (i % 2) * (i % 3 == 0)], 1)


class FixedViews(torch.nn.Module):
    "Call k returns the k-th fixed transform of each image: identity, horizontal flip, vertical flip, both."
    def __init__(self, size=None): super().__init__(); self.k, self.size = 0, size
    def forward(self, x, gen=None):
        v = prepare(x, self.size); k = self.k % 4; self.k += 1
        return v.flip(-1) if k == 1 else v.flip(-2) if k == 2 else v.flip(-1, -2) if k == 3 else v


def build(method: str):
    set_seed(0)
    enc = ResNet(1, 10, width=8)
    if method == "simclr":
        m = build_method("simclr", enc, proj_hidden=64, proj_dim=32)
        m.augment = FixedViews()
    elif method == "mocov3":
        m = build_method("mocov3", enc, proj_hidden=64, proj_dim=32, pred_hidden=64)
        m.augment = FixedViews()
    elif method == "dino":
        m = build_method("dino", enc, hidden=64, bottleneck=32, n_prototypes=64, n_local=2)
        g, l = FixedViews(), FixedViews(14)
        m.crops = lambda x: ([g(x), g(x)], [l(x) for _ in range(m.n_local)])
    elif method == "dira":
        m = build_method("dira", enc, proj_dim=32, dec_width=8, disc_width=8)
        fv = FixedViews()
        keep = (torch.arange(28 * 28).view(1, 1, 28, 28) % 4 != 0).float()          # every fourth pixel blanked, in every image
        m.views = lambda x: (lambda v1, v2: (v1, v1 * keep, v2))(fv(x), fv(x))
    elif method == "glmae":
        from medssl_nb.backbones import ViT
        m = build_method("glmae", ViT(1, 28, 4, dim=32, depth=1, heads=2), proj_dim=16, decoder_dim=32, decoder_depth=1, decoder_heads=2)
        g, l = FixedViews(), FixedViews()
        mask = (torch.arange(49) % 4 != 0)[None]                                    # 36 of 49 patches masked, the same ones in every image
        m.loss = lambda x: m.loss_of_views(g(x), l(x), mask.expand(len(x), -1), mask.expand(len(x), -1))
    elif method == "multitask":
        m = build_method("multitask", enc, tasks=[{"name": "a", "task": "binary-class", "n_classes": 2}, {"name": "b", "task": "multi-class", "n_classes": 3}])
        m.augment = FixedViews()
    else:
        raise SystemExit(f"unknown method {method}")
    return m.train()


def step(m, model, xb, yb=None) -> dict:
    out = model(xb) if yb is None else model(xb, yb)
    out["loss"].backward()
    grads = {n: p.grad.detach().clone() for n, p in m.named_parameters() if p.grad is not None}
    m.on_step_end(0, 10)   # EMA teacher, DINO's centre (over every rank's batch)
    state = {k: v.detach().clone() for k, v in m.state_dict().items() if k.endswith("center") or "running_" in k}
    return {"loss": float(all_reduce_mean(out["loss"].detach())), "grads": grads, "state": state}


def one_process(method: str) -> dict:
    m = build(method)
    return step(m, m, batch(), labels(method))


if __name__ == "__main__":
    method, out = sys.argv[1], sys.argv[2]
    rank, world = init_distributed()
    assert world == 2, f"run under torchrun --nproc_per_node=2 (world size {world})"
    m = build(method); sync_batchnorm(m)
    ddp = torch.nn.parallel.DistributedDataParallel(m, broadcast_buffers=False)
    y = labels(method)
    r = step(m, ddp, batch()[rank * B:(rank + 1) * B], None if y is None else y[rank * B:(rank + 1) * B])
    if rank == 0: torch.save(r, out)
    torch.distributed.barrier(); torch.distributed.destroy_process_group()   # leave together
    # gloo's threads can abort the interpreter's own teardown ("terminate called without an active exception", seen once in
    # about ten runs under load): the step is done and written, so leave without running the C++ static destructors
    sys.stdout.flush(); sys.stderr.flush(); os._exit(0)
