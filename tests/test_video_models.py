"""Video backbones (c2d, i3d, ap3d, nl, ap3dnl) against a transcription of Simple-CCReID's
``models/vid_resnet.py`` and ``models/utils/{inflate,c3d_blocks,nonlocal_blocks}.py`` (commit HEAD of
guxinqian/Simple-CCReID), on a width-reduced ResNet-50 at 64x32, clips of 4 frames."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn import init

from ccreid.choices import POOLINGS
from ccreid.errors import CCReIDError
from ccreid.models import ReIDModel, build_backbone
from ccreid.models.video import VIDEO_VARIANTS, VideoReIDModel, build_video_backbone
from ccreid.models.video_blocks import AP3DConv, to_clip, to_frames

WIDTH = 0.125
CLIP = (2, 4, 3, 64, 32)  # B, T, 3, H, W


# ---- transcription of the reference (Simple-CCReID, models/utils/inflate.py) ----
def ref_inflate_conv(conv2d, time_dim=1, time_padding=0, time_stride=1, time_dilation=1, center=False):
    kernel_dim = (time_dim, conv2d.kernel_size[0], conv2d.kernel_size[1])
    padding = (time_padding, conv2d.padding[0], conv2d.padding[1])
    stride = (time_stride, conv2d.stride[0], conv2d.stride[0])
    dilation = (time_dilation, conv2d.dilation[0], conv2d.dilation[1])
    conv3d = nn.Conv3d(conv2d.in_channels, conv2d.out_channels, kernel_dim, padding=padding, dilation=dilation,
                       stride=stride)
    weight_2d = conv2d.weight.data
    if center:
        weight_3d = torch.zeros(*weight_2d.shape)
        weight_3d = weight_3d.unsqueeze(2).repeat(1, 1, time_dim, 1, 1)
        middle_idx = time_dim // 2
        weight_3d[:, :, middle_idx, :, :] = weight_2d
    else:
        weight_3d = weight_2d.unsqueeze(2).repeat(1, 1, time_dim, 1, 1)
        weight_3d = weight_3d / time_dim
    conv3d.weight = nn.Parameter(weight_3d)
    conv3d.bias = conv2d.bias
    return conv3d


def ref_inflate_batch_norm(batch2d):
    batch3d = nn.BatchNorm3d(batch2d.num_features)
    batch2d._check_input_dim = batch3d._check_input_dim
    return batch2d


def ref_inflate_pool(pool2d, time_dim=1, time_padding=0, time_stride=None, time_dilation=1):
    kernel_dim = (time_dim, pool2d.kernel_size, pool2d.kernel_size)
    padding = (time_padding, pool2d.padding, pool2d.padding)
    if time_stride is None:
        time_stride = time_dim
    stride = (time_stride, pool2d.stride, pool2d.stride)
    dilation = (time_dilation, pool2d.dilation, pool2d.dilation)
    return nn.MaxPool3d(kernel_dim, padding=padding, dilation=dilation, stride=stride, ceil_mode=pool2d.ceil_mode)


# ---- models/utils/c3d_blocks.py ----
class RefAPM(nn.Module):
    def __init__(self, in_channels, out_channels, time_dim=3, temperature=4, contrastive_att=True):
        super().__init__()
        self.time_dim = time_dim
        self.temperature = temperature
        self.contrastive_att = contrastive_att
        padding = (0, 0, 0, 0, (time_dim - 1) // 2, (time_dim - 1) // 2)
        self.padding = nn.ConstantPad3d(padding, value=0)
        self.semantic_mapping = nn.Conv3d(in_channels, out_channels, kernel_size=1, bias=False)
        if self.contrastive_att:
            self.x_mapping = nn.Conv3d(in_channels, out_channels, kernel_size=1, bias=False)
            self.n_mapping = nn.Conv3d(in_channels, out_channels, kernel_size=1, bias=False)
            self.contrastive_att_net = nn.Sequential(nn.Conv3d(out_channels, 1, kernel_size=1, bias=False),
                                                     nn.Sigmoid())

    def forward(self, x):
        b, c, t, h, w = x.size()
        N = self.time_dim
        neighbor_time_index = torch.cat([(torch.arange(0, t) + i).unsqueeze(0) for i in range(N) if i != N // 2],
                                        dim=0).t().flatten().long()
        semantic = self.semantic_mapping(x)
        x_norm = F.normalize(semantic, p=2, dim=1)
        x_norm_padding = self.padding(x_norm)
        x_norm_expand = x_norm.unsqueeze(3).expand(-1, -1, -1, N - 1, -1, -1).permute(0, 2, 3, 4, 5, 1).contiguous() \
            .view(-1, h * w, c // 16)
        neighbor_norm = x_norm_padding[:, :, neighbor_time_index, :, :].permute(0, 2, 1, 3, 4).contiguous() \
            .view(-1, c // 16, h * w)
        similarity = torch.matmul(x_norm_expand, neighbor_norm) * self.temperature
        similarity = F.softmax(similarity, dim=-1)
        x_padding = self.padding(x)
        neighbor = x_padding[:, :, neighbor_time_index, :, :].permute(0, 2, 3, 4, 1).contiguous().view(-1, h * w, c)
        neighbor_new = torch.matmul(similarity, neighbor).view(b, t * (N - 1), h, w, c).permute(0, 4, 1, 2, 3)
        if self.contrastive_att:
            x_att = self.x_mapping(x.unsqueeze(3).expand(-1, -1, -1, N - 1, -1, -1).contiguous()
                                   .view(b, c, (N - 1) * t, h, w).detach())
            n_att = self.n_mapping(neighbor_new.detach())
            contrastive_att = self.contrastive_att_net(x_att * n_att)
            neighbor_new = neighbor_new * contrastive_att
        x_offset = torch.zeros([b, c, N * t, h, w], dtype=x.data.dtype, device=x.device.type)
        x_index = torch.tensor([i for i in range(t * N) if i % N == N // 2])
        neighbor_index = torch.tensor([i for i in range(t * N) if i % N != N // 2])
        x_offset[:, :, x_index, :, :] += x
        x_offset[:, :, neighbor_index, :, :] += neighbor_new
        return x_offset


class RefC2D(nn.Module):
    def __init__(self, conv2d, **kwargs):
        super().__init__()
        kernel_dim = (1, conv2d.kernel_size[0], conv2d.kernel_size[1])
        stride = (1, conv2d.stride[0], conv2d.stride[0])
        padding = (0, conv2d.padding[0], conv2d.padding[1])
        self.conv3d = nn.Conv3d(conv2d.in_channels, conv2d.out_channels, kernel_size=kernel_dim, padding=padding,
                                stride=stride, bias=conv2d.bias)
        weight_2d = conv2d.weight.data
        weight_3d = torch.zeros(*weight_2d.shape)
        weight_3d = weight_3d.unsqueeze(2)
        weight_3d[:, :, 0, :, :] = weight_2d
        self.conv3d.weight = nn.Parameter(weight_3d)
        self.conv3d.bias = conv2d.bias

    def forward(self, x):
        return self.conv3d(x)


class RefI3D(nn.Module):
    def __init__(self, conv2d, time_dim=3, time_stride=1, **kwargs):
        super().__init__()
        kernel_dim = (time_dim, conv2d.kernel_size[0], conv2d.kernel_size[1])
        stride = (time_stride, conv2d.stride[0], conv2d.stride[0])
        padding = (time_dim // 2, conv2d.padding[0], conv2d.padding[1])
        self.conv3d = nn.Conv3d(conv2d.in_channels, conv2d.out_channels, kernel_size=kernel_dim, padding=padding,
                                stride=stride, bias=conv2d.bias)
        weight_2d = conv2d.weight.data
        weight_3d = torch.zeros(*weight_2d.shape)
        weight_3d = weight_3d.unsqueeze(2).repeat(1, 1, time_dim, 1, 1)
        middle_idx = time_dim // 2
        weight_3d[:, :, middle_idx, :, :] = weight_2d
        self.conv3d.weight = nn.Parameter(weight_3d)
        self.conv3d.bias = conv2d.bias

    def forward(self, x):
        return self.conv3d(x)


class RefAPP3DC(nn.Module):
    def __init__(self, conv2d, time_dim=3, time_stride=1, temperature=4, contrastive_att=True):
        super().__init__()
        self.APM = RefAPM(conv2d.out_channels, conv2d.out_channels // 16, time_dim=time_dim, temperature=temperature,
                          contrastive_att=contrastive_att)
        kernel_dim = (1, conv2d.kernel_size[0], conv2d.kernel_size[1])
        stride = (1, conv2d.stride[0], conv2d.stride[0])
        padding = (0, conv2d.padding[0], conv2d.padding[1])
        self.spatial_conv3d = nn.Conv3d(conv2d.in_channels, conv2d.out_channels, kernel_size=kernel_dim,
                                        padding=padding, stride=stride, bias=conv2d.bias)
        weight_2d = conv2d.weight.data
        weight_3d = torch.zeros(*weight_2d.shape)
        weight_3d = weight_3d.unsqueeze(2)
        weight_3d[:, :, 0, :, :] = weight_2d
        self.spatial_conv3d.weight = nn.Parameter(weight_3d)
        self.spatial_conv3d.bias = conv2d.bias
        kernel_dim = (time_dim, 1, 1)
        stride = (time_stride * time_dim, 1, 1)
        self.temporal_conv3d = nn.Conv3d(conv2d.out_channels, conv2d.out_channels, kernel_size=kernel_dim,
                                         padding=(0, 0, 0), stride=stride, bias=False)
        nn.init.constant_(self.temporal_conv3d.weight, 0)

    def forward(self, x):
        out = self.spatial_conv3d(x)
        residual = self.temporal_conv3d(self.APM(out))
        return out + residual


# ---- models/utils/nonlocal_blocks.py (NonLocalBlock3D: dimension 3, sub_sample, bn_layer) ----
class RefNonLocalBlock3D(nn.Module):
    def __init__(self, in_channels, inter_channels=None, sub_sample=True):
        super().__init__()
        self.in_channels = in_channels
        self.inter_channels = inter_channels
        if self.inter_channels is None:
            self.inter_channels = in_channels // 2
            if self.inter_channels == 0:
                self.inter_channels = 1
        self.g = nn.Conv3d(self.in_channels, self.inter_channels, kernel_size=1, stride=1, padding=0, bias=True)
        self.theta = nn.Conv3d(self.in_channels, self.inter_channels, kernel_size=1, stride=1, padding=0, bias=True)
        self.phi = nn.Conv3d(self.in_channels, self.inter_channels, kernel_size=1, stride=1, padding=0, bias=True)
        if sub_sample:
            self.g = nn.Sequential(self.g, nn.MaxPool3d((1, 2, 2)))
            self.phi = nn.Sequential(self.phi, nn.MaxPool3d((1, 2, 2)))
        self.W = nn.Sequential(nn.Conv3d(self.inter_channels, self.in_channels, kernel_size=1, stride=1, padding=0,
                                         bias=True), nn.BatchNorm3d(self.in_channels))
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2. / n))
            elif isinstance(m, nn.BatchNorm3d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
        nn.init.constant_(self.W[1].weight.data, 0.0)
        nn.init.constant_(self.W[1].bias.data, 0.0)

    def forward(self, x):
        batch_size = x.size(0)
        g_x = self.g(x).view(batch_size, self.inter_channels, -1)
        g_x = g_x.permute(0, 2, 1)
        theta_x = self.theta(x).view(batch_size, self.inter_channels, -1)
        theta_x = theta_x.permute(0, 2, 1)
        phi_x = self.phi(x).view(batch_size, self.inter_channels, -1)
        f = torch.matmul(theta_x, phi_x)
        f = F.softmax(f, dim=-1)
        y = torch.matmul(f, g_x)
        y = y.permute(0, 2, 1).contiguous()
        y = y.view(batch_size, self.inter_channels, *x.size()[2:])
        y = self.W(y)
        return y + x


# ---- models/vid_resnet.py (resnet2d passed in; non-local widths and the BN from its channels) ----
class RefBottleneck3D(nn.Module):
    def __init__(self, bottleneck2d, block, inflate_time=False, temperature=4, contrastive_att=True):
        super().__init__()
        self.conv1 = ref_inflate_conv(bottleneck2d.conv1, time_dim=1)
        self.bn1 = ref_inflate_batch_norm(bottleneck2d.bn1)
        if inflate_time:
            self.conv2 = block(bottleneck2d.conv2, temperature=temperature, contrastive_att=contrastive_att)
        else:
            self.conv2 = ref_inflate_conv(bottleneck2d.conv2, time_dim=1)
        self.bn2 = ref_inflate_batch_norm(bottleneck2d.bn2)
        self.conv3 = ref_inflate_conv(bottleneck2d.conv3, time_dim=1)
        self.bn3 = ref_inflate_batch_norm(bottleneck2d.bn3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if bottleneck2d.downsample is not None:
            self.downsample = nn.Sequential(ref_inflate_conv(bottleneck2d.downsample[0], time_dim=1, time_stride=1),
                                            ref_inflate_batch_norm(bottleneck2d.downsample[1]))

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return self.relu(out)


class RefResNet503D(nn.Module):
    def __init__(self, resnet2d, block, c3d_idx, nl_idx, temperature=4, contrastive_att=True):
        super().__init__()
        self.block = block
        self.temperature = temperature
        self.contrastive_att = contrastive_att
        self.conv1 = ref_inflate_conv(resnet2d.conv1, time_dim=1)
        self.bn1 = ref_inflate_batch_norm(resnet2d.bn1)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = ref_inflate_pool(resnet2d.maxpool, time_dim=1)
        for i, name in enumerate(("layer1", "layer2", "layer3", "layer4")):
            setattr(self, name, self._inflate_reslayer(getattr(resnet2d, name), c3d_idx[i], nl_idx[i],
                                                       resnet2d.stage_channels[name]))
        self.bn = nn.BatchNorm1d(resnet2d.out_channels)
        init.normal_(self.bn.weight.data, 1.0, 0.02)
        init.constant_(self.bn.bias.data, 0.0)

    def _inflate_reslayer(self, reslayer2d, c3d_idx, nonlocal_idx, nonlocal_channels):
        reslayers3d = []
        for i, layer2d in enumerate(reslayer2d):
            if i not in c3d_idx:
                layer3d = RefBottleneck3D(layer2d, RefC2D, inflate_time=False)
            else:
                layer3d = RefBottleneck3D(layer2d, self.block, inflate_time=True, temperature=self.temperature,
                                          contrastive_att=self.contrastive_att)
            reslayers3d.append(layer3d)
            if i in nonlocal_idx:
                reslayers3d.append(RefNonLocalBlock3D(nonlocal_channels, sub_sample=True))
        return nn.Sequential(*reslayers3d)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        b, c, t, h, w = x.size()
        x = x.permute(0, 2, 1, 3, 4).contiguous()
        x = x.view(b * t, c, h, w)
        x = F.max_pool2d(x, x.size()[2:])
        x = x.view(b, t, -1)
        x = x.mean(1)
        return self.bn(x)


REF_C3D = [[], [0, 2], [0, 2, 4], []]
REF_NL = [[], [1, 3], [1, 3, 5], []]
NONE = [[], [], [], []]
REFERENCE = {  # vid_resnet.py's five constructors
    "c2d": (RefAPP3DC, NONE, NONE),
    "ap3d": (RefAPP3DC, REF_C3D, NONE),
    "i3d": (RefI3D, REF_C3D, NONE),
    "ap3dnl": (RefAPP3DC, REF_C3D, REF_NL),
    "nl": (RefAPP3DC, NONE, REF_NL),
}


# ---- helpers ----
def randomize_norms(module: nn.Module) -> None:
    """Non-trivial affine parameters and statistics in every BatchNorm of ``module``."""
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.normal_(0.0, 0.1)
                norm.running_mean.normal_(0.0, 0.1)
                norm.running_var.uniform_(0.5, 1.5)


def randomize(module: nn.Module, scale: float = 0.05) -> None:
    """Random values in every parameter (zero-initialised blocks included) and BatchNorm statistic."""
    randomize_norms(module)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, scale)


def image_backbone(seed: int = 0, arch: str = "resnet50"):
    torch.manual_seed(seed)
    backbone = build_backbone(arch, WIDTH, 1)
    randomize_norms(backbone)
    return backbone


def assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-5) -> None:
    """Every element within ``tol`` times the largest magnitude of ``expected`` (float32 sums of many terms)."""
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() <= tol * expected.abs().max()


def clip(seed: int = 1) -> torch.Tensor:
    return torch.randn(*CLIP, generator=torch.Generator().manual_seed(seed))


def copy_into_reference(video, ref: RefResNet503D) -> None:
    """The video backbone's added blocks copied into the reference network, module by module."""
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        modules = iter(getattr(ref, stage))
        temporal = video.temporal[stage] if stage in video.temporal else {}
        non_local = video.non_local[stage] if stage in video.non_local else {}
        for index in range(len(video.image.stage(stage))):
            block3d = next(modules)
            mine = temporal[str(index)] if str(index) in temporal else None
            if isinstance(mine, AP3DConv):
                state = {f"APM.{k}": v for k, v in mine.apm.state_dict().items()}
                state["temporal_conv3d.weight"] = mine.temporal_conv.weight
                block3d.conv2.load_state_dict(state, strict=False)
            elif mine is not None:
                with torch.no_grad():
                    block3d.conv2.conv3d.weight[:, :, 0::2] = mine.side
            if str(index) in non_local:
                state = non_local[str(index)].state_dict()
                next(modules).load_state_dict({("W" + k[1:] if k.startswith("w.") else k): v for k, v in state.items()})


