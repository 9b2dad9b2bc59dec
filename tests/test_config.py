"""Plain config: TOML -> dataclasses with strict keys and types; presets inside the package; precedence."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources

import click
import pytest
from click.testing import CliRunner

import cli
from sanet_bench import config, registry
from sanet_bench.config import ProfileConfig, RunConfig, config_hash, from_dict, load, presets, read_preset
from sanet_bench.errors import ConfigError, SanetBenchError


def _write(tmp_path, text: str, name: str = "c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as e:
        fn(*args, **kwargs)
    assert isinstance(e.value, SanetBenchError)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_presets_ship_inside_the_package():
    names = presets()
    assert "default" in names
    for name in names:
        res = resources.files("sanet_bench") / "presets" / f"{name}.toml"
        assert res.is_file()


@pytest.mark.parametrize("name", presets())
def test_every_preset_is_valid(name):
    """Top-level keys are RunConfig's; any other key is a [section] table for another config (train, ...)."""
    data, source = read_preset(name)
    assert source == f"preset:{name}"
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    run = {k: v for k, v in data.items() if k in fields}
    assert all(isinstance(v, dict) for k, v in data.items() if k not in fields), "stray non-table key"
    cfg = from_dict(RunConfig, run, source)
    for key, value in run.items():  # every key of the preset took effect
        assert getattr(cfg, key) == value


def test_unknown_preset():
    msg = _error(load, RunConfig, preset="nope")
    assert "nope" in msg and "default" in msg


def test_unknown_key_names_key_and_file(tmp_path):
    path = _write(tmp_path, 'grid = "embedded"\nsizez = [256]\n')
    msg = _error(load, RunConfig, path=path)
    assert "sizez" in msg and str(path) in msg and "sizes" in msg  # the valid keys are listed


@pytest.mark.parametrize(
    "text,key",
    [
        ('sizes = "256"', "sizes"),
        ('sizes = [256, "512"]', "sizes[1]"),
        ("seed = 1.5", "seed"),
        ("seed = true", "seed"),  # a bool is not an int here
        ("report = 1", "report"),
        ("grid = 3", "grid"),
        ('style_size = "big"', "style_size"),
        ("alphas = [0.5, true]", "alphas[1]"),
        ("method_options = { adain = 3 }", "method_options.adain"),
        ("method_options = 3", "method_options"),
    ],
)
def test_wrong_type_names_key_and_file(tmp_path, text, key):
    path = _write(tmp_path, text + "\n")
    msg = _error(load, RunConfig, path=path)
    assert f"'{key}'" in msg and str(path) in msg


def test_types_that_are_accepted(tmp_path):
    path = _write(
        tmp_path,
        "alphas = [1, 0.5]\nstyle_size = 128\nmax_pairs = 4\n"
        "method_options = { adain = { preserve_color = true } }\n",
    )
    cfg = load(RunConfig, path=path)
    assert cfg.alphas == [1.0, 0.5] and all(isinstance(a, float) for a in cfg.alphas)  # int widened to float
    assert cfg.style_size == 128 and cfg.max_pairs == 4
    assert cfg.method_options == {"adain": {"preserve_color": True}}


def test_precedence_defaults_preset_file_overrides(tmp_path):
    path = _write(tmp_path, "sizes = [128]\nseed = 7\n")
    cfg = load(RunConfig, preset="default", path=path, overrides={"seed": 9, "device": None})
    assert cfg.sizes == [128]  # file over preset
    assert cfg.seed == 9  # override over file
    assert cfg.device == RunConfig().device  # a None override is "not given"
    assert cfg.grid == read_preset("default")[0].get("grid", RunConfig().grid)


def test_override_types_are_checked_too():
    msg = _error(load, RunConfig, overrides={"sizes": "big"})
    assert "command line" in msg and "'sizes'" in msg


def test_section(tmp_path):
    @dataclass
    class Train:
        lr: float = 1e-4
        steps: int = 10
        tags: list[str] = field(default_factory=list)

    path = _write(tmp_path, 'grid = "paper"\n[train]\nlr = 0.001\ntags = ["a"]\n')
    cfg = load(Train, path=path, section="train")
    assert cfg == Train(lr=0.001, steps=10, tags=["a"])
    assert load(Train, path=_write(tmp_path, 'grid = "paper"\n', "n.toml"), section="train") == Train()
    msg = _error(load, Train, path=_write(tmp_path, "train = 3\n", "bad.toml"), section="train")
    assert "'train'" in msg and "bad.toml" in msg
    msg = _error(
        load, Train, path=_write(tmp_path, "[train]\nlearning_rate = 1\n", "u.toml"), section="train"
    )
    assert "learning_rate" in msg and "u.toml" in msg


