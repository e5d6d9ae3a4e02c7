"""The 3D puzzles and the multi-pretext objective of nbs/methods/18_hybrid.ipynb, checked on their behaviour: each loss against a
direct computation from pieces cut by hand, shapes at 28³ and 64³, gradients into the shared encoder, the combined loss against
the sum of its terms under the same random state, clear errors for bad settings, exact resume and a tiny fit that learns."""
import json, math
import pytest
import torch
from medssl_nb.backbones import ResNet, ViT
from medssl_nb.core import MedSSLError, NotApplicableError, set_seed
from medssl_nb.data import synthetic
from medssl_nb.fit import fit, FitConfig, CheckpointMismatchError
from medssl_nb.methods import METHODS, build_method
from medssl_nb.methods.base import collapse_floor
from medssl_nb.methods.hybrid import (Jigsaw3D, SliceOrder, MultiPretext, grid_cubes, shuffle_pieces, slab_layout, cut_slabs,
                                      check_objectives, DEFAULT_OBJECTIVES)
from medssl_nb.views import to_float, normalize

def enc3(chans=1): return ResNet(chans, 10, 8, ndim=3)

@pytest.fixture(scope="module")
def vol(): return synthetic(ndim=3, n_train=48, n_val=4, n_test=4, seed=0).train.x

@pytest.fixture(scope="module")
def vol64(): return synthetic(ndim=3, size=64, n_train=4, n_val=2, n_test=2, seed=0).train.x

def hand_ce(logits, y):
    "Mean cross-entropy written out: -log softmax(logits)[y]."
    return -(logits.float() - logits.float().logsumexp(1, keepdim=True)).gather(1, y[:, None]).mean()

def test_registered_as_3d_methods():
    assert METHODS["jigsaw3d"] is Jigsaw3D and METHODS["sliceorder"] is SliceOrder and METHODS["multipretext"] is MultiPretext
    assert Jigsaw3D.data_ndim == 3 and SliceOrder.data_ndim == 3 and getattr(MultiPretext, "data_ndim", 2) == 2
    assert Jigsaw3D.default_backbone == SliceOrder.default_backbone == MultiPretext.default_backbone == "resnet"

@pytest.mark.parametrize("size", [28, 64])
def test_grid_cubes_are_the_voxels_at_their_corners(size):
    x = torch.randn(2, 2, size, size, size)
    set_seed(0); cubes, corner = grid_cubes(x, 2, 0.3)
    cell, t = size // 2, round(size // 2 * 0.7)
    assert cubes.shape == (2, 8, 2, t, t, t) and corner.shape == (2, 8, 3)
    for b in range(2):
        for j in range(8):
            d, h, w = corner[b, j].tolist()
            assert torch.equal(cubes[b, j], x[b, :, d:d + t, h:h + t, w:w + t])
            cell_idx = torch.tensor([j // 4, (j // 2) % 2, j % 2])            # (d, h, w) row-major
            assert ((corner[b, j] >= cell_idx * cell) & (corner[b, j] + t <= (cell_idx + 1) * cell)).all()   # inside its own cell
    with pytest.raises(MedSSLError, match="volumes"): grid_cubes(torch.randn(2, 1, 28, 28))

def test_shuffle_pieces_is_undone_by_the_inverse_permutation():
    pieces = torch.arange(3 * 4 * 2).view(3, 4, 2)
    perms = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]]); y = torch.tensor([2, 0, 1])
    s = shuffle_pieces(pieces, perms, y)
    for b in range(3):
        for j in range(4): assert torch.equal(s[b, j], pieces[b, perms[y[b], j]])
    assert torch.equal(shuffle_pieces(s, torch.argsort(perms, 1), y), pieces)
    with pytest.raises(MedSSLError): shuffle_pieces(pieces, perms[:, :3], y)

