"""A method from another installed package (entry-point group ``sanet_bench.methods``) appears in
``methods``, ``load_method``, ``run`` and ``profile`` with no change to sanet-bench. The package is real: a
module and a ``*.dist-info`` folder with ``entry_points.txt`` on ``sys.path``, found by importlib.metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""A toy method: the content blended towards the style's mean colour."""
import torch
from sanet_bench.method import Method
from sanet_bench.registry import MethodSpec, Option, register_method


class Toy(Method):
    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(1))

    def load_official(self, paths):
        raise NotImplementedError

    def _stylize(self, content, style, alpha, strength=0.5):
        target = style.mean((2, 3), keepdim=True)
        with self.stage("transform"):
            return content + alpha * strength * self.gain * (target - content)


SPEC = register_method(MethodSpec(
    name="toy-plugin", title="Toy", citation="Nobody, A Toy Method, 2026", reference="toyplug@0.1",
    factory=Toy, options=(Option("strength", 0.5, "how far towards the style colour"),),
    weights_kinds=("random",), min_size=8,
))
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "toyplug").mkdir(parents=True)
    (site / "toyplug" / "__init__.py").write_text(PLUGIN)
    dist = site / "toyplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[sanet_bench.methods]\ntoy = toyplug\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_entry_point_method_loads_and_stylizes(plugin_dir):
    from sanet_bench import list_methods, load_method

    assert "toy-plugin" in list_methods()
    model = load_method("toy-plugin", weights="random")
    c, s = torch.zeros(1, 3, 16, 16), torch.ones(1, 3, 16, 16)
    out = model.stylize(c, s, strength=1.0)
    assert torch.allclose(out, torch.ones_like(out))


def test_entry_point_method_in_methods_run_and_profile(plugin_dir, tmp_path):
    """In a fresh process, as a user would: the CLI lists it, a run scores it, the profiler times it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "cli", "methods"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "toy-plugin" in out.stdout and "Nobody, A Toy Method, 2026" in out.stdout
    code = (
        "from sanet_bench import job; from sanet_bench.config import RunConfig; "
        f"cfg = RunConfig(methods=['toy-plugin'], sizes=[32], weights='random', "
        f"out={str(tmp_path / 'run')!r}, "
        "report=False, profile=True, profile_sizes=[32], profile_repeats=1, metrics=['ssim'], "
        "references=False, max_pairs=1); s = job.run(cfg, progress=False); print(s.ok, s.failed)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["1", "0"]
    rows = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["toy-plugin"] and rows[0]["metrics"]["ssim"] is not None
    recs = [json.loads(x) for x in (tmp_path / "run" / "profile" / "records.jsonl").read_text().splitlines()]
    assert [(r["method"], r["status"]) for r in recs] == [("toy-plugin", "ok")]
