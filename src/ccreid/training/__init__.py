"""What training methods build on, below both :mod:`ccreid.methods` and the loop in
:mod:`ccreid.engine`: the hook interface and the trainer's state, the train step, and
pretrained weights loaded into built backbones."""