def models_pair(name: str, randomized: bool = True):
    """(ours, reference) on the same image weights (and, ``randomized``, the same random added blocks)."""
    image = image_backbone()
    block, c3d, nl = REFERENCE[name]
    ref = RefResNet503D(copy.deepcopy(image), block, c3d, nl)
    ours = VideoReIDModel(build_video_backbone(name, image), num_classes=3)
    if randomized:
        randomize(ours.backbone.temporal)
        randomize(ours.backbone.non_local)
        copy_into_reference(ours.backbone, ref)
    randomize(ref.bn)
    neck = ours.head.bnneck
    neck.load_state_dict(ref.bn.state_dict())
    return ours, ref


# ---- tests ----
@pytest.mark.parametrize("name", list(VIDEO_VARIANTS))
def test_variant_matches_the_reference_on_the_same_weights(name: str) -> None:
    """Features (eval and training mode) and input gradients, in float64: float32 gradients through
    training-mode BatchNorms of 8 frames differ between equal formulas by up to 1%."""
    ours, ref = (m.double() for m in models_pair(name))
    x = clip().double()
    ours.eval(), ref.eval()
    with torch.no_grad():
        assert_close_to_scale(ours(x), ref(x.transpose(1, 2)), 1e-12)
    ours.train(), ref.train()
    ref.bn = nn.Identity()  # training: the frames' BatchNorms on batch statistics; the pooled feature
    inputs = [x.clone().requires_grad_(True), x.transpose(1, 2).clone().requires_grad_(True)]
    out, expected = ours(inputs[0])["feat"], ref(inputs[1])
    assert_close_to_scale(out, expected, 1e-12)
    weights = torch.arange(out.shape[1], dtype=out.dtype)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    assert_close_to_scale(inputs[0].grad, inputs[1].grad.transpose(1, 2), 1e-12)


