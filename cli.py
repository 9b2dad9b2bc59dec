"""sanet-bench command line: parses options and calls the library (everything is usable from Python too).

A user error (:class:`sanet_bench.errors.SanetBenchError`) prints one line to stderr and exits 2.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path

import click

from sanet_bench.config import (
    CHANNELS_LAST_HELP,
    DTYPE_HELP,
    DTYPES,
    WINOGRAD_HELP,
    ProfileConfig,
    RunConfig,
    presets,
)
from sanet_bench.errors import SanetBenchError

EPILOG = """\b
Examples:
  sanet-bench run                                   # the default job: every method, embedded grid, report
  sanet-bench methods                               # methods, citations, weight files and sources
  sanet-bench stylize --method sanet --weights random --content a.jpg --style b.jpg --out out.png
  sanet-bench grid list embedded
  sanet-bench weights list
"""


def user_errors(fn):
    """Turn library user errors into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SanetBenchError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def _csv_of(convert, what: str):
    """A click callback parsing ``"a,b,c"`` into a list of ``convert(item)``."""

    def parse(ctx, param, value):
        if value is None:
            return None
        try:
            return [convert(v) for v in str(value).split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"expected comma-separated {what}, got {value!r}") from None

    return parse


csv_ints = _csv_of(int, "integers")
csv_floats = _csv_of(float, "numbers")


def csv_strs(ctx, param, value):
    if value is None:
        return None
    return [v.strip() for v in str(value).split(",") if v.strip()]


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sanet-bench")
def main() -> None:
    """Benchmark and evaluation suite for arbitrary neural style transfer.

    Runs SANet, AdaIN, WCT, Avatar-Net, Gatys and Magenta on a fixed test grid; measures content/style
    loss, LPIPS, SSIM, latency and peak memory; renders comparison figures, tables and reports.
    """


# ---------------------------------------------------------------------------------------------- methods
@main.command("methods", epilog="\b\nExample:\n  sanet-bench methods")
@user_errors
def methods_cmd() -> None:
    """List the registered methods with citation, weight files and their sources."""
    from sanet_bench.registry import method_cards  # the cached cards: no torch import once warm

    for name, spec in sorted(method_cards().items()):
        alpha = f"default alpha {spec.default_alpha}" if spec.has_alpha else "no alpha (alpha 1 only)"
        click.echo(f"{name:<11} {spec.title} — {spec.citation}")
        click.echo(f"{'':<11} reference: {spec.reference}; {alpha}")
        click.echo(f"{'':<11} inputs: {spec.input_policy.describe()}, at least {spec.min_size} px per side"
                   + (f" ({spec.input_policy.note})" if spec.input_policy.note else ""))
        opts = ", ".join(f"{o.name}={o.default!r}" for o in spec.options)
        if opts:
            click.echo(f"{'':<11} options: {opts}")
        if spec.notes:
            click.echo(f"{'':<11} notes: {spec.notes}")
        for f in spec.files:
            src = f.sources[0].url if f.sources else "no public source"
            click.echo(f"{'':<11} weights: {f.name}{' (optional)' if f.optional else ''} <- {src}")
        if not spec.files:
            click.echo(f"{'':<11} weights: none needed")


