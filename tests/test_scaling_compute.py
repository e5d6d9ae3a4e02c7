"""Scaling and compute pieces against direct computations (chapters 24 and 25 hold the same checks in prose)."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from medssl_nb.core import MedSSLError
from medssl_nb.scaling import fit_power_law, davies_bouldin, gzip_ratio, scaling_fits, ScalingConfig
from medssl_nb.compute import step_flops, time_steps, matmul_peak, pareto_front, time_to_quality, ComputeConfig
from medssl_nb.methods import build_method
from medssl_nb.backbones import ResNet

def test_power_law_exact_and_against_linregress():
    x = np.array([1e3, 3e3, 1e4, 3e4]); r = fit_power_law(x, 0.7 * x ** 0.04)
    assert np.isclose(r["k"], 0.04) and np.isclose(r["a"], 0.7) and np.isclose(r["r2"], 1)
    rng = np.random.default_rng(1); y = 0.7 * x ** 0.04 * np.exp(rng.normal(0, 0.02, 4))
    r, lr = fit_power_law(x, y), stats.linregress(np.log(x), np.log(y))
    assert np.isclose(r["k"], lr.slope) and np.isclose(r["k_ci95"], stats.t.ppf(0.975, 2) * lr.stderr) and np.isclose(r["r2"], lr.rvalue ** 2)
    with pytest.raises(MedSSLError, match="positive"): fit_power_law([1, 2, 3], [1, -1, 2])

def test_scaling_fits_recover_a_planted_exponent():
    "A grid whose AUC is planted as 0.5 * params^0.05 * data^0.02: both headline exponents come back."
    rows = [{"method": "simclr", "backbone": "resnet", "dataset_flag": "breastmnist", "model": f"w{p}", "params": p, "data_size": n, "seed": 0,
             "auc": 0.5 * p ** 0.05 * n ** 0.02, "acc": 0.5, "pretrain_seconds": 1.0} for p in (1e4, 1e5, 1e6) for n in (100, 1000, 10000)]
    f = scaling_fits(pd.DataFrame(rows)); h = f[f.headline & (f.metric == "auc")].set_index("axis")
    assert np.isclose(h.loc["model", "k"], 0.05) and np.isclose(h.loc["data", "k"], 0.02) and len(f[f.metric == "auc"]) == 6

def test_davies_bouldin_formula_and_separation():
    rng = np.random.default_rng(0); y = np.repeat([0, 1], 50)
    near, far = rng.normal(0, 1, (100, 5)) + y[:, None] * 1.0, rng.normal(0, 1, (100, 5)) + y[:, None] * 10.0
    assert davies_bouldin(far, y, n_pca=None) < davies_bouldin(near, y, n_pca=None)
    c = np.array([far[y == i].mean(0) for i in (0, 1)]); s = [np.linalg.norm(far[y == i] - c[i], axis=1).mean() for i in (0, 1)]
    assert np.isclose(davies_bouldin(far, y, n_pca=None), (s[0] + s[1]) / np.linalg.norm(c[0] - c[1]))
    with pytest.raises(MedSSLError): davies_bouldin(far, np.zeros(100))
    with pytest.raises(MedSSLError): gzip_ratio(np.zeros((2, 4), np.float32))

def test_step_flops_of_a_resnet_step_is_three_forwards():
    "Backward of a conv net costs about twice its forward (input and weight gradients), so a SimCLR step is ~3x the forward FLOPs of its 2 views."
    from torch.utils.flop_counter import FlopCounterMode
    enc = ResNet(1, 10, 4); m = build_method("simclr", enc); x = torch.randint(0, 255, (8, 1, 28, 28), dtype=torch.uint8)
    with FlopCounterMode(display=False) as fc: enc(torch.randn(16, 1, 28, 28))
    total = step_flops(m, x)
    assert 2.5 * fc.get_total_flops() < total < 3.5 * fc.get_total_flops()

def test_time_steps_reports_and_refuses():
    m = build_method("simclr", ResNet(1, 10, 4)); x = torch.randint(0, 255, (40, 1, 28, 28), dtype=torch.uint8)
    r = time_steps(m, x, 8, "fp32", warmup=1, steps=2)
    assert len(r["step_s"]) == 2 and r["images_per_s"] > 0 and r["rss_peak_mb"] > 0
    with pytest.raises(MedSSLError, match="uint8"): time_steps(m, x.float(), 8)
    with pytest.raises(MedSSLError): time_steps(m, x, 8, steps=0)
    assert matmul_peak("fp32", 128, repeats=1)["gflops"] > 0
    with pytest.raises(MedSSLError): matmul_peak("fp16", 128)

def test_frontier_and_time_to_quality():
    pts = pd.DataFrame({"part": "frontier", "status": "ok", "method": ["a", "a", "b", "b", "c"], "train_seconds": [1, 4, 2, 3, 10],
                        "auc": [0.6, 0.9, 0.7, 0.8, 0.95]})
    assert list(pareto_front(pts).train_seconds) == [1, 2, 3, 4, 10]
    t = time_to_quality(pts, levels=[0.75, 0.92]).set_index("auc_level")
    assert t.loc[0.75, "fastest"] == "b" and t.loc[0.75, "slowest"] == "c" and t.loc[0.92, "never"] == "a, b"

def test_configs_refuse_bad_grids():
    for bad in (dict(data_sizes=(100,)), dict(resnet_widths=(4, 4)), dict(methods=("mae",), vit_dims=(48,)), dict(datasets=("organmnist3d",))):
        with pytest.raises(MedSSLError): ScalingConfig(synthetic=True, **bad).validate()
    for bad in (dict(dataset="nodulemnist3d"), dict(precisions=("fp16",)), dict(frontier_epochs=(0,)), dict(methods=("nope",))):
        with pytest.raises(MedSSLError): ComputeConfig(synthetic=True, **bad).validate()

def test_exact_correlation_p_counts_orderings():
    from medssl_nb.scaling import exact_correlation_p
    assert exact_correlation_p([1, 2, 3], [2, 4, 9]) == (1.0, 1 / 3)                   # 2 of 3! orderings are as extreme
    r, p = exact_correlation_p([1, 2, 3, 4], [1, 3, 2, 4]); assert np.isclose(r, 0.8) and np.isclose(p, 8 / 24)
    with pytest.raises(MedSSLError): exact_correlation_p([1, 2], [1, 2])
