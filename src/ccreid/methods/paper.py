"""The paper's method and its ablation presets (METHOD.md): ``baseline``, ``baseline+bsga``,
``baseline+cre``, ``baseline+bctri``, ``ours-wo-bsga`` and ``ours``, all trained by
:class:`~ccreid.methods.base.Method` with the CRE / BSGA / BCTri switches of each."""

from ccreid.methods.base import Method, register_preset
from ccreid.models.presets import PRESETS as PAPER_PRESETS

for _name, _components in PAPER_PRESETS.items():
    register_preset(_name, Method, _components)