# ---------------------------------------------------------------------------------------------- stylize
@main.command(
    "stylize",
    epilog="\b\nExamples:\n"
    "  sanet-bench stylize --method sanet --weights random --content c.jpg --style s.jpg --out o.png\n"
    "  sanet-bench stylize --method adain --weights-dir ~/ckpt --content c.jpg --style s.jpg --out o.png "
    "--alpha 0.5 --size 512",
)
@click.option("--method", "method", required=True, help="Method name (see `sanet-bench methods`).")
@click.option("--content", type=click.Path(path_type=Path), required=True, help="Content image.")
@click.option("--style", type=click.Path(path_type=Path), required=True, help="Style image.")
@click.option(
    "--out", type=click.Path(path_type=Path), required=True,
    help="Output image, in the format its suffix names: .png .jpg/.jpeg .webp .bmp .tif/.tiff.",
)
@click.option(
    "--alpha", type=float, default=None, help="Content-style trade-off in [0,1]; default: the method's."
)
@click.option(
    "--size", type=int, default=None,
    help="Resize both images so the shorter side is SIZE px. Default: no resize, each file at its full "
    "resolution (a content whose feature maps would not fit in free memory is refused up front).",
)
@click.option("--style-size", type=int, default=None, help="Style size if different from --size.")
@click.option(
    "--weights", default="auto", show_default=True,
    help="auto (weights-dir > official cache > demo) | official | demo | random",
)
@click.option(
    "--weights-dir", type=click.Path(path_type=Path), default=None, help="Folder with official files."
)
@click.option("--device", default="cpu", show_default=True, help="cpu | cuda | cuda:N")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random weights.")
@click.option(
    "--option", "options", multiple=True, help="Method option KEY=VALUE (e.g. preserve_color=true)."
)
@click.option(
    "--dtype", type=click.Choice(DTYPES), default="fp32", show_default=True,
    help=DTYPE_HELP,
)
@click.option("--winograd/--no-winograd", default=None, help=WINOGRAD_HELP)
@click.option("--channels-last/--no-channels-last", default=None, help=CHANNELS_LAST_HELP)
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the method (slow first call).")
@user_errors
def stylize_cmd(
    method, content, style, out, alpha, size, style_size, weights, weights_dir, device, seed, options,
    dtype, winograd, channels_last, compile_,
):
    """Stylize one content image with one style image."""
    from sanet_bench.api import stylize_files

    path = stylize_files(
        method,
        content,
        style,
        out,
        alpha=alpha,
        size=size,
        style_size=style_size,
        weights=weights,
        weights_dir=weights_dir,
        device=device,
        seed=seed,
        options=parse_options(options),
        dtype=dtype,
        channels_last=channels_last,
        compile=compile_,
        winograd=winograd,
    )
    click.echo(str(path))


def parse_options(pairs) -> dict:
    from sanet_bench.errors import ConfigError

    out = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"--option {p!r} must be KEY=VALUE")
        k, v = p.split("=", 1)
        low = v.strip().lower()
        if low in ("true", "false"):
            out[k.strip()] = low == "true"
        else:
            try:
                out[k.strip()] = int(v) if low.lstrip("-").isdigit() else float(v)
            except ValueError:
                out[k.strip()] = v
    return out


def method_options(pairs) -> dict[str, dict]:
    """``METHOD.KEY=VALUE`` pairs -> ``{method: {key: value}}``."""
    from sanet_bench.errors import ConfigError

    out: dict[str, dict] = {}
    for key, value in parse_options(pairs).items():
        if "." not in key:
            raise ConfigError(f"--option {key}={value}: name the method, METHOD.KEY=VALUE (gatys.iters=20)")
        m, k = key.split(".", 1)
        out.setdefault(m, {})[k] = value
    return out


def _method_options_callback(ctx, param, value):
    try:
        return method_options(value) if value else None
    except SanetBenchError as e:
        raise click.BadParameter(str(e)) from None


