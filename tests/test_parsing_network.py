"""SCHP network and checkpoint loading against ../shared/schp's float64 golden outputs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ccreid.errors import CCReIDError
from ccreid.parsing import SCHPNetwork, load_schp
from ccreid.parsing.checkpoint import ABN_EPS, fold_abn
from ccreid.parsing.network import ABN, LEAKY_SLOPE

STATS = ("stem", "layer1", "layer2", "layer3", "layer4", "context", "decoder_feature", "edge_feature")


def close(ours: np.ndarray, ref: np.ndarray, scale: float) -> None:
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize("labels,classes", [("lip", 20), ("atr", 18)])
def test_float64_network_matches_golden_outputs(schp_data, schp_checkpoint, labels, classes):
    model, variant = load_schp(schp_checkpoint(labels), dtype=torch.float64)
    assert (variant.name, variant.num_classes, model.num_classes) == (labels, classes, classes)
    inputs, ref = np.load(schp_data / "network_inputs.npz"), np.load(schp_data / f"network_{labels}.npz")
    for x in "ab":
        with torch.no_grad():
            out = model.outputs(torch.from_numpy(inputs[f"input_{x}"].astype(np.float64)))
        for name in ("fusion", "edge"):
            gold = ref[f"{x}_{name}"]
            close(out[name][0].numpy(), gold, np.abs(gold).max())
        for name in STATS + ("parsing",):
            maps = out[name][0] if name == "parsing" else out[name][0, :32]
            for stat, value in (("mean", maps.mean((1, 2))), ("rms", maps.pow(2).mean((1, 2)).sqrt())):
                gold = ref[f"{x}_{name}_{stat}"]
                close(value.numpy(), gold, np.abs(gold).max())


def test_fused_network_equals_unfused(schp_data, schp_checkpoint):
    model, _ = load_schp(schp_checkpoint("lip"), dtype=torch.float64)
    x = torch.from_numpy(np.load(schp_data / "network_inputs.npz")["input_b"].astype(np.float64))
    with torch.no_grad():
        before = model(x)
        fused = model.fuse()
        after = fused(x)
    assert not any(isinstance(m, ABN) for m in fused.modules())
    assert len(model.conv_bn_pairs()) == 0
    torch.testing.assert_close(after, before, rtol=1e-9, atol=1e-9 * before.abs().max().item())


def test_folded_abn_matches_closed_form_with_negative_gammas():
    torch.manual_seed(0)
    gamma = torch.tensor([-1.5, -0.2, 0.7, 1.1])
    beta, mean, var = torch.randn(4), torch.randn(4), torch.rand(4) + 0.5
    x = torch.randn(2, 4, 3, 5)
    for leaky in (True, False):
        abn = ABN(4, leaky=leaky)
        abn.load_state_dict({"weight": gamma, "bias": beta, "running_mean": mean, "running_var": var,
                             "num_batches_tracked": torch.tensor(0)})
        y = fold_abn(abn).eval()(x)
        shape = (1, 4, 1, 1)
        ref = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + 1e-5) * (gamma.abs() + ABN_EPS).view(shape) \
            + beta.view(shape)
        ref = torch.where(ref >= 0, ref, LEAKY_SLOPE * ref) if leaky else ref
        torch.testing.assert_close(y, ref)
    assert (abn.weight > 0).all()


def _state(classes: int = 20) -> dict:
    return {"module." + k: v for k, v in SCHPNetwork(classes).state_dict().items()
            if not k.endswith("num_batches_tracked")}


class Payload:
    """A pickle that would create a file if it were ever executed."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    state = _state()
    cases = {}
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, path)
    cases[path] = "safetensors file"
    path = tmp_path / "reid.pth"
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(2)}}, path)
    cases[path] = "fushion.3.weight is missing"
    path = tmp_path / "missing.pth"
    torch.save({"state_dict": {k: v for k, v in state.items() if k != "module.layer3.7.bn2.running_var"}}, path)
    cases[path] = "tensor layer3.7.bn2.running_var is missing"
    path = tmp_path / "misshaped.pth"
    torch.save({"state_dict": state | {"module.decoder.conv2.0.weight": torch.zeros(48, 256, 3, 3)}}, path)
    cases[path] = "tensor decoder.conv2.0.weight has shape [48, 256, 3, 3], expected [48, 256, 1, 1]"
    path = tmp_path / "classes.pth"
    torch.save({"state_dict": _state(11)}, path)
    cases[path] = "11 classes"
    path = tmp_path / "noise.pth"
    path.write_bytes(b"\x00garbage" * 100)
    cases[path] = "neither a safetensors file nor a PyTorch checkpoint"
    path = tmp_path / "list.pth"
    torch.save([1, 2], path)
    cases[path] = "no 'state_dict'"
    marker = tmp_path / "executed"
    path = tmp_path / "code.pth"
    path.write_bytes(pickle.dumps({"state_dict": Payload(marker)}))
    cases[path] = "not executed"
    cases[tmp_path / "absent.pth"] = ": not found"
    for path, expected in cases.items():
        with pytest.raises(CCReIDError) as err:
            load_schp(path)
        message = str(err.value)
        assert expected in message and str(path) in message and "\n" not in message, message
    assert not marker.exists()


def test_labels_can_be_forced_only_when_the_width_fits(tmp_path):
    path = tmp_path / "lip.pth"
    torch.save(_state(20), path)  # a bare state dict (no "state_dict" key) loads too
    model, variant = load_schp(path, labels="lip")
    assert variant.name == "lip" and model.fushion[3].out_channels == 20
    with pytest.raises(CCReIDError, match="atr has 18 classes"):
        load_schp(path, labels="atr")


def test_network_geometry_output_stride():
    model = SCHPNetwork(7).eval()
    with torch.no_grad():
        out = model.outputs(torch.zeros(1, 3, 65, 49))
    assert out["fusion"].shape == (1, 7, 17, 13) and out["layer4"].shape[-2:] == (5, 4)
    assert out["edge"].shape == (1, 2, 17, 13)
    assert F.interpolate(out["fusion"], size=(65, 49), mode="bilinear", align_corners=True).shape[-2:] == (65, 49)
