"""sanet_bench.download.fetch against a real loopback HTTP server (tests/http_server.py)."""

from __future__ import annotations

import errno
import hashlib
import time
from pathlib import Path

import pytest
from http_server import (
    cut,
    drive_confirm,
    drive_file,
    file,
    redirect,
    sequence,
    slow,
    status,
    yandex_api,
)

from sanet_bench import download
from sanet_bench.download import fetch
from sanet_bench.errors import DownloadError, OfflineError, SanetBenchError
from sanet_bench.registry import Source

DATA = bytes(range(256)) * 64 + b"tail"  # 16 KiB + 4
SHA = hashlib.sha256(DATA).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_good_file_is_verified_and_cached(srv, tmp_path):
    url = srv.route("/good.bin", file(DATA))
    dest = tmp_path / "cache" / "good.bin"
    assert fetch(url, dest, SHA, progress=False) == dest
    assert dest.read_bytes() == DATA
    assert leftovers(dest.parent) == []
    # present and matching: no second request
    fetch(url, dest, SHA, progress=False)
    assert srv.hits["/good.bin"] == 1


def test_existing_stale_file_is_replaced(srv, tmp_path):
    url = srv.route("/good.bin", file(DATA))
    dest = tmp_path / "good.bin"
    dest.write_bytes(b"old")
    fetch(url, dest, SHA, progress=False)
    assert dest.read_bytes() == DATA and srv.hits["/good.bin"] == 1


def test_redirect_is_followed(srv, tmp_path):
    srv.route("/asset", file(DATA))
    url = srv.route("/releases/download/v1/good.bin", redirect("/asset"))
    fetch(url, tmp_path / "good.bin", SHA, progress=False)
    assert (tmp_path / "good.bin").read_bytes() == DATA


def test_checksum_mismatch_keeps_nothing(srv, tmp_path):
    url = srv.route("/bad.bin", file(DATA[:-1] + b"X"))
    dest = tmp_path / "bad.bin"
    with pytest.raises(DownloadError) as e:
        fetch(url, dest, SHA, progress=False)
    msg = str(e.value)
    assert "checksum mismatch" in msg and SHA in msg and hashlib.sha256(DATA[:-1] + b"X").hexdigest() in msg
    assert "\n" not in msg
    assert not dest.exists() and leftovers(tmp_path) == []
    assert srv.hits["/bad.bin"] == 1  # not retried


def test_404_names_status_and_url(srv, tmp_path):
    dest = tmp_path / "gone.bin"
    with pytest.raises(DownloadError, match=r"HTTP 404 .*/gone\.bin"):
        fetch(srv.url("/gone.bin"), dest, SHA, progress=False)
    assert srv.hits["/gone.bin"] == 1 and not dest.exists() and leftovers(tmp_path) == []


def test_cut_body_is_retried_then_fails_without_partial(srv, tmp_path):
    url = srv.route("/cut.bin", cut(DATA[:1000], claimed=len(DATA)))
    dest = tmp_path / "cut.bin"
    with pytest.raises(DownloadError, match="failed after 3 tries") as e:
        fetch(url, dest, SHA, progress=False, retries=2)
    assert "cut" in str(e.value) or "Connection broken" in str(e.value)
    assert srv.hits["/cut.bin"] == 3
    assert not dest.exists() and leftovers(tmp_path) == []


def test_cut_body_then_good_succeeds(srv, tmp_path):
    url = srv.route("/flaky.bin", sequence(cut(DATA[:10], claimed=len(DATA)), file(DATA)))
    fetch(url, tmp_path / "flaky.bin", SHA, progress=False)
    assert (tmp_path / "flaky.bin").read_bytes() == DATA and srv.hits["/flaky.bin"] == 2


@pytest.mark.parametrize("code", [503, 429])
def test_transient_status_is_retried(srv, tmp_path, code):
    url = srv.route("/busy.bin", sequence(status(code), file(DATA)))
    fetch(url, tmp_path / "busy.bin", SHA, progress=False)
    assert (tmp_path / "busy.bin").read_bytes() == DATA and srv.hits["/busy.bin"] == 2


