"""Weights cache management: list, pull (loopback server), import, verify, path; the metrics' networks."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import LPIPS_ALEXNET, PARITY
from http_server import file
from parity_weights import write_official

import cli
from sanet_bench import registry, weights
from sanet_bench.api import load_method
from sanet_bench.method import Method
from sanet_bench.metrics.extractors import ALEXNET_FILE
from sanet_bench.registry import MethodSpec, Source, WeightFile
from sanet_bench.weights import (
    cache_dir,
    import_dir,
    load_file_into,
    pull,
    recorded_sha256,
    verify,
)

ROOT = Path(__file__).resolve().parents[1]
A = b"first file " * 100


def saved(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


class Tiny(Method):
    """A registered test method whose one checked file, ``own.bin``, holds a 2x2 linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def load_official(self, paths):
        load_file_into(self.lin, paths["own.bin"], self.spec, "own.bin")


B = saved({"weight": torch.ones(2, 2), "bias": torch.zeros(2)})  # own.bin: loads into Tiny


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def invoke(*args):
    return CliRunner().invoke(cli.main, ["weights", *args])


@pytest.fixture
def fake_methods(monkeypatch, srv):
    """Two registered methods sharing ``shared.bin`` (sha known), plus ``own.bin`` without a published sha."""

    def spec(name, files):
        return MethodSpec(name=name, title=name, citation="test", reference="test", factory=Tiny, files=files)

    sources = (Source(srv.url("/dead/shared.bin")), Source(srv.url("/rel/shared.bin")))
    shared = WeightFile("shared.bin", sources, sha256=sha(A), license="test licence")
    own = WeightFile("own.bin", (Source(srv.url("/rel/own.bin")),))
    srv.route("/rel/shared.bin", file(A))
    srv.route("/rel/own.bin", file(B))
    monkeypatch.setitem(registry._METHODS, "dl-one", spec("dl-one", (shared, own)))
    monkeypatch.setitem(registry._METHODS, "dl-two", spec("dl-two", (shared,)))
    return srv


def test_pull_tries_sources_records_unpublished_sha_and_reuses_siblings(fake_methods):
    srv = fake_methods
    rows = pull(["dl-one"], progress=False, metrics=False)
    assert [(r.name, r.ok) for r in rows] == [("shared.bin", True), ("own.bin", True)]
    assert srv.hits["/dead/shared.bin"] == 1  # the first source is a 404; the second one served it
    assert (cache_dir("dl-one") / "shared.bin").read_bytes() == A
    assert recorded_sha256() == {"dl-one/own.bin": sha(B)}
    # dl-two lists the same file: copied from dl-one's cache, verified, no request
    assert all(r.ok for r in pull(["dl-two"], progress=False, metrics=False))
    assert (cache_dir("dl-two") / "shared.bin").read_bytes() == A and srv.hits["/rel/shared.bin"] == 1
    # the recorded sha is enforced from now on
    (cache_dir("dl-one") / "own.bin").write_bytes(b"changed")
    srv.route("/rel/own.bin", file(b"changed upstream"))
    [row] = [r for r in pull(["dl-one"], progress=False, metrics=False) if r.name == "own.bin"]
    assert not row.ok and "checksum mismatch" in row.detail and sha(B) in row.detail


def test_pull_offline_says_what_is_missing(fake_methods):
    res = invoke("pull", "dl-one", "--offline", "--no-metrics")
    assert res.exit_code == 2
    assert "FAIL dl-one" in res.output and "shared.bin" in res.output and "downloads are off" in res.output
    assert "error: 2 file(s) missing" in res.output
    assert ".sanet_bench." not in res.output  # the final path is named, not the temporary download folder
    assert sum(fake_methods.hits.values()) == 0 and not cache_dir("dl-one").exists()


def test_pull_from_mirror_folder(fake_methods, tmp_path):
    (tmp_path / "shared.bin").write_bytes(A)
    (tmp_path / "own.bin").write_bytes(B)
    res = invoke("pull", "dl-one", "--no-metrics", "--mirror", str(tmp_path), "--offline")
    assert res.exit_code == 0, res.output
    assert (cache_dir("dl-one") / "own.bin").read_bytes() == B and sum(fake_methods.hits.values()) == 0


METRIC_NETS = ("pt_inception-2015-12-05-6726825d.pth", "art_inception.pth", "vgg19-dcbb9e9d.pth")