def _field_option(f: dataclasses.Field, hint) -> Callable:
    """One click option for config field ``f``: its name, help and choices come from the field's metadata;
    it defaults to None, so the preset, config file or dataclass default decides (shown in the help)."""
    meta = f.metadata
    name = meta.get("cli") or "--" + f.name.replace("_", "-")
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    shown = ",".join(map(str, default)) if isinstance(default, list) else default
    shown = "none" if default in (None, [], {}) else shown
    help_ = f"{meta.get('help', '')} [default: {shown}]"
    origin, args = typing.get_origin(hint), [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if origin in (typing.Union, types.UnionType) else hint
    if origin is dict:
        return click.option(name, f.name, multiple=True, default=None, metavar="METHOD.KEY=VALUE", help=help_,
                            callback=_method_options_callback)
    if typing.get_origin(base) is list:
        item = typing.get_args(base)[0]
        parse = csv_strs if item is str else _csv_of(item, "integers" if item is int else "numbers")
        return click.option(name, f.name, default=None, callback=parse, metavar="A,B", help=help_)
    if base is bool:
        flag = name.lstrip("-")
        return click.option(f"--{flag}/--no-{flag}", f.name, default=None, help=help_)
    kind = click.Choice(meta["choices"]) if meta.get("choices") else base
    return click.option(name, f.name, type=kind, default=None, help=help_)


def config_options(cls) -> Callable:
    """The command-line options of config dataclass ``cls``, one per field (the single source of options)."""
    hints = typing.get_type_hints(cls)

    def decorate(fn: Callable) -> Callable:
        for f in reversed(dataclasses.fields(cls)):
            fn = _field_option(f, hints[f.name])(fn)
        return fn

    return decorate


def config_fields(cls, kwargs: dict) -> dict:
    """Pop the config fields of ``cls`` out of a command's keyword arguments: the overrides to apply."""
    return {f.name: kwargs.pop(f.name) for f in dataclasses.fields(cls)}


# ---------------------------------------------------------------------------------------------- grid
@main.group(
    "grid",
    epilog="\b\nExamples:\n  sanet-bench grid list\n  sanet-bench grid list embedded\n"
    "  sanet-bench grid pull paper --mirror /data/paper-grid",
)
def grid_group() -> None:
    """Test grids: list them and their images, fetch the paper grid."""


@grid_group.command(
    "list",
    epilog="\b\nExamples:\n  sanet-bench grid list\n  sanet-bench grid list embedded\n"
    "  sanet-bench grid list paper --mirror /data/paper-grid\n  sanet-bench grid list folder:my_images",
)
@click.argument("name", required=False)
@click.option("--mirror", default=None, help="Folder holding the paper grid's content/ and style/ files.")
@user_errors
def grid_list_cmd(name, mirror):
    """List the grids with their image counts; with NAME, each image: name, role, size, provenance, state."""
    from sanet_bench.grids import DESCRIPTIONS, status

    if name is None:
        for grid in DESCRIPTIONS:
            rows = status(grid, mirror=mirror)
            n_content = sum(img.role == "content" for img, _ in rows)
            present = sum(state == "present" for _, state in rows)
            counts = f"{n_content} content x {len(rows) - n_content} style, {present}/{len(rows)} present"
            click.echo(f"{grid:<9} {counts} — {DESCRIPTIONS[grid]}")
        click.echo("folder:DIR  images in DIR/content and DIR/style")
        return
    for img, state in status(name, mirror=mirror):
        size = f"{img.size[0]}x{img.size[1]}" if img.size else "?"
        click.echo(f"{img.role:<7} {img.name:<32} {size:>9}  {state:<7}  {img.provenance}")


@grid_group.command(
    "pull",
    epilog="\b\nExamples:\n  sanet-bench grid pull paper\n"
    "  sanet-bench grid pull paper --mirror /data/paper-grid\n"
    "  sanet-bench grid pull paper --mirror https://example.org/paper-grid\n"
    "  sanet-bench grid pull embedded",
)
@click.argument("name")
@click.option(
    "--mirror",
    default=None,
    help="Folder or http(s) URL prefix serving <mirror>/content/<file> and <mirror>/style/<file>.",
)
@click.option("--offline", is_flag=True, help="Never use the network (a --mirror folder still works).")
@user_errors
def grid_pull_cmd(name, mirror, offline):
    """Fetch every image of grid NAME into the cache and verify its sha256 (embedded: regenerate styles)."""
    from sanet_bench.grids import pull

    grid = pull(name, mirror=mirror, offline=True if offline else None)
    n = f"{len(grid.contents)} content + {len(grid.styles)} style images"
    click.echo(f"{grid.name}: {n} present and verified")


# ---------------------------------------------------------------------------------------------- weights
@main.group(
    "weights",
    epilog="\b\nExamples:\n  sanet-bench weights list\n  sanet-bench weights pull sanet adain\n"
    "  sanet-bench weights import ~/Downloads/checkpoints\n  sanet-bench weights verify",
)
def weights_group() -> None:
    """Checkpoints: list, pull (verified downloads), import, verify, path, convert."""


def _size(n: int | None) -> str:
    return "size ?" if n is None else f"{n / 1e6:.1f} MB"


def _echo_outcomes(rows) -> int:
    for r in rows:
        click.echo(f"{'ok  ' if r.ok else 'FAIL'} {r.method:<11} {r.name:<32} {r.detail}")
    return sum(not r.ok for r in rows)


@weights_group.command(
    "list",
    epilog="\b\nExamples:\n  sanet-bench weights list\n  sanet-bench weights list sanet --weights-dir ~/ckpt",
)
@click.argument("methods", nargs=-1)
@click.option("--weights-dir", type=click.Path(path_type=Path), help="Also look in this folder.")
@user_errors
def weights_list_cmd(methods, weights_dir):
    """Official files of each method and metric: size, sha256, source, licence, present/missing in the cache.

    METHODS: method or metric names (`metrics`: every metric's files); none: all. A sha256 marked (publisher)
    was published with the file; (recorded) is the first copy pulled or imported here, recorded after it
    loaded into its method's architecture or metric's network. Shared files (vgg_normalised.pth, the metrics'
    networks) are cached once, in the shared folder; LPIPS's AlexNet in torch hub's cache."""
    from sanet_bench.weights import file_table, hub_prefix

    origin = {"registry": "publisher", "recorded": "recorded"}
    for r in file_table(methods, weights_dir):
        size = r.file.size if r.file.size is not None else (r.path.stat().st_size if r.present else None)
        state = "present" if r.present else ("optional" if r.file.optional else "missing")
        if r.in_weights_dir is not None:
            state += f", {'in' if r.in_weights_dir else 'not in'} weights dir"
        sha = f"sha256 {r.sha256} ({origin[r.sha_origin]})" if r.sha256 else "sha256 not published"
        if not r.sha256 and (prefix := hub_prefix(r.file.name)):
            sha = f"sha256 starts {prefix} (its name; checked), full hash not published"
        click.echo(f"{r.method:<11} {r.file.name:<32} {state:<8} {_size(size):>9}  {sha}")
        src = ", ".join(f"{s.url} ({s.kind})" for s in r.file.sources) or "no public source"
        inside = f" (inside {r.file.archive}: {r.file.member})" if r.file.archive else ""
        cache = f"{'torch hub ' if r.file.hub else 'shared ' if r.file.shared else ''}cache {r.path}"
        click.echo(f"{'':<11} from {src}{inside}; licence: {r.file.license or 'not stated'}; {cache}")


@weights_group.command(
    "pull",
    epilog="\b\nExamples:\n  sanet-bench weights pull                      # all methods and metrics\n"
    "  sanet-bench weights pull sanet adain\n"
    "  sanet-bench weights pull fid artfid lpips     # those metrics' networks ('metrics': all)\n"
    "  sanet-bench weights pull --mirror /data/checkpoints   # a folder holding the files by official name\n"
    "  sanet-bench weights pull --mirror https://example.org/ckpt\n"
    "  sanet-bench weights pull --offline            # only say what is missing",
)
@click.argument("methods", nargs=-1)
@click.option("--offline", is_flag=True, default=None, help="No network (also SANET_BENCH_OFFLINE=1).")
@click.option("--mirror", help="URL prefix or folder with the files by name (or SANET_BENCH_MIRROR).")
@click.option("--no-metrics", is_flag=True,
              help="Without METHODS: skip the metrics' networks (LPIPS's AlexNet, the Inceptions, VGG19).")
@user_errors
def weights_pull_cmd(methods, offline, mirror, no_metrics):
    """Download and verify official files into the cache (exit 2 if any file could not be had).

    METHODS: method or metric names (`metrics`: every metric's files); none: all methods and metrics."""
    from sanet_bench.errors import DownloadError
    from sanet_bench.weights import pull

    failed = _echo_outcomes(pull(methods, offline=offline, mirror=mirror, metrics=not no_metrics))
    if failed:
        raise DownloadError(f"{failed} file(s) missing; see the FAIL lines above for each file's fix")


@weights_group.command(
    "import",
    epilog="\b\nExamples:\n  sanet-bench weights import ~/Downloads/checkpoints\n"
    "  sanet-bench weights import ~/Downloads/SANET-weights sanet\n"
    "  sanet-bench weights import ~/Downloads/metric-nets metrics   # FID/ArtFID/CFSD/LPIPS networks",
)
@click.argument("folder", type=click.Path(path_type=Path))
@click.argument("methods", nargs=-1)
@user_errors
def weights_import_cmd(folder, methods):
    """Copy official files found in FOLDER (recursively, by official name) into the cache, verified.

    METHODS: method or metric names (`metrics`: every metric's files); none: all methods and metrics."""
    from sanet_bench.errors import WeightsError
    from sanet_bench.weights import import_dir

    rows = import_dir(folder, methods)
    if not rows:
        raise WeightsError(f"{folder}: no file with an official name found; see `sanet-bench weights list`")
    failed = _echo_outcomes(rows)
    if failed:
        raise WeightsError(f"{failed} file(s) not imported from {folder}; see the FAIL lines above")


@weights_group.command(
    "verify", epilog="\b\nExamples:\n  sanet-bench weights verify\n  sanet-bench weights verify sanet"
)
@click.argument("methods", nargs=-1)
@user_errors
def weights_verify_cmd(methods):
    """Recompute the sha256 of cached files against the registry / recorded values (exit 1 on a mismatch)."""
    from sanet_bench.weights import verify

    if _echo_outcomes(verify(methods)):
        sys.exit(1)


@weights_group.command(
    "path", epilog="\b\nExamples:\n  sanet-bench weights path\n  sanet-bench weights path sanet"
)
@click.argument("methods", nargs=-1)
@user_errors
def weights_path_cmd(methods):
    """Print the cache folder (of each METHOD, or the root); `shared` names the shared files' folder."""
    from sanet_bench.weights import cache_paths, home

    for p in cache_paths(methods) if methods else [home() / "weights"]:
        click.echo(str(p))


# ---- weights: convert
@weights_group.command(
    "convert",
    epilog="\b\nExamples:\n  pip install 'sanet-bench[tensorflow]'\n"
    "  sanet-bench weights convert avatar-net ~/Downloads/avatar-net/model.ckpt-120000 avatar_net.npz\n"
    "  sanet-bench weights convert avatar-net ~/Downloads/avatar-net/ ~/ckpt/avatar_net.npz",
)
@click.argument("method", metavar="METHOD")
@click.argument("ckpt", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@user_errors
def weights_convert_cmd(method, ckpt, out):
    """Convert METHOD's checkpoint CKPT, as its publisher released it in another framework, into its
    official file OUT (a folder: the file's official name inside it). Avatar-Net: the TensorFlow checkpoint
    (prefix, .index file or folder) -> avatar_net.npz; needs the `tensorflow` extra."""
    from sanet_bench.errors import ConfigError
    from sanet_bench.registry import get_method_spec, method_specs

    spec = get_method_spec(method)
    if spec.convert is None:
        have = ", ".join(n for n, s in method_specs().items() if s.convert is not None)
        raise ConfigError(f"{spec.name}: its published files load as they are, nothing to convert; "
                          f"methods with a converter: {have}")
    click.echo(str(spec.convert(ckpt, out)))


# ---------------------------------------------------------------------------------------------- run
@main.command(
    "run",
    epilog="\b\nExamples:\n"
    "  sanet-bench run                    # every method, embedded grid, 256 and 512 px\n"
    "  sanet-bench run --methods sanet,adain,wct --weights random --sizes 256 --out runs/smoke\n"
    "  sanet-bench run --config my.toml --grid folder:~/imgs --sizes 256,512 --alpha 0.5,1 --device cuda\n"
    "  sanet-bench run --out runs/smoke ...    # the same command again resumes where it stopped\n"
    "\b\nExit status: 0 every cell ok, 1 some cells failed (see the error column), 2 user error.\n"
    "Without --methods (every registered method), a method that could not run (its weight files are\n"
    "not here) is listed with the way to get them and does not make the exit status 1.",
)
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="TOML file of RunConfig keys (see the presets in sanet_bench/presets/).")
@click.option("--preset", type=click.Choice(presets()), default=None, help="Built-in preset.")
@config_options(RunConfig)
@click.option("--overwrite", is_flag=True, help="Replace a run with a different config in --out.")
@click.option("--progress/--no-progress", default=True, help="Progress bar with ETA on stderr.")
@user_errors
def run_cmd(config_path, preset, overwrite, progress, **fields):
    """Run methods over a grid of content x style x size x alpha; write images, results and a manifest.

    Every option overrides the preset and the --config file, which override the defaults shown."""
    from sanet_bench import config, job, results

    overrides = config_fields(RunConfig, fields)
    cfg = config.load(RunConfig, preset, config_path, overrides)
    summary = job.run(cfg, overwrite=overwrite, progress=progress, echo=lambda m: click.echo(m, err=True))
    click.echo(results.format_summary(summary.table))
    manifest = results.read_manifest(summary.run_dir)
    not_run = results.could_not_run(summary.table, manifest)
    for method, reason in not_run.items():
        click.echo(f"could not run {method}: {reason}")
    click.echo(
        f"{results.count_line(summary.table)}; this call ran {summary.ok + summary.failed} of "
        f"{summary.cells} cells ({summary.skipped} already done); results in {summary.run_dir}"
    )
    # "every registered method" (no --methods): a method whose files are not here is listed, not an error
    sys.exit(1 if summary.failed_beyond(set() if cfg.methods else set(not_run)) else 0)


# ---------------------------------------------------------------------------------------- profile / compare
@main.command(
    "profile",
    epilog="\b\nExamples:\n  sanet-bench profile --weights random --sizes 256,512\n"
    "  sanet-bench profile --methods sanet,adain --device cuda --dtype fp16 --channels-last \\\n"
    "      --sizes 512,1024,2048\n"
    "  sanet-bench profile --methods gatys --option gatys.iters=20 --repeats 3 --out runs/gatys-prof\n"
    "\b\nOn CPU each (method, size) runs in a fresh process so its peak RSS is its own; see\n"
    "sanet_bench/profiling.py for the timing, memory and FLOP conventions.",
)
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="TOML file of ProfileConfig keys.")
@config_options(ProfileConfig)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="default runs/profile-<time>.")
@user_errors
def profile_cmd(config_path, out, **fields):
    """Time each method's stylize per size: median/IQR, stages, peak memory, FLOPs (records.jsonl)."""
    from sanet_bench import config
    from sanet_bench.profiling import default_out_dir, profile

    cfg = config.load(ProfileConfig, None, config_path, config_fields(ProfileConfig, fields))
    out = out or default_out_dir()

    def echo(r: dict) -> None:
        if r["status"] != "ok":
            click.echo(f"{r['method']:<11} {r['size']:>5}px  {r['status']}: {r['error']}")
            return
        mem = "-" if r["peak_mem_bytes"] is None else f"{r['peak_mem_bytes'] / 2**20:.0f} MiB"
        gfs = "-" if r["gflops_per_s"] is None else f"{r['gflops_per_s']:.1f}"
        stages = " ".join(f"{k} {v * 1000:.1f}" for k, v in r["stages"].items())
        if r["median_s"] is None:  # --repeats 0: memory and FLOPs only
            flops = "-" if r["flops"] is None else f"{r['flops'] / 1e9:.1f}"
            click.echo(f"{r['method']:<11} {r['size']:>5}px  untimed  peak {mem:>9}  GFLOP {flops:>8}")
            return
        click.echo(
            f"{r['method']:<11} {r['size']:>5}px  median {r['median_s'] * 1000:9.1f} ms"
            f"  IQR {r['iqr_s'] * 1000:7.1f} ms  peak {mem:>9}  GFLOP/s {gfs:>6}"
            f"{'  [' + stages + ' ms]' if stages else ''}"
        )

    profile(cfg, out, echo=echo)
    click.echo(f"records: {Path(out) / 'records.jsonl'}")


