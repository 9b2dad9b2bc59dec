"""Method cards: every registered spec gives its card; specs registered at run time appear too."""

from __future__ import annotations

from dataclasses import fields

import pytest
from click.testing import CliRunner

import cli
from sanet_bench import registry
from sanet_bench.errors import UnknownNameError
from sanet_bench.registry import MethodCard, MethodSpec, Option, Source, WeightFile


def test_a_card_carries_every_field_of_a_spec_but_the_factory():
    assert {f.name for f in fields(MethodSpec)} - {"factory"} == {f.name for f in fields(MethodCard)}


def test_live_specs_overlay_the_snapshot(monkeypatch):
    f = WeightFile("plug.bin", (Source("https://example.org/plug.bin"),), sha256="ab" * 32, size=3)
    spec = MethodSpec(name="plug-in", title="Plug", citation="c", reference="r", files=(f,),
                      options=(Option("k", 2, "h"),), factory=lambda: None)
    monkeypatch.setitem(registry._METHODS, "plug-in", spec)
    cards = registry.method_cards()
    assert cards["plug-in"] == spec.card() and type(cards["plug-in"]) is MethodCard
    assert registry.get_method_card("Plug_In").file("plug.bin") == f
    assert {"sanet", "adain", "wct", "avatar-net", "gatys", "magenta"} <= set(cards)
    with pytest.raises(UnknownNameError, match="unknown method 'nope'.*plug-in"):
        registry.get_method_card("nope")
    res = CliRunner().invoke(cli.main, ["methods"])
    assert res.exit_code == 0 and "plug-in     Plug — c" in res.output
    assert "weights: plug.bin <- https://example.org/plug.bin" in res.output