def test_backoff_grows_exponentially(srv, tmp_path, monkeypatch):
    sleeps = []
    monkeypatch.setattr(download.time, "sleep", sleeps.append)
    url = srv.route("/down.bin", status(502))
    with pytest.raises(DownloadError, match="HTTP 502"):
        fetch(url, tmp_path / "down.bin", SHA, progress=False, retries=3)
    assert sleeps == [0.01, 0.02, 0.04] and srv.hits["/down.bin"] == 4


def test_slow_body_within_timeout_succeeds_with_progress(srv, tmp_path, capsys):
    url = srv.route("/slow.bin", slow(DATA, pieces=4, delay=0.05))
    t = time.perf_counter()
    fetch(url, tmp_path / "slow.bin", SHA, progress=True, timeout=1.0)
    assert time.perf_counter() - t >= 0.2
    assert (tmp_path / "slow.bin").read_bytes() == DATA
    assert "slow.bin" in capsys.readouterr().err  # the tqdm bar on stderr


def test_stalled_body_times_out(srv, tmp_path):
    url = srv.route("/stall.bin", slow(DATA, pieces=2, delay=0.6))
    dest = tmp_path / "stall.bin"
    with pytest.raises(DownloadError, match="failed after 1 tries"):
        fetch(url, dest, SHA, progress=False, timeout=0.2, retries=0)
    assert not dest.exists() and leftovers(tmp_path) == []


def test_unreachable_host(srv, tmp_path):
    port = srv._httpd.server_address[1]
    srv.__exit__()  # nothing listens on the port any more
    with pytest.raises(DownloadError, match=r"127\.0\.0\.1:\d+ unreachable"):
        fetch(f"http://127.0.0.1:{port}/x.bin", tmp_path / "x.bin", SHA, progress=False, retries=1)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_is_one_line_and_cleans_up(srv, tmp_path, monkeypatch):
    url = srv.route("/good.bin", file(DATA))

    class Full:  # a temp file on a full disk
        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

    real = download._write
    monkeypatch.setattr(download, "_write", lambda out, block, dest: real(Full(), block, dest))
    with pytest.raises(DownloadError, match="disk full"):
        fetch(url, tmp_path / "good.bin", SHA, progress=False)
    assert list(tmp_path.iterdir()) == [] and srv.hits["/good.bin"] == 1


def test_gdrive_confirmation_form(srv, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "GDRIVE_DOWNLOAD_URL", srv.url("/uc"))
    srv.route("/uc", drive_confirm(DATA, action=srv.url("/download"), file_id="1AbCdEfGhIjK"))
    srv.route("/download", drive_file(DATA, "1AbCdEfGhIjK"))
    src = Source("https://drive.google.com/file/d/1AbCdEfGhIjK/view?usp=sharing", kind="gdrive")
    fetch(src, tmp_path / "model.pth", SHA, progress=False)
    assert (tmp_path / "model.pth").read_bytes() == DATA
    assert srv.requests[0][1] == {"export": "download", "id": "1AbCdEfGhIjK"}
    assert srv.hits["/download"] == 1 and leftovers(tmp_path) == []


def test_gdrive_confirmation_cookie(srv, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "GDRIVE_DOWNLOAD_URL", srv.url("/uc"))
    srv.route("/uc", drive_confirm(DATA, action="", file_id="1AbCdEfGhIjK", style="cookie"))
    link = "https://drive.google.com/uc?id=1AbCdEfGhIjK&export=download"
    fetch(link, tmp_path / "m.pth", SHA, progress=False)
    assert (tmp_path / "m.pth").read_bytes() == DATA and srv.hits["/uc"] == 2


