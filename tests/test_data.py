import shutil, numpy as np, pytest, torch
from medssl_nb.core import MedSSLError
from medssl_nb.data import (load_medmnist, load_dataset, locate_medmnist, DataNotFoundError, CorruptDataError, synthetic,
                            label_subset, label_fraction, imbalance_subset, pool_unlabeled, apply_shift, check_flag,
                            SyntheticFallbackWarning, FLAGS_2D, FLAGS_3D)
import medssl_nb.data as data_mod

def test_load_2d_flag(real_data):
    d = load_medmnist("breastmnist", root=real_data, download=False)
    assert d.ndim == 2 and d.train.x.dtype == torch.uint8 and d.train.x.shape == (546, 1, 28, 28)
    assert (len(d.train), len(d.val), len(d.test)) == (546, 78, 156) and d.train.y.shape == (546, 1)
    assert d.task == "binary-class" and d.n_classes == 2 and d.source == "medmnist"

def test_load_rgb_flag(real_data):
    d = load_medmnist("retinamnist", root=real_data, download=False)
    assert d.train.x.shape == (1080, 3, 28, 28) and d.task == "ordinal-regression" and d.n_classes == 5

def test_load_3d_flag_28_and_64(real_data):
    d = load_medmnist("adrenalmnist3d", root=real_data, download=False)
    assert d.ndim == 3 and d.train.x.shape == (1188, 1, 28, 28, 28) and d.train.x.dtype == torch.uint8
    d64 = load_medmnist("adrenalmnist3d", size=64, root=real_data, download=False)
    assert d64.train.x.shape == (1188, 1, 64, 64, 64)

def test_medssl_data_env_is_searched(real_data, monkeypatch):
    monkeypatch.setenv("MEDSSL_DATA", str(real_data))
    assert locate_medmnist("breastmnist", download=False).parent == real_data

def test_all_flags_known():
    assert len(FLAGS_2D) == 12 and len(FLAGS_3D) == 6
    for f in FLAGS_2D: check_flag(f, 224)
    for f in FLAGS_3D: check_flag(f, 64)
    with pytest.raises(MedSSLError, match="sizes"): check_flag("adrenalmnist3d", 128)

def test_unknown_flag_suggests():
    with pytest.raises(MedSSLError, match="breastmnist"): load_dataset("breastmnst")

def test_missing_file_error_names_file_folders_and_fix(no_data):
    with pytest.raises(DataNotFoundError) as e: load_medmnist("breastmnist", root=no_data / "mine", download=False)
    msg = str(e.value)
    assert "breastmnist.npz" in msg and str(no_data / "mine") in msg and "default_root" in msg and "MEDSSL_DATA" in msg

def test_failed_download_is_clear_and_leaves_nothing(no_data, monkeypatch):
    import medmnist
    def boom(self): 
        open(f"{self.root}/breastmnist.npz", "w").write("half a download")  # what an interrupted download leaves
        open(f"{self.root}/breastmnist.npz.part", "w").write("x"); raise RuntimeError("network unreachable")
    monkeypatch.setattr(medmnist.dataset.MedMNIST, "download", boom)
    root = no_data / "dl"
    with pytest.raises(DataNotFoundError, match="download failed: network unreachable"):
        load_medmnist("breastmnist", root=root, download=True)
    assert list(root.iterdir()) == []

def test_wrong_md5_is_refused(real_data, tmp_path):
    src = np.load(real_data / "breastmnist.npz")
    arrays = {k: src[k] for k in src.files}; arrays["train_labels"] = 1 - arrays["train_labels"]  # a tampered copy
    np.savez_compressed(tmp_path / "breastmnist.npz", **arrays)
    with pytest.raises(CorruptDataError, match="MD5"): load_medmnist("breastmnist", root=tmp_path, download=False)

