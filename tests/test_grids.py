"""Test grids: embedded (offline), paper (manifest + sha256, cache or mirror), folder; pairs; CLI."""

from __future__ import annotations

import csv
import hashlib
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli import main
from sanet_bench import grids
from sanet_bench.errors import DownloadError, GridError, OfflineError, UnknownNameError
from sanet_bench.grids import Grid, GridImage, get_grid, list_grids, pull, status

SHARED_PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "grids" / "paper"
needs_shared = pytest.mark.skipif(
    not (SHARED_PAPER / "MANIFEST.tsv").is_file(), reason=f"no paper-grid mirror at {SHARED_PAPER}"
)


def _fake(role: str, n: int) -> tuple[GridImage, ...]:
    return tuple(GridImage(f"{role[0]}{i}", role, None, "test") for i in range(n))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ embedded
@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """Built once per module in its own home (the autouse home of conftest is per test)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SANET_BENCH_HOME", str(tmp_path_factory.mktemp("emb_home")))
        yield get_grid("embedded")


def test_list_grids():
    assert list_grids() == ["embedded", "paper"]


def test_embedded_is_six_by_six_with_provenance(embedded):
    assert len(embedded.contents) == 6 and len(embedded.styles) == 6
    assert len(embedded.pairs()) == 36
    for role, imgs in (("content", embedded.contents), ("style", embedded.styles)):
        assert len({i.name for i in imgs}) == 6
        for img in imgs:
            assert img.role == role
            assert img.path is not None and img.path.is_file()
            assert img.provenance and "\n" not in img.provenance
            assert re.search(r"public domain|CC0|MIT", img.provenance), img.provenance
            assert img.sha256 == _sha(img.path)
            with Image.open(img.path) as im:
                assert img.size == im.size


def _kinds(imgs):
    gray, shapes = [], set()
    for img in imgs:
        x = img.load(48)
        gray.append(bool((x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all()))
        w, h = img.size
        shapes.add("square" if w == h else "landscape" if w > h else "portrait")
    return gray, shapes


def test_embedded_varies_in_colour_and_aspect(embedded):
    for imgs in (embedded.contents, embedded.styles):
        gray, shapes = _kinds(imgs)
        assert any(gray) and not all(gray), "at least one gray and one colour image per role"
        assert shapes == {"square", "landscape", "portrait"}


def test_embedded_loads_at_size(embedded):
    x = embedded.contents[0].load(32, "shorter")
    assert x.shape[0] == 1 and x.shape[1] == 3 and min(x.shape[-2:]) == 32
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_generated_styles_are_deterministic_and_cached_atomically(tmp_path):
    for name in ("mosaic", "waves", "strokes", "marble"):
        a, b = np.asarray(grids.generate(name)), np.asarray(grids.generate(name))
        np.testing.assert_array_equal(a, b)
        assert a.ndim == 3 and a.std() > 0.05, f"{name} is a picture, not a flat colour"
    first = get_grid("embedded")
    cache = grids.grids_dir() / "embedded" / grids.GEN_VERSION
    assert sorted(p.name for p in cache.iterdir()) == ["marble.png", "mosaic.png", "strokes.png", "waves.png"]
    again = pull("embedded")  # regenerates: same bytes
    assert [i.sha256 for i in again.styles] == [i.sha256 for i in first.styles]


def test_embedded_needs_its_package(monkeypatch):
    real = grids.importlib.util.find_spec
    monkeypatch.setattr(
        grids.importlib.util, "find_spec", lambda name: None if name == "skimage" else real(name)
    )
    with pytest.raises(GridError, match="pip install scikit-image"):
        get_grid("embedded")


# ------------------------------------------------------------------------------------------------ pairs
def test_pairs_full_is_content_major():
    g = Grid("t", "", _fake("content", 3), _fake("style", 4))
    assert [(c.name, s.name) for c, s in g.pairs()] == [
        (f"c{i}", f"s{j}") for i in range(3) for j in range(4)
    ]
    assert g.pairs(100) == g.pairs() == g.pairs(12)
    assert g.pairs(0) == []


@pytest.mark.parametrize("c,s", [(6, 6), (3, 4), (4, 6), (5, 2), (1, 7)])
def test_pairs_spread(c, s):
    g = Grid("t", "", _fake("content", c), _fake("style", s))
    full = g.pairs()
    prev: list = []
    for n in range(1, c * s + 1):
        sub = g.pairs(n)
        assert len(sub) == n == len(set(sub))
        assert set(prev) <= set(sub), "pairs(n) is contained in pairs(n+1)"
        assert sub == [p for p in full if p in set(sub)], "returned content-major"
        assert len({ci for ci, _ in sub}) == min(n, c) and len({si for _, si in sub}) == min(n, s)
        prev = sub
    assert set(prev) == set(full)
    assert g.pairs(min(c, s)) != full[: min(c, s)] or min(c, s) == 1, "not just the first row"


def test_pairs_negative_is_an_error():
    with pytest.raises(GridError):
        Grid("t", "", _fake("content", 2), _fake("style", 2)).pairs(-1)


# ------------------------------------------------------------------------------------------------ paper
def _shipped_manifest() -> list[dict]:
    return list(
        csv.DictReader((Path(grids.__file__).parent / "data" / "paper_grid.tsv").open(), delimiter="\t")
    )


def test_paper_manifest_is_pinned_and_unique():
    rows = _shipped_manifest()
    assert len(rows) >= 40
    for r in rows:
        assert re.fullmatch(
            r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+", r["url"]
        ), r
        assert re.fullmatch(r"[0-9a-f]{64}", r["sha256"])
        assert r["role"] in ("content", "style") and r["file"] == f"{r['role']}/{Path(r['file']).name}"
        assert re.fullmatch(r"\d+x\d+", r["size"]) and int(r["bytes"]) > 0
    for role in ("content", "style"):
        names = [r["name"] for r in rows if r["role"] == role]
        assert len(names) == len(set(names))


@needs_shared
def test_paper_manifest_covers_the_shared_manifest():
    shipped = {r["file"]: r for r in _shipped_manifest()}
    upstream = list(csv.DictReader((SHARED_PAPER / "MANIFEST.tsv").open(), delimiter="\t"))
    assert set(shipped) == {u["file"] for u in upstream}
    for u in upstream:
        r = shipped[u["file"]]
        assert (
            r["url"]
            == f"https://raw.githubusercontent.com/{u['source_repo']}/{u['commit']}/{u['source_path']}"
        )
        assert (r["sha256"], r["bytes"], r["size"]) == (u["sha256"], u["bytes"], u["WxH"])


def test_paper_not_fetched_tells_how_to_pull():
    with pytest.raises(GridError) as e:
        get_grid("paper")
    assert "sanet-bench grid pull paper" in str(e.value) and "\n" not in str(e.value)
    states = status("paper")
    assert len(states) == len(_shipped_manifest()) and {s for _, s in states} == {"missing"}
    img = states[0][0]
    assert img.path is None and img.url and img.sha256 and img.size
    with pytest.raises(GridError, match="grid pull paper"):
        img.load(32)


def test_paper_pull_offline_without_mirror(monkeypatch, tmp_path):
    monkeypatch.setenv("SANET_BENCH_MIRROR", str(tmp_path))  # the weights' flat mirror is not the grid's
    with pytest.raises(OfflineError) as e:
        pull("paper")
    assert "--mirror" in str(e.value) and "content/" in str(e.value)


@needs_shared
def test_paper_from_mirror_dir_without_copying():
    g = get_grid("paper", mirror=str(SHARED_PAPER))
    assert len(g.contents) + len(g.styles) == len(_shipped_manifest())
    assert all(i.path is not None and SHARED_PAPER in i.path.parents for i in g.contents + g.styles)
    assert not (grids.grids_dir() / "paper").exists()
    x = next(i for i in g.styles if i.name == "sketch").load(32)  # the one PNG
    assert x.shape[1] == 3 and min(x.shape[-2:]) == 32


@needs_shared
def test_paper_pull_from_mirror_fills_the_verified_cache():
    g = pull("paper", mirror=str(SHARED_PAPER))
    cache = grids.grids_dir() / "paper"
    for img in g.contents + g.styles:
        assert img.path == cache / img.role / img.path.name and _sha(img.path) == img.sha256
    again = get_grid("paper")  # no mirror: the cache alone
    assert [i.path for i in again.styles] == [i.path for i in g.styles]
    # a corrupted cache file is detected, reported by status, and pull repairs it
    victim = again.contents[1].path
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DownloadError, match="sha256"):
        get_grid("paper")
    assert dict((i.name, s.split(":")[0]) for i, s in status("paper"))[again.contents[1].name] == "corrupt"
    pull("paper", mirror=str(SHARED_PAPER))
    assert _sha(victim) == again.contents[1].sha256


@needs_shared
def test_paper_tampered_mirror_file_is_rejected(tmp_path):
    first = _shipped_manifest()[0]  # pull reaches it first
    mirror = tmp_path / "mirror"
    (mirror / first["role"]).mkdir(parents=True)
    tampered = mirror / first["file"]
    data = bytearray((SHARED_PAPER / first["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(DownloadError) as e:
        get_grid("paper", mirror=str(mirror))
    assert str(tampered) in str(e.value) and "sha256" in str(e.value)
    with pytest.raises(DownloadError, match="sha256"):
        pull("paper", mirror=str(mirror))
    assert not (grids.grids_dir() / "paper" / first["file"]).exists(), "a bad file never enters the cache"


def test_paper_mirror_folder_must_exist(tmp_path):
    with pytest.raises(GridError, match="no such folder"):
        get_grid("paper", mirror=str(tmp_path / "nowhere"))


# ------------------------------------------------------------------------------------------------ folder
def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "mygrid"
    (root / "content").mkdir(parents=True)
    (root / "style").mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(root / "content" / "b.png")
    Image.new("L", (20, 40), 128).save(root / "content" / "a.jpg")
    Image.new("RGB", (24, 24), (0, 0, 255)).save(root / "style" / "x.png")
    Image.new("RGB", (24, 24), (0, 255, 0)).save(root / "style" / "x.jpg")
    (root / "style" / "notes.txt").write_text("not an image")
    Image.new("RGB", (8, 8)).save(root / "style" / ".hidden.png")
    return root


def test_folder_grid(tmp_path):
    root = _folder(tmp_path)
    g = get_grid(f"folder:{root}")
    assert g.name == f"folder:{root}"
    assert [i.name for i in g.contents] == ["a", "b"]
    assert [i.name for i in g.styles] == ["x.jpg", "x.png"], "same stem: the extension keeps names unique"
    assert g.contents[1].size == (40, 20) and g.contents[1].sha256 == _sha(root / "content" / "b.png")
    assert len(g.pairs()) == 4
    x = g.styles[1].load(16, "exact")
    assert x.shape == (1, 3, 16, 16) and float(x[0, 2].mean()) > 0.99


def test_folder_grid_errors(tmp_path):
    with pytest.raises(GridError, match="no such folder"):
        get_grid(f"folder:{tmp_path / 'missing'}")
    root = _folder(tmp_path)
    shutil.rmtree(root / "style")
    with pytest.raises(GridError) as e:
        get_grid(f"folder:{root}")
    assert str(root / "style") in str(e.value)


def test_unknown_grid():
    with pytest.raises(UnknownNameError, match="embedded, paper"):
        get_grid("imagenet")


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_grid_list():
    r = CliRunner().invoke(main, ["grid", "list"])
    assert r.exit_code == 0, r.output
    assert re.search(r"embedded\s+6 content x 6 style, 12/12 present", r.output)
    n = len(_shipped_manifest())
    assert re.search(rf"paper\s+\d+ content x \d+ style, 0/{n} present", r.output)


def test_cli_grid_list_name():
    r = CliRunner().invoke(main, ["grid", "list", "embedded"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 12 and all("present" in ln for ln in lines)
    assert any(
        ln.startswith("content") and "camera" in ln and "512x512" in ln and "CC0" in ln for ln in lines
    )
    r = CliRunner().invoke(main, ["grid", "list", "paper"])
    assert r.exit_code == 0 and r.output.count("missing") == len(_shipped_manifest())


def test_cli_grid_errors_exit_2(tmp_path):
    r = CliRunner().invoke(main, ["grid", "list", "nope"])
    assert r.exit_code == 2 and "unknown grid" in r.output
    r = CliRunner().invoke(main, ["grid", "pull", "paper", "--offline"])
    assert r.exit_code == 2 and r.output.startswith("error: ") and r.output.count("\n") == 1


@needs_shared
def test_cli_grid_pull_mirror():
    r = CliRunner().invoke(main, ["grid", "pull", "paper", "--mirror", str(SHARED_PAPER), "--offline"])
    assert r.exit_code == 0, r.output
    n = len(_shipped_manifest())
    assert re.search(r"paper: (\d+) content \+ (\d+) style images present and verified", r.output)
    r = CliRunner().invoke(main, ["grid", "list"])
    assert f"{n}/{n} present" in r.output


def test_cli_help_has_examples():
    for cmd in ("list", "pull"):
        r = CliRunner().invoke(main, ["grid", cmd, "--help"])
        assert r.exit_code == 0 and "Examples:" in r.output and f"sanet-bench grid {cmd}" in r.output


def test_lcm_period_covers_everything_once():
    # the documented formula, independently of Grid: a bijection on C x S
    for c, s in ((6, 6), (4, 6), (3, 5)):
        period = math.lcm(c, s)
        seen = {(k % c, (k + k // period) % s) for k in range(c * s)}
        assert len(seen) == c * s


@needs_shared
def test_paper_pull_from_http_mirror():
    """An http(s) mirror serves <mirror>/<role>/<file>; a local server stands in for it."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(SHARED_PAPER)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        g = pull("paper", mirror=url, offline=False)
    finally:
        server.shutdown()
        server.server_close()
    assert all(_sha(i.path) == i.sha256 for i in g.contents + g.styles)
    assert get_grid("paper").styles[0].path == g.styles[0].path
