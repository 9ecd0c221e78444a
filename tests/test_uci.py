"""UCIs: encoding, the human form, the parser's forms and errors, the check symbol."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factory import uci

values = st.integers(min_value=0, max_value=(1 << 80) - 1)


def test_example_from_the_spec() -> None:
    assert uci.human("7KQ2M9XD3FHT0W5R") == "7KQ2-M9XD-3FHT-0W5R-W"
    assert uci.parse("7KQ2-M9XD-3FHT-0W5R-W") == "7KQ2M9XD3FHT0W5R"


def test_new_ucis_are_canonical_and_distinct() -> None:
    drawn = {uci.new_uci() for _ in range(2000)}
    assert len(drawn) == 2000
    assert all(re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{16}", u) for u in drawn)


def test_batches_are_canonical_and_distinct() -> None:
    batch = uci.new_ucis(5000)
    assert len(set(batch)) == 5000
    assert all(uci.parse(u) == u for u in batch)


def test_new_ucis_use_all_80_bits() -> None:
    # The first symbol carries the top 5 bits: over many draws every symbol shows up.
    assert {uci.new_uci()[0] for _ in range(3000)} == set(uci.ALPHABET)


@given(values)
def test_round_trip(value: int) -> None:
    canonical = uci.encode(value)
    assert len(canonical) == 16
    assert uci.decode(canonical) == value
    assert uci.parse(canonical) == canonical
    assert uci.parse(uci.human(canonical)) == canonical


@given(values, st.sampled_from(["lower", "spaces", "nohyphen", "aliases"]))
def test_parser_takes_every_human_spelling(value: int, how: str) -> None:
    canonical = uci.encode(value)
    text = uci.human(canonical)
    if how == "lower":
        text = text.lower()
    elif how == "spaces":
        text = text.replace("-", " ")
    elif how == "nohyphen":
        text = text.replace("-", "")
    else:
        text = text.replace("1", "l").replace("0", "O")
    assert uci.parse(text) == canonical


def test_look_alikes_map_to_digits() -> None:
    assert uci.parse("iIlL oOoO 0000 0000") == "11110000" + "00000000"


@given(values, st.integers(min_value=0, max_value=15), st.integers(min_value=1, max_value=31))
def test_check_symbol_catches_every_single_substitution(value: int, pos: int,
                                                        delta: int) -> None:
    canonical = uci.encode(value)
    wrong = uci.ALPHABET[(uci.ALPHABET.index(canonical[pos]) + delta) % 32]
    typo = canonical[:pos] + wrong + canonical[pos + 1:]
    with pytest.raises(uci.UciError, match="wrong check symbol"):
        uci.parse(typo + uci.check_symbol(canonical))


@given(values, st.integers(min_value=0, max_value=14))
def test_check_symbol_catches_every_adjacent_transposition(value: int, pos: int) -> None:
    canonical = uci.encode(value)
    if canonical[pos] == canonical[pos + 1]:
        return  # swapping equal symbols changes nothing
    swapped = canonical[:pos] + canonical[pos + 1] + canonical[pos] + canonical[pos + 2:]
    with pytest.raises(uci.UciError, match="wrong check symbol"):
        uci.parse(swapped + uci.check_symbol(canonical))


def test_extended_check_symbols_are_used_and_accepted() -> None:
    # Values whose remainder mod 37 is 32..36 get *, ~, $, = and U.
    for remainder, symbol in zip(range(32, 37), "*~$=U", strict=True):
        canonical = uci.encode(remainder)
        assert uci.check_symbol(canonical) == symbol
        assert uci.parse(canonical + symbol) == canonical
        assert uci.parse(canonical.lower() + symbol.lower()) == canonical


@pytest.mark.parametrize(("text", "message"), [
    ("", "got 0"),
    ("7KQ2-M9XD-3FHT", "16 symbols .17 with the check symbol.; got 12"),
    ("7KQ2-M9XD-3FHT-0W5R-WW", "got 18"),
    ("7KQ2-M9XD-3FHT-0W5U-W", "'U' at position 16 is not a Crockford base32 symbol"),
    ("7KQ2-M9XD-3FHT-0W5R-#", "'#' is not a Crockford check symbol"),
    ("7KQ2-M9XD-3FHT-0W5R-X", "wrong check symbol 'X' .expected 'W'."),
    ("7KQ2_M9XD_3FHT_0W5R", "got 19"),
])
def test_parser_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(uci.UciError, match=message):
        uci.parse(text)


def test_encode_refuses_out_of_range() -> None:
    with pytest.raises(uci.UciError):
        uci.encode(1 << 80)
