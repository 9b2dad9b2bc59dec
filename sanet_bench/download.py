"""Verified, atomic, retrying downloads of published files (checkpoints, grid images).

:func:`fetch` is the only entry point. Conventions:

* ``dest`` is never left partial or unverified: the body streams into a temporary file in ``dest``'s folder
  (``.<name>.*.part``), its sha256 is checked, and only then is it moved over ``dest`` with ``os.replace``.
* ``mirror`` (argument, else ``$SANET_BENCH_MIRROR``) replaces the publishing host: an ``http(s)://`` prefix
  serves the file at ``<mirror>/<dest.name>``; a local folder is copied from ``<folder>/<dest.name>`` (also
  verified, and allowed offline).
* ``offline`` (argument, else ``$SANET_BENCH_OFFLINE=1``) never touches the network: a missing file raises
  :class:`OfflineError` naming it and how to provide it.
* Transient failures (connection errors, timeouts, cut bodies, HTTP 5xx and 429) are retried with exponential
  backoff; HTTP 4xx, checksum mismatches and a full disk fail at once with a one-line :class:`DownloadError`.

Hosts (``Source.kind``): ``http`` (plain HTTP and GitHub release assets; redirects followed), ``gdrive``
(public Google Drive files, including the large-file "download anyway" confirmation page) and ``yandex``
(Yandex.Disk public links through the public REST API). ``requests`` does the HTTP work: sessions keep the
Drive cookies, and it follows redirects and streams bodies.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import requests

from .errors import DownloadError, OfflineError
from .io import is_url, sha256_file
from .registry import Source

# Public API endpoints; tests point them at a local server.
GDRIVE_DOWNLOAD_URL = "https://drive.google.com/uc"
YANDEX_API_URL = "https://cloud-api.yandex.net/v1/disk/public/resources/download"
# Seconds before retry k (k = 0, 1, ...) is BACKOFF_BASE * 2**k, capped at BACKOFF_MAX.
BACKOFF_BASE = 1.0
BACKOFF_MAX = 30.0
CHUNK = 1 << 20
USER_AGENT = "sanet-bench (+https://github.com/) python-requests"

_TRUE = {"1", "true", "yes", "on"}


class _Transient(Exception):
    """A failure worth retrying; its message ends up in the DownloadError when retries run out."""


def env_offline() -> bool:
    return os.environ.get("SANET_BENCH_OFFLINE", "").strip().lower() in _TRUE


def env_mirror() -> str | None:
    return os.environ.get("SANET_BENCH_MIRROR", "").strip() or None


def as_source(source: Source | str) -> Source:
    """A ``Source``; a bare URL's kind is guessed from its host (Drive, Yandex.Disk, else plain HTTP)."""
    if isinstance(source, Source):
        return source
    host = urlparse(source).netloc.lower()
    if host.endswith("drive.google.com") or host.endswith("docs.google.com"):
        return Source(source, kind="gdrive")
    if host.startswith("disk.yandex.") or host == "yadi.sk":
        return Source(source, kind="yandex")
    return Source(source, kind="http")


def fetch(
    source: Source | str,
    dest: Path,
    sha256: str | None = None,
    *,
    mirror: str | None = None,
    offline: bool | None = None,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 30.0,
) -> Path:
    """Make ``dest`` hold the file published at ``source`` (verified against ``sha256`` when given).

    Returns ``dest``. An existing ``dest`` that matches ``sha256`` (or any existing ``dest`` when
    ``sha256`` is None) is returned untouched. ``retries`` is the number of further tries after the first
    on transient errors; ``timeout`` is the connect and per-read socket timeout in seconds.
    """
    src = as_source(source)
    dest = Path(dest).expanduser()
    sha256 = sha256.lower() if sha256 else None
    mirror = mirror if mirror is not None else env_mirror()
    offline = env_offline() if offline is None else offline
    stale = ""
    if dest.is_file():
        if sha256 is None:
            return dest
        actual = sha256_file(dest)
        if actual == sha256:
            return dest
        stale = f" (the existing file has sha256 {actual}, expected {sha256})"
    if mirror and not is_url(mirror):
        return _copy_from_dir(Path(mirror).expanduser(), dest, sha256)
    url = f"{mirror.rstrip('/')}/{dest.name}" if mirror else src.url
    if offline:
        raise OfflineError(
            f"{dest}: missing{stale} and downloads are off (--offline / SANET_BENCH_OFFLINE=1); get "
            f"{dest.name} from {url} and run `sanet-bench weights import DIR` (or copy it there), "
            f"or set --mirror / SANET_BENCH_MIRROR to a folder that holds it"
        )
    kind = "http" if mirror else src.kind
    dest.parent.mkdir(parents=True, exist_ok=True)
    return _download(kind, url, dest, sha256, progress=progress, retries=retries, timeout=timeout)