def test_truncated_file_is_refused(real_data, tmp_path):
    blob = (real_data / "breastmnist.npz").read_bytes()
    (tmp_path / "breastmnist.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CorruptDataError, match="corrupt"): load_medmnist("breastmnist", root=tmp_path, download=False)

def test_unreadable_file_with_matching_md5_is_refused(tmp_path, monkeypatch):
    (tmp_path / "breastmnist.npz").write_bytes(b"not a zip file at all")
    monkeypatch.setattr(data_mod, "expected_md5", lambda flag, size=28: data_mod.file_md5(tmp_path / "breastmnist.npz"))
    with pytest.raises(CorruptDataError, match="could not be read"): load_medmnist("breastmnist", root=tmp_path, download=False)

def test_fallback_is_loud(no_data, capsys):
    with pytest.warns(SyntheticFallbackWarning, match="SYNTHETIC"):
        d = load_dataset("breastmnist", root=no_data, download=False, fallback="synthetic")
    assert d.source == "synthetic" and "SYNTHETIC" in capsys.readouterr().err
    with pytest.raises(DataNotFoundError): load_dataset("breastmnist", root=no_data, download=False)

def test_fallback_keeps_dims_and_channels(no_data):
    with pytest.warns(SyntheticFallbackWarning):
        d3 = load_dataset("adrenalmnist3d", root=no_data, download=False, fallback="synthetic", n_train=20, n_val=4, n_test=4)
        r = load_dataset("retinamnist", root=no_data, download=False, fallback="synthetic", n_train=20, n_val=10, n_test=10)
    assert d3.ndim == 3 and r.n_channels == 3 and r.n_classes == 5

def test_synthetic_shapes_determinism_and_knobs():
    a, b = synthetic(seed=3, n_train=50, n_val=10, n_test=10), synthetic(seed=3, n_train=50, n_val=10, n_test=10)
    assert torch.equal(a.train.x, b.train.x) and a.train.x.dtype == torch.uint8 and a.train.x.shape == (50, 1, 28, 28)
    v = synthetic(ndim=3, n_train=10, n_val=4, n_test=4, size=16)
    assert v.train.x.shape == (10, 1, 16, 16, 16)
    imb = synthetic(n_train=550, n_classes=2, imbalance=10)
    counts = torch.bincount(imb.train.y[:, 0]).tolist(); assert counts == [500, 50]
    s = synthetic(n_train=20, n_val=10, n_test=20, shift=dict(noise=30))
    c = synthetic(n_train=20, n_val=10, n_test=20)
    assert torch.equal(s.train.x, c.train.x) and not torch.equal(s.test.x, c.test.x)

def test_synthetic_class_is_not_intensity():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    d = synthetic(n_train=600, n_test=400, seed=1)
    feat = lambda s: np.stack([s.x.float().mean((1, 2, 3)).numpy(), s.x.float().std((1, 2, 3)).numpy()], 1)
    clf = LogisticRegression().fit(feat(d.train), d.train.y[:, 0])
    assert roc_auc_score(d.test.y[:, 0], clf.predict_proba(feat(d.test))[:, 1]) < 0.65

def test_apply_shift():
    x = synthetic(n_train=8, n_val=2, n_test=2).train.x
    assert torch.equal(apply_shift(x), x)
    assert apply_shift(x, contrast=0.5).float().std() < x.float().std()
    with pytest.raises(MedSSLError): apply_shift(x.float())

@pytest.mark.parametrize("frac", [0.01, 0.05, 0.1, 0.25, 0.5, 1.0])
def test_label_subset_properties(frac):
    rng = np.random.default_rng(0)
    y = np.concatenate([np.zeros(400), np.ones(120), np.full(25, 2)]).astype(int)[rng.permutation(545)]
    idx = label_subset(y, frac, seed=7)
    assert len(idx) == max(3, int(round(frac * 545))) and len(set(idx)) == len(idx) and idx.min() >= 0 and idx.max() < 545
    counts = np.bincount(y[idx], minlength=3)
    assert (counts >= 1).all()
    if frac >= 0.1: assert np.allclose(counts / len(idx), [400 / 545, 120 / 545, 25 / 545], atol=0.02)
    assert np.array_equal(idx, label_subset(y, frac, seed=7))
    if frac < 1: assert not np.array_equal(idx, label_subset(y, frac, seed=8))

def test_label_subset_per_class_and_errors():
    y = np.array([0] * 50 + [1] * 5)
    assert np.bincount(y[label_subset(y, per_class=3)]).tolist() == [3, 3]
    for bad in (0, -0.1, 1.5, float("nan")):
        with pytest.raises(MedSSLError, match="fraction"): label_subset(y, bad)
    with pytest.raises(MedSSLError, match="one example per class"): label_subset(y, 0.02)
    with pytest.raises(MedSSLError, match="fewer examples"): label_subset(y, per_class=6)
    with pytest.raises(MedSSLError): label_subset(y)

def test_label_subset_multilabel_covers_every_label():
    rng = np.random.default_rng(0)
    y = (rng.random((1000, 6)) < [0.3, 0.2, 0.1, 0.05, 0.01, 0.003]).astype(int); y[0, 5] = 1
    idx = label_subset(y, 0.01, seed=0, multilabel=True)
    assert (y[idx].sum(0) >= 1).all()

def test_label_fraction_on_dataset():
    d = synthetic(n_train=200, n_val=10, n_test=10)
    s = label_fraction(d, 0.1, seed=0)
    assert len(s) == 20 and s.x.shape[1:] == d.train.x.shape[1:]

def test_imbalance_subset():
    y = np.array([0] * 300 + [1] * 300)
    idx = imbalance_subset(y, 10, seed=0)
    assert np.bincount(y[idx]).tolist() in ([300, 30], [30, 300])
    with pytest.raises(MedSSLError): imbalance_subset(y, 0.5)

def test_pool_unlabeled():
    a, b = synthetic(n_train=10, n_val=2, n_test=2), synthetic(n_train=6, n_val=3, n_test=3, channels=3, size=32)
    x, src = pool_unlabeled([a, b], size=28, channels=1)
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.uint8 and src.tolist() == [0] * 10 + [1] * 6
    with pytest.raises(MedSSLError): pool_unlabeled([a, synthetic(ndim=3, n_train=4, n_val=2, n_test=2, size=8)])