def test_gdrive_page_without_confirmation_is_an_error(srv, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "GDRIVE_DOWNLOAD_URL", srv.url("/uc"))
    srv.route("/uc", file(b"<html><body>Quota exceeded</body></html>", content_type="text/html"))
    with pytest.raises(DownloadError, match="web page instead of file 1AbCdEfGhIjK"):
        fetch(Source("1AbCdEfGhIjK", kind="gdrive"), tmp_path / "m.pth", SHA, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_yandex_public_api(srv, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "YANDEX_API_URL", srv.url("/v1/disk/public/resources/download"))
    link = "https://disk.yandex.ru/d/7IrysY8q8dtneQ"
    srv.route("/v1/disk/public/resources/download", yandex_api(srv.url("/ydisk/blob"), link))
    srv.route("/ydisk/blob", file(DATA))
    fetch(link, tmp_path / "vgg.pth", SHA, progress=False)
    assert (tmp_path / "vgg.pth").read_bytes() == DATA and srv.hits["/ydisk/blob"] == 1


def test_yandex_dead_link_is_404(srv, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "YANDEX_API_URL", srv.url("/api"))
    srv.route("/api", yandex_api(srv.url("/ydisk/blob"), "https://disk.yandex.ru/d/other"))
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(Source("https://disk.yandex.ru/d/gone", kind="yandex"), tmp_path / "v.pth", SHA, progress=False)


def test_mirror_url_replaces_host(srv, tmp_path):
    srv.route("/mirror/vgg.pth", file(DATA))
    src = Source("https://disk.yandex.ru/d/7IrysY8q8dtneQ", kind="yandex")  # never asked
    fetch(src, tmp_path / "vgg.pth", SHA, mirror=srv.url("/mirror/"), progress=False)
    assert (tmp_path / "vgg.pth").read_bytes() == DATA and srv.hits["/mirror/vgg.pth"] == 1


def test_mirror_from_env(srv, tmp_path, monkeypatch):
    srv.route("/m/vgg.pth", file(DATA))
    monkeypatch.setenv("SANET_BENCH_MIRROR", srv.url("/m"))
    fetch("https://example.invalid/vgg.pth", tmp_path / "vgg.pth", SHA, progress=False)
    assert srv.hits["/m/vgg.pth"] == 1


def test_mirror_dir_is_copied_and_verified_even_offline(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "vgg.pth").write_bytes(DATA)
    (mirror / "bad.pth").write_bytes(b"nope")
    cache = tmp_path / "cache"
    fetch("https://example.invalid/vgg.pth", cache / "vgg.pth", SHA, mirror=str(mirror), offline=True)
    assert (cache / "vgg.pth").read_bytes() == DATA
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch("https://example.invalid/bad.pth", cache / "bad.pth", SHA, mirror=str(mirror))
    with pytest.raises(DownloadError, match="not in the mirror folder"):
        fetch("https://example.invalid/none.pth", cache / "none.pth", SHA, mirror=str(mirror))
    assert sorted(p.name for p in cache.iterdir()) == ["vgg.pth"]


def test_offline_names_the_file_and_the_fix(tmp_path):
    # conftest sets SANET_BENCH_OFFLINE=1; the URL would fail loudly if it were contacted
    dest = tmp_path / "decoder.pth"
    with pytest.raises(OfflineError) as e:
        fetch("http://127.0.0.1:9/decoder.pth", dest, SHA)
    msg = str(e.value)
    assert str(dest) in msg and "weights import" in msg and "127.0.0.1:9/decoder.pth" in msg
    assert isinstance(e.value, SanetBenchError) and not dest.exists()


def test_offline_argument_overrides_env(srv, tmp_path, monkeypatch):
    url = srv.route("/good.bin", file(DATA))
    with pytest.raises(OfflineError):
        fetch(url, tmp_path / "a.bin", SHA, offline=True)
    monkeypatch.setenv("SANET_BENCH_OFFLINE", "1")
    fetch(url, tmp_path / "b.bin", SHA, offline=False, progress=False)
    assert srv.hits["/good.bin"] == 1


def test_offline_with_present_file_is_fine(tmp_path):
    dest = tmp_path / "good.bin"
    dest.write_bytes(DATA)
    assert fetch("http://127.0.0.1:9/good.bin", dest, SHA) == dest
    assert fetch("http://127.0.0.1:9/good.bin", dest, None) == dest


def test_gdrive_id_forms():
    assert download.gdrive_id("https://drive.google.com/file/d/1AbCdEfGhIjK/view") == "1AbCdEfGhIjK"
    assert download.gdrive_id("https://drive.google.com/open?id=1AbCdEfGhIjK") == "1AbCdEfGhIjK"
    with pytest.raises(DownloadError):
        download.gdrive_id("https://drive.google.com/drive/folders")
