"""What goes in a unit's device.json5: the Ioto agent's device section (pure, no I/O).

The file keeps to the grammar in docs/device-file.md: what strict JSON, JSON5 and the Ioto
agent's own parser all read the same way. Strings are rendered by the json module, never by
pasting text, so no product field or name can break out of its string; numbers are rendered
here, because Python writes a float of 1e16 or more as `1e+16` and the agent's parser refuses a
`+` in a number.
"""

from __future__ import annotations

import json
import math
from typing import Any

from factory.config import Product


def device_section(product: Product, uci: str) -> dict[str, Any]:
    """The device section for one unit: id and product first, then the product's fields."""
    section: dict[str, Any] = {"id": uci, "product": product.id, "name": product.name}
    if product.model:
        section["model"] = product.model
    if product.description:
        section["description"] = product.description
    section.update(product.fields)
    return section


def render(product: Product, uci: str) -> bytes:
    """device.json5 as the bytes written to the unit (UTF-8, newline at the end)."""
    members = (f"    {_string(key)}: {_value(value)}"
               for key, value in device_section(product, uci).items())
    return ("{\n" + ",\n".join(members) + "\n}\n").encode()


def _string(text: str) -> str:
    # UTF-8 as is: \uXXXX escapes are JSON5 too, but the agent's parser keeps only the low
    # byte of one, and characters beyond the BMP become surrogate pairs JSON5 readers (the
    # json5 package, found by the property test) do not join again.
    return json.dumps(text, ensure_ascii=False)


def _value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)  # however large: an integer stays an integer
    if isinstance(value, float):
        return number(value)
    return _string(value)


def number(value: float) -> str:
    """A finite float as the shortest text that reads back as it (repr), with no `+` in the
    exponent: `1e16`, `1.5e-05`, `-0.0`."""
    if not math.isfinite(value):
        raise ValueError(f"{value} has no JSON form (the config refuses it)")
    return repr(value).replace("e+", "e")
