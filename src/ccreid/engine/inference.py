"""The network prepared once for feature extraction, and the one model call per batch.

:func:`prepare` turns an eval-mode model into an :class:`InferenceNet` (``images [B,3,H,W]``
-> ``float32 [B,D]`` features) run by a backend:

- ``torch``: an eval copy of the model (the model itself is left as it is) with every
  Conv2d + BatchNorm2d pair folded into one conv (:mod:`ccreid.models.fuse`), in
  ``channels_last`` on CPU and CUDA (oneDNN's convolutions are NHWC; NCHW input costs a
  reorder around every conv), run under ``torch.no_grad``; ``precision="bf16"`` adds bf16
  autocast (fast on CPUs with AVX512-BF16/AMX and on CUDA; not bit-equal to fp32);
- ``onnxruntime``: the eval copy exported to ONNX on the first batch (:func:`write_onnx`,
  the exporter of ``ccreid export``) and run by an ONNX Runtime CPU session with torch's
  thread count (optional package, ``pip install 'ccreid[export]'``).

:func:`embed` (the forward + flip average) is what ``extract_features`` and
``ccreid.load(w).embed`` run; benchmarks/results/extract_speed.md compares the backends.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ccreid.engine.runtime import autocast
from ccreid.errors import CCReIDError
from ccreid.models.fuse import fold_batchnorm

#: The error of a camera-embedding model (``uses_camids``) called without camera ids.
CAMIDS_REQUIRED = ("this model was trained with a camera embedding (model.vit.sie=true): "
                   "pass the camera ids of the images (camids)")
BACKENDS = ("torch", "onnxruntime")
PRECISIONS = ("fp32", "bf16")
#: The lowest opset of torch's ``torch.export``-based exporter; ONNX Runtime >= 1.14 runs it.
DEFAULT_OPSET = 18
INSTALL_EXPORT = "pip install 'ccreid[export]'"


def import_onnxruntime():
    """``onnxruntime`` (with ``onnxscript``, which torch's exporter needs), or a one-line error."""
    try:
        import onnxruntime
        import onnxscript  # noqa: F401  (the exporter of write_onnx)
    except ImportError as err:
        raise CCReIDError(f"option --backend onnxruntime needs the optional package {err.name or 'onnxruntime'}: "
                          f"{INSTALL_EXPORT} (or use --backend torch)") from None
    return onnxruntime


def check_backend(backend: str, precision: str = "fp32", device: Optional[torch.device] = None) -> None:
    """A one-line error for an unknown backend or precision, a missing onnxruntime, or a
    combination that does not run (onnxruntime: CPU and fp32 only)."""
    if backend not in BACKENDS:
        raise CCReIDError(f"option --backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise CCReIDError(f"option --precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if backend != "onnxruntime":
        return
    if precision != "fp32":
        raise CCReIDError(f"option --precision {precision} is for --backend torch (onnxruntime runs fp32)")
    if device is not None and device.type != "cpu":
        raise CCReIDError(f"option --backend onnxruntime runs on the CPU, not {device}: choose the cpu device "
                          "(ccreid extract --device cpu; ccreid test train.device=cpu)")
    import_onnxruntime()


def uses_camids(model: nn.Module) -> bool:
    """Whether ``model`` takes the camera ids beside the images (a ViT with camera embedding)."""
    return bool(getattr(model, "uses_camids", False))


def write_onnx(net: nn.Module, example: torch.Tensor, path: Path, opset: int = DEFAULT_OPSET) -> None:
    """Export ``net`` (``images [batch,3,H,W]`` (+ ``camids [batch]`` int64 for a model that
    :func:`uses_camids`) ``-> features``, dynamic batch) to ``path``: opsets >= 18 with torch's
    ``torch.export`` exporter, older ones with the legacy TorchScript one."""
    inputs = ["images", "camids"] if uses_camids(net) else ["images"]
    args = (example, torch.zeros(len(example), dtype=torch.long))[:len(inputs)]
    names = {"input_names": inputs, "output_names": ["features"], "opset_version": opset}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters warn about their own internals
        try:
            if opset >= 18:
                batch = torch.export.Dim("batch")
                shapes = {"images": {0: batch}, "camids": {0: batch}}
                torch.onnx.export(net, args, str(path), dynamo=True, external_data=False, verbose=False,
                                  dynamic_shapes={k: shapes[k] for k in inputs}, **names)
            else:
                axes = {name: {0: "batch"} for name in (*inputs, "features")}
                torch.onnx.export(net, args, str(path), dynamo=False, dynamic_axes=axes, **names)
        except ImportError as err:
            raise CCReIDError(f"ONNX export needs {err.name or 'onnxscript'}: {INSTALL_EXPORT}") from None


def eval_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode without gradients (the original keeps its mode)."""
    return copy.deepcopy(model).eval().requires_grad_(False)


class InferenceNet(nn.Module):
    """A network prepared by :func:`prepare`: ``forward(images, camids=None)`` -> ``float32 [B,D]``
    features on ``device``; ``uses_camids``: the camera ids must come with the images."""

    def __init__(self, device: torch.device, camids: bool = False) -> None:
        super().__init__()
        self.device = device
        self.uses_camids = camids


class TorchNet(InferenceNet):
    """The model with folded BatchNorms, channels_last on CPU/CUDA, optional bf16 autocast."""

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32") -> None:
        super().__init__(device, uses_camids(model))
        self.amp = "bf16" if precision == "bf16" else "off"
        self.channels_last = device.type in ("cpu", "cuda")
        net = fold_batchnorm(eval_copy(model))
        self.net = net.to(device, memory_format=torch.channels_last) if self.channels_last else net.to(device)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.amp):
            if self.uses_camids:
                return self.net(images, camids=None if camids is None else camids.to(self.device)).float()
            return self.net(images).float()


class OnnxRuntimeNet(InferenceNet):
    """The model exported to ONNX at the first batch's size (dynamic batch), run by ONNX Runtime on CPU."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(torch.device("cpu"), uses_camids(model))
        self.ort = import_onnxruntime()
        self.model: Optional[nn.Module] = eval_copy(model).cpu()
        self.session = None

    def _start(self, example: torch.Tensor) -> None:
        """Export at ``example``'s image size and open the session."""
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads would steal CPU
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            try:
                write_onnx(self.model, torch.zeros(2, *example.shape[1:]), path)
            except CCReIDError:
                raise
            except Exception as err:  # the exporter fails in many ways: name it and the way out
                raise CCReIDError(f"option --backend onnxruntime: torch could not export this model to ONNX "
                                  f"({str(err).strip().splitlines()[0][:160]}); use --backend torch") from None
            self.session = self.ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.model = None

    def forward(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.session is None:
            self._start(images)
        feeds = {"images": images.detach().cpu().float().contiguous().numpy()}
        if self.uses_camids:
            if camids is None:
                raise CCReIDError(CAMIDS_REQUIRED)
            feeds["camids"] = camids.cpu().long().numpy()
        return torch.from_numpy(self.session.run(["features"], feeds)[0])


def prepare(model: nn.Module, device: torch.device | str = "cpu", backend: str = "torch",
            precision: str = "fp32") -> InferenceNet:
    """``model`` (not changed) prepared for extraction on ``device`` by ``backend`` (see the module docstring)."""
    device = torch.device(device)
    check_backend(backend, precision, device)
    return OnnxRuntimeNet(model) if backend == "onnxruntime" else TorchNet(model, device, precision)


def embed(net: InferenceNet, images: torch.Tensor, flip: bool = True,
          camids: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Features of a batch (on ``net.device``), averaged with those of the mirrored images when
    ``flip``; ``camids`` go to a network that :attr:`~InferenceNet.uses_camids`."""
    images = images.to(net.device, non_blocking=True)
    feats = net(images, camids)
    if flip:
        feats = (feats + net(torch.flip(images, dims=[3]), camids)) / 2
    return feats
