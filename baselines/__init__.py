"""Baseline methods, one module each. Each module registers its method on import
(``sanet_bench.registry.register_method``); the registry finds and imports every module here, so adding a
method adds a module and nothing else."""
