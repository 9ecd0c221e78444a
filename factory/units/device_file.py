"""What goes in a unit's device.json5: the Ioto agent's device section (pure, no I/O).

Rendered with the json module, never by pasting strings: JSON is valid JSON5, so the agent's
JSON5 parser reads it, and no product field or name can break out of its string.
"""

from __future__ import annotations

import json
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
    # UTF-8 as is: \uXXXX escapes would be JSON5 too, but characters beyond the BMP become
    # surrogate pairs that JSON5 readers (the json5 package, found by the property test) do
    # not join again. An all-ASCII file goes to console units as text, others as base64.
    text = json.dumps(device_section(product, uci), indent=4, ensure_ascii=False)
    return (text + "\n").encode()