@main.command(
    "compare",
    epilog="\b\nExamples:\n  sanet-bench compare runs/profile-base runs/profile-new\n"
    "  sanet-bench compare base/ new/ --threshold 10%\n"
    "  sanet-bench compare cpu-run/ gpu-run/ --cross-device\n"
    "  sanet-bench compare b1/ n1/ --base-run b2/ --new-run n2/   # pool two passes each\n"
    "\b\nExit status: 0 no regression; 1 a cell is slower than the threshold and significant\n"
    "(one-sided Mann-Whitney U on the repeat samples, p < 0.05; needs >= 3 repeats per run, and\n"
    "3 vs 3 cannot reach p < 0.05: profile with --repeats 4 or more) or newly fails; 2 user error.",
)
@click.argument("base", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option("--threshold", default="5%", show_default=True, help="Slow-down that counts: 5% or 0.05.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Significance level (U test).")
@click.option("--cross-device", is_flag=True, help="Compare runs from different GPU/CPU models anyway.")
@click.option("--base-run", "base_runs", multiple=True, type=click.Path(path_type=Path),
              help="Another run of the base, pooled with BASE (repeatable).")
@click.option("--new-run", "new_runs", multiple=True, type=click.Path(path_type=Path),
              help="Another run of the new code, pooled with NEW (repeatable).")
@user_errors
def compare_cmd(base, new, threshold, alpha, cross_device, base_runs, new_runs):
    """Compare two profile runs cell by cell; exit 1 on a significant slow-down.

    Runs given with --base-run/--new-run are pooled with BASE/NEW: all their repeat samples together."""
    from sanet_bench.compare import compare_runs, format_table, parse_threshold

    comp = compare_runs([base, *base_runs], [new, *new_runs], parse_threshold(threshold), alpha=alpha,
                        cross_device=cross_device)
    click.echo(format_table(comp))
    if comp.regressions:
        names = "; ".join(f"{c.name} ({c.verdict})" for c in comp.regressions)
        click.echo(f"REGRESSION in {len(comp.regressions)} cell(s): {names}", err=True)
        sys.exit(1)


# ---------------------------------------------------------------------------------------------- report
@main.command(
    "report",
    epilog="\b\nExamples:\n  sanet-bench report runs/latest\n"
    "  sanet-bench report runs/latest --out reports/smoke",
)
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Report folder (default: reports/<run folder name>).",
)
@user_errors
def report_cmd(run_dir, out):
    """Render RUN_DIR into an offline HTML + Markdown report with figures, tables and raw CSVs.

    An `ablate identity` folder (with ablation.json) gets the ablation report."""
    from sanet_bench.report import render
    from sanet_bench.report.ablation import is_ablation, render_ablation

    click.echo(str(render_ablation(run_dir, out) if is_ablation(run_dir) else render(run_dir, out)))


