"""Multi-process training: two CPU processes (gloo) behave as one process on their joint batch."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from ccreid.commands import tester
from ccreid.config import Config, ModelConfig
from ccreid.errors import CCReIDError
from ccreid.losses import ReIDObjective
from ccreid.methods import PRESETS, build_model_from_config
from ccreid.runs.checkpoint import load_weights
from ccreid.runtime.distributed import setup
from ccreid.training.step import TrainStep
from tiny_run import PRESET_NEEDS, VIDEO

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="this PyTorch build has no torch.distributed gloo backend",
)

B = 8  # per-rank batch: 2 identities x 4 images


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup():
    """Identical model, objective and a 2B batch (rank r's half: identities 2r, 2r+1) in every process."""
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet18", width_mult=0.25, pretrained="none")
    model = build_model_from_config(Config(model=cfg), num_classes=4)
    g = torch.Generator().manual_seed(1)
    batch = {"image": torch.randn(2 * B, 3, 64, 32, generator=g), "pid": torch.arange(4).repeat_interleave(4),
             "clothes": torch.arange(8).repeat_interleave(2), "parsing": torch.full((2 * B, 64, 32), -1),
             "has_parsing": torch.zeros(2 * B, dtype=torch.bool), "index": torch.arange(2 * B)}
    return model, ReIDObjective(num_classes=4), batch


def _sgd(model):
    # SGD, not the trainer's Adam: weights then follow gradients linearly. Adam's first steps
    # move each weight by about lr * sign(grad), so a 1e-7 gradient difference flips
    # near-zero-gradient weights by lr and would hide what is compared here.
    return torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=5e-4)


def _joint_batch_job(rank: int, out: str) -> None:
    """Two SGD steps of the model under DDP on rank ``rank``'s half of the batch; saves grads and state."""
    model, objective, batch = _setup()
    info = setup("cpu")  # joins the group made above
    step = TrainStep(net=DistributedDataParallel(model), objective=objective, optimizer=_sgd(model),
                     scaler=torch.amp.GradScaler("cpu", enabled=False), device=info.device)
    mine = {k: v[rank * B : (rank + 1) * B] for k, v in batch.items()}
    step(mine)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    step(mine)
    info.broadcast_buffers(model)
    torch.save({"grads": grads, "state": model.state_dict()}, os.path.join(out, f"rank{rank}.pt"))


JOINT = "joint batch"  # the job of test_two_ranks_equal_one_process_on_the_joint_batch; the others are presets