def test_metric_files_pull_into_the_shared_and_hub_caches(metric_weights, srv, tmp_path, monkeypatch):
    """The metrics' networks come with `weights pull`: served over HTTP by name (``--mirror URL``), checked by
    loading into their networks, their first-use sha256 recorded; AlexNet lands in torch hub's cache."""
    root = metric_weights
    for name in (*METRIC_NETS, LPIPS_ALEXNET):
        src = root / "w" / name if name != LPIPS_ALEXNET else root / "torch" / "hub" / "checkpoints" / name
        srv.route(f"/m/{name}", file(src.read_bytes()))
    hub = tmp_path / "hub"
    monkeypatch.setenv("TORCH_HOME", str(hub))  # an empty torch hub cache
    res = invoke("pull", "fid", "artfid", "cfsd", "lpips", "--mirror", srv.url("/m"))
    assert res.exit_code == 0, res.output
    for name in METRIC_NETS:
        assert (cache_dir("shared") / name).read_bytes() == (root / "w" / name).read_bytes()
        assert recorded_sha256()[f"shared/{name}"] == sha((root / "w" / name).read_bytes())
    assert (hub / "hub" / "checkpoints" / LPIPS_ALEXNET).is_file()
    assert f"metrics/{LPIPS_ALEXNET}" in recorded_sha256()
    assert "installed with its package" in res.output  # LPIPS's heads ship with lpips
    rows = [r for r in verify() if r.name in (*METRIC_NETS, LPIPS_ALEXNET)]
    assert len(rows) == 4 and all(r.ok for r in rows), rows
    # the metrics now find them without a weights dir
    from sanet_bench.metrics import build

    assert all(m.missing() is None for m in build(["fid", "artfid", "cfsd", "lpips"]))


def test_metric_file_in_another_layout_is_refused_and_nothing_recorded(metric_weights, tmp_path):
    folder = tmp_path / "dl"
    folder.mkdir()
    shutil.copy(metric_weights / "w" / "vgg19-dcbb9e9d.pth", folder / "art_inception.pth")
    [row] = import_dir(folder, ["artfid"])
    assert not row.ok and "refused as the metric file art_inception.pth" in row.detail, row.detail
    assert "no fc1/fc2 heads" in row.detail  # the network's own check said why
    assert not (cache_dir("shared") / "art_inception.pth").exists() and recorded_sha256() == {}


def test_hub_hash_rule_is_torch_hubs():
    assert weights.HUB_HASH.pattern == torch.hub.HASH_REGEX.pattern
    assert weights.hub_prefix(LPIPS_ALEXNET) == "7be5be79" and weights.hub_prefix("art_inception.pth") == ""
    res = invoke("list", "fid")
    assert "sha256 starts 6726825d (its name; checked)" in res.output


