"Views, backbones, losses and the method interface."
import math, pytest, torch
from medssl_nb.core import MedSSLError
from medssl_nb.views import BatchAugment, prepare
from medssl_nb.core import gaussian_blur
from medssl_nb.backbones import ResNet, resnet18
from medssl_nb.losses import nt_xent, nt_xent_reference
from medssl_nb.methods import build_method, SimCLR, METHODS, embedding_std

@pytest.mark.parametrize("shape", [(4, 1, 28, 28), (4, 3, 28, 28), (2, 1, 12, 12, 12), (3, 1, 64, 64)])
def test_views_shapes_range_and_randomness(shape):
    x = torch.randint(0, 256, shape, dtype=torch.uint8)
    aug = BatchAugment()
    v1, v2 = aug(x), aug(x)
    assert v1.shape == shape and v1.dtype == torch.float32 and v1.min() >= -1 - 1e-5 and v1.max() <= 1 + 1e-5
    assert not torch.equal(v1, v2)

def test_views_identity_and_determinism():
    x = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    ident = BatchAugment(scale=(1, 1), ratio=(1, 1), hflip=0, rotate=0, p_jitter=0, p_blur=0)
    assert torch.allclose(ident(x), prepare(x), atol=1e-5)
    flip = BatchAugment(scale=(1, 1), ratio=(1, 1), hflip=1.0, rotate=0, p_jitter=0, p_blur=0)
    assert torch.allclose(flip(x), prepare(x).flip(-1), atol=1e-5)
    g = lambda: torch.Generator().manual_seed(5)
    assert torch.equal(BatchAugment()(x, gen=g()), BatchAugment()(x, gen=g()))

def test_blur_preserves_constant_and_mass():
    x = torch.full((2, 1, 16, 16), 0.3)
    assert torch.allclose(gaussian_blur(x, torch.tensor([0.5, 2.0]), 3), x, atol=1e-6)

def test_views_bad_input():
    with pytest.raises(MedSSLError, match="batch"): BatchAugment()(torch.zeros(28, 28))

@pytest.mark.parametrize("depth", [10, 18, 34, 50])
def test_resnet_2d_shapes_and_maps(depth):
    m = ResNet(1, depth, width=8)
    f = m.forward_features(torch.randn(2, 1, 28, 28))
    assert f["pooled"].shape == (2, m.feat_dim) and len(f["maps"]) == 4
    assert [t.shape[-1] for t in f["maps"]] == [28, 14, 7, 4]
    assert [t.shape[1] for t in f["maps"]] == m.stage_dims

def test_resnet_3d_and_grad_flow():
    m = ResNet(1, 18, width=4, ndim=3)
    out = m(torch.randn(2, 1, 16, 16, 16)); assert out.shape == (2, 32)
    out.pow(2).sum().backward()
    assert m.stem[0].weight.grad is not None and m.stem[0].weight.grad.abs().sum() > 0

def test_resnet_bad_input_is_clear():
    m2, m3 = resnet18(1, width=8), resnet18(1, ndim=3, width=4)
    with pytest.raises(MedSSLError, match="ndim=3"): m2(torch.randn(1, 1, 8, 8, 8))
    with pytest.raises(MedSSLError, match="ndim=2"): m3(torch.randn(1, 1, 8, 8))
    with pytest.raises(MedSSLError, match="in_chans=3"): m2(torch.randn(1, 3, 28, 28))
    with pytest.raises(MedSSLError): ResNet(1, depth=19)

@pytest.mark.parametrize("n,d,t", [(2, 3, 0.5), (7, 16, 0.1), (16, 32, 1.0), (4, 128, 0.07)])
def test_nt_xent_matches_formula(n, d, t):
    torch.manual_seed(n)
    a, b = torch.randn(n, d), torch.randn(n, d)
    assert torch.allclose(nt_xent(a, b, t).double(), nt_xent_reference(a, b, t), atol=1e-5)

def test_nt_xent_symmetric_scale_invariant_and_grads():
    a, b = torch.randn(8, 16), torch.randn(8, 16)
    assert torch.allclose(nt_xent(a, b), nt_xent(b, a), atol=1e-6)
    assert torch.allclose(nt_xent(a, b), nt_xent(3 * a, 0.5 * b), atol=1e-5)
    a.requires_grad_(); nt_xent(a, b).backward(); assert a.grad.abs().sum() > 0
    e = torch.eye(8) * 5
    assert nt_xent(e, e, 0.1) < 0.01 < nt_xent(a.detach(), b, 0.1)

def test_nt_xent_bad_input():
    with pytest.raises(MedSSLError): nt_xent(torch.randn(4, 8), torch.randn(5, 8))
    with pytest.raises(MedSSLError): nt_xent(torch.randn(1, 8), torch.randn(1, 8))
    with pytest.raises(MedSSLError): nt_xent(torch.randn(4, 8), torch.randn(4, 8), temperature=0)

def test_registry_and_interface():
    assert "simclr" in METHODS
    m = build_method("simclr", ResNet(1, 10, width=8))
    out = m.loss(torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8))
    assert out["loss"].ndim == 0 and out["emb"].shape == (6, 128)
    out["loss"].backward()
    assert all(p.grad is not None for p in m.encoder.parameters() if p.requires_grad)
    assert m.hparams()["method"] == "simclr"
    with pytest.raises(MedSSLError, match="Known methods"): build_method("simclr2", ResNet(1, 10, width=8))

def test_embedding_std_detects_collapse():
    assert abs(embedding_std(torch.randn(4096, 64)) - 64 ** -0.5) < 0.01
    assert embedding_std(torch.ones(64, 64)) < 1e-6
