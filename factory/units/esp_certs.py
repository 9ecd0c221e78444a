"""A pre-claimed product's certificate files on an esptool unit, as entries of one NVS
namespace (`[products.nvs] cert_namespace`, default "fctry_cert") in the same partition as
the factory data. Pure: which file is which entry, and the entries a partition is rebuilt
with.

    device.key      -> device_key   the unit's private key, PEM (the station made it)
    device.crt      -> device_crt   its certificate, PEM
    ca.crt          -> ca_crt       the CA chain, PEM
    provision.json5 -> provision    account, endpoint and the file names, JSON

Each is a blob (NVS type BLOB: the file's bytes, no NUL added), as the RainMaker CLI writes
`client_cert` and `client_key` (`file,binary`): firmware reads it with `nvs_get_blob` (size
first, with a NULL buffer) and hands mbedTLS the bytes with a NUL it adds (PEM parsing wants
length + 1). Not strings: an NVS string holds at most 4000 bytes, and a CA chain can be more.
`provision` still names the files (device.key, ...), so firmware that copies the entries to
files under those names reads the same layout as a console unit's.
"""

from __future__ import annotations

import base64
import posixpath
from collections.abc import Mapping

from factory.units.certificate import CA_FILE, CERT_FILE, KEY_FILE, PROVISION_FILE
from factory.units.esp_nvs import Entry, Value

# The certificate step's files and their keys, in the order the namespace holds them.
ENTRY_KEYS = {KEY_FILE: "device_key", CERT_FILE: "device_crt", CA_FILE: "ca_crt",
              PROVISION_FILE: "provision"}


def entry_key(path: str, device_path: str) -> str | None:
    """The entry a certificate-step file at `path` is kept in (None for any other path):
    the step puts its files beside the unit's device path."""
    if posixpath.dirname(path) != posixpath.dirname(device_path):
        return None
    return ENTRY_KEYS.get(posixpath.basename(path))


def cert_entries(held: Mapping[str, Value]) -> list[Entry]:
    """The namespace's entries for the generator, in a fixed order (so the same files make
    the same image whatever order they were written in); keys not ours are left out."""
    return [Entry(key, "base64", base64.b64encode(_bytes(held[key])).decode())
            for key in ENTRY_KEYS.values() if key in held]


def _bytes(value: Value) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()
