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

def test_supervised_baseline_with_augmentation_sees_random_views():
    "augment=ViewConfig() trains on random views: the batches differ from v2's plain images (other weights), training still learns, and evaluation stays on the plain images."
    from medssl_nb.views import ViewConfig
    d = synthetic(n_train=256, n_val=32, n_test=64, seed=0)
    run = lambda aug: (torch.manual_seed(0), train_supervised(ResNet(1, 10, width=8), d.train, d.val, d.task, 2, epochs=3, batch_size=32,
                                                              progress=False, seed=0, augment=aug))[1]   # the same initial weights each time
    (plain, hp), (aug, ha) = run(None), run(ViewConfig())
    assert all(math.isfinite(h["loss"]) for h in ha) and ha[-1]["loss"] < ha[0]["loss"]
    assert not torch.equal(plain.fc.weight, aug.fc.weight)
    again, _ = run(ViewConfig())
    assert torch.equal(aug.fc.weight, again.fc.weight)   # the views come from the seeded global state: repeatable

def test_fine_tune_trains_a_copy_with_a_slower_encoder():
    "fine_tune leaves the pretrained encoder untouched, moves its copy, and runs the encoder at encoder_lr_mult x the head's lr."
    import copy, torch
    from medssl_nb.evaluate import fine_tune
    from medssl_nb.data import synthetic
    from medssl_nb.backbones import ResNet
    d = synthetic(n_train=64, n_val=16, n_test=16, seed=0)
    enc = ResNet(1, 10, width=8); before = copy.deepcopy(enc.state_dict())
    seen = {}
    orig = torch.optim.Adam.__init__
    def spy(self, groups, *a, **k):
        seen["lrs"] = [g["lr"] for g in groups]; orig(self, groups, *a, **k)
    torch.optim.Adam.__init__ = spy
    try: model, hist = fine_tune(enc, d.train, d.val, d.task, 2, epochs=2, lr=1e-3, encoder_lr_mult=0.1, batch_size=16, progress=False)
    finally: torch.optim.Adam.__init__ = orig
    assert seen["lrs"] == [pytest.approx(1e-4), pytest.approx(1e-3)] and len(hist) == 2
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(v, model.encoder.state_dict()[k]) for k, v in before.items() if v.is_floating_point())
    with pytest.raises(MedSSLError, match="epochs"): fine_tune(enc, d.train, d.val, d.task, 2, epochs=0, progress=False)

def test_paired_diff_matches_scipy():
    import numpy as np
    from scipy import stats
    from medssl_nb.evaluate import paired_diff
    a, b = np.array([.71, .75, .69, .80, .77]), np.array([.70, .71, .70, .74, .72])
    r = paired_diff(a, b)
    assert r["diff"] == pytest.approx((a - b).mean()) and r["p_t"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert r["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a - b).pvalue) and r["n"] == 5
    with pytest.raises(MedSSLError): paired_diff([1, 2], [1, 2, 3])
