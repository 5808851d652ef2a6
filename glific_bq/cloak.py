"""Glific's encrypted columns: Cloak's AES-GCM envelope, read with Glific's own keys.

Glific encrypts ``credentials.secrets`` with Cloak (``Cloak.Ecto.Map``: the map as JSON, then
encrypted by the vault ``Glific.Vault``). Its ``config/runtime.exs`` gives the vault two ciphers,
and so does glific_bq, from the same environment variables, so that an operator reuses Glific's
secrets as they are:

- tag ``AES.GCM.V3``: the default cipher, key = base64 of ``CIPHER_KEY``;
- tag ``AES.GCM.V2``: rows written before a key rotation, key = base64 of ``OLD_CIPHER_KEY``.

Cloak's envelope (``Cloak.Ciphers.AES.GCM``), byte by byte: ``0x01``, the tag's length, the tag;
a 16-byte IV; the 16-byte GCM authentication tag; the ciphertext. The additional authenticated
data is ``AES256GCM``. ``cryptography``'s AESGCM wants ciphertext then tag, so the two are swapped
here. Keys are 32 bytes (AES-256).

Keys and plaintexts stay in memory: nothing here logs, and no error carries key material.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: Tag -> environment variable holding its base64 key, as in Glific's ``config/runtime.exs``.
CIPHERS = {"AES.GCM.V3": "CIPHER_KEY", "AES.GCM.V2": "OLD_CIPHER_KEY"}
#: The tag new values are written with (Glific's default cipher).
DEFAULT_TAG = "AES.GCM.V3"

_AAD = b"AES256GCM"
_IV_BYTES = 16
_TAG_BYTES = 16


class DecryptionError(ValueError):
    """A value that cannot be decrypted: its message names the variable to check, never a key."""


@dataclass(frozen=True)
class Vault:
    """Glific's two ciphers: tag -> 32-byte key. ``repr`` never shows the keys."""

    keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Vault:
        """``CIPHER_KEY`` and ``OLD_CIPHER_KEY`` (either may be unset); a malformed key is an
        error naming its variable."""
        env = os.environ if environ is None else environ
        keys = {}
        for tag, variable in CIPHERS.items():
            if env.get(variable):
                keys[tag] = _key(env[variable], variable)
        return cls(keys)

    def decrypt(self, envelope: bytes) -> bytes:
        """The plaintext of one Cloak envelope, or ``DecryptionError`` saying which variable to
        check (the key the envelope's tag names is unset, or it does not open the value)."""
        tag, iv, auth_tag, ciphertext = _split(bytes(envelope))
        variable = CIPHERS.get(tag)
        if variable is None:
            raise DecryptionError(f"encrypted with an unknown Cloak cipher tag {tag!r} (known: {', '.join(CIPHERS)})")
        key = self.keys.get(tag)
        if key is None:
            raise DecryptionError(f"encrypted with {tag}, whose key {variable} is not set")
        try:
            return AESGCM(key).decrypt(iv, ciphertext + auth_tag, _AAD)
        except InvalidTag:
            raise DecryptionError(f"cannot be decrypted with {variable} (tag {tag}): wrong key or damaged value") from None

    def decrypt_map(self, envelope: bytes) -> dict:
        """A ``Cloak.Ecto.Map`` value: the decrypted JSON object."""
        plaintext = self.decrypt(envelope)
        try:
            value = json.loads(plaintext)
        except ValueError:
            raise DecryptionError("decrypts to something that is not JSON") from None
        if not isinstance(value, dict):
            raise DecryptionError("decrypts to JSON that is not an object")
        return value

    def encrypt(self, plaintext: bytes, tag: str = DEFAULT_TAG) -> bytes:
        """A Cloak envelope of ``plaintext`` (what Glific writes; for the demo data and tests)."""
        iv = os.urandom(_IV_BYTES)
        sealed = AESGCM(self.keys[tag]).encrypt(iv, plaintext, _AAD)
        header = b"\x01" + bytes([len(tag)]) + tag.encode()
        return header + iv + sealed[-_TAG_BYTES:] + sealed[:-_TAG_BYTES]

    def encrypt_map(self, value: Mapping, tag: str = DEFAULT_TAG) -> bytes:
        return self.encrypt(json.dumps(value).encode(), tag)


def _key(text: str, variable: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError(f"{variable} is not base64") from None
    if len(key) != 32:
        raise DecryptionError(f"{variable} is {len(key)} bytes once decoded; Glific's AES-256 keys are 32")
    return key


def _split(envelope: bytes) -> tuple[str, bytes, bytes, bytes]:
    """(tag, IV, GCM tag, ciphertext) of a Cloak envelope."""
    if len(envelope) < 2 or envelope[0] != 0x01:
        raise DecryptionError("is not a Cloak envelope (no key tag header)")
    length, start = envelope[1], 2
    if length >= 128:  # Cloak's longer length field: 0x80 | bytes that follow, big-endian
        width = length & 0x7F
        length, start = int.from_bytes(envelope[2:2 + width], "big"), 2 + width
    body = start + length
    if len(envelope) < body + _IV_BYTES + _TAG_BYTES:
        raise DecryptionError("is not a Cloak envelope (too short)")
    try:
        tag = envelope[start:body].decode("ascii")
    except UnicodeDecodeError:
        raise DecryptionError("is not a Cloak envelope (key tag is not text)") from None
    iv = envelope[body:body + _IV_BYTES]
    auth_tag = envelope[body + _IV_BYTES:body + _IV_BYTES + _TAG_BYTES]
    return tag, iv, auth_tag, envelope[body + _IV_BYTES + _TAG_BYTES:]
