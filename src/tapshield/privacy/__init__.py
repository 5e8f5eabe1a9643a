"""Personal data: tokens for joining, sealed values for the few that must be recovered.

* :mod:`~tapshield.privacy.keys`: versioned key material outside the database
  (a directory or environment variables) behind :class:`KeyProvider`, the port
  a KMS or Vault adapter implements.
* :mod:`~tapshield.privacy.tokens`: keyed-hash (HMAC-SHA-256) tokens of
  ``user_id``, ``device_id``, phone numbers and e-mail addresses: stable, so
  analysis joins on them; irreversible without the key.
* :mod:`~tapshield.privacy.seal`: AES-GCM for identifiers that must be read
  back (the phone number or e-mail a customer notice goes to), bound to their
  token and key version.
* :mod:`~tapshield.privacy.vault`: the token -> sealed value table, with
  background re-encryption after a key rotation.
* :mod:`~tapshield.privacy.mask`: display forms (``138****5678``).

See docs/trust.md.
"""

from __future__ import annotations

from tapshield.privacy.keys import EnvKeyProvider, FileKeyProvider, KeyProvider
from tapshield.privacy.mask import mask_email, mask_id, mask_phone
from tapshield.privacy.tokens import Tokenizer

__all__ = ["EnvKeyProvider", "FileKeyProvider", "KeyProvider", "Tokenizer", "mask_email",
           "mask_id", "mask_phone"]
