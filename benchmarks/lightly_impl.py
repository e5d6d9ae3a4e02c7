"""The same four methods written the way lightly's own examples write them: lightly's transforms on PIL images, a
torch DataLoader, lightly's heads, losses and momentum utilities. Installed only for the benchmark
(`pip install -r benchmarks/requirements.txt`).

Settings mirror medssl_nb's defaults (heads, temperatures, crop scales, local crops) so that the two sides do the
same work; the backbone is medssl_nb's own small-image ResNet-18 (SimCLR, BYOL, DINO) or a torchvision ViT of the
same size as medssl_nb's (MAE: lightly's `MAEBackbone`/`MAEDecoder`, its example's model)."""
from __future__ import annotations
import copy
import numpy as np
import torch
import torch.nn as nn
from PIL import Image

GREY = {"mean": [0.5], "std": [0.5]}   # one-channel normalisation: MedMNIST 2D grey sets


class PILDataset(torch.utils.data.Dataset):
    "uint8 images (N, C, H, W) served as PIL images through `transform`, as torchvision datasets do."
    def __init__(self, images: torch.Tensor, transform):
        self.x = images.numpy(); self.transform = transform
    def __len__(self): return len(self.x)
    def __getitem__(self, i):
        a = self.x[i]
        img = Image.fromarray(a[0], "L") if a.shape[0] == 1 else Image.fromarray(np.moveaxis(a, 0, -1), "RGB")
        return self.transform(img), 0


def transform_for(method: str, size: int):
    from lightly.transforms import SimCLRTransform, BYOLTransform, BYOLView1Transform, BYOLView2Transform, DINOTransform, MAETransform
    # medssl_nb's ViewConfig defaults: crop scale 0.35-1, flip 0.5, rotation ±10°, jitter p 0.8 at 0.4, blur p 0.5
    common = dict(input_size=size, cj_prob=0.8, cj_bright=0.4, cj_contrast=0.4, cj_sat=0.4, cj_hue=0.0, min_scale=0.35,
                  random_gray_scale=0.0, sigmas=(0.1 * size / 224 * 2, 2.0 * size / 224 * 2), hf_prob=0.5, rr_prob=1.0,
                  rr_degrees=10.0, normalize=GREY)
    if method == "simclr": return SimCLRTransform(gaussian_blur=0.5, **common)
    if method == "byol":
        return BYOLTransform(view_1_transform=BYOLView1Transform(gaussian_blur=0.5, **common),
                             view_2_transform=BYOLView2Transform(gaussian_blur=0.5, solarization_prob=0.0, **common))
    if method == "dino":
        return DINOTransform(global_crop_size=size, global_crop_scale=(0.4, 1.0), local_crop_size=max(8, round(0.5 * size)),
                             local_crop_scale=(0.05, 0.4), n_local_views=4, hf_prob=0.5, rr_prob=1.0, rr_degrees=10.0, cj_prob=0.8,
                             cj_strength=1.0, cj_bright=0.4, cj_contrast=0.4, cj_sat=0.4, cj_hue=0.0, random_gray_scale=0.0,
                             gaussian_blur=(0.5, 0.5, 0.5), sigmas=common["sigmas"], solarization_prob=0.0, normalize=GREY)
    if method == "mae": return MAETransform(input_size=size, min_scale=0.2, normalize=GREY)
    raise ValueError(method)


class LightlySimCLR(nn.Module):
    def __init__(self, backbone, feat_dim):
        super().__init__()
        from lightly.models.modules import SimCLRProjectionHead
        from lightly.loss import NTXentLoss
        self.backbone, self.head = backbone, SimCLRProjectionHead(feat_dim, 512, 128)
        self.criterion = NTXentLoss(temperature=0.5)
    def step_loss(self, views, step, total):
        x0, x1 = views
        return self.criterion(self.head(self.backbone(x0)), self.head(self.backbone(x1)))
    def after_step(self, step, total): pass


class LightlyBYOL(nn.Module):
    def __init__(self, backbone, feat_dim):
        super().__init__()
        from lightly.models.modules import BYOLProjectionHead, BYOLPredictionHead
        from lightly.models.utils import deactivate_requires_grad
        from lightly.loss import NegativeCosineSimilarity
        self.backbone = backbone
        self.projection_head = BYOLProjectionHead(feat_dim, 512, 128)
        self.prediction_head = BYOLPredictionHead(128, 512, 128)
        self.backbone_momentum = copy.deepcopy(self.backbone); self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum); deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NegativeCosineSimilarity()
    def forward(self, x): return self.prediction_head(self.projection_head(self.backbone(x)))
    def forward_momentum(self, x): return self.projection_head_momentum(self.backbone_momentum(x)).detach()
    def step_loss(self, views, step, total):
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule
        m = cosine_schedule(step, total, 0.99, 1)
        update_momentum(self.backbone, self.backbone_momentum, m=m); update_momentum(self.projection_head, self.projection_head_momentum, m=m)
        x0, x1 = views
        p0, z0 = self.forward(x0), self.forward_momentum(x0)
        p1, z1 = self.forward(x1), self.forward_momentum(x1)
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))
    def after_step(self, step, total): pass


