"""Training throughput of medssl_nb's SimCLR, BYOL, DINO and MAE against the same methods written with lightly, on the
same data, backbone, batch size and augmentation settings, in one run on one machine.

    pip install -r benchmarks/requirements.txt          # lightly, for the benchmark only
    MEDSSL_DATA=/path/to/medmnist python benchmarks/bench_ssl.py --out results/benchmarks.csv

Rows (one per implementation x method, plus the augmentation-alone row and the lever rows):
images/s and views/s as the median over timed steps with the quartiles as spread, the ratio to lightly's faster
DataLoader setting, FLOPs per step counted by torch's FlopCounterMode (forward + backward, augmentations included), and
the achieved FLOP/s as a fraction of this machine's measured matmul peak. `--ttq` adds time to quality: the
quickstart's SimCLR on BreastMNIST, trained by each implementation, linear-probe AUC after every `--ttq-every` epochs.
The scripts time; they assert nothing. Provenance (commit, command, hardware, versions) goes beside the CSV."""
from __future__ import annotations
import argparse, json, math, os, platform, sys, time
from pathlib import Path
import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lightly_impl  # noqa: E402
from medssl_nb.core import provenance, resolve_precision, autocast, atomic_write_text, fast_memory_format, cpu_supports_bf16  # noqa: E402
from medssl_nb.compute import matmul_peak, step_flops, time_steps  # noqa: E402
from medssl_nb.data import load_dataset  # noqa: E402
from medssl_nb.views import BatchAugment  # noqa: E402
from medssl_nb.study import build_encoder  # noqa: E402
from medssl_nb.methods.base import build_method  # noqa: E402

BACKBONE = {"simclr": "resnet", "byol": "resnet", "dino": "resnet", "mae": "vit"}
VIEWS = {"simclr": 2, "byol": 2, "dino": 6, "mae": 1}      # views per image each step (DINO: 2 global + 4 local)


def ours(method: str, in_chans: int, size: int, seed: int):
    torch.manual_seed(seed)
    enc = build_encoder(BACKBONE[method], in_chans, 2, size)   # the package defaults: ResNet-18 width 32; ViT 128 x 4, patch 4
    return build_method(method, enc)


def theirs(method: str, in_chans: int, size: int, seed: int):
    torch.manual_seed(seed)
    if method == "mae": return lightly_impl.build("mae", None, None, size)
    enc = build_encoder("resnet", in_chans, 2, size)
    return lightly_impl.build(method, enc, enc.feat_dim)


def lightly_flops(model, views) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    model.train()
    with FlopCounterMode(display=False) as fc:
        model.step_loss(views, 0, 10).backward()
    model.zero_grad(set_to_none=True)
    return int(fc.get_total_flops())


