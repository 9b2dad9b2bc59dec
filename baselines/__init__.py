"""Baseline methods, one file each; importing this package registers them."""
from . import magenta  # noqa: F401
from . import avatar_net  # noqa: F401
from . import adain  # noqa: F401
from . import wct  # noqa: F401
from . import gatys  # noqa: F401
