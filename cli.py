"""sanet-bench command line: parses options and calls the library (everything is usable from Python too).

A user error (:class:`sanet_bench.errors.SanetBenchError`) prints one line to stderr and exits 2; no traceback.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

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


def csv_ints(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


def csv_floats(ctx, param, value):
    if value is None:
        return None
    try:
        return [float(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None


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
    from sanet_bench.registry import method_specs

    for name, spec in sorted(method_specs().items()):
        click.echo(f"{name:<11} {spec.title} — {spec.citation}")
        click.echo(f"{'':<11} reference: {spec.reference}; default alpha {spec.default_alpha}")
        opts = ", ".join(f"{o.name}={o.default!r}" for o in spec.options)
        if opts:
            click.echo(f"{'':<11} options: {opts}")
        for f in spec.files:
            src = f.sources[0].url if f.sources else "no public source"
            click.echo(f"{'':<11} weights: {f.name}{' (optional)' if f.optional else ''} <- {src}")
        if not spec.files:
            click.echo(f"{'':<11} weights: {spec.notes or 'none needed'}")


# ---------------------------------------------------------------------------------------------- stylize
@main.command(
    "stylize",
    epilog="\b\nExamples:\n  sanet-bench stylize --method sanet --weights random --content c.jpg --style s.jpg --out o.png\n"
    "  sanet-bench stylize --method adain --weights-dir ~/ckpt --content c.jpg --style s.jpg --out o.png "
    "--alpha 0.5 --size 512",
)
@click.option("--method", "method", required=True, help="Method name (see `sanet-bench methods`).")
@click.option("--content", type=click.Path(path_type=Path), required=True, help="Content image.")
@click.option("--style", type=click.Path(path_type=Path), required=True, help="Style image.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output PNG.")
@click.option("--alpha", type=float, default=None, help="Content-style trade-off in [0,1]; default: the method's.")
@click.option("--size", type=int, default=None, help="Resize both images so the shorter side is SIZE px.")
@click.option("--style-size", type=int, default=None, help="Style size if different from --size.")
@click.option("--weights", default="official", show_default=True, help="official | random")
@click.option("--weights-dir", type=click.Path(path_type=Path), default=None, help="Folder with official files.")
@click.option("--device", default="cpu", show_default=True, help="cpu | cuda | cuda:N")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random weights.")
@click.option("--option", "options", multiple=True, help="Method option KEY=VALUE (e.g. preserve_color=true).")
@user_errors
def stylize_cmd(method, content, style, out, alpha, size, style_size, weights, weights_dir, device, seed, options):
    """Stylize one content image with one style image."""
    from sanet_bench.api import stylize_files

    path = stylize_files(
        method, content, style, out, alpha=alpha, size=size, style_size=style_size, weights=weights,
        weights_dir=weights_dir, device=device, seed=seed, options=parse_options(options),
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


# ---------------------------------------------------------------------------------------------- grid
@main.group("grid", epilog="\b\nExamples:\n  sanet-bench grid list\n  sanet-bench grid list embedded\n"
            "  sanet-bench grid pull paper --mirror /data/paper-grid")
def grid_group() -> None:
    """Test grids: list them and their images, fetch the paper grid."""


# ---------------------------------------------------------------------------------------------- weights
@main.group("weights", epilog="\b\nExamples:\n  sanet-bench weights list\n  sanet-bench weights pull sanet adain\n"
            "  sanet-bench weights import ~/Downloads/checkpoints\n  sanet-bench weights verify")
def weights_group() -> None:
    """Checkpoints: list, pull (verified downloads), import, verify, path, convert."""

# ---- weights: convert (avatar-net)
@weights_group.command(
    "convert",
    epilog="\b\nExamples:\n  pip install 'sanet-bench[tensorflow]'\n"
    "  sanet-bench weights convert avatar-net ~/Downloads/avatar-net/model.ckpt-120000 avatar_net.npz\n"
    "  sanet-bench weights convert avatar-net ~/Downloads/avatar-net/ ~/ckpt/avatar_net.npz",
)
@click.argument("method", type=click.Choice(["avatar-net"]))
@click.argument("ckpt", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@user_errors
def weights_convert_cmd(method, ckpt, out):
    """Convert an official TensorFlow checkpoint CKPT (prefix, .index file or folder) to the .npz OUT.

    OUT may be a folder: the file is written there as avatar_net.npz. Needs the `tensorflow` extra.
    """
    from baselines.avatar_net import convert_tf_checkpoint

    click.echo(str(convert_tf_checkpoint(ckpt, out)))


# ---------------------------------------------------------------------------------------------- run

# ---------------------------------------------------------------------------------------------- profile / compare

# ---------------------------------------------------------------------------------------------- report

# ---------------------------------------------------------------------------------------------- train / ablate


if __name__ == "__main__":
    main()