def test_jigsaw3d_loss_is_the_cross_entropy_of_its_head_on_hand_cut_pieces(vol):
    set_seed(0); m = Jigsaw3D(enc3()); m.train()
    x = vol[:8]; v = normalize(to_float(x))
    set_seed(1); out = m.loss(x)
    set_seed(1); p = m.puzzle(v)                       # the same random draws as the loss above
    t = p["pieces"].shape[-1]
    hand = torch.stack([torch.stack([v[b, :, d:d + t, h:h + t, w:w + t] for d, h, w in
                                     (p["corner"][b, m.perms[p["y"][b], j]].tolist() for j in range(8))]) for b in range(8)])
    assert torch.equal(hand, p["pieces"])
    flat = hand.flatten(0, 1)
    mu, sd = flat.mean((1, 2, 3, 4), keepdim=True), flat.std((1, 2, 3, 4), keepdim=True).clamp(min=0.1)
    logits = m.head(m.encoder((flat - mu) / sd).view(8, 8, -1))
    assert math.isclose(out["loss"].item(), hand_ce(logits, p["y"]).item(), rel_tol=1e-5)
    assert len(m.perms) == 64 and (m.perms[:, None] != m.perms[None]).sum(-1)[~torch.eye(64, dtype=torch.bool)].min() >= 6

@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_sliceorder_loss_is_the_cross_entropy_of_its_head_on_hand_cut_slabs(vol, flip):
    set_seed(0); m = SliceOrder(enc3(), flip=flip); m.train()
    x = vol[:8]; v = normalize(to_float(x))
    set_seed(1); out = m.loss(x)
    set_seed(1); p = m.puzzle(v)
    t, g = p["thickness"], m.gap
    src = v.flip(-1).flip(-2) if flip == 1.0 else v    # flip=1: both in-plane axes mirrored, the slice order kept
    hand = torch.stack([torch.stack([src[b, :, p["offset"][b] + i * (t + g):p["offset"][b] + i * (t + g) + t]
                                     for i in m.perms[p["y"][b]].tolist()]) for b in range(8)])
    assert torch.equal(hand, p["pieces"])
    logits = m.head(m.encoder(hand.flatten(0, 1)).view(8, 4, -1))
    assert math.isclose(out["loss"].item(), hand_ce(logits, p["y"]).item(), rel_tol=1e-5)
    assert len(m.perms) == 24 and len({tuple(r) for r in m.perms.tolist()}) == 24

@pytest.mark.parametrize("name", ["jigsaw3d", "sliceorder"])
def test_puzzles_at_28_and_64_voxels(name, vol, vol64):
    want = {("jigsaw3d", 28): (8, 1, 10, 10, 10), ("jigsaw3d", 64): (8, 1, 22, 22, 22),
            ("sliceorder", 28): (4, 1, 6, 28, 28), ("sliceorder", 64): (4, 1, 15, 64, 64)}
    K = {"jigsaw3d": 64, "sliceorder": 24}[name]
    for size, x in ((28, vol[:8]), (64, vol64[:2])):
        set_seed(0); m = build_method(name, enc3()); m.train()
        assert tuple(m.puzzle(normalize(to_float(x)))["pieces"].shape[1:]) == want[(name, size)]
        out = m.loss(x); out["loss"].backward()
        assert torch.isfinite(out["loss"]) and out["emb"].shape == (len(x), 64)
        assert abs(out["loss"].item() - math.log(K)) < 1.0                       # an untrained head is near chance
        assert m.encoder.stem[0].weight.grad.abs().sum() > 0 and m.head.piece_embed[0].weight.grad.abs().sum() > 0

def test_2d_encoders_and_bad_settings_are_refused(vol):
    for cls in (Jigsaw3D, SliceOrder):
        with pytest.raises(NotApplicableError, match="3D encoder"): cls(ResNet(1, 10, 8))
    for bad in (lambda: SliceOrder(enc3(), slabs=7), lambda: SliceOrder(enc3(), gap=-1), lambda: SliceOrder(enc3(), flip=2.0),
                lambda: Jigsaw3D(enc3(), gap=1.0), lambda: Jigsaw3D(enc3(), n_perms=1), lambda: slab_layout(8, 4, 2),
                lambda: SliceOrder(enc3(), thickness=8).loss(vol[:2]),               # 4 × 8 + 3 slices do not fit in 28
                lambda: Jigsaw3D(enc3()).loss(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))):
        with pytest.raises(MedSSLError): bad()
    assert slab_layout(28, 4, 1) == (6, 1) and slab_layout(64, 4, 1) == (15, 1) and slab_layout(28, 3, 1, multiple=7) == (7, 5)

