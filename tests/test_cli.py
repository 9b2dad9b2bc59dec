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


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: the checks under test must come before it."""
    from sanet_bench import api

    def load_method(*a, **k):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(api, "load_method", load_method)


def _stylize(tmp_path, *args, out="o.png", method="adain"):
    s = _png(tmp_path / "s.png", 64, 64)
    base = ["stylize", "--method", method, "--weights", "random", "--style", s, "--out", str(tmp_path / out)]
    return CliRunner().invoke(main, [*base, *args])


def _one_error_line(r) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    [line] = [line for line in r.output.splitlines() if line.startswith("error:")]
    return line


def test_stylize_checks_inputs_before_loading_the_model(tmp_path, no_model):
    c = _png(tmp_path / "c.png", 80, 80)
    tiny = _png(tmp_path / "tiny.png", 1, 1)
    for args, out, needles in (
        (["--content", str(tmp_path / "typo.png")], "o.png", ["typo.png", "no such file"]),
        (["--content", c, "--alpha", "1.5"], "o.png", ["alpha=1.5"]),
        (["--content", c, "--size", "0"], "o.png", ["--size 0"]),
        (["--content", c, "--option", "colour=1"], "o.png", ["no option colour"]),
        (["--content", c], "o.xyz", ["o.xyz", "unknown image suffix"]),
        (["--content", tiny], "o.png", [str(tmp_path / "tiny.png"), "1x1 px", "minimum of 64"]),
    ):
        line = _one_error_line(_stylize(tmp_path, *args, out=out))
        assert all(n in line for n in needles), (args, line)


def test_stylize_refuses_a_content_whose_features_cannot_fit(tmp_path, no_model, monkeypatch):
    from sanet_bench import api

    monkeypatch.setattr(api, "available_memory", lambda device: 2**20)  # 1 MiB free
    c = _png(tmp_path / "c.png", 300, 200)
    line = _one_error_line(_stylize(tmp_path, "--content", c))
    assert "300x200 px (full resolution" in line and "--size" in line and "c.png" in line


def test_stylize_out_of_memory_is_one_line_with_the_size_and_the_fix(tmp_path, monkeypatch):
    from baselines.adain import AdaIN

    def oom(self, *a, **k):  # the CPU allocator's error, as a 6000x4000 content raised it
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried "
            "to allocate 6144000000 bytes. Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(AdaIN, "_stylize", oom)
    c = _png(tmp_path / "c.png", 96, 72)
    line = _one_error_line(_stylize(tmp_path, "--content", c))
    assert "out of memory" in line and "96x72 px" in line and "--size 64" in line and "c.png" in line
    line = _one_error_line(_stylize(tmp_path, "--content", c, "--size", "64"))
    assert "85x64 px" in line and "(--size 64)" in line


def test_stylize_help_says_what_the_default_size_does():
    out = CliRunner().invoke(main, ["stylize", "--help"]).output
    assert "Default: no resize" in " ".join(out.split()) and "full resolution" in " ".join(out.split())


def test_weights_convert_names_the_methods_that_have_a_converter(tmp_path):
    res = CliRunner().invoke(main, ["weights", "convert", "adain", str(tmp_path / "x"), str(tmp_path)])
    assert res.exit_code == 2
    assert "adain: its published files load as they are" in res.output and "avatar-net" in res.output