def time_lightly(method: str, images: torch.Tensor, batch: int, workers: int, warmup: int, steps: int, seed: int, lr: float = 1e-3) -> dict:
    "Steps of lightly's loop, DataLoader included: the time from asking the loader for a batch to the end of the optimiser step."
    model = theirs(method, images.shape[1], images.shape[-1], seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    dl = lightly_impl.loader(images, method, batch, workers, seed)
    model.train(); it = iter(dl); times = []; total = warmup + steps; flops = None
    for i in range(total):
        t = time.perf_counter()
        try: views, _ = next(it)
        except StopIteration: it = iter(dl); views, _ = next(it)
        loss = model.step_loss(views, i, total)
        opt.zero_grad(set_to_none=True); loss.backward(); model.after_step(i, total); opt.step()
        if not torch.isfinite(loss): raise FloatingPointError(f"lightly {method}: non-finite loss while timing")
        if i >= warmup: times.append(time.perf_counter() - t)
        if flops is None: flops = lightly_flops(model, views)
    del it, dl
    return {"step_s": times, "flops": flops}


def stats(batch: int, step_s: list) -> dict:
    rate = batch / np.asarray(step_s)
    return {"images_per_s": float(np.median(rate)), "images_per_s_q25": float(np.quantile(rate, .25)),
            "images_per_s_q75": float(np.quantile(rate, .75)), "images_per_s_min": float(rate.min()),
            "images_per_s_max": float(rate.max()), "median_step_s": float(np.median(step_s)), "timed_steps": len(step_s)}


def aug_rate(images: torch.Tensor, batch: int, repeats: int, seed: int) -> dict:
    "Views per second from BatchAugment alone (uint8 in, normalised float views out), as the training step calls it."
    aug = BatchAugment(); g = torch.Generator().manual_seed(seed)
    xb = images[torch.randint(len(images), (batch,), generator=g)]
    aug(xb); times = []
    for _ in range(repeats):
        t = time.perf_counter(); aug(xb); times.append(time.perf_counter() - t)
    return stats(batch, times)


GEMM_OPS = ("conv", "mm", "addmm", "bmm", "matmul", "linear", "mkldnn", "scaled_dot_product", "baddbmm")

def op_breakdown(method, images: torch.Tensor, batch: int, precision: str, seed: int, steps: int = 3) -> dict:
    "Where a training step's time goes (torch.profiler, self CPU time of leaf ops): GEMM/convolution kernels against the rest."
    from torch.profiler import profile, ProfilerActivity
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    g = torch.Generator().manual_seed(seed); method.train()
    def one(i):
        xb = images[torch.randint(len(images), (batch,), generator=g)]
        with autocast(precision, "cpu"): out = method.loss(xb)
        opt.zero_grad(set_to_none=True); out["loss"].backward(); opt.step(); method.on_step_end(i, 100)
    one(0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps): one(i + 1)
    ev = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in ev)
    gemm = sum(e.self_cpu_time_total for e in ev if any(k in e.key.lower() for k in GEMM_OPS))
    top = sorted(ev, key=lambda e: -e.self_cpu_time_total)[:6]
    return {"gemm_conv_time_fraction": gemm / total,
            "top_ops": "; ".join(f"{e.key} {e.self_cpu_time_total / total:.0%}" for e in top)}


