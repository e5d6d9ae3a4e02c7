"""Class-imbalance and OOD pieces against direct computations (the chapters 22 and 23 hold the same checks in prose)."""
import numpy as np
import pytest
import torch
from medssl_nb.core import MedSSLError
from medssl_nb.data import imbalance_subset, synthetic
from medssl_nb.imbalance import class_metrics, class_counts, ratio_plan, _minmaj
from medssl_nb.ood import (ood_metrics, fpr_at_tpr, Mahalanobis, knn_distance, msp_score, energy_score, odin_score, reconstruction_error,
                           acquisition_shift, SHIFTS, holdout_class, far_ood_sets)
from medssl_nb.evaluate import Classifier, class_balance
from medssl_nb.backbones import ResNet

def test_class_metrics_by_hand():
    y = np.array([1, 1, 1, 0, 0]); pred = np.array([1, 0, 1, 0, 1])   # class 1: 2 of 3 found; class 0: 1 of 2
    m = class_metrics(y, np.eye(2)[pred], "binary-class", 2)
    assert np.isclose(m["recall_c1"], 2 / 3) and np.isclose(m["recall_c0"], 1 / 2) and np.isclose(m["balanced_acc"], (2 / 3 + 1 / 2) / 2)
    assert np.isclose(m["precision_c1"], 2 / 3) and np.isclose(m["f1_c0"], 2 * .5 * .5 / 1.0)
    with pytest.raises(MedSSLError): class_metrics(y, np.eye(2)[pred][:, :1], "binary-class", 2)

@pytest.mark.parametrize("ratio", [10, 50, 100])
def test_imbalance_keeps_ratio_and_every_class(ratio):
    y = synthetic(n_train=4000, n_val=10, n_test=10, n_classes=4, seed=1).train.y
    idx = imbalance_subset(y, ratio, seed=3); c = class_counts(y[idx], 4)
    assert (c > 0).all() and abs(c.max() / c.min() - ratio) / ratio < 0.1
    assert c.max() == class_counts(y, 4).max()                               # the largest class is kept whole
    assert np.array_equal(idx, imbalance_subset(y, ratio, seed=3))           # seeded

def test_ratio_plan_refuses_what_the_set_cannot_hold():
    y = torch.tensor([0] * 300 + [1] * 100)[:, None]
    plan = ratio_plan(y, (1, 2, 10, 100, 200), 2, min_minority=3)
    assert [p["ok"] for p in plan] == [True, False, True, True, False]       # 1:2 is below the natural 1:3; 1:200 keeps 2 < 3 images
    assert _minmaj([147, 399])["minority_class"] == 0 and _minmaj([5, 5])["majority_class"] == 1

def test_class_balance_weights_and_resampling():
    y = torch.tensor([0] * 80 + [1] * 20)[:, None]
    crit, _ = class_balance(y, 2, False, "reweight"); assert torch.allclose(crit.weight, torch.tensor([100 / 160, 100 / 40]))
    _, w = class_balance(y, 2, False, "resample"); assert torch.allclose(w[:80].sum(), w[80:].sum())

def test_ood_metrics_by_hand():
    m = ood_metrics([0.1, 0.2, 0.6], [0.5, 0.9])
    assert np.isclose(m["auroc"], 5 / 6) and np.isclose(m["aupr_out"], (1 + 2 / 3) / 2) and np.isclose(m["aupr_in"], (1 + 1 + 3 / 4) / 3)
    assert fpr_at_tpr(np.arange(100), [50, 94, 95, 200]) == 0.5              # threshold = the 95th smallest ID score (94): 50 and 94 pass
    with pytest.raises(MedSSLError): ood_metrics([0.1, np.inf], [0.2])

def test_mahalanobis_closed_form_gaussian():
    rng = np.random.default_rng(1); S = np.array([[2.0, 0.6], [0.6, 1.0]]); mu = np.array([1.0, -2.0])
    X = mu + rng.normal(size=(40000, 2)) @ np.linalg.cholesky(S).T
    q = np.array([[0.0, 0.0], [3.0, 1.0]]); true = np.einsum("nd,de,ne->n", q - mu, np.linalg.inv(S), q - mu)
    assert np.allclose(Mahalanobis().fit(X, np.zeros(len(X))).score(q), true, rtol=0.03)

def test_knn_distance_direct():
    tr = np.array([[1.0, 0.0], [0.0, 1.0]]); te = np.array([[1.0, 1.0]])
    assert np.allclose(knn_distance(tr, te, k=2), np.linalg.norm(np.array([1, 1]) / np.sqrt(2) - np.array([1, 0])))

def test_detectors_refuse_models_without_what_they_need():
    enc = ResNet(1, 10, 4); x = torch.randint(0, 255, (4, 1, 28, 28), dtype=torch.uint8)
    for fn, msg in ((msp_score, "classifier head"), (energy_score, "classifier head"), (odin_score, "classifier head"), (reconstruction_error, "reconstructs")):
        with pytest.raises(MedSSLError, match=msg): fn(enc, x)
    clf = Classifier(enc, 3)
    assert msp_score(clf, x).shape == (4,) and (msp_score(clf, x) <= -1 / 3 + 1e-6).all() and np.isfinite(odin_score(clf, x)).all()

def test_shifts_grow_with_severity_and_refuse_bad_input():
    x = synthetic(n_train=10, n_val=10, n_test=8, seed=0).test.x
    for kind in SHIFTS:
        errs = [float((acquisition_shift(x, kind, s).float() - x.float()).abs().mean()) for s in range(1, 6)]
        assert errs == sorted(errs) and errs[0] > 0, kind
    for bad in ((x, "rain", 1), (x, "noise", 6), (x.float(), "noise", 1)):
        with pytest.raises(MedSSLError): acquisition_shift(*bad)

def test_holdout_class_removes_and_renumbers():
    d = synthetic(n_train=200, n_classes=4, seed=0)
    d_in, x_out = holdout_class(d, 1)
    assert d_in.n_classes == 3 and set(d_in.train.y[:, 0].tolist()) == {0, 1, 2} and len(x_out) == int((d.test.y[:, 0] == 1).sum())
    with pytest.raises(MedSSLError): holdout_class(synthetic(n_train=50, seed=0), 0)    # 2 classes: nothing left to be OOD against