@pytest.mark.parametrize("name", list(VIDEO_VARIANTS))
def test_fresh_variant_is_the_reference_inflation(name: str) -> None:
    """As built (centre-initialised I3D, zero temporal convolution and non-local output): equal to the
    reference inflated from the same image weights, which is the image network on every frame."""
    ours, ref = models_pair(name, randomized=False)
    ours.eval(), ref.eval()
    with torch.no_grad():
        assert_close_to_scale(ours(clip()), ref(clip().transpose(1, 2)))


@pytest.mark.parametrize("contrastive_att", [True, False])
def test_ap3d_block_matches_app3dc(contrastive_att: bool) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 32, 3, stride=2, padding=1, bias=False)
    ours = AP3DConv(conv, temperature=2.0, contrastive_att=contrastive_att)
    randomize(ours)
    ref = RefAPP3DC(conv, temperature=2.0, contrastive_att=contrastive_att)
    state = {f"APM.{k}": v for k, v in ours.apm.state_dict().items()}
    ref.load_state_dict(state | {"temporal_conv3d.weight": ours.temporal_conv.weight}, strict=False)
    x = torch.randn(2, 32, 5, 8, 6)
    assert_close_to_scale(to_clip(ours(to_frames(x), conv, 5), 5), ref(x))


@pytest.mark.parametrize("pooling", POOLINGS)
def test_constant_clip_through_c2d_is_the_image_feature(pooling: str) -> None:
    image_model = ReIDModel(image_backbone(), num_classes=3, pooling=pooling)
    randomize(image_model.head)
    video = VideoReIDModel(build_video_backbone("c2d", image_model.backbone), num_classes=3, pooling=pooling)
    video.head.load_state_dict(image_model.head.state_dict())
    frames = torch.randn(2, 3, 64, 32)
    constant = frames[:, None].expand(-1, 4, -1, -1, -1)
    image_model.eval(), video.eval()
    with torch.no_grad():
        torch.testing.assert_close(video(constant), image_model(frames), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(VIDEO_VARIANTS))
