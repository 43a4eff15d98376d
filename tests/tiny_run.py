"""Config overrides for tiny CPU training runs on a tiny synthetic dataset (later keys win).

``train.amp=off``: the same numbers whether or not the host CPU has bf16 instructions; the model
is set here in full (``model.last_stride=1``: a 4x2 final map at 64x32), whatever the demo config picks.
"""

TINY = [
    "data.synthetic.ids=20", "data.synthetic.extra_test_ids=0", "data.synthetic.outfits=2", "data.synthetic.images_per_outfit=3",
    "data.synthetic.height=64", "data.synthetic.width=32", "data.height=64", "data.width=32",
    "data.ids_per_batch=4", "data.images_per_id=4", "data.workers=0",
    "model.backbone=resnet18", "model.width_mult=0.25", "model.last_stride=1", "model.pretrained=none", "train.epochs=1",
    "train.warmup_epochs=1", "train.milestones=[]", "train.device=cpu", "train.amp=off", "train.threads=1", "test.batch_size=64",
]

#: what a preset needs beyond TINY (FIRe²'s FAR: max pooling and two map cells per part)
PRESET_NEEDS = {"fire": ["model.pooling=avgmax", "model.last_stride=1", "loss.fire.start_epoch=0"]}

#: TINY's overrides on the synthetic video benchmark: short tracklets, 2-frame clips (a 64x32 frame)
VIDEO = ["data.name=synthetic_video", "data.synthetic.frames=6", "data.synthetic.tracklets_per_outfit=2",
         "data.video.seq_len=2", "data.video.stride=2", "data.video.chunk=0", "model.pooling=max", "test.flip=false"]
