"""The network prepared once for feature extraction, and the one model call per batch.

:func:`prepare` turns an eval-mode model into an :class:`InferenceNet` (``images [B,3,H,W]``
-> ``float32 [B,D]`` features) run by a backend:

- ``auto`` (the default of ``ccreid extract``, ``test``, ``viz`` and ``ccreid.load``): the fastest
  engine that gives the fp32 features: ``onnxruntime`` on the CPU in fp32 when it is installed
  (benchmarks/results/extract_speed.md), ``torch`` on CUDA / MPS, with ``precision="bf16"``, or
  when onnxruntime is missing or the export fails (a one-line note then, via logging);
- ``torch``: an eval copy of the model (the model itself is left as it is) with every
  Conv2d + BatchNorm2d pair folded into one conv (:mod:`ccreid.models.fuse`), in
  ``channels_last`` on CPU and CUDA (oneDNN's convolutions are NHWC; NCHW input costs a
  reorder around every conv), run under ``torch.no_grad``; ``precision="bf16"`` adds bf16
  autocast (fast on CPUs with AVX512-BF16/AMX and on CUDA; not bit-equal to fp32);
- ``onnxruntime``: the eval copy exported to ONNX at the first batch's image size
  (:func:`write_onnx`, the exporter of ``ccreid export``), kept in the user's cache
  (:mod:`ccreid.inference.onnx_cache`: exported once per network) and run by an ONNX Runtime
  CPU session with torch's thread count (optional package, ``pip install 'ccreid[export]'``).

:func:`embed` (the forward + flip average) is what ``extract_features`` and
``ccreid.load(w).embed`` run; benchmarks/results/extract_speed.md compares the backends.
"""

from __future__ import annotations

import copy
import importlib
import logging
import warnings
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ccreid.errors import CCReIDError, first_line
from ccreid.inference.onnx_cache import cached_file, export_key
from ccreid.models.fuse import fold_batchnorm
from ccreid.runtime.amp import autocast
from ccreid.runtime.precision import require_right_bf16

#: The error of a camera-embedding model (``uses_camids``) called without camera ids.
CAMIDS_REQUIRED = ("this model was trained with a camera embedding (model.vit.sie=true): "
                   "pass the camera ids of the images (camids)")
BACKENDS = ("auto", "torch", "onnxruntime")
PRECISIONS = ("fp32", "bf16")
#: The lowest opset of torch's ``torch.export``-based exporter; ONNX Runtime >= 1.14 runs it.
DEFAULT_OPSET = 18
INSTALL_EXPORT = "pip install 'ccreid[export]'"
logger = logging.getLogger(__name__)


def missing_onnxruntime() -> Optional[str]:
    """The optional package the onnxruntime backend lacks (``onnxruntime``, or ``onnxscript``, which
    torch's exporter needs), or None when both import."""
    for name in ("onnxruntime", "onnxscript"):
        try:
            importlib.import_module(name)
        except ImportError:
            return name
    return None


def import_onnxruntime():
    """``onnxruntime`` (with ``onnxscript`` importable), or a one-line error."""
    missing = missing_onnxruntime()
    if missing:
        raise CCReIDError(f"option --backend onnxruntime needs the optional package {missing}: "
                          f"{INSTALL_EXPORT} (or use --backend torch)")
    return importlib.import_module("onnxruntime")


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