# ---------------------------------------------------------------------------------------------- local mirror
def _copy_from_dir(folder: Path, dest: Path, sha256: str | None) -> Path:
    if not folder.is_dir():
        raise DownloadError(
            f"mirror {folder}: neither an http(s):// URL nor an existing folder; fix --mirror"
        )
    src = folder / dest.name
    if not src.is_file():
        raise DownloadError(
            f"{src}: not in the mirror folder {folder}; put {dest.name} there or drop --mirror"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            while block := inp.read(CHUNK):
                h.update(block)
                _write(out, block, dest)
            _sync(out, dest)
        _check_sha(h.hexdigest(), sha256, dest, str(src))
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


# ---------------------------------------------------------------------------------------------- network
def _download(
    kind: str, url: str, dest: Path, sha256: str | None, *, progress: bool, retries: int, timeout: float
) -> Path:
    if kind not in _OPENERS:
        raise DownloadError(
            f"{dest.name}: unknown source kind {kind!r} for {url}; use http, gdrive or yandex"
        )
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1))
            print(f"{dest.name}: {last}; retrying in {delay:g} s ({attempt}/{retries})", file=sys.stderr)
            time.sleep(delay)
        try:
            with requests.Session() as session:
                session.headers["User-Agent"] = USER_AGENT
                with _OPENERS[kind](session, url, timeout) as resp:
                    _stream(resp, dest, sha256, url, progress)
            return dest
        except _Transient as e:
            last = str(e)
    raise DownloadError(
        f"{dest.name}: download from {url} failed after {retries + 1} tries ({last}); check the network, "
        f"or use --mirror, or fetch it by hand and run `sanet-bench weights import DIR`"
    )


def _get(session: requests.Session, url: str, timeout: float, **kw) -> requests.Response:
    """GET with streaming; HTTP errors become DownloadError (4xx) or _Transient (5xx, 429)."""
    try:
        resp = session.get(url, stream=True, timeout=timeout, allow_redirects=True, **kw)
    except requests.exceptions.InvalidURL as e:
        raise DownloadError(f"{url}: invalid URL ({e}); fix the source or --mirror") from None
    except (requests.ConnectionError, requests.Timeout) as e:
        host = urlparse(url).netloc
        reason = "timed out" if isinstance(e, requests.Timeout) else "unreachable"
        raise _Transient(f"host {host} {reason}: {_short(e)}") from None
    if resp.status_code == 429 or resp.status_code >= 500:
        resp.close()
        raise _Transient(f"HTTP {resp.status_code} for {resp.url}")
    if resp.status_code >= 400:
        resp.close()
        raise DownloadError(
            f"HTTP {resp.status_code} {resp.reason or ''} for {resp.url}; the file moved or is not public — "
            f"check the source, use --mirror, or fetch it by hand and run `sanet-bench weights import DIR`"
        )
    return resp


def _open_http(session: requests.Session, url: str, timeout: float) -> requests.Response:
    return _get(session, url, timeout)


def _open_yandex(session: requests.Session, url: str, timeout: float) -> requests.Response:
    api = _get(session, YANDEX_API_URL, timeout, params={"public_key": url})
    try:
        href = api.json()["href"]
    except (ValueError, KeyError, TypeError):
        raise DownloadError(
            f"Yandex.Disk API gave no download link for {url}; the link may be dead — fetch it in a browser "
            f"and run `sanet-bench weights import DIR`"
        ) from None
    finally:
        api.close()
    return _get(session, href, timeout)