def test_hub_named_file_must_carry_its_sha256_prefix(metric_weight_files, tmp_path, monkeypatch):
    """A random file under torch hub's name ``alexnet-owt-7be5be79.pth`` cannot have that sha256 prefix:
    `weights import` and `weights pull` refuse it, and nothing reaches torch hub's cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = metric_weight_files / "torch" / "hub" / "checkpoints"
    [row] = import_dir(folder, ["lpips"])
    assert not row.ok and "does not start with 7be5be79" in row.detail, row.detail
    [row] = [r for r in pull(["lpips"], mirror=str(folder), progress=False) if r.name == LPIPS_ALEXNET]
    assert not row.ok and "does not start with 7be5be79" in row.detail
    assert not (tmp_path / "torch" / "hub" / "checkpoints" / LPIPS_ALEXNET).exists()
    assert recorded_sha256() == {}


def test_pull_without_names_includes_the_metrics_and_no_metrics_skips_them(fake_methods, monkeypatch):
    monkeypatch.setattr(registry, "_METHODS", {k: v for k, v in registry._METHODS.items() if k == "dl-two"})
    monkeypatch.setattr(registry, "method_cards", lambda: {"dl-two": registry._METHODS["dl-two"]})
    res = invoke("pull", "--offline")
    assert res.exit_code == 2 and "shared.bin" in res.output
    for name in (*METRIC_NETS, LPIPS_ALEXNET):
        assert name in res.output
    res = invoke("pull", "--offline", "--no-metrics")
    assert "shared.bin" in res.output and not any(n in res.output for n in METRIC_NETS)
    res = invoke("pull", "fid", "--offline")
    assert METRIC_NETS[0] in res.output and METRIC_NETS[1] not in res.output
    res = invoke("pull", "nonesuch")
    assert res.exit_code != 0 and "unknown method or metric 'nonesuch'" in res.output
    assert "artfid" in res.output


def test_import_parity_files_then_load_official_from_cache(tmp_path):
    write_official(PARITY / "sanet", tmp_path / "downloads" / "nested")
    res = invoke("import", str(tmp_path / "downloads"))
    assert res.exit_code == 0, res.output
    files = {"decoder_iter_500000.pth", "transformer_iter_500000.pth"}
    assert {p.name for p in cache_dir("sanet").iterdir()} == files
    # vgg_normalised.pth (shared) is cached once, in the shared folder, and serves every method that lists it
    assert [p.name for p in cache_dir("shared").iterdir()] == ["vgg_normalised.pth"]
    gatys = weights.resolve_official(registry.get_method_card("gatys"))
    assert gatys == {"vgg_normalised.pth": cache_dir("shared") / "vgg_normalised.pth"}
    for m in ("adain", "gatys"):
        assert not (cache_dir(m) / "vgg_normalised.pth").exists()
        assert not (cache_dir(m) / "decoder_iter_500000.pth").exists()
    rec = json.loads(weights.recorded_path().read_text())
    assert "shared/vgg_normalised.pth" in rec and "sanet/vgg_normalised.pth" not in rec
    src = tmp_path / "downloads" / "nested" / "decoder_iter_500000.pth"
    assert rec["sanet/decoder_iter_500000.pth"] == weights.sha256_file(src)
    model = load_method("sanet", weights="official")  # no weights_dir: the cache
    assert model.weights_info["files"]["decoder_iter_500000.pth"] == rec["sanet/decoder_iter_500000.pth"]
    assert not [p for p in cache_dir("sanet").iterdir() if p.name.startswith(".")]

    # verify: all good, then a corrupted cache file is named and exits 1
    assert invoke("verify", "sanet").exit_code == 0
    (cache_dir("sanet") / "decoder_iter_500000.pth").write_bytes(b"corrupt")
    res = invoke("verify", "sanet")
    assert res.exit_code == 1 and "FAIL sanet" in res.output and "decoder_iter_500000.pth" in res.output


def test_import_refuses_a_file_that_differs_from_the_recorded_one(tmp_path):
    write_official(PARITY / "sanet", tmp_path / "a")
    assert invoke("import", str(tmp_path / "a"), "sanet").exit_code == 0
    before = weights.sha256_file(cache_dir("sanet") / "transformer_iter_500000.pth")
    (tmp_path / "b").mkdir()
    torch.save({"x": torch.zeros(1)}, tmp_path / "b" / "transformer_iter_500000.pth")
    res = invoke("import", str(tmp_path / "b"), "sanet")
    assert res.exit_code == 2 and "checksum mismatch" in res.output and "recorded" in res.output
    assert weights.sha256_file(cache_dir("sanet") / "transformer_iter_500000.pth") == before


def test_import_refuses_ambiguous_names_and_empty_folders(tmp_path):
    for sub, val in (("x", 0.0), ("y", 1.0)):
        (tmp_path / sub).mkdir()
        torch.save({"w": torch.full((1,), val)}, tmp_path / sub / "decoder_iter_500000.pth")
    rows = import_dir(tmp_path, ["sanet"])
    assert [(r.ok, "several different files" in r.detail) for r in rows] == [(False, True)]
    assert not (cache_dir("sanet") / "decoder_iter_500000.pth").exists()
    (tmp_path / "empty").mkdir()
    res = invoke("import", str(tmp_path / "empty"))
    assert res.exit_code == 2 and "no file with an official name" in res.output
    res = invoke("import", str(tmp_path / "nope"))
    assert res.exit_code == 2 and "not a folder" in res.output


def test_list_and_path(tmp_path):
    write_official(PARITY / "sanet", tmp_path)
    res = invoke("list", "sanet", "--weights-dir", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert "decoder_iter_500000.pth" in res.output and "missing, in weights dir" in res.output
    assert "yadi.sk" in res.output and "licence:" in res.output
    import_dir(tmp_path, ["sanet"])
    res = invoke("list", "sanet")
    assert "present" in res.output and "(recorded)" in res.output and "missing" not in res.output
    res = invoke("path", "sanet", "adain")
    assert res.output.split() == [str(cache_dir("sanet")), str(cache_dir("adain"))]


@pytest.fixture(scope="module")
def warm_home(tmp_path_factory):
    """A home whose method-card cache is filled: the first metadata command imports the method modules."""
    home = tmp_path_factory.mktemp("warm")
    env = {"SANET_BENCH_HOME": str(home), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "cli", "methods"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert list((home / "cache").glob("method_cards-*.json"))
    return home


@pytest.mark.parametrize("args", [["weights", "list"], ["weights", "path", "sanet"], ["methods"], ["--help"]])
def test_metadata_commands_stay_light(warm_home, args):
    """Once the card cache is filled, these commands import neither torch nor the HTTP stack, torchvision,
    LPIPS, onnxruntime (they must start fast: they read the cached method cards, not the method modules)."""
    heavy = ("torch", "torchvision", "lpips", "onnxruntime", "requests")
    code = (
        "import sys, cli; from click.testing import CliRunner; "
        f"r = CliRunner().invoke(cli.main, {args!r}); assert r.exit_code == 0, r.output; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    env = {"SANET_BENCH_HOME": str(warm_home), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_card_cache_follows_the_method_files(warm_home, tmp_path):
    """A changed method module gives a new cache key: the cards are never stale."""
    from sanet_bench import registry

    key = registry._cards_key()
    src = Path(registry.__file__).parents[1] / "baselines" / "adain.py"
    st = src.stat()
    try:
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        assert registry._cards_key() != key
    finally:
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert registry._cards_key() == key


@pytest.mark.parametrize("env", [
    {"TORCH_HOME": "~/th"}, {"XDG_CACHE_HOME": "/xdg"}, {"XDG_CACHE_HOME": "/xdg", "TORCH_HOME": "/th"}, {},
])
def test_hub_dir_without_torch_is_torchs(monkeypatch, tmp_path, env):
    monkeypatch.setenv("HOME", str(tmp_path))
    for k in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SANET_BENCH_HOME")
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # no set_dir in effect
    expected = Path(torch.hub.get_dir())
    monkeypatch.delitem(sys.modules, "torch")  # as in a process that has not imported torch
    assert weights.hub_dir() == expected and weights.home() == expected / "sanet_bench"
    assert weights.cache_path("metrics", ALEXNET_FILE) == expected / "checkpoints" / ALEXNET_FILE.name


def test_hub_dir_follows_torch_hub_set_dir_once_torch_is_imported(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    torch.hub.set_dir(str(tmp_path / "hub"))
    assert weights.hub_dir() == tmp_path / "hub"


# -------------------------------------------------------------------- a file must load before it is trusted
class Evil:
    """Unpickled, it would create the folder ``marker``: a file that runs code when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def bad_files(tmp_path: Path) -> dict[str, bytes]:
    return {
        "random tensors": saved({"a": torch.randn(3, 3), "b": torch.randn(2)}),
        "plain pickle": pickle.dumps({"decoder.1.weight": [1.0, 2.0], "decoder.1.bias": [0.0]}),
        "truncated": saved({f"{i}.weight": torch.zeros(64, 64) for i in range(3)})[:3000],
        "malicious": pickle.dumps({"w": Evil(tmp_path / "pwned")}),
    }