# ---- demo
@weights_group.command(
    "train-demo",
    epilog="\b\nExamples:\n  sanet-bench weights train-demo adain     # the recipe, into the package\n"
    "  sanet-bench weights train-demo wct --steps 5 --out /tmp/demo   # a smoke run elsewhere",
)
@click.argument("method", metavar="METHOD")
@click.option("--steps", type=click.IntRange(min=1), help="Steps for every unit (default: the recipe's).")
@click.option("--out", type=click.Path(path_type=Path), help="Folder for the .safetensors + manifest.json.")
@user_errors
def weights_train_demo_cmd(method, steps, out):
    """Train METHOD's demo weights on offline images and the offline encoder (resumes if interrupted).

    METHOD: a method whose module declares a demo recipe (`sanet-bench methods` lists them)."""
    from sanet_bench.demo import train_demo

    click.echo(str(train_demo(method, steps, out, progress=click.echo)))


@weights_group.command(
    "check-demo",
    epilog="\b\nExamples:\n  sanet-bench weights check-demo adain\n"
    "  sanet-bench weights check-demo sanet --size 256 --save /tmp/demo_png",
)
@click.argument("method", metavar="METHOD")
@click.option("--size", default=256, show_default=True, help="Shorter side of the grid images.")
@click.option("--save", type=click.Path(path_type=Path), help="Also save the outputs as PNGs here.")
@click.option("--record", is_flag=True, help="Write the result into the shipped manifest's checks.")
@user_errors
def weights_check_demo_cmd(method, size, save, record):
    """Check METHOD's demo weights on the embedded grid: (a) losses vs the reference rows, (b) PSNR."""
    import json

    from sanet_bench.demo import DEMO_DIR, check_demo, recipe, update_manifest

    recipe(method)  # a method without demo weights: one line naming those that have them

    res = check_demo(method, size, save_dir=save)
    click.echo(json.dumps(res, indent=1))
    if record:
        update_manifest(DEMO_DIR, method, res, key="checks")
    if not (res["a_pass"] and res["b_pass"]):
        sys.exit(1)