def resolve_backend(backend: str, precision: str, device: torch.device) -> str:
    """The engine that runs (``torch`` or ``onnxruntime``): ``auto`` is onnxruntime on the CPU in
    fp32 when it is installed (else torch, with a note), torch everywhere else."""
    check_backend(backend, precision, device)
    if backend != "auto":
        return backend
    if device.type != "cpu" or precision != "fp32":
        return "torch"
    missing = missing_onnxruntime()
    if missing:
        logger.info("--backend auto: running the network with torch; %s is not installed (%s for ONNX Runtime, "
                    "faster on the CPU)", missing, INSTALL_EXPORT)
        return "torch"
    return "onnxruntime"


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
    features on ``device``; ``uses_camids``: the camera ids must come with the images;
    ``backend``: the engine that runs it (``torch`` or ``onnxruntime``)."""

    backend = "torch"

    def __init__(self, device: torch.device, camids: bool = False) -> None:
        super().__init__()
        self.device = device
        self.uses_camids = camids


class TorchNet(InferenceNet):
    """The model with folded BatchNorms, channels_last on CPU/CUDA, optional bf16 autocast."""

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32") -> None:
        super().__init__(device, uses_camids(model))
        self.amp = "bf16" if precision == "bf16" else "off"
        # channels_last is a 4-D layout: a network with 3-D convolutions (i3d, ap3d, nl) stays as it is
        self.channels_last = device.type in ("cpu", "cuda") and all(p.dim() != 5 for p in model.parameters())
        net = fold_batchnorm(eval_copy(model))
        self.net = net.to(device, memory_format=torch.channels_last) if self.channels_last else net.to(device)
        self.bf16_checked = self.amp == "off"

    @torch.no_grad()
    def forward(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last and images.dim() == 4:  # clips [B, T, 3, H, W] stay as they are
            images = images.contiguous(memory_format=torch.channels_last)
        if not self.bf16_checked:  # the first batch's size: a wrong CPU bf16 kernel is refused
            require_right_bf16(self.net, images)
            self.bf16_checked = True
        with autocast(self.device, self.amp):
            if self.uses_camids:
                return self.net(images, camids=None if camids is None else camids.to(self.device)).float()
            return self.net(images).float()


def export_or_explain(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    """:func:`write_onnx` at the default opset; an exporter failure as a one-line error naming it."""
    try:
        write_onnx(net, example, path)
    except CCReIDError:
        raise
    except Exception as err:  # the exporter fails in many ways
        raise CCReIDError(f"torch could not export this model to ONNX "
                          f"({first_line(err, 160)})") from None


class OnnxRuntimeNet(InferenceNet):
    """The model exported to ONNX at the first batch's image size (dynamic batch; the file kept in
    the user's cache), run by ONNX Runtime on CPU. ``fallback`` (``--backend auto``): when the export
    or the session fails, say so in one line and run the model with torch instead."""

    backend = "onnxruntime"

    def __init__(self, model: nn.Module, fallback: bool = False) -> None:
        super().__init__(torch.device("cpu"), uses_camids(model))
        self.ort = import_onnxruntime()
        self.model: Optional[nn.Module] = eval_copy(model).cpu()
        self.fallback = fallback
        self.run: Optional[Callable] = None  # (images, camids) -> features, set by the first batch

    def _session(self, model: nn.Module, shape: tuple):
        """An ONNX Runtime session of ``model``'s cached export for inputs of ``shape`` after the batch
        axis (images ``(3, H, W)``, clips ``(T, 3, H, W)``; a damaged cache entry is exported again)."""
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads would steal CPU
        key = export_key(model, shape, DEFAULT_OPSET)
        for attempt in (1, 2):
            path = cached_file(key, lambda tmp: export_or_explain(model, torch.zeros(2, *shape), tmp))
            try:
                return self.ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as err:  # onnxruntime's own error types: a file it cannot read
                if attempt == 2:
                    raise CCReIDError(f"ONNX Runtime cannot load the exported model {path} "
                                      f"({first_line(err, 160)})") from None
                logger.info("the cached ONNX model %s is damaged (%s); exporting it again", path, type(err).__name__)
                path.unlink(missing_ok=True)

    def _start(self, example: torch.Tensor) -> Callable:
        """The session's forward at ``example``'s input shape, or (``fallback``, on a failure) the torch network."""
        model, self.model = self.model, None
        try:
            session = self._session(model, tuple(example.shape[1:]))
        except CCReIDError as err:
            if not self.fallback:
                raise CCReIDError(f"option --backend onnxruntime: {err}; use --backend torch") from None
            logger.warning("--backend auto: %s; running the network with torch instead", err)
            self.backend = "torch"
            return TorchNet(model, self.device)
        return lambda images, camids: self._run(session, images, camids)

    def _run(self, session, images: torch.Tensor, camids: Optional[torch.Tensor]) -> torch.Tensor:
        feeds = {"images": images.detach().cpu().float().contiguous().numpy()}
        if self.uses_camids:
            if camids is None:
                raise CCReIDError(CAMIDS_REQUIRED)
            feeds["camids"] = camids.cpu().long().numpy()
        return torch.from_numpy(session.run(["features"], feeds)[0])

    def forward(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.run is None:
            self.run = self._start(images)
        return self.run(images, camids)


def prepare(model: nn.Module, device: torch.device | str = "cpu", backend: str = "torch",
            precision: str = "fp32") -> InferenceNet:
    """``model`` (not changed) prepared for extraction on ``device`` by ``backend`` (see the module
    docstring). The default here is ``torch``, for a model still training (its evaluation); the
    commands and ``ccreid.load`` pass ``auto``."""
    device = torch.device(device)
    if resolve_backend(backend, precision, device) == "onnxruntime":
        return OnnxRuntimeNet(model, fallback=backend == "auto")
    return TorchNet(model, device, precision)


def embed(net: InferenceNet, images: torch.Tensor, flip: bool = True,
          camids: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Features of a batch (on ``net.device``), averaged with those of the mirrored images when
    ``flip``; ``camids`` go to a network that :attr:`~InferenceNet.uses_camids`."""
    images = images.to(net.device, non_blocking=True)
    feats = net(images, camids)
    if flip:
        feats = (feats + net(torch.flip(images, dims=[-1]), camids)) / 2  # images or clips: mirror the width
    return feats