def test_import_refuses_files_that_do_not_load_and_records_nothing(tmp_path):
    name = "decoder_iter_500000.pth"
    for kind, data in bad_files(tmp_path).items():
        folder = tmp_path / kind.replace(" ", "_")
        folder.mkdir()
        (folder / name).write_bytes(data)
        res = invoke("import", str(folder), "sanet")
        assert res.exit_code == 2, (kind, res.output)
        [line] = [ln for ln in res.output.splitlines() if ln.startswith("FAIL")]
        assert str(folder / name) in line and "not imported, nothing recorded" in line, (kind, line)
        assert "official file" in line, (kind, line)  # the fix
        assert "sanet/" + name not in recorded_sha256(), kind
        assert not (cache_dir("sanet") / name).exists(), kind
    assert not (tmp_path / "pwned").exists()  # the malicious pickle's code did not run
    pickle.loads(bad_files(tmp_path)["malicious"])  # ...though it would have, had it been unpickled
    assert (tmp_path / "pwned").is_dir()
    # nothing recorded: with the official files absent, auto still falls back to the demo weights
    assert load_method("sanet", weights="auto").weights_info["source"] == "demo"


def test_a_good_file_is_recorded_and_a_bad_recorded_one_fails_verify(tmp_path):
    write_official(PARITY / "sanet", tmp_path / "good")
    assert invoke("import", str(tmp_path / "good"), "sanet").exit_code == 0
    res = invoke("list", "sanet")
    assert "(recorded)" in res.output and "(publisher)" not in res.output
    assert f"shared cache {cache_dir('shared') / 'vgg_normalised.pth'}" in res.output
    assert "structure checked" in invoke("verify", "sanet").output
    # a cache holding a bad file under a (wrongly) recorded hash, as the old `weights import` left it
    bad = cache_dir("sanet") / "transformer_iter_500000.pth"
    bad.write_bytes(saved({"x": torch.zeros(1)}))
    weights._record({"sanet/transformer_iter_500000.pth": sha(bad.read_bytes())})
    res = invoke("verify", "sanet")
    assert res.exit_code == 1
    [line] = [ln for ln in res.output.splitlines() if ln.startswith("FAIL")]
    assert "transformer_iter_500000.pth" in line and "missing keys" in line and "drop sanet/" in line