# ---------------------------------------------------------------------------------------- train / ablate
def _train_overrides(**kw) -> dict:
    """Command-line values for TrainConfig (None = not given, so the preset/config value stays)."""
    return {k: v for k, v in kw.items() if v is not None}


_TRAIN_OPTIONS = [
    click.option("--content-dir", type=click.Path(), default=None, help="Content images (recursive): COCO."),
    click.option("--style-dir", type=click.Path(), default=None, help="Style images (recursive): WikiArt."),
    click.option("--preset", default=None, help="Built-in preset with a [train] table (e.g. tiny)."),
    click.option("--config", "config_path", type=click.Path(), default=None, help="TOML, [train] table."),
    click.option("--iters", type=int, default=None, help="Total iterations (default 500000)."),
    click.option("--batch", type=int, default=None, help="Batch size (default 5)."),
    click.option("--crop", type=int, default=None, help="Random crop size (default 256)."),
    click.option("--load-size", type=int, default=None, help="Shorter side before cropping (default 512)."),
    click.option("--lambda-c", type=float, default=None, help="Content loss weight (default 1)."),
    click.option("--lambda-s", type=float, default=None, help="Style loss weight (default 3)."),
    click.option("--lambda-id1", type=float, default=None, help="Pixel identity loss weight (default 50)."),
    click.option("--lambda-id2", type=float, default=None, help="Feature identity loss weight (default 1)."),
    click.option("--vgg", default=None, help="Encoder: auto | offline | official | PATH."),
    click.option("--init-dir", type=click.Path(), default=None, help="Start: checkpoint folder | demo."),
    click.option("--seed", type=int, default=None, help="Initial weights and data order (default 0)."),
    click.option("--save-every", type=int, default=None, help="Checkpoint interval in iterations."),
    click.option("--log-every", type=int, default=None, help="Loss-log interval in iterations."),
    click.option("--workers", "num_workers", type=int, default=None, help="DataLoader workers (decoding)."),
    click.option("--device", default=None, help="cpu | cuda | cuda:N"),
    click.option("--no-progress", "no_progress", is_flag=True, help="No progress bar."),
]


