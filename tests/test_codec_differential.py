"""Both backends give the same outputs and the same errors on generated input."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from strategies import keys, names, non_str_keys


def outcome(fn, *args):
    """('ok', value) or ('raise', type, message, key, cause type)."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the exception *is* the result here
        return ("raise", type(exc), str(exc), getattr(exc, "key", None), type(exc.__cause__))


@given(st.one_of(keys, non_str_keys))
@example("a" * 120)
@example("é" * 60 + " ")
@example("\ud800")
@example("\x00")
def test_encode_and_validate_agree(both_codecs, key):
    twin, compiled = both_codecs
    assert outcome(compiled.encode_key, key) == outcome(twin.encode_key, key)
    assert outcome(compiled.validate_key, key) == outcome(twin.validate_key, key)


@given(keys)
def test_round_trip_agrees(both_codecs, key):
    twin, compiled = both_codecs
    result = outcome(twin.encode_key, key)
    if result[0] != "ok":
        return
    name = result[1]
    assert compiled.decode_name(name) == twin.decode_name(name)
    assert compiled.classify_name(name) == twin.classify_name(name)
    if twin.classify_name(name) == "inline":
        assert twin.decode_name(name) == twin.validate_key(key)


@given(st.one_of(names, st.integers(), st.binary(max_size=4)))
def test_decode_and_classify_agree(both_codecs, name):
    twin, compiled = both_codecs
    assert outcome(compiled.decode_name, name) == outcome(twin.decode_name, name)
    assert outcome(compiled.classify_name, name) == outcome(twin.classify_name, name)


@given(st.lists(names, max_size=20))
def test_bulk_decode_agrees(both_codecs, batch):
    twin, compiled = both_codecs
    assert compiled.decode_names(batch) == twin.decode_names(batch)


@given(names)
def test_accepted_names_are_canonical(both_codecs, name):
    twin, _ = both_codecs
    key = twin.decode_name(name)
    if key is not None:
        assert twin.encode_key(key) == name
