"""Baseline methods, one module each: importing this package imports every module in it, and each module
registers its method (``sanet_bench.registry.register_method``), so a new method needs no line here."""

import importlib
import pkgutil

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
