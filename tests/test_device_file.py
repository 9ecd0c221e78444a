"""device.json5: always valid JSON5 (read back with a real JSON5 parser), values exact."""

from __future__ import annotations

import json
from types import MappingProxyType

import json5
from hypothesis import given
from hypothesis import strategies as st

from factory import uci as uci_codec
from factory.config import Product
from factory.units.device_file import device_section, render
from tests.device_grammar import violations

# Any Unicode the config lets through: quotes, backslashes, astral characters, U+2028; not the
# control characters (Cc) it refuses, nor lone surrogates (TOML cannot hold them).
text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=60)
values = st.one_of(text, st.integers(-(2**63), 2**63 - 1), st.booleans(),
                   st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from([1e16, 1e300, 5e-324, 1.5e-05, -0.0, 1e22, 123456789.0]))
field_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True).filter(
    lambda k: k not in {"id", "product", "name", "model", "description"})


def test_ioto_shape() -> None:
    product = Product(id="01H4R15D3Q7K9M2X8Z5V6W4T0N", name="Acme Air Sensor", model="AQ-100",
                      description="Indoor air quality sensor",
                      fields=MappingProxyType({"hardware_revision": "C"}))
    uci = "7KQ2M9XD3FHT0W5R"
    parsed = json5.loads(render(product, uci).decode())
    assert parsed == {"id": uci, "product": product.id, "name": "Acme Air Sensor",
                      "model": "AQ-100", "description": "Indoor air quality sensor",
                      "hardware_revision": "C"}
    assert list(parsed)[:2] == ["id", "product"]


@given(name=text, model=text, description=text,
       fields=st.dictionaries(field_names, values, max_size=6),
       value=st.integers(0, (1 << 80) - 1))
def test_every_rendering_parses_back_exactly(name: str, model: str, description: str,
                                             fields: dict[str, object], value: int) -> None:
    product = Product(id="P-1", name=name, model=model, description=description,
                      fields=MappingProxyType(fields))  # type: ignore[arg-type]
    uci = uci_codec.encode(value)
    data = render(product, uci)
    assert data.endswith(b"\n")
    section = device_section(product, uci)
    assert violations(data.decode()) == []  # the grammar the Ioto agent's parser takes
    assert json.loads(data) == section  # strict JSON, values and types exact
    assert json5.loads(data.decode()) == section


def test_the_grammar_check_catches_what_the_agent_refuses() -> None:
    """The checker itself: each thing the agent's parser refuses or misreads is caught."""
    good = '{\n    "id": "7KQ2M9XD3FHT0W5R",\n    "n": 1e16\n}\n'
    assert violations(good) == []
    for bad in ('{\n    "n": 1e+16\n}\n', '{\n    "s": "a\x00b"\n}\n',
                '{\n    "s": "\\u00e9"\n}\n', '{\n    "n": Infinity\n}\n',
                '{\n    "s": "tab\\there"\n}\n'):
        assert violations(bad), bad


def test_large_and_small_floats_keep_no_plus_sign() -> None:
    product = Product(id="P-1", name="n", fields=MappingProxyType(
        {"full_scale": 1e16, "tiny": 1.5e-05, "big": 10**20}))
    text = render(product, "7KQ2M9XD3FHT0W5R").decode()
    assert '"full_scale": 1e16,' in text and '"tiny": 1.5e-05,' in text
    assert '"big": 100000000000000000000\n' in text
    assert "+" not in text
