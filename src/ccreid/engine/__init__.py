"""The training loop: train() with its checks and parsing plan, the Trainer and its default hooks."""

import sys

from ccreid.training import hooks, pretrained, step

# where 0.1.0's README and EXTENDING.md had them (plug-ins import these): they live in ccreid.training now
for _name, _module in {"hooks": hooks, "pretrained": pretrained, "step": step}.items():
    sys.modules.setdefault(f"{__name__}.{_name}", _module)