def test_a_3d_vit_needs_patch_multiples():
    vit = lambda: ViT(1, 28, 7, dim=32, depth=1, heads=2, ndim=3, pool="cls")
    x = torch.randint(0, 256, (4, 1, 28, 28, 28), dtype=torch.uint8)
    with pytest.raises(MedSSLError, match="multiple of the ViT patch"): SliceOrder(vit()).loss(x)      # 4 slabs of 7 + 3 gaps > 28
    with pytest.raises(MedSSLError, match="multiple of its patch"): SliceOrder(vit(), slabs=3, thickness=6)
    with pytest.raises(MedSSLError, match="multiple of the ViT patch"): Jigsaw3D(vit(), cube_px=10)
    for m in (SliceOrder(vit(), slabs=3), Jigsaw3D(vit())):
        out = m.loss(x); out["loss"].backward()
        assert torch.isfinite(out["loss"]) and m.encoder.proj.weight.grad.abs().sum() > 0

def test_multipretext_loss_is_the_weighted_sum_of_its_objectives(vol):
    set_seed(0); m = MultiPretext(enc3(), {"jigsaw3d": 0.5, "sliceorder": 2.0, "sliceposition": 3.0}); m.train()
    assert all(o.encoder is m.encoder for o in m.objectives.values())            # one encoder object, shared
    n_own = sum(p.numel() for p in m.parameters())
    assert n_own == sum(p.numel() for p in m.encoder.parameters()) + sum(p.numel() for o in m.objectives.values()
                                                                         for n, p in o.named_parameters() if not n.startswith("encoder."))
    x = vol[:8]
    set_seed(3); out = m.loss(x)
    set_seed(3); parts = {n: o.loss(x)["loss"] for n, o in m.objectives.items()}   # the same draws, objective by objective
    want = 0.5 * parts["jigsaw3d"] + 2.0 * parts["sliceorder"] + 3.0 * parts["sliceposition"]
    assert math.isclose(out["loss"].item(), want.item(), rel_tol=1e-5)
    for n in parts:
        assert math.isclose(out[f"loss_{n}"].item(), parts[n].item(), rel_tol=1e-5) and not out[f"loss_{n}"].requires_grad
    assert "sliceposition_slice_error" in out and out["emb"].shape == (8, 64)
    out["loss"].backward()
    assert m.encoder.stem[0].weight.grad.abs().sum() > 0
    assert all(next(o.head.parameters()).grad is not None for o in m.objectives.values())

def test_multipretext_defaults_follow_the_encoder():
    m2, m3 = MultiPretext(ResNet(1, 10, 8)), MultiPretext(enc3())
    assert list(m2.objectives) == list(DEFAULT_OBJECTIVES[2]) and list(m3.objectives) == list(DEFAULT_OBJECTIVES[3])
    set_seed(0); x = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    set_seed(5); out = m2.loss(x)
    set_seed(5); want = sum(o.loss(x)["loss"] for o in m2.objectives.values())
    assert math.isclose(out["loss"].item(), want.item(), rel_tol=1e-5)
    h = m3.hparams(); json.dumps(h)
    assert h["objectives"] == {"jigsaw3d": 1.0, "sliceorder": 1.0, "sliceposition": 1.0} and h["ndim"] == 3
    assert h["parts"]["sliceorder"]["slabs"] == 4 and "encoder" not in h["parts"]["jigsaw3d"]
    m = MultiPretext(enc3(), {"SliceOrder": 2}, kwargs={"sliceorder": {"slabs": 3}})
    assert m.hparams()["objectives"] == {"sliceorder": 2.0} and m.hparams()["parts"]["sliceorder"]["slabs"] == 3 and len(m.objectives["sliceorder"].perms) == 6