def gdrive_id(url: str) -> str:
    """The file id of a Drive link (``/file/d/<id>/...``, ``?id=<id>``) or a bare id."""
    m = re.search(r"/d/([\w-]{10,})", url)
    if m:
        return m.group(1)
    ids = parse_qs(urlparse(url).query).get("id")
    if ids:
        return ids[0]
    if re.fullmatch(r"[\w-]{10,}", url):
        return url
    raise DownloadError(f"{url}: not a Google Drive file link (no file id); fix the source")


class _ConfirmForm(HTMLParser):
    """The "download anyway" form of Drive's virus-scan page: its action and hidden inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.links: list[str] = []
        self._in_form = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None and a.get("action"):
            self.action, self._in_form = a["action"], True
        elif tag == "input" and self._in_form and a.get("type") == "hidden" and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""
        elif tag == "a" and "confirm=" in (a.get("href") or ""):
            self.links.append(a["href"])

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False


def _open_gdrive(session: requests.Session, url: str, timeout: float) -> requests.Response:
    file_id = gdrive_id(url)
    resp = _get(session, GDRIVE_DOWNLOAD_URL, timeout, params={"export": "download", "id": file_id})
    for step in range(4):
        if not resp.headers.get("Content-Type", "").startswith("text/html"):
            return resp
        if step == 3:
            break
        page_url = resp.url
        html = resp.text[:1_000_000]
        resp.close()
        form = _ConfirmForm()
        form.feed(html)
        token = next((v for k, v in session.cookies.items() if k.startswith("download_warning")), None)
        if form.action:
            resp = _get(session, urljoin(page_url, form.action), timeout, params=form.fields)
        elif token:
            params = {"export": "download", "id": file_id, "confirm": token}
            resp = _get(session, GDRIVE_DOWNLOAD_URL, timeout, params=params)
        elif form.links:
            resp = _get(session, urljoin(page_url, form.links[0].replace("&amp;", "&")), timeout)
        else:
            break
    resp.close()
    raise DownloadError(
        f"Google Drive returned a web page instead of file {file_id} (quota exceeded or not public); "
        f"download it in a browser from {url} and run `sanet-bench weights import DIR`"
    )


_OPENERS = {"http": _open_http, "gdrive": _open_gdrive, "yandex": _open_yandex}


def _stream(resp: requests.Response, dest: Path, sha256: str | None, url: str, progress: bool) -> None:
    """Body -> temp file in dest's folder -> verify length and sha256 -> os.replace. Never leaves the temp."""
    from tqdm.auto import tqdm  # imported here: only downloads need it

    expected_len = resp.headers.get("Content-Length")
    encoded = resp.headers.get("Content-Encoding", "identity") != "identity"
    total = int(expected_len) if expected_len and expected_len.isdigit() and not encoded else None
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.sha256()
        n = 0
        with os.fdopen(fd, "wb") as out, tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, disable=not progress,
            leave=False, file=sys.stderr,
        ) as bar:
            try:
                for block in resp.iter_content(CHUNK):
                    _write(out, block, dest)
                    h.update(block)
                    n += len(block)
                    bar.update(len(block))
            except requests.RequestException as e:
                raise _Transient(f"connection cut mid-body: {_short(e)}") from None
            if total is not None and n != total:
                raise _Transient(f"connection cut after {n} of {total} bytes")
            _sync(out, dest)
        _check_sha(h.hexdigest(), sha256, dest, url)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write(out, block: bytes, dest: Path) -> None:
    try:
        out.write(block)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            free = shutil.disk_usage(dest.parent).free
            raise DownloadError(
                f"{dest}: disk full while writing ({free} bytes free in {dest.parent}); free space or set "
                f"SANET_BENCH_HOME to a larger disk"
            ) from None
        raise


def _sync(out, dest: Path) -> None:
    try:
        out.flush()
        os.fsync(out.fileno())
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise DownloadError(
                f"{dest}: disk full while writing; free space or set SANET_BENCH_HOME elsewhere"
            ) from None
        raise


def _check_sha(actual: str, expected: str | None, dest: Path, origin: str) -> None:
    if expected is not None and actual != expected:
        raise DownloadError(
            f"{dest.name}: checksum mismatch for {origin}: expected sha256 {expected}, got {actual}; the "
            f"file was not kept — the source changed or is corrupt; try another source or import a good copy"
        )


def _short(e: BaseException) -> str:
    return " ".join(str(e).split())[:160] or type(e).__name__