def lever_rows(images, batch, warmup, steps, seed) -> list[dict]:
    "SimCLR's step under each lever this CPU can try: memory format, torch.compile, thread count, precision."
    rows = []
    def one(name, m, precision="fp32", threads=None, fmt=True, bs=batch):
        old = torch.get_num_threads()
        if threads: torch.set_num_threads(threads)
        try:
            if not fmt: m.to(memory_format=torch.contiguous_format)
            r = time_steps(m, images, bs, precision, warmup, steps, seed) if fmt else _time_contiguous(m, images, bs, precision, warmup, steps, seed)
            rows.append({"impl": "medssl_nb", "method": "simclr", "setting": name, "precision": r["precision"], "threads": torch.get_num_threads(),
                         "batch_size": bs, **stats(bs, r["step_s"])})
        except Exception as e:   # a lever that fails here is a finding, not a crash of the benchmark
            rows.append({"impl": "medssl_nb", "method": "simclr", "setting": name, "error": f"{type(e).__name__}: {str(e)[:200]}"})
        finally: torch.set_num_threads(old)
    C, S = images.shape[1], images.shape[-1]
    one("default (channels_last, auto precision)", ours("simclr", C, S, seed), "auto")
    one("contiguous memory format, fp32", ours("simclr", C, S, seed), "fp32", fmt=False)
    if torch.get_num_threads() > 1: one("1 thread", ours("simclr", C, S, seed), "auto", threads=1)
    if cpu_supports_bf16() or torch.cuda.is_available(): one("bf16 autocast", ours("simclr", C, S, seed), "bf16")
    m = ours("simclr", C, S, seed)
    try:
        t0 = time.perf_counter(); m.encoder = torch.compile(m.encoder); one("torch.compile(encoder)", m, "auto")
        rows[-1]["compile_and_warmup_s"] = time.perf_counter() - t0
    except Exception as e:
        rows.append({"impl": "medssl_nb", "method": "simclr", "setting": "torch.compile(encoder)", "error": f"{type(e).__name__}: {str(e)[:200]}"})
    for b in (batch // 2, 2 * batch):
        one(f"batch {b}", ours("simclr", C, S, seed), "auto", bs=b)
    return rows


def _time_contiguous(m, images, batch, precision, warmup, steps, seed):
    "time_steps without the channels_last conversion it applies (the contiguous-format lever)."
    import medssl_nb.compute as C
    keep = C.fast_memory_format
    C.fast_memory_format = lambda module, ndim: module
    try: return time_steps(m, images, batch, precision, warmup, steps, seed)
    finally: C.fast_memory_format = keep


def time_to_quality(args, d, out_dir: Path) -> pd.DataFrame:
    "The quickstart's SimCLR (BreastMNIST, 50 epochs, batch 128, lr 2e-3, ResNet-18 width 32) by each implementation; linear-probe AUC at 100 % labels every `ttq_every` epochs."
    from medssl_nb.fit import FitConfig, fit
    from medssl_nb.evaluate import embed
    from medssl_nb.study import score_features
    from medssl_nb.quickstart import QuickstartConfig
    q = QuickstartConfig(); rows = []
    x = d.train.x; idx = np.arange(len(x))
    def probe(encoder):
        feats = {s: embed(encoder, d.split(s).x, precision="auto") for s in ("train", "val", "test")}
        lp, _ = score_features(feats, d, idx, 11)
        return lp["auc"]
    # medssl_nb: fit in slices of ttq_every epochs (resuming from its own checkpoint), probe after each slice
    m = ours("simclr", x.shape[1], x.shape[-1], args.seed); train_s = 0.0
    ck = out_dir / "_ttq_ckpt"; import shutil; shutil.rmtree(ck, ignore_errors=True)
    cfg = FitConfig(epochs=q.epochs, batch_size=q.batch_size, lr=q.lr, precision="auto", seed=args.seed, ckpt_dir=str(ck), progress=False)
    for e in range(args.ttq_every, q.epochs + 1, args.ttq_every):
        t = time.perf_counter(); fit(m, x, cfg, stop_after_epochs=args.ttq_every); train_s += time.perf_counter() - t
        rows.append({"impl": "medssl_nb", "epoch": e, "train_seconds": train_s, "probe_auc": probe(m.encoder)})
        print(rows[-1], flush=True)
    shutil.rmtree(ck, ignore_errors=True)
    # lightly: its loop, same schedule length (AdamW, same lr, warmup 1 epoch then cosine, as fit does)
    for workers in args.workers[-1:]:
        model = theirs("simclr", x.shape[1], x.shape[-1], args.seed)
        dl = lightly_impl.loader(x, "simclr", q.batch_size, workers, args.seed)
        opt = torch.optim.AdamW([{"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": 1e-5},
                                 {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0}], lr=q.lr)
        from medssl_nb.fit import lr_lambda
        spe = len(dl); sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(spe, spe * q.epochs))
        train_s, step = 0.0, 0
        for epoch in range(q.epochs):
            model.train(); t = time.perf_counter()
            for views, _ in dl:
                loss = model.step_loss(views, step, spe * q.epochs)
                opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step(); step += 1
            train_s += time.perf_counter() - t
            if (epoch + 1) % args.ttq_every == 0:
                rows.append({"impl": f"lightly (workers={workers})", "epoch": epoch + 1, "train_seconds": train_s, "probe_auc": probe(model.backbone)})
                print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="pneumoniamnist", help="MedMNIST 2D flag for the throughput runs (its training images)")
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--methods", nargs="+", default=["simclr", "byol", "dino", "mae"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=15, help="timed steps per setting")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="lightly DataLoader num_workers settings to try")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--levers", action="store_true", help="also time SimCLR under each lever (memory format, compile, threads, batch)")
    p.add_argument("--ttq", action="store_true", help="also measure time to quality (quickstart SimCLR on BreastMNIST, both implementations)")
    p.add_argument("--ttq-every", type=int, default=10)
    p.add_argument("--out", default="results/benchmarks.csv")
    args = p.parse_args(argv)
    import lightly
    out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    d = load_dataset(args.dataset, size=args.size, download=False)
    x = d.train.x
    peaks = {pr: matmul_peak(pr) for pr in ("fp32", "bf16")}
    precision = resolve_precision("auto")
    print("peaks GFLOP/s:", {k: round(v["gflops"], 1) for k, v in peaks.items()}, "precision:", precision, flush=True)
    rows = []
    a = aug_rate(x, 2 * args.batch, args.steps, args.seed)
    rows.append({"impl": "medssl_nb", "method": "augmentation only", "setting": "BatchAugment, default ViewConfig", "batch_size": 2 * args.batch,
                 "views_per_s": a["images_per_s"], **a})
    print(rows[-1], flush=True)
    for method in args.methods:
        m = ours(method, x.shape[1], x.shape[-1], args.seed)
        r = time_steps(m, x, args.batch, "auto", args.warmup, args.steps, args.seed)
        g = torch.Generator().manual_seed(args.seed)
        fl = step_flops(m, x[torch.randint(len(x), (args.batch,), generator=g)], r["precision"])
        rows.append({"impl": "medssl_nb", "method": method, "setting": "package defaults (batched tensor augmentation, channels_last)",
                     "precision": r["precision"], "flops_per_step": fl, **stats(args.batch, r["step_s"]),
                     **op_breakdown(m, x, args.batch, r["precision"], args.seed)})
        print(rows[-1], flush=True)
        for w in args.workers:
            t = time_lightly(method, x, args.batch, w, args.warmup, args.steps, args.seed)
            rows.append({"impl": "lightly", "method": method, "setting": f"lightly {lightly.__version__} transforms + DataLoader(num_workers={w})",
                         "workers": w, "precision": "fp32", "flops_per_step": t["flops"], **stats(args.batch, t["step_s"])})
            print(rows[-1], flush=True)
    if args.levers: rows += lever_rows(x, args.batch, args.warmup, args.steps, args.seed)
    df = pd.DataFrame(rows)
    df["batch_size"] = df.get("batch_size", pd.Series(dtype=float)).fillna(args.batch)
    df["threads"] = df.get("threads", pd.Series(dtype=float)).fillna(torch.get_num_threads())
    df["views_per_image"] = df["method"].map(VIEWS)
    df["views_per_s"] = df["views_per_s"].fillna(df["images_per_s"] * df["views_per_image"]) if "views_per_s" in df else df["images_per_s"] * df["views_per_image"]
    best_lightly = df[df.impl == "lightly"].groupby("method")["images_per_s"].max()
    df["ratio_to_lightly"] = df["images_per_s"] / df["method"].map(best_lightly)
    df["achieved_gflops"] = df["flops_per_step"] / df["median_step_s"] / 1e9 if "flops_per_step" in df else np.nan
    for pr in ("fp32", "bf16"):
        df[f"peak_{pr}_gflops"] = peaks[pr]["gflops"]
        df[f"fraction_of_{pr}_peak"] = df["achieved_gflops"] / peaks[pr]["gflops"]
    df["dataset"], df["size"], df["seed"] = d.name, args.size, args.seed
    prov = provenance(command=" ".join(["python", "benchmarks/bench_ssl.py", *(argv if argv is not None else sys.argv[1:])]),
                      lightly=lightly.__version__, peaks=peaks, native_bf16=cpu_supports_bf16(), precision=precision,
                      torch_threads=torch.get_num_threads(), dataset=d.name, n_images=len(x), seconds=None)
    df["commit"], df["dirty"] = prov.get("commit"), prov.get("dirty")
    df["cpu"], df["native_bf16"] = prov["hardware"]["cpu"], cpu_supports_bf16()   # every row names the kind of machine it ran on
    if args.ttq:
        dq = load_dataset("breastmnist", size=28, download=False)
        ttq = time_to_quality(args, dq, out.parent)
        ref = pd.read_csv(Path("results/quickstart/quickstart_breastmnist_summary.csv"))
        target = float(ref[(ref.protocol == "SimCLR linear probe") & (ref.fraction == 1.0)]["auc_mean"].iloc[0])
        ttq["target_auc"] = target
        ttq["reached"] = ttq["probe_auc"] >= target
        ttq["commit"], ttq["dirty"], ttq["seed"] = prov.get("commit"), prov.get("dirty"), args.seed
        atomic_write_text(ttq.to_csv(index=False), out.with_name(out.stem + "_time_to_quality.csv"))
        prov["time_to_quality_target"] = {"auc": target, "source": "results/quickstart/quickstart_breastmnist_summary.csv (SimCLR linear probe, 100 % labels, mean of 3 seeds)"}
    prov["seconds"] = time.perf_counter() - t_all
    atomic_write_text(df.to_csv(index=False), out)
    atomic_write_text(json.dumps(prov, indent=1, default=str), out.with_name(out.stem + "_provenance.json"))
    cols = ["impl", "method", "setting", "images_per_s", "views_per_s", "ratio_to_lightly", "fraction_of_fp32_peak"]
    print(df[[c for c in cols if c in df]].to_string(index=False))
    print(f"wrote {out} ({prov['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
