"""The paper's method and its ablation presets (METHOD.md): ``baseline``, ``baseline+bsga``,
``baseline+cre``, ``baseline+bctri``, ``ours-wo-bsga`` and ``ours``, all trained by
:class:`~ccreid.methods.base.Method` with the CRE / BSGA / BCTri switches of each."""

from ccreid.methods.base import Method, register_preset
from ccreid.models.presets import PRESETS as PAPER_PRESETS

#: the paper's ablation, in its table's order (``ccreid ablation``'s default presets)
ABLATION = tuple(PAPER_PRESETS)
#: the demo's pair: the baseline and the full method (``ccreid demo``)
DEMO = ("baseline", "ours")

for _name, _components in PAPER_PRESETS.items():
    register_preset(_name, Method, _components)