def _with_train_options(fn):
    for opt in reversed(_TRAIN_OPTIONS):
        fn = opt(fn)
    return fn


def _train_config(preset, config_path, no_progress, out=None, **kw):
    from sanet_bench.config import load
    from sanet_bench.train import TrainConfig

    over = _train_overrides(out=out, progress=False if no_progress else None, **kw)
    return load(TrainConfig, preset, config_path, over, section="train")


@main.command(
    "train",
    epilog="\b\nExamples:\n"
    "  sanet-bench train --content-dir coco/train2014 --style-dir wikiart --out runs/sanet\n"
    "  sanet-bench train --content-dir c --style-dir s --iters 2000 --crop 128 --vgg ~/vgg_normalised.pth\n"
    "  sanet-bench train --content-dir c --style-dir s --lambda-id1 0 --lambda-id2 0 --out runs/no-id\n"
    "\b\nRerunning on the same --out resumes from its latest checkpoint. The folder loads as a model:\n"
    "  sanet-bench stylize --method sanet --weights-dir runs/sanet --content c.jpg --style s.jpg --out o.png"
    "\n  (the folder holds the encoder trained with as vgg_normalised.pth; train_meta.json says which)",
)
@_with_train_options
@click.option("--out", type=click.Path(), default=None, help="Output folder (checkpoints, losses.csv).")
@user_errors
def train_cmd(preset, config_path, no_progress, out, **kw):
    """Train SANet with the paper's objective (resumable; checkpoints in the official layout)."""
    from sanet_bench.train import train

    r = train(_train_config(preset, config_path, no_progress, out, **kw))
    enc = r.encoder.get("id") or f"{r.encoder['kind']} {r.encoder.get('path')}"
    click.echo(f"{r.out}: iteration {r.iteration} (resumed from {r.resumed_from}); encoder {enc}")
    if r.last:
        losses = ", ".join(f"{k}={r.last[k]:.4g}" for k in ("loss_c", "loss_s", "l_identity1", "l_identity2"))
        click.echo(f"last step: {losses}; {r.seconds_per_step:.3f} s/step")
    if r.skipped_files:
        click.echo(f"skipped {r.skipped_files} unreadable image files (listed in train_meta.json)")


