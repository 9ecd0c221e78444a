"""An esptool unit's factory data as an NVS partition: what goes in it (pure), the image
made by Espressif's own generator (esp-idf-nvs-partition-gen), and a reader of NVS images so
a partition read back from the unit is checked entry by entry, not only by hash.

The reader follows the NVS format (ESP-IDF's nvs_flash docs): 4 KiB pages, a 32-byte header,
a 32-byte bitmap of entry states (2 bits each, 0b10 = written), then 126 entries of 32 bytes:
namespace index, type, span, chunk index, CRC-32, key (16), data (8).
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from esp_idf_nvs_partition_gen import nvs_partition_gen as gen

from factory import uci as uci_codec
from factory.config import Product
from factory.config.nvs import MAX_KEY, NvsLayout, nvs_type
from factory.units.errors import UnitError, VerifyMismatch

PAGE, ENTRY, FIRST_ENTRY, ENTRIES_PER_PAGE = 4096, 32, 64, 126
MAX_STRING = gen.Page.PAGE_PARAMS["max_blob_size"][gen.Page.VERSION2]  # bytes, with its NUL
WRITTEN = 0b10
_PRIMITIVE = {0x01: "<B", 0x11: "<b", 0x02: "<H", 0x12: "<h", 0x04: "<I", 0x14: "<i",
              0x08: "<Q", 0x18: "<q"}
SZ, BLOB, BLOB_DATA, BLOB_IDX = 0x21, 0x41, 0x42, 0x48
Value = int | str | bytes


class PartitionTooSmall(UnitError):
    code = "partition-too-small"
    action = ("set the unit aside for an engineer: the product's factory data does not fit "
              "its [products.nvs] size (grow the partition or shorten the fields)")


class NvsKeyTooLong(UnitError):
    code = "nvs-key-too-long"
    action = ("set the unit aside for an engineer: NVS keys are at most 15 bytes; rename the "
              "product's field in the station config")


class NvsValueTooLong(UnitError):
    code = "nvs-value-too-long"
    action = (f"set the unit aside for an engineer: an NVS string holds at most {MAX_STRING - 1} "
              "bytes; shorten the value in the station config or make it a base64 entry")


class NvsError(ValueError):
    """Bytes that are no NVS partition (or a damaged one)."""


@dataclass(frozen=True)
class Entry:
    key: str
    type: str  # an NVS_TYPES name
    text: str  # the value as the generator takes it (a number's digits, hex, base64, text)

    @property
    def value(self) -> Value:
        """The value as it reads back from the partition."""
        if self.type == "string":
            return self.text
        if self.type == "hex2bin":
            return binascii.a2b_hex(self.text.strip())
        if self.type == "base64":
            return base64.b64decode(self.text)
        return int(self.text, 0)


def entries(product: Product, uci: str) -> list[Entry]:
    """What a unit's factory namespace holds: uci, product, the fields, the extra entries."""
    found = [Entry("uci", "string", uci), Entry("product", "string", product.id)]
    for key, value in product.fields.items():
        if len(key.encode()) > MAX_KEY:  # checked here: only esptool units hold NVS
            raise NvsKeyTooLong(f"the product field {key!r} cannot be an NVS key (more "
                                f"than {MAX_KEY} bytes)")
        text = str(int(value)) if isinstance(value, bool) else str(value)
        found.append(Entry(key, nvs_type(value), text))
    names = {"uci": uci, "product": product.id, "name": product.name,
             "model": product.model, **product.fields}
    found += [Entry(e.key, e.type, e.value.format(**names)) for e in product.nvs.entries]
    return found


Extra = Mapping[str, Sequence[Entry]]  # more namespaces in the same partition
_NONE: Extra = {}


def build_image(layout: NvsLayout, items: list[Entry], extra: Extra = _NONE) -> bytes:
    """The partition image (exactly layout.size bytes), by Espressif's generator: the
    product's namespace, then each `extra` one."""
    for namespace, entries_ in ((layout.namespace, items), *extra.items()):
        for item in entries_:  # the generator's own limit, told apart from a full partition
            if item.type == "string" and (size := len(item.text.encode())) >= MAX_STRING:
                raise NvsValueTooLong(f"{namespace}.{item.key} is a string of {size} bytes; "
                                      f"NVS holds at most {MAX_STRING - 1}")
    out = io.BytesIO()
    try:
        # As the generator's own command line sizes it: the last page is kept in reserve.
        nvs = gen.nvs_open(out, layout.size - PAGE, gen.Page.VERSION2)
        for namespace, entries_ in ((layout.namespace, items), *extra.items()):
            gen.write_entry(nvs, namespace, "namespace", "", "")
            for item in entries_:
                gen.write_entry(nvs, item.key, "data", item.type, item.text)
        gen.nvs_close(nvs)
    except gen.InsufficientSizeError as exc:
        raise PartitionTooSmall(f"the factory data needs more than the {layout.size:#x} bytes "
                                f"of the NVS partition at {layout.offset:#x}") from exc
    except (gen.InputError, ValueError, struct.error) as exc:
        raise PartitionTooSmall(f"the factory data cannot be written as NVS: {exc}") from exc
    image = out.getvalue()
    if len(image) != layout.size:
        raise PartitionTooSmall(f"the NVS image is {len(image)} bytes; the partition "
                                f"holds {layout.size}")
    return image