@pytest.mark.parametrize("objectives, kwargs, match", [
    ({}, None, "at least one objective"), (None, None, None), ("simclr", None, "at least one objective"),
    ({"simclrr": 1.0}, None, "Unknown objective"), ({"multipretext": 1.0}, None, "cannot contain a MultiPretext"),
    ({"simclr": 0.0}, None, "finite positive"), ({"simclr": -1}, None, "finite positive"), ({"simclr": float("nan")}, None, "finite positive"),
    ({"simclr": float("inf")}, None, "finite positive"), ({"simclr": True}, None, "finite positive"), ({"simclr": "1"}, None, "finite positive"),
    ({"simclr": 1, "SimCLR": 1}, None, "repeat"), ({"simclr": 1}, {"rotation": {}}, "kwargs"), ({"simclr": 1}, {"simclr": 0.5}, "kwargs"),
    ({"simclr": 1}, {"simclr": {"no_such_arg": 1}}, "does not accept"), ({"simclr": 1}, {"simclr": {"temperature": 0}}, "objective 'simclr'"),
    ({"jigsaw3d": 1.0, "rotation": 1.0}, None, "work on 3D data but the encoder is 2D")])
def test_multipretext_refuses_bad_objectives(objectives, kwargs, match):
    if objectives is None:
        assert isinstance(MultiPretext(ResNet(1, 10, 8)), MultiPretext); return
    with pytest.raises(MedSSLError, match=match): MultiPretext(ResNet(1, 10, 8), objectives, kwargs)

def test_multipretext_objectives_that_cannot_take_volumes_say_so(vol):
    with pytest.raises(NotApplicableError, match="objective 'jigsaw'"): MultiPretext(enc3(), {"jigsaw": 1.0})
    with pytest.raises(NotApplicableError, match="work on 3D data"): MultiPretext(ResNet(1, 10, 8), {"sliceorder": 1.0})
    with pytest.raises(NotApplicableError, match="objective 'dae'"): MultiPretext(enc3(), {"sliceorder": 1.0, "dae": 1.0}).loss(vol[:4])

def test_multipretext_delegates_momentum_and_data_checks(monkeypatch):
    m = MultiPretext(ResNet(1, 10, 8), {"byol": 1.0, "rotation": 1.0})
    assert [t for t, _ in m.momentum_pairs()] == [t for t, _ in m.objectives["byol"].momentum_pairs()] and len(m.momentum_pairs()) == 1
    target = m.objectives["byol"].momentum_pairs()[0][0]
    before = next(target.parameters()).clone()
    with torch.no_grad(): next(m.encoder.parameters()).add_(1.0)
    m.on_step_end(0, 10)
    assert not torch.equal(next(target.parameters()), before)                    # BYOL's target moved towards the shared encoder
    with pytest.raises(MedSSLError, match="queue_size"):
        MultiPretext(ResNet(1, 10, 8), {"mocov2": 1.0, "rotation": 1.0}, {"mocov2": {"queue_size": 4096}}).check_data(64, 16)
    import medssl_nb.methods.hybrid as hybrid
    monkeypatch.setattr(hybrid, "dist_info", lambda: (0, 2))                      # as if under DDP with 2 ranks
    mixed = MultiPretext(ResNet(1, 10, 8), {"mocov2": 1.0, "simclr": 1.0})
    assert not mixed.sync_bn
    with pytest.raises(MedSSLError, match="disagree on batch norm"): mixed.check_data(512, 32)
    MultiPretext(ResNet(1, 10, 8), {"simclr": 1.0, "rotation": 1.0}).check_data(512, 32)   # agreeing objectives pass

def test_multipretext_resume_is_exact_and_other_weights_are_refused(vol, tmp_path):
    x = vol[:16]
    build = lambda w=1.0, seed=0: (set_seed(seed), MultiPretext(enc3(), {"jigsaw3d": w, "sliceposition": 1.0}))[1]
    cfg = lambda d: FitConfig(epochs=2, batch_size=8, precision="fp32", ckpt_dir=str(d), progress=False)
    a = fit(build(), x, cfg(tmp_path / "a")).method.state_dict()
    fit(build(), x, cfg(tmp_path / "b"), stop_after_epochs=1)
    r = fit(build(seed=7), x, cfg(tmp_path / "b"))
    b = r.method.state_dict()
    assert r.resumed_from == 1 and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "objectives.jigsaw3d.encoder.stem.0.weight" in b and torch.equal(b["objectives.jigsaw3d.encoder.stem.0.weight"], b["encoder.stem.0.weight"])
    assert {"loss_jigsaw3d", "loss_sliceposition"} <= set(r.history[-1])         # fit logs each term per epoch
    with pytest.raises(CheckpointMismatchError): fit(build(w=2.0), x, cfg(tmp_path / "b"))