def test_every_variant_starts_as_the_image_network_on_every_frame(name: str) -> None:
    image = image_backbone()
    video = build_video_backbone(name, image).eval()
    x = clip()
    with torch.no_grad():
        expected = image.eval()(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        torch.testing.assert_close(video(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(VIDEO_VARIANTS))
def test_shapes_parameters_and_training_outputs(name: str) -> None:
    image = image_backbone()
    image_keys = set(image.state_dict())
    model = VideoReIDModel(build_video_backbone(name, image), num_classes=3, bsga_stages=("layer4",))
    own = {k.removeprefix("backbone.image.") for k in model.state_dict() if k.startswith("backbone.image.")}
    assert own == image_keys  # image weights load into backbone.image unchanged
    added = sum(p.numel() for n, p in model.backbone.named_parameters() if not n.startswith("image."))
    assert (added > 0) == (name != "c2d")
    out = model.train()(clip())
    assert out["feat"].shape == out["bn_feat"].shape == (2, image.out_channels) and out["logits"].shape == (2, 3)
    assert [a.shape for a in out["attention"]] == [(8, 1, 4, 2)]  # BSGA on every frame
    fmap, _ = model.feature_map(clip())
    assert fmap.shape == (2, 4, image.out_channels, 4, 2)  # last stride 1
    out["logits"].sum().backward()
    assert all(p.grad is not None for p in model.backbone.temporal.parameters())
    model.eval()
    assert model(clip()).shape == (2, image.out_channels)


@pytest.mark.parametrize("name", list(VIDEO_VARIANTS))
def test_runs_under_bfloat16_autocast_on_cpu(name: str) -> None:
    """At 64x32 (at 32x16 layer3's one-column output meets oneDNN's AMX bug: see runtime/precision.py)."""
    model = VideoReIDModel(build_video_backbone(name, image_backbone()), num_classes=3).eval()
    randomize(model.backbone.temporal)
    randomize(model.backbone.non_local)
    x = clip()[:1]
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = model(x)
    assert features.shape == reference.shape and torch.isfinite(features).all()
    assert torch.nn.functional.cosine_similarity(features.float(), reference).min() > 0.95


def test_image_weights_load_before_or_after_wrapping(tmp_path) -> None:
    from ccreid.training.pretrained import load_pretrained

    path = tmp_path / "image.pth"
    torch.save(image_backbone(seed=5).state_dict(), path)
    before = image_backbone(seed=6)
    load_pretrained(before, str(path))
    models = [build_video_backbone("i3d", before), build_video_backbone("i3d", image_backbone(seed=6))]
    load_pretrained(models[1].image, str(path))
    assert models[1].pretrained_report["source"] == str(path) and not models[1].pretrained_report["missing"]
    for model in models:
        torch.manual_seed(7)
        randomize(model.temporal)
    x = clip()
    with torch.no_grad():
        torch.testing.assert_close(models[0].eval()(x), models[1].eval()(x), rtol=0, atol=0)


def test_errors_name_the_variant_and_what_to_use() -> None:
    with pytest.raises(CCReIDError, match="unknown video backbone 'c3d'; choose one of: c2d, i3d, ap3d, nl, ap3dnl"):
        build_video_backbone("c3d", image_backbone())
    resnet18 = build_backbone("resnet18", WIDTH, 1)
    with pytest.raises(CCReIDError, match="'nl' adds blocks at layer2 \\[1, 3\\]; resnet18's layer2 has 2 blocks"):
        build_video_backbone("nl", resnet18)
    resnet34 = build_backbone("resnet34", WIDTH, 1)
    with pytest.raises(CCReIDError, match="'ap3d' inflates the 3x3 convolution of bottleneck blocks; resnet34"):
        build_video_backbone("ap3d", resnet34)
    assert build_video_backbone("nl", resnet34).non_local["layer3"]["5"].inner == resnet34.stage_channels["layer3"] // 2


def test_onnx_export_of_c2d_matches_torch(tmp_path) -> None:
    """Through the image models' exporter (opset 18: torch.export, ~10 s), dynamic batch."""
    pytest.importorskip("onnx", reason="ONNX export needs the optional extra: pip install 'ccreid[export]'")
    ort = pytest.importorskip("onnxruntime", reason="the parity test needs onnxruntime")
    from ccreid.inference.backends import DEFAULT_OPSET, write_onnx

    model = VideoReIDModel(build_video_backbone("c2d", image_backbone()), num_classes=3).eval()
    path = tmp_path / "video.onnx"
    write_onnx(model, torch.zeros(2, 4, 3, 64, 32), path, DEFAULT_OPSET)
    x = torch.randn(3, 4, 3, 64, 32)  # another batch size: the batch is dynamic
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [features] = session.run(["features"], {"images": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(features, model(x).numpy(), rtol=1e-4, atol=1e-4)
