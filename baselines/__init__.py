"""Baseline methods, one file each; importing this package registers them."""
from . import (
    adain,  # noqa: F401
    avatar_net,  # noqa: F401
    gatys,  # noqa: F401
    magenta,  # noqa: F401
    wct,  # noqa: F401
)