def test_dtype_of_a_key_is_checked(tmp_path):
    from sanet_bench.nn.vgg import VGG_NORMALISED

    write_official(PARITY / "sanet", tmp_path)
    state = torch.load(tmp_path / "vgg_normalised.pth", weights_only=True)
    state["0.weight"] = state["0.weight"].to(torch.int64)
    torch.save(state, tmp_path / "vgg_normalised.pth")
    with pytest.raises(weights.WeightsError, match=r"key 0\.weight has dtype torch\.int64"):
        weights.check_file("adain", VGG_NORMALISED, tmp_path / "vgg_normalised.pth")


def test_metric_encoder_errors_name_the_metric_encoder(tmp_path):
    from sanet_bench.metrics.extractors import load_metric_encoder

    (cache_dir("shared")).mkdir(parents=True)
    (cache_dir("shared") / "vgg_normalised.pth").write_bytes(saved({"x": torch.zeros(1)}))
    with pytest.raises(weights.WeightsError, match=r"^metric encoder: .*vgg_normalised\.pth: missing keys"):
        load_metric_encoder()


# --------------------------------------------------------------------------------------------- shared files
def test_shared_file_in_a_legacy_folder_resolves_and_pull_moves_it_to_the_shared_folder(tmp_path):
    write_official(PARITY / "sanet", tmp_path)
    legacy = cache_dir("gatys") / "vgg_normalised.pth"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes((tmp_path / "vgg_normalised.pth").read_bytes())
    gatys = registry.get_method_card("gatys")
    assert weights.resolve_official(gatys) == {"vgg_normalised.pth": legacy}
    rows = pull(["gatys", "adain"], progress=False, metrics=False)  # conftest: offline
    [vgg] = [r for r in rows if r.name == "vgg_normalised.pth"]  # once for both methods
    assert vgg.ok and vgg.method == "shared", vgg.detail
    shared = cache_dir("shared") / "vgg_normalised.pth"
    assert shared.read_bytes() == legacy.read_bytes()
    assert recorded_sha256()["shared/vgg_normalised.pth"] == sha(legacy.read_bytes())
    assert weights.resolve_official(gatys) == {"vgg_normalised.pth": shared}
    assert invoke("path", "shared").output.split() == [str(cache_dir("shared"))]