def check_fits(product: Product) -> None:
    """PartitionTooSmall or NvsValueTooLong now, before any unit, when the product's factory
    namespace cannot be its NVS partition: its size is known at start (a UCI's length is
    fixed); only a pre-claimed unit's certificate entries come later."""
    build_image(product.nvs, entries(product, uci_codec.new_uci()))


def used_pages(image: bytes) -> int:
    """The bytes of `image` up to the end of its last page that is not erased (all 0xFF);
    at least one page."""
    for end in range(len(image) - len(image) % PAGE, PAGE, -PAGE):
        if image[end - PAGE:end].count(0xFF) != PAGE:
            return end
    return PAGE


def meant(layout: NvsLayout, items: list[Entry],
          extra: Extra = _NONE) -> dict[str, dict[str, Value]]:
    """What reading the image back must give: namespace → key → value."""
    return {namespace: {item.key: item.value for item in entries_}
            for namespace, entries_ in ((layout.namespace, items), *extra.items())}


def read_image(data: bytes) -> dict[str, dict[str, Value]]:
    """Every written entry of an NVS partition: namespace → key → value."""
    if len(data) % PAGE:
        raise NvsError(f"{len(data)} bytes is not a whole number of NVS pages")
    names: dict[int, str] = {}
    found: dict[int, dict[str, Value]] = {}
    chunks: dict[tuple[int, str], dict[int, bytes]] = {}
    for start in range(0, len(data), PAGE):
        page = data[start:start + PAGE]
        if page[:4] == b"\xff\xff\xff\xff":
            continue  # an empty page
        header_crc = zlib.crc32(page[4:28], 0xFFFFFFFF) & 0xFFFFFFFF
        if struct.unpack_from("<I", page, 28)[0] != header_crc:
            raise NvsError(f"page at {start:#x}: header CRC mismatch")
        index = 0
        while index < ENTRIES_PER_PAGE:
            if (page[32 + index // 4] >> (2 * (index % 4))) & 0b11 != WRITTEN:
                index += 1
                continue
            at = FIRST_ENTRY + ENTRY * index
            entry = page[at:at + ENTRY]
            ns, kind, span, chunk = entry[0], entry[1], max(1, entry[2]), entry[3]
            crc = zlib.crc32(entry[:4] + entry[8:], 0xFFFFFFFF) & 0xFFFFFFFF
            if struct.unpack_from("<I", entry, 4)[0] != crc:
                raise NvsError(f"page at {start:#x}, entry {index}: CRC mismatch")
            key = entry[8:24].split(b"\0", 1)[0].decode(errors="replace")
            body = entry[24:]
            if ns == 0 and kind == 0x01:
                names[body[0]] = key
            elif kind in _PRIMITIVE:
                found.setdefault(ns, {})[key] = struct.unpack_from(_PRIMITIVE[kind], body)[0]
            elif kind in (SZ, BLOB, BLOB_DATA):
                size = struct.unpack_from("<H", body)[0]
                payload = page[at + ENTRY:at + ENTRY + size]
                if len(payload) != size:
                    raise NvsError(f"{key!r}: its data runs past the page")
                if kind == SZ:
                    found.setdefault(ns, {})[key] = payload.rstrip(b"\0").decode()
                else:
                    chunks.setdefault((ns, key), {})[chunk] = payload
            index += span
    for (ns, key), parts in chunks.items():
        found.setdefault(ns, {})[key] = b"".join(parts[i] for i in sorted(parts))
    try:
        return {names[ns]: values for ns, values in found.items()}
    except KeyError as exc:
        raise NvsError(f"an entry names namespace index {exc}, which is not defined") from exc


def check_readback(what: str, back: bytes, image: bytes,
                   wanted: Mapping[str, Mapping[str, Value]]) -> None:
    """VerifyMismatch unless `back` (the used pages read back) parses to `wanted`, entry by
    entry, and is `image`'s bytes."""
    try:
        held = read_image(back)
    except NvsError as exc:
        raise VerifyMismatch(f"{what} is no NVS image: {exc}") from exc
    if held != wanted:
        raise VerifyMismatch(f"{what} holds {differences(wanted, held)}")
    if back != image[:len(back)]:  # e.g. an entry slot left unerased: NVS ignores it
        # until it writes there, and then bits cannot go back to 1
        at = next((i for i, (a, b) in enumerate(zip(back, image, strict=False)) if a != b),
                  len(back))
        raise VerifyMismatch(f"{what} differs from the image at byte {at:#x} of "
                             f"{len(back):#x}")


def differences(wanted: Mapping[str, Mapping[str, Value]],
                held: Mapping[str, Mapping[str, Value]]) -> str:
    """The first way `held` (read back) is not `wanted`, in words; a blob only by its size
    (it may be a private key, and the words are journaled)."""
    for namespace, values in wanted.items():
        got = held.get(namespace)
        if got is None:
            return f"no namespace {namespace!r}"
        for key, value in values.items():
            if got.get(key) != value:
                return f"{namespace}.{key} = {_shown(got.get(key))}, not {_shown(value)}"
    return "entries that were not written"


def _shown(value: Value | None) -> str:
    return f"a blob of {len(value)} bytes" if isinstance(value, bytes) else repr(value)
