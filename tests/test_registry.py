"""Method cards: the committed metadata snapshot matches the live registry; live specs overlay it."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from click.testing import CliRunner

import cli
from sanet_bench import registry
from sanet_bench.errors import UnknownNameError
from sanet_bench.registry import MethodCard, MethodSpec, Option, Source, WeightFile


def test_committed_cards_match_the_registry():
    live = registry.cards_json()
    assert registry.CARDS_PATH.read_text(encoding="utf-8") == live, (
        f"{registry.CARDS_PATH} is stale: run `{registry.CARDS_COMMAND}` and commit it"
    )
    # read back, the snapshot gives the very cards the registered specs give (types of defaults included)
    snapshot = {n: registry.card_from_json(d) for n, d in json.loads(live)["methods"].items()}
    assert snapshot == {n: s.card() for n, s in registry.method_specs().items()}


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
