"""Reports: comparison figures, metric tables, performance plots and provenance, in HTML and Markdown.

``render(run_dir, out_dir)`` turns a run folder (results.jsonl, manifest.json, images/, profile/) into
``out_dir/index.html`` (offline: no external resources), ``report.md``, ``figures/`` and ``data/``.
"""

from .render import Section, render

__all__ = ["Section", "render"]
