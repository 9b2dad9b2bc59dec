"""Baseline methods, one file each; importing this package registers them."""
from . import avatar_net  # noqa: F401