def test_invalid_missing_and_unreadable_files(tmp_path):
    bad = _write(tmp_path, "sizes = [256\n")
    assert str(bad) in _error(load, RunConfig, path=bad) and "invalid TOML" in _error(
        load, RunConfig, path=bad
    )
    missing = tmp_path / "missing.toml"
    assert str(missing) in _error(load, RunConfig, path=missing)
    assert str(tmp_path) in _error(load, RunConfig, path=tmp_path)  # a folder
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert str(binary) in _error(load, RunConfig, path=binary)


def test_from_dict_does_not_mutate_base():
    base = RunConfig()
    new = from_dict(RunConfig, {"seed": 3}, "test", base)
    assert base.seed == 0 and new.seed == 3


def test_config_hash_is_the_identity_of_settings():
    a, b = RunConfig(), RunConfig()
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 64
    assert config_hash(dataclasses.replace(a, seed=1)) != config_hash(a)
    assert config_hash(dataclasses.replace(a, method_options={"adain": {"x": 1}})) != config_hash(a)


def test_to_dict_roundtrips_through_from_dict():
    cfg = dataclasses.replace(RunConfig(), sizes=[64], alphas=[0.5], max_pairs=3)
    assert from_dict(RunConfig, config.to_dict(cfg), "roundtrip") == cfg


def test_default_preset_is_the_default_run():
    assert load(RunConfig, preset="default") == RunConfig()
    assert load(RunConfig, preset="full").max_pairs == 0  # every pair


def _options(command) -> dict[str, click.Option]:
    return {p.name: p for p in command.params if isinstance(p, click.Option)}


@pytest.mark.parametrize("cls, command", [(RunConfig, "run"), (ProfileConfig, "profile")])
def test_every_config_field_is_an_option_with_its_help_and_values(cls, command):
    """The options of `run` and `profile` are generated from the config dataclasses: one per field, with the
    field's help and, where a field has a vocabulary, every accepted value."""
    opts = _options(cli.main.commands[command])
    for f in dataclasses.fields(cls):
        assert f.name in opts, f"{command} has no option for {cls.__name__}.{f.name}"
        o = opts[f.name]
        assert f.metadata["help"] in o.help and o.default is None
        if f.metadata["choices"]:
            assert list(o.type.choices) == list(f.metadata["choices"])


def test_ablate_options_are_config_fields():
    """`ablate identity` keeps hand-written options: each must name a field of its config classes."""
    from sanet_bench.ablation import AblationConfig
    from sanet_bench.train import TrainConfig

    names = {f.name for c in (AblationConfig, TrainConfig) for f in dataclasses.fields(c)}
    opts = _options(cli.main.commands["ablate"].commands["identity"])
    extra = {"preset", "config_path", "no_progress", "eval_size"}  # eval_size: AblationConfig.size
    assert set(opts) - extra <= names, set(opts) - extra - names


def test_vocabularies_match_the_code_that_uses_them():
    from sanet_bench import images, method

    assert set(method.TORCH_DTYPES) == set(config.DTYPES)
    assert images.RESIZE_POLICIES is config.RESIZE_POLICIES
    assert set(config.BUDGETS) >= {b for s in registry.method_cards().values() for b in s.budgets}


def test_profile_config_loads_from_toml(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('methods = ["adain"]\nsizes = [64]\ndtype = "bf16"\n[method_options.gatys]\niters = 3\n')
    cfg = config.load(ProfileConfig, None, p)
    assert (cfg.methods, cfg.sizes, cfg.dtype) == (["adain"], [64], "bf16")
    assert cfg.method_options == {"gatys": {"iters": 3}}
    p.write_text('dtype = 16\n')
    with pytest.raises(ConfigError, match="key 'dtype' must be str"):
        config.load(ProfileConfig, None, p)


def test_cli_option_pairs_become_method_options(tmp_path):
    res = CliRunner().invoke(cli.main, ["run", "--option", "gatys", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--option 'gatys' must be KEY=VALUE" in res.output
    res = CliRunner().invoke(cli.main, ["run", "--option", "iters=3", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "name the method, METHOD.KEY=VALUE" in res.output
