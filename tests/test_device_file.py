"""device.json5: always valid JSON5 (read back with a real JSON5 parser), values exact."""

from __future__ import annotations

from types import MappingProxyType

import json5
from hypothesis import given
from hypothesis import strategies as st

from factory import uci as uci_codec
from factory.config import Product
from factory.units.device_file import device_section, render

text = st.text(max_size=60)  # any Unicode, quotes, backslashes, newlines, control characters
values = st.one_of(text, st.integers(-(2**53), 2**53), st.booleans(),
                   st.floats(allow_nan=False, allow_infinity=False))
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
    assert json5.loads(data.decode()) == device_section(product, uci)
