"""HTML pieces of ``report.html``: one page, inline CSS, no scripts, no external resources."""

from __future__ import annotations

import json
from html import escape
from typing import Dict, List, Mapping, Sequence, Tuple

from ccreid.runs.results import ordered_protocols

METRIC_COLUMNS = (("rank1", "top-1"), ("rank5", "top-5"), ("rank10", "top-10"), ("mAP", "mAP"), ("mINP", "mINP"))

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #1f2328; background: #fff; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border: 1px solid #d0d7de; padding: .3em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f6f8fa; }
figure { display: inline-block; vertical-align: top; margin: 1em 2em 1em 0; max-width: 100%; }
img { max-width: 100%; border: 1px solid #eaeef2; }
figcaption { color: #59636e; font-size: .9em; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: .85em; }
.note { color: #9a6700; }
"""


def _value(metrics: Mapping, key: str) -> str:
    if key not in metrics:
        return "–"
    std = metrics.get(f"{key}_std")
    return f"{metrics[key]:.1f}" + (f" ± {std:.1f}" if std else "")


def results_table(rows: Mapping[str, Mapping[str, Mapping]]) -> str:
    """Rows ``label -> protocol -> metrics``; columns protocol x (top-1/5/10, mAP, queries)."""
    protocols = ordered_protocols(sorted({p for res in rows.values() for p in res}))
    head1 = "".join(f'<th colspan="{len(METRIC_COLUMNS) + 1}">{escape(p.upper())}</th>' for p in protocols)
    names = [name for _, name in METRIC_COLUMNS] + ["queries (+ no match)"]
    head2 = "".join(f"<th>{name}</th>" for _ in protocols for name in names)
    body = []
    for label, res in rows.items():
        cells = []
        for p in protocols:
            metrics = res.get(p, {})
            cells += [_value(metrics, key) for key, _ in METRIC_COLUMNS]
            queries = metrics.get("queries")
            lost = metrics.get("queries_without_match", 0)
            cells.append("–" if queries is None else f"{queries}" + (f" (+{lost})" if lost else ""))
        body.append(f"<tr><td>{escape(label)}</td>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    return (f'<table><thead><tr><th rowspan="2">run</th>{head1}</tr><tr>{head2}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def key_value_table(items: Mapping[str, object]) -> str:
    rows = "".join(
        f"<tr><td>{escape(str(k))}</td><td>{escape(v if isinstance(v, str) else json.dumps(v))}</td></tr>"
        for k, v in items.items()
    )
    return f"<table><tbody>{rows}</tbody></table>"


def figures(items: Sequence[Tuple[str, str]]) -> str:
    """``(relative image path, caption)`` pairs as figures."""
    return "".join(f'<figure><img src="{escape(src)}" alt="{escape(caption)}">'
                   f"<figcaption>{escape(caption)}</figcaption></figure>" for src, caption in items)


def document(title: str, sections: List[Tuple[str, str]], notes: Sequence[str], footer: str) -> str:
    """The whole document: ``sections`` are ``(heading, html body)``."""
    parts = [f"<h2>{escape(h)}</h2>\n{body}" for h, body in sections if body]
    note_html = "".join(f'<p class="note">{escape(n)}</p>' for n in notes)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>\n'
            f"<body><h1>{escape(title)}</h1>\n{note_html}\n" + "\n".join(parts)
            + f'\n<p><small>{escape(footer)}</small></p></body></html>\n')


def validation_rows(validation: Mapping, seeds: Sequence[int] = ()) -> Dict[str, Mapping]:
    """``results.json`` validation (``protocol -> metrics``, or ``preset -> [per seed]``) as table rows."""
    if not validation:
        return {}
    if isinstance(next(iter(validation.values())), list):
        return {f"{preset} seed {seeds[i] if i < len(seeds) else i}": res
                for preset, runs in validation.items() for i, res in enumerate(runs) if res}
    return {"selected checkpoint": validation}
