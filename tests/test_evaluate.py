import math, numpy as np, pytest, torch
from medmnist.evaluator import getAUC, getACC
from medssl_nb.core import MedSSLError
from medssl_nb.data import synthetic, load_medmnist
from medssl_nb.backbones import ResNet
from medssl_nb.evaluate import (medmnist_metrics, linear_probe, knn_predict, mean_ci, embed, train_supervised, predict_scores)

@pytest.mark.parametrize("task,k", [("binary-class", 2), ("multi-class", 7), ("ordinal-regression", 5), ("multi-label, binary-class", 5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_agree_with_medmnist(task, k, seed):
    rng = np.random.default_rng(seed)
    if task.startswith("multi-label"): y, s = rng.integers(0, 2, (150, k)), rng.random((150, k))
    else: y, s = rng.integers(0, k, (150, 1)), rng.dirichlet(np.ones(k), 150)
    ours = medmnist_metrics(y, s, task)
    assert math.isclose(ours["auc"], getAUC(y, s, task), rel_tol=1e-12) and math.isclose(ours["acc"], getACC(y, s, task), rel_tol=1e-12)

def test_metrics_agree_with_evaluator_on_real_split(real_data):
    from medmnist import Evaluator
    d = load_medmnist("breastmnist", root=real_data, download=False)
    s = np.random.default_rng(0).dirichlet([1, 1], len(d.test))
    auc, acc = Evaluator("breastmnist", "test", root=str(real_data)).evaluate(s)
    ours = medmnist_metrics(d.test.y.numpy(), s, d.task)
    assert math.isclose(auc, ours["auc"]) and math.isclose(acc, ours["acc"])

def test_metrics_bad_input():
    with pytest.raises(MedSSLError): medmnist_metrics([0, 1], [[.5, .5]], "binary-class")
    with pytest.raises(MedSSLError, match="NaN"): medmnist_metrics([0, 1], [[np.nan, .5], [.2, .8]], "binary-class")
    with pytest.raises(MedSSLError): medmnist_metrics([0, 1], [[.5, .5], [.5, .5]], "regression")

def test_probes_separate_separable_features():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300); f = rng.normal(size=(300, 16)); f[np.arange(300), y] += 6  # class c points along axis c
    s, C = linear_probe(f[:200], y[:200], f[200:], "multi-class", f[:200], y[:200])
    assert medmnist_metrics(y[200:], s, "multi-class")["acc"] > 0.9
    for w in ("exp", "uniform"):
        sk = knn_predict(f[:200], y[:200], f[200:], 3, k=11, weighting=w)
        assert np.allclose(sk.sum(1), 1) and medmnist_metrics(y[200:], sk, "multi-class")["acc"] > 0.9
    assert knn_predict(f[:5], y[:5], f[200:], 3, k=11).shape == (100, 3)  # k larger than the subset: all vote

def test_probe_single_class_refused():
    with pytest.raises(MedSSLError, match="single class"): linear_probe(np.ones((4, 2)), [0, 0, 0, 0], np.ones((2, 2)), "binary-class")

def test_mean_ci_matches_t_interval():
    from scipy import stats
    v = [0.8, 0.85, 0.9, 0.82]
    r = mean_ci(v)
    lo, hi = stats.t.interval(0.95, 3, loc=np.mean(v), scale=stats.sem(v))
    assert math.isclose(r["mean"] - r["ci"], lo) and math.isclose(r["mean"] + r["ci"], hi)
    assert mean_ci([0.5])["n"] == 1 and math.isnan(mean_ci([])["mean"])

def test_embed_and_supervised_baseline_learn_synthetic():
    torch.manual_seed(0)
    d = synthetic(n_train=600, n_val=64, n_test=128, seed=0)
    enc = ResNet(1, 10, width=8)
    f = embed(enc, d.test.x)
    assert f.shape == (128, enc.feat_dim) and f.dtype == np.float32 and enc.training
    model, hist = train_supervised(ResNet(1, 10, width=16), d.train, d.val, d.task, 2, epochs=8, batch_size=32, progress=False)  # ~5 s
    auc = medmnist_metrics(d.test.y, predict_scores(model, d.test.x, d.task), d.task)["auc"]
    assert len(hist) == 8 and auc > 0.8
