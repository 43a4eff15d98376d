"""PCB against a transcription of torchreid's head (``torchreid/models/pcb.py``: DimReduceLayer, dropout,
per-part classifiers, eval feature) and loss (``losses.DeepSupervision``: the part losses averaged)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ccreid.losses import CrossEntropyLabelSmooth
from ccreid.methods.pcb import PCBModel, PCBObjective
from ccreid.models import build_backbone


class TorchreidHead(nn.Module):
    """``PCB``'s layers after ``featuremaps`` (parts=6, reduced_dim=256, nonlinear='relu'), transcribed."""

    def __init__(self, feature_dim, num_classes, parts=6, reduced_dim=256):
        super().__init__()
        self.parts = parts
        self.parts_avgpool = nn.AdaptiveAvgPool2d((self.parts, 1))
        self.dropout = nn.Dropout(p=0.5)
        self.conv5 = nn.Sequential(nn.Conv2d(feature_dim, reduced_dim, 1, stride=1, padding=0, bias=False),
                                   nn.BatchNorm2d(reduced_dim), nn.ReLU(inplace=True))
        self.classifier = nn.ModuleList([nn.Linear(reduced_dim, num_classes) for _ in range(self.parts)])

    def forward(self, f):
        v_g = self.parts_avgpool(f)
        if not self.training:
            v_g = F.normalize(v_g, p=2, dim=1)
            return v_g.view(v_g.size(0), -1)
        v_g = self.dropout(v_g)
        v_h = self.conv5(v_g)
        y = []
        for i in range(self.parts):
            v_h_i = v_h[:, :, i, :]
            v_h_i = v_h_i.view(v_h_i.size(0), -1)
            y.append(self.classifier[i](v_h_i))
        return y


def deep_supervision(criterion, xs, y):
    loss = 0.
    for x in xs:
        loss += criterion(x, y)
    loss /= len(xs)
    return loss


def test_pcb_head_logits_loss_and_eval_feature_equal_torchreid_on_identical_weights():
    torch.manual_seed(0)
    model = PCBModel(build_backbone("resnet18", 0.25, 1), num_classes=5)
    channels = model.backbone.out_channels
    head = TorchreidHead(channels, 5)
    head.conv5.load_state_dict(model.reduce.state_dict())
    head.classifier.load_state_dict(model.classifiers.state_dict())
    images, pids = torch.randn(4, 3, 96, 32), torch.tensor([0, 1, 2, 2])
    fmap = model.feature_map(images)[0].detach()
    torch.manual_seed(1)
    out = model(images)
    torch.manual_seed(1)  # the same dropout mask
    theirs = head(fmap)
    torch.testing.assert_close(out["part_logits"], torch.stack(theirs, 1))
    loss, terms = PCBObjective(5, 0.1)(out, pids)
    torch.testing.assert_close(loss, deep_supervision(CrossEntropyLabelSmooth(5, 0.1), theirs, pids))
    torch.testing.assert_close(terms["ce_parts"], loss.detach())
    model.eval(), head.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images), head(model.feature_map(images)[0]))


def test_pcb_reduction_is_one_shared_bias_free_conv_with_batchnorm():
    """torchreid's DimReduceLayer: 2048 x 256 conv weights + 2 x 256 BN parameters (0.52M), not one per part."""
    model = PCBModel(build_backbone("resnet50", 1.0, 1), num_classes=10)
    assert sum(p.numel() for p in model.reduce.parameters()) == 2048 * 256 + 2 * 256 == 524_800
    assert model.reduce[0].bias is None and isinstance(model.reduce[1], nn.BatchNorm2d)
    assert sum(p.numel() for p in model.classifiers.parameters()) == 6 * (256 * 10 + 10)
    assert model.dropout.p == 0.5