class LightlyDINO(nn.Module):
    def __init__(self, backbone, feat_dim):
        super().__init__()
        from lightly.models.modules import DINOProjectionHead
        from lightly.models.utils import deactivate_requires_grad
        from lightly.loss import DINOLoss
        self.student_backbone = backbone
        self.student_head = DINOProjectionHead(feat_dim, 512, 128, 256, batch_norm=True)
        self.teacher_backbone = copy.deepcopy(backbone); self.teacher_head = DINOProjectionHead(feat_dim, 512, 128, 256, batch_norm=True)
        deactivate_requires_grad(self.teacher_backbone); deactivate_requires_grad(self.teacher_head)
        self.criterion = DINOLoss(output_dim=256, warmup_teacher_temp=0.02, teacher_temp=0.04, warmup_teacher_temp_epochs=1, student_temp=0.05)
    def step_loss(self, views, step, total):
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule
        m = cosine_schedule(step, total, 0.99, 1)
        update_momentum(self.student_backbone, self.teacher_backbone, m=m); update_momentum(self.student_head, self.teacher_head, m=m)
        global_views = views[:2]
        teacher_out = [self.teacher_head(self.teacher_backbone(v)).detach() for v in global_views]
        student_out = [self.student_head(self.student_backbone(v)) for v in views]
        return self.criterion(teacher_out, student_out, epoch=0)
    def after_step(self, step, total): self.student_head.cancel_last_layer_gradients(current_epoch=0)


class LightlyMAE(nn.Module):
    "lightly's torchvision-based MAE example: MAEBackbone + MAEDecoder, random_token_mask, patchify; one input channel."
    def __init__(self, size=28, patch=4, dim=128, depth=4, heads=4, decoder_dim=128, decoder_depth=2, decoder_heads=4, in_chans=1):
        super().__init__()
        import warnings
        from lightly.models.modules.masked_autoencoder import MAEBackbone, MAEDecoder
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vit = MAEBackbone(image_size=size, patch_size=patch, num_layers=depth, num_heads=heads, hidden_dim=dim, mlp_dim=4 * dim)
            vit.conv_proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)   # grey input, as medssl_nb's ViT takes it
            self.decoder = MAEDecoder(seq_length=vit.seq_length, num_layers=decoder_depth, num_heads=decoder_heads, embed_input_dim=dim,
                                      hidden_dim=decoder_dim, mlp_dim=4 * decoder_dim, out_dim=patch ** 2 * in_chans)
        self.backbone, self.patch_size, self.sequence_length = vit, patch, vit.seq_length
        self.mask_ratio = 0.75
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.criterion = nn.MSELoss()
    def step_loss(self, views, step, total):
        from lightly.models import utils
        images = views[0]; B = images.shape[0]
        idx_keep, idx_mask = utils.random_token_mask(size=(B, self.sequence_length), mask_ratio=self.mask_ratio, device=images.device)
        x_encoded = self.backbone.encode(images=images, idx_keep=idx_keep)
        x_decode = self.decoder.embed(x_encoded)
        x_masked = utils.repeat_token(self.mask_token, (B, self.sequence_length))
        x_masked = utils.set_at_index(x_masked, idx_keep, x_decode.type_as(x_masked))
        x_pred = self.decoder.predict(self.decoder.decode(x_masked))
        x_pred = utils.get_at_index(x_pred, idx_mask)
        patches = utils.patchify(images, self.patch_size)
        target = utils.get_at_index(patches, idx_mask - 1)   # first token is the class token
        return self.criterion(x_pred, target)
    def after_step(self, step, total): pass


def build(method: str, backbone: nn.Module | None, feat_dim: int | None, size: int = 28) -> nn.Module:
    if method == "simclr": return LightlySimCLR(backbone, feat_dim)
    if method == "byol": return LightlyBYOL(backbone, feat_dim)
    if method == "dino": return LightlyDINO(backbone, feat_dim)
    if method == "mae": return LightlyMAE(size=size)
    raise ValueError(method)


def loader(images: torch.Tensor, method: str, batch_size: int, workers: int, seed: int = 0):
    ds = PILDataset(images, transform_for(method, images.shape[-1]))
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                                       persistent_workers=workers > 0, generator=g)
