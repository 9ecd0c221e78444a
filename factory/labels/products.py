"""Each product's label: its template (loaded once, with the product's QR content), checked
at start, and what a unit's label shows, claim secret included. No journal: `factory config
check` checks the templates of a config that has none yet."""

from __future__ import annotations

import datetime

from factory.claim_secret import ClaimSecrets
from factory.config import Product, StationConfig
from factory.labels import placeholders, zpl
from factory.labels.errors import LabelError, TemplateError
from factory.labels.layout import LabelData, check_product
from factory.labels.template import Template, load_template


class ProductLabels:
    """The label templates of a station config's products, and the data of each label."""

    def __init__(self, config: StationConfig, secrets: ClaimSecrets | None = None) -> None:
        self._config, self._secrets = config, secrets
        self._templates: dict[str, Template] = {}

    def template(self, product: Product) -> Template:
        """The product's template with the product's QR content (loaded once)."""
        if product.id not in self._templates:
            path = self._config.labels_dir / f"{product.label}.toml"
            self._templates[product.id] = load_template(path).with_qr_content(product.qr)
        return self._templates[product.id]

    def check(self) -> None:
        """Load every product's template and lay out a sample label now, so a bad template
        or a product name that cannot fit stops the station at start, not after a write."""
        for product in self._config.products:
            if product.label:
                template = self.template(product)
                sample = check_product(template, product, claim_secret=placeholders.SAMPLES[
                    "claim_secret"] if product.claim_secret_days else None)
                if self._config.printer.language == "zpl":
                    zpl.check(template, self._config.printer.dpi, sample)
                if product.claim_secret_days and not prints_claim_secret(template):
                    raise TemplateError(template.source, "(template)",
                                        f"product {product.id} gives each unit a claim secret "
                                        "(claim_secret_days), but this template never prints "
                                        "{claim_secret}: the buyer could not claim the unit")

    def data(self, product: Product, uci: str,
             date: datetime.date | None = None) -> LabelData:
        """What unit `uci`'s label shows (dated today unless `date` is given)."""
        secret = None
        if product.claim_secret_days:
            if self._secrets is None:
                raise LabelError("the product's labels carry a claim secret, but the station "
                                 "has no claim key")
            secret = self._secrets.secret(uci)
        return LabelData.for_product(product, uci, date=date or datetime.date.today(),
                                     claim_secret=secret)


def prints_claim_secret(template: Template) -> bool:
    """Whether any text, QR or barcode of `template` shows the unit's claim secret."""
    for element in template.elements:
        for attribute in ("text", "content"):
            value = getattr(element, attribute, None)
            if isinstance(value, str) and "claim_secret" in placeholders.names_in(value):
                return True
    return False