@main.group("ablate", epilog="\b\nExample:\n  sanet-bench ablate identity --preset tiny")
def ablate_group() -> None:
    """Ablations of SANet's training objective."""


@ablate_group.command(
    "identity",
    epilog="\b\nExamples:\n  sanet-bench ablate identity --preset tiny          # CPU, minutes\n"
    "  sanet-bench ablate identity --content-dir coco --style-dir wikiart --iters 20000 --device cuda\n"
    "  sanet-bench ablate identity --preset small       # from the demo weights: the effect, ~10 min\n"
    "  sanet-bench ablate identity --preset tiny --variants full,no-identity --out runs/abl",
)
@_with_train_options
@click.option(
    "--variants",
    callback=csv_strs,
    default=None,
    help="Comma-separated subset of full,no-identity,pixel-only,feature-only.",
)
@click.option("--grid", default=None, help="Evaluation grid (default embedded).")
@click.option("--size", "eval_size", type=int, default=None, help="Evaluation image size.")
@click.option("--max-pairs", type=int, default=None, help="Evaluation (content, style) pairs.")
@click.option("--metrics", callback=csv_strs, default=None, help="Comma-separated metric names.")
@click.option("--out", type=click.Path(), default=None, help="Output folder (variants/, index.html).")
@user_errors
def ablate_identity_cmd(
    preset, config_path, no_progress, variants, grid, eval_size, max_pairs, metrics, out, **kw
):
    """Train each identity-loss variant from the same start and compare them on one grid."""
    from sanet_bench.ablation import AblationConfig, run_ablation
    from sanet_bench.config import load

    tcfg = _train_config(preset, config_path, no_progress, **kw)
    over = dict(
        variants=variants,
        grid=grid,
        size=eval_size,
        max_pairs=max_pairs,
        metrics=metrics,
        out=out,
        device=kw.get("device"),
    )
    acfg = load(
        AblationConfig,
        preset,
        config_path,
        {k: v for k, v in over.items() if v is not None},
        section="ablation",
    )
    r = run_ablation(tcfg, acfg)
    for row in r.table:
        vals = ", ".join(f"{m}={row[m]:.4g}" if row[m] is not None else f"{m}=missing" for m in acfg.metrics)
        click.echo(f"{row['variant']:<13} {vals}")
    click.echo(f"report: {r.report} (train {r.seconds['train']:.0f} s, eval {r.seconds['eval']:.0f} s)")


if __name__ == "__main__":
    main()
