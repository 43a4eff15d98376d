"""Pictures and reports: activation/attention maps, ranked lists, plots, ``report.html``.

Each entry point writes PNG/HTML files atomically and returns the paths written::

    viz_actmap(["base/model.safetensors", "ours/model.safetensors"], "out/")
    viz_attention("ours/model.safetensors", "out/")
    viz_ranks("ours/model.safetensors", "out/", protocol="cc", num_queries=8, k=10)
    write_report("outputs/demo")

Plots need matplotlib (extra ``viz``); everything else draws with Pillow.
"""

from ccreid.viz.heatmaps import activation_maps, attention_maps, viz_actmap, viz_attention
from ccreid.viz.plots import plot_cmc, plot_training
from ccreid.viz.ranks import viz_ranks
from ccreid.viz.report import write_report

__all__ = [
    "activation_maps", "attention_maps", "plot_cmc", "plot_training", "viz_actmap", "viz_attention", "viz_ranks",
    "write_report",
]