def test_tiny_fit_on_volumes_learns_without_collapse():
    d = synthetic(ndim=3, n_train=64, n_val=4, n_test=4, seed=1).train.x
    set_seed(0); m = MultiPretext(enc3(), {"jigsaw3d": 1.0, "sliceorder": 1.0})
    h = fit(m, d, FitConfig(epochs=3, batch_size=16, lr=1e-3, warmup_epochs=0.5, progress=False)).history
    assert h[-1]["loss"] < h[0]["loss"] and h[-1]["loss_sliceorder"] < math.log(24) - 0.2
    assert h[-1]["emb_std"] > max(0.02, 2 * collapse_floor(h[-1]["emb_dim"]))


# ---- multi-task pretraining (UMedPT-style) ------------------------------------------------------------------------------

def test_multitask_refuses_a_labelled_objective_inside_multipretext():
    with pytest.raises(MedSSLError, match="learn.*from labels"): MultiPretext(ResNet(1, 10, 8), objectives={"simclr": 1.0, "multitask": 1.0})

def test_multitask_resumes_exactly_with_an_ssl_term(tmp_path):
    "Labels travel with their images through the seeded order: a run stopped after one epoch and resumed ends on the weights of a straight run."
    from medssl_nb.methods.hybrid import task_targets
    d = synthetic(n_train=48, n_val=4, n_test=4, seed=0); y, tasks = task_targets([d])
    build = lambda: (set_seed(0), build_method("multitask", ResNet(1, 10, 8), tasks=tasks, ssl="simclr", ssl_weight=0.5))[1]
    cfg = lambda p: FitConfig(epochs=2, batch_size=16, precision="fp32", ckpt_dir=str(p), progress=False)
    a = fit(build(), d.train.x, cfg(tmp_path / "a"), targets=y).method.state_dict()
    fit(build(), d.train.x, cfg(tmp_path / "b"), stop_after_epochs=1, targets=y)
    res = fit(build(), d.train.x, cfg(tmp_path / "b"), targets=y)
    assert res.resumed_from == 1 and all(torch.equal(a[k], v) for k, v in res.method.state_dict().items())
    assert {"task_loss", "ssl_loss"} <= set(res.history[-1])
    shuffled = fit(build(), d.train.x, cfg(tmp_path / "c"), targets=y[torch.randperm(len(y))]).method.state_dict()
    assert not all(torch.equal(a[k], v) for k, v in shuffled.items())   # the labels matter: other labels, other weights

def test_label_efficiency_pools_for_a_labelled_method(tmp_path):
    "Study units of multi-task pretraining on flag-shaped stand-ins: 'others' leaves the evaluated set out of the pool (and of the tasks), 'multi-domain' keeps it in."
    from medssl_nb.label_efficiency import LabelEfficiencyConfig, run_label_efficiency, answer_questions, summarize_label_efficiency, paired_label_efficiency
    cfg = LabelEfficiencyConfig(synthetic=True, synthetic_n=48, datasets=("breastmnist", "retinamnist"), methods=("multitask",),
                                pools=("others", "multi-domain"), protocols=("linear probe",), fractions=(1.0,), seeds=(0,),
                                pretrain_steps=2, batch_size=16, sup_epochs=1, ft_epochs=1, width=8, out=str(tmp_path), progress=False)
    df, prov = run_label_efficiency(cfg)
    ssl = df[df.method == "multitask"]
    assert set(ssl.pool) == {"others", "multi-domain"} and len(ssl) == 2 * 2
    assert (ssl[ssl.pool == "others"].pretrain_images == 48).all() and (ssl[ssl.pool == "multi-domain"].pretrain_images == 96).all()
    assert prov["others_pools"]["breastmnist"]["flags"] == ["retinamnist"] and prov["others_pools"]["retinamnist"]["flags"] == ["breastmnist"]
    s = summarize_label_efficiency(df)
    assert "best SSL setting" not in answer_questions(s, paired_label_efficiency(df))   # labelled pretraining is never counted as SSL
    with pytest.raises(MedSSLError, match="'others' pool of breastmnist is empty"):
        run_label_efficiency(LabelEfficiencyConfig(**{**cfg.__dict__, "datasets": ("breastmnist",), "out": str(tmp_path / "one")}))
