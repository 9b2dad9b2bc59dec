"""The CLI's own commands (methods, stylize, --help): thin wrappers, one-line user errors, exit codes."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli import main


def _png(path, w, h, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")).save(path)
    return str(path)


def test_help_has_examples_and_every_command():
    out = CliRunner().invoke(main, ["--help"]).output
    assert "Examples:" in out
    commands = "run methods stylize grid weights profile compare report train ablate".split()
    for cmd in commands:
        assert f"  {cmd} " in out, cmd


def test_methods_lists_all_with_citation_and_sources():
    out = CliRunner().invoke(main, ["methods"]).output
    for name in ("sanet", "adain", "wct", "avatar-net", "gatys", "magenta"):
        assert f"\n{name} " in f"\n{out}", name
    assert "Park & Lee" in out and "yadi.sk" in out and "releases/download/v0.0.0/decoder.pth" in out


@pytest.mark.parametrize(("content", "style"), [((128, 96), (75, 125)), ((72, 72), (64, 64))])
def test_stylize_random_weights_writes_a_png_of_the_content_size(tmp_path, content, style):
    c, s = _png(tmp_path / "c.png", *content), _png(tmp_path / "s.png", *style, seed=1)
    out = tmp_path / "o.png"
    r = CliRunner().invoke(main, ["stylize", "--method", "sanet", "--weights", "random", "--content", c,
                                  "--style", s, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert Image.open(out).size == content


def test_stylize_user_errors_are_one_line_exit_2(tmp_path):
    s = _png(tmp_path / "s.png", 64, 64)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    for args, needle in (
        (["--method", "nope", "--content", s], "unknown method 'nope'"),
        (["--method", "adain", "--weights", "random", "--content", str(tmp_path / "bad.png")], "bad.png"),
        (["--method", "adain", "--weights", "official", "--content", s], "official files missing"),
        (["--method", "adain", "--weights", "random", "--content", s, "--alpha", "2"], "alpha=2.0"),
        (["--method", "adain", "--weights", "random", "--content", s, "--option", "colour=1"],
         "no option colour"),
    ):
        r = CliRunner().invoke(main, ["stylize", *args, "--style", s, "--out", str(tmp_path / "o.png")])
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output and "Traceback" not in r.output
        assert len([line for line in r.output.splitlines() if line.startswith("error:")]) == 1