def _worker(rank: int, port: int, out: str, jobs: list) -> None:
    """One of two spawned processes (gloo): runs ``jobs`` in order, each into ``out/<job>/rank<r>.pt``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    for job in jobs:
        folder = os.path.join(out, job)
        os.makedirs(folder, exist_ok=True)
        if job == JOINT:
            _joint_batch_job(rank, folder)
        else:
            _method_job(rank, folder, job)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(request, tmp_path_factory):
    """``ranks(job)``: the two ranks' saved files of ``job``. One pair of processes (spawned once:
    each start imports torch and ccreid, seconds a process) runs the jobs of every test of this module
    the session selected; a job a failed process did not reach fails its test with that error."""
    jobs = [item.callspec.params.get("preset", JOINT) if hasattr(item, "callspec") else JOINT
            for item in request.session.items
            if getattr(item, "module", None) is request.module and "ranks" in item.fixturenames]
    out = tmp_path_factory.mktemp("ranks")
    error = None
    try:
        mp.spawn(_worker, args=(_free_port(), str(out), list(dict.fromkeys(jobs))), nprocs=2, join=True)
    except Exception as err:  # mp.spawn's ProcessRaisedException / ProcessExitedException
        error = err

    def load(job: str) -> list:
        files = [out / job / f"rank{r}.pt" for r in range(2)]
        if not all(path.is_file() for path in files):
            pytest.fail(f"the spawned ranks did not finish {job!r}:\n{error}")
        return [torch.load(path) for path in files]
    return load


def test_two_ranks_equal_one_process_on_the_joint_batch(ranks):
    saved = ranks(JOINT)
    for key, value in saved[0]["state"].items():  # parameters by DDP, buffers by broadcast_buffers
        assert torch.equal(value, saved[1]["state"][key]), key
    # Reference: one process, both halves. Without SyncBatchNorm (CUDA only) each rank
    # normalises its own half and mines triplets within it, and DDP averages the ranks'
    # gradients: the reference loss is the mean of the two halves' losses.
    model, objective, batch = _setup()
    optimizer = _sgd(model)
    for step in range(2):
        optimizer.zero_grad()
        losses = [objective(model(batch["image"][h]), batch["pid"][h], batch["clothes"][h],
                            torch.zeros(B, dtype=torch.bool))[0] for h in (slice(0, B), slice(B, 2 * B))]
        (sum(losses) / 2).backward()
        if step == 0:
            for name, p in model.named_parameters():
                if p.requires_grad:
                        torch.testing.assert_close(saved[0]["grads"][name], p.grad, rtol=1e-4, atol=1e-5, msg=name)
        optimizer.step()
    for name, p in model.named_parameters():
        torch.testing.assert_close(saved[0]["state"][name], p.detach(), rtol=0, atol=1e-5, msg=name)


TINY = [
    "data.synthetic.ids=16", "data.synthetic.extra_test_ids=0", "data.synthetic.outfits=2",
    "data.synthetic.images_per_outfit=3",
    "data.synthetic.height=64", "data.synthetic.width=32", "data.height=64", "data.width=32",
    "data.ids_per_batch=2", "data.images_per_id=4", "data.workers=0", "model.preset=ours",
    "model.backbone=resnet18", "model.width_mult=0.25", "model.pretrained=none", "train.epochs=2",
    "train.warmup_epochs=1", "train.milestones=[]", "train.device=cpu", "train.amp=off", "train.threads=1",
    "train.checkpoint_every=1", "test.batch_size=32",
]


def _torchrun(out, data, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "ccreid", "train", "-c", "synthetic", "--out", str(out),
           "--quiet", f"data.root={data}", *TINY, *extra]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("preset, kind, per_epoch", [("ours", [], 3), ("ours+cal", [], 3), ("ours", VIDEO, 2)],
                         ids=["ours", "ours+cal", "ours-video"])
def test_torchrun_trains_logs_once_and_resumes_exactly(tmp_path, preset, kind, per_epoch):
    """8 training identities, 2 ranks x 2 identities x K = 4 a step: 3 steps an epoch with 6 images
    an identity, 2 with 4 tracklets an identity (video)."""
    out, data = tmp_path / "run", tmp_path / "synthetic"
    method = [f"model.preset={preset}", "loss.cal.start_epoch=0", *kind]
    _torchrun(out, data, *method)
    steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [s["iter"] for s in steps] == list(range(1, 2 * per_epoch + 1))  # rank 0 alone logs
    assert not list(out.rglob("*.tmp")) and [p.name for p in (out / "checkpoints").iterdir()] == ["epoch-0001"]
    gathered = json.loads((out / "results.json").read_text())["presets"][preset]
    single = tester.test_checkpoint(out / "model.safetensors", tmp_path / "test")[preset]  # one process
    for name, metrics in single.items():
        assert gathered[name]["mAP"] == pytest.approx(metrics["mAP"], abs=1e-3), name
    first = load_weights(out / "model.safetensors").state_dict
    losses = lambda: [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    before = losses()
    for name in ("model.safetensors", "state.pt", "results.json", "results.md", "report.html"):
        (out / name).unlink(missing_ok=True)  # as if stopped after the epoch-1 checkpoint
    _torchrun(out, data, *method, "--resume")  # continues from epoch 1 with each rank's saved RNG state
    resumed = load_weights(out / "model.safetensors").state_dict
    for key, value in first.items():
        assert torch.equal(value, resumed[key]), key
    assert losses() == before


@pytest.mark.parametrize("env, message", [
    ({"RANK": "1"}, "WORLD_SIZE is not"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two'"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, "MASTER_ADDR, MASTER_PORT unset"),
    ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "x", "MASTER_PORT": "1"}, "RANK=2 outside"),
])
def test_inconsistent_torchrun_environment_is_a_one_line_error(monkeypatch, env, message):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(CCReIDError, match=message):
        setup("cpu")


def test_sync_bn_on_cpu_processes_is_refused_before_joining(monkeypatch):
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(CCReIDError, match="train.sync_bn"):
        setup("cpu", sync_bn=True)
    assert not dist.is_initialized()


def _method_job(rank: int, out: str, preset: str) -> None:
    """Two steps of ``preset``'s training under DDP (gloo); saves the model's and method's state."""
    from ccreid.config import load_config
    from ccreid.engine.training import build_training
    from ccreid.methods import DataInfo

    cfg = load_config("synthetic", [f"model.preset={preset}", "model.backbone=resnet18", "model.width_mult=0.25",
                                    "model.pretrained=none", "data.height=64", "data.width=32", "train.amp=off",
                                    "loss.cal.start_epoch=0", "model.vit.name=vit_tiny_patch16_224",
                                    *PRESET_NEEDS.get(preset, [])])
    torch.manual_seed(rank)  # different per rank, as under torchrun: DDP must make the ranks agree
    info = setup("cpu")
    pids = torch.arange(4).repeat_interleave(4)
    clothes = torch.arange(8).repeat_interleave(2)
    data = DataInfo(4, 8, torch.arange(4)[:, None] == torch.arange(8)[None, :] // 2, (5, 9), "lip")
    training = build_training(cfg, data, torch.device("cpu"), info)
    step = training.start(info)
    parsing = torch.zeros(2 * B, 64, 32, dtype=torch.long)
    parsing[:, 8:30] = 5
    parsing[:, 30:60, 4:28] = 9
    g = torch.Generator().manual_seed(1)
    batch = {"image": torch.randn(2 * B, 3, 64, 32, generator=g), "pid": pids, "clothes": clothes,
             "parsing": parsing, "has_parsing": torch.ones(2 * B, dtype=torch.bool), "index": torch.arange(2 * B)}
    mine = {k: v[rank * B: (rank + 1) * B] for k, v in batch.items()}
    for _ in range(2):
        step(mine)
    info.broadcast_buffers(training.model)
    torch.save({"model": training.model.state_dict(), "method": training.method.state_dict()},
               os.path.join(out, f"rank{rank}.pt"))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_method_keeps_the_ranks_in_step(ranks, preset):
    saved = ranks(preset)
    for part in ("model", "method"):
        for key, value in saved[0][part].items():
            other = saved[1][part][key]
            if isinstance(value, dict):  # a module's state dict inside the method's state
                assert all(torch.equal(v, other[k]) for k, v in value.items()), (part, key)
            else:
                assert torch.equal(value, other), (part, key)