# ------------------------------------------------------------------------------------------------- archives
class Pair(Method):
    """A test method with two files, ``a.pth`` and ``b.pth`` (2x2 linear layers), published in models.zip."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)

    def load_official(self, paths):
        load_file_into(self.a, paths["a.pth"], self.spec, "a.pth")
        load_file_into(self.b, paths["b.pth"], self.spec, "b.pth")


GOOD = saved({"weight": torch.eye(2), "bias": torch.ones(2)})


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    return buf.getvalue()


def register_pair(monkeypatch, srv, archive_sha=None, sha_b=None, names=("zip-one", "zip-two")):
    url = srv.url("/dl/models.zip")
    files = tuple(
        WeightFile(n, (Source(url),), sha256=s, archive="models.zip", member=f"models/{n}",
                   archive_sha256=archive_sha)
        for n, s in (("a.pth", None), ("b.pth", sha_b))
    )
    for name in names:
        spec = MethodSpec(name=name, title=name, citation="t", reference="t", factory=Pair, files=files,
                          weights_kinds=("official", "random", "auto"))
        monkeypatch.setitem(registry._METHODS, name, spec)


def test_archive_is_fetched_once_and_only_its_members_are_extracted(srv, monkeypatch):
    data = zip_bytes({"models/a.pth": GOOD, "models/b.pth": GOOD, "models/big_unused.bin": b"x" * 1000})
    srv.route("/dl/models.zip", file(data))
    register_pair(monkeypatch, srv, archive_sha=sha(data), sha_b=sha(GOOD))
    rows = pull(["zip-one", "zip-two"], progress=False, metrics=False)
    assert [(r.method, r.name, r.ok) for r in rows] == [
        ("zip-one", "a.pth", True), ("zip-one", "b.pth", True), ("zip-two", "a.pth", True),
        ("zip-two", "b.pth", True)
    ], [r.detail for r in rows]
    assert srv.hits["/dl/models.zip"] == 1  # one archive for the four files
    for m in ("zip-one", "zip-two"):
        assert sorted(p.name for p in cache_dir(m).iterdir()) == ["a.pth", "b.pth"]
    assert recorded_sha256() == {"zip-one/a.pth": sha(GOOD), "zip-two/a.pth": sha(GOOD)}  # b: published
    assert not [p for p in (weights.home() / "weights").iterdir() if p.name.startswith(".")]
    assert all(r.ok for r in pull(["zip-one"], progress=False, metrics=False))  # present: no new request
    assert srv.hits["/dl/models.zip"] == 1
    assert load_method("zip-one", weights="official").a.weight.equal(torch.eye(2))


@pytest.mark.parametrize(
    "case", ["archive sha", "member sha", "bad member", "zip-slip", "corrupt", "no member"]
)
def test_bad_archives_are_refused_and_nothing_is_kept(srv, monkeypatch, tmp_path, case):
    members = {"models/a.pth": GOOD, "models/b.pth": GOOD}
    if case == "bad member":
        members["models/a.pth"] = saved({"x": torch.zeros(3)})
    if case == "zip-slip":
        members["../../escaped.pth"] = GOOD
    if case == "no member":
        del members["models/b.pth"]
    data = b"PK\x03\x04 not really a zip" if case == "corrupt" else zip_bytes(members)
    srv.route("/dl/models.zip", file(data))
    register_pair(monkeypatch, srv, archive_sha=sha(b"other") if case == "archive sha" else None,
                  sha_b=sha(b"other") if case == "member sha" else None, names=("zip-one",))
    res = invoke("pull", "zip-one", "--no-metrics")
    assert res.exit_code == 2
    fails = re.findall(r"FAIL zip-one +(\S+) +(.*)", res.output)  # (the progress bar shares the output)
    message, failed, kept = {  # the one-line reason, the files that fail, the files kept
        "archive sha": ("checksum mismatch", ["a.pth", "b.pth"], []),
        "member sha": ("b.pth (member models/b.pth of models.zip): sha256", ["b.pth"], ["a.pth"]),
        "bad member": ("missing keys", ["a.pth"], ["b.pth"]),
        "zip-slip": ("member '../../escaped.pth' would be written outside", ["a.pth", "b.pth"], []),
        "corrupt": ("not a readable zip archive", ["a.pth", "b.pth"], []),
        "no member": ("no member models/b.pth", ["b.pth"], ["a.pth"]),
    }[case]
    assert [n for n, _ in fails] == failed and all(message in d for _, d in fails), res.output
    assert srv.hits["/dl/models.zip"] == 1
    folder = cache_dir("zip-one")
    assert (sorted(p.name for p in folder.iterdir()) if folder.exists() else []) == kept
    assert not list(tmp_path.parents[1].rglob("escaped.pth"))  # nothing written outside, anywhere near
    assert ("zip-one/a.pth" in recorded_sha256()) == ("a.pth" in kept)
    assert not [p for p in (weights.home() / "weights").iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------- manual sources
def test_manual_sources_are_never_downloaded_and_the_step_is_printed(srv, monkeypatch):
    url = srv.url("/folder")
    f = WeightFile("m.pth", (Source(url, kind="manual", note="unpack m.pth from the zip"),))
    spec = MethodSpec(name="man", title="man", citation="t", reference="t", factory=Tiny, files=(f,),
                      weights_kinds=("official", "random", "auto"))
    monkeypatch.setitem(registry._METHODS, "man", spec)
    res = invoke("pull", "man", "--no-metrics")
    assert res.exit_code == 2
    [line] = [ln for ln in res.output.splitlines() if ln.startswith("FAIL")]
    assert url in line and "unpack m.pth from the zip" in line and "sanet-bench weights import DIR" in line
    with pytest.raises(weights.WeightsError, match="manual step"):
        load_method("man", weights="auto")  # auto never downloads it either
    assert sum(srv.hits.values()) == 0


# ----------------------------------------------------------------------------------- downloads on first use
def test_auto_downloads_missing_files_on_first_use(srv, monkeypatch):
    srv.route("/rel/own.bin", file(B))
    spec = MethodSpec(name="first-use", title="first-use", citation="t", reference="t", factory=Tiny,
                      files=(WeightFile("own.bin", (Source(srv.url("/rel/own.bin")),)),),
                      weights_kinds=("official", "random", "auto"))
    monkeypatch.setitem(registry._METHODS, "first-use", spec)
    model = load_method("first-use", weights="auto")
    assert model.weights_info["source"] == "official" and model.lin.weight.equal(torch.ones(2, 2))
    assert (cache_dir("first-use") / "own.bin").read_bytes() == B and srv.hits["/rel/own.bin"] == 1
    load_method("first-use", weights="auto")  # cached now
    assert srv.hits["/rel/own.bin"] == 1


def test_auto_falls_back_to_demo_when_the_host_is_unreachable(srv, monkeypatch, caplog):
    from sanet_bench import api

    adain = registry.get_method_spec("adain")
    dead = tuple(dataclasses.replace(f, sources=(Source(f"http://127.0.0.1:9/{f.name}"),))
                 for f in adain.files)
    monkeypatch.setitem(registry._METHODS, "adain", dataclasses.replace(adain, files=dead))
    monkeypatch.setattr(api, "_DEMO_NOTICED", set())
    with caplog.at_level("WARNING"):
        model = load_method("adain", weights="auto")
    assert model.weights_info["source"] == "demo"
    assert "127.0.0.1:9" in caplog.text and "DEMO weights" in caplog.text
    monkeypatch.setenv("SANET_BENCH_OFFLINE", "1")  # offline: cache then demo, no download tried
    assert load_method("adain", weights="auto").weights_info["source"] == "demo"


def test_import_finds_official_names_with_sub_folders(tmp_path, parity_weights):
    """MAST's official names hold a folder (Artistic_decoders/dec_r41.pth): import finds them nested anywhere
    under the given folder, and load_method then reads them from the cache."""
    src = parity_weights("mast")
    dl = tmp_path / "download" / "checkpoints"
    shutil.copytree(src, dl)
    out = {r.name: r.ok for r in import_dir(tmp_path / "download", ["mast"])}
    assert out.get("Artistic_decoders/dec_r41.pth") and out.get("vgg_r51.pth"), out
    assert (cache_dir("mast") / "Artistic_decoders" / "dec_r41.pth").is_file()
    load_method("mast", weights="official")


def test_an_integer_buffer_saved_as_whole_floats_loads_and_fractions_do_not(tmp_path):
    """ArtFlow's ActNorm flag is a uint8 buffer; a checkpoint may hold it as 1.0 (the reference's loader
    copies it): whole numbers load, a fraction is refused rather than truncated."""
    module = torch.nn.Module()
    module.register_buffer("flag", torch.zeros((), dtype=torch.uint8))
    weights.load_strict(module, {"flag": torch.tensor(1.0)}, tmp_path / "f.pth", "a flag")
    assert module.flag.dtype == torch.uint8 and int(module.flag) == 1
    bad = r"key flag has dtype torch\.float32, expected torch\.uint8"
    with pytest.raises(weights.WeightsError, match=bad):
        weights.load_strict(module, {"flag": torch.tensor(0.5)}, tmp_path / "f.pth", "a flag")
