"""Keyed pseudonyms for patient identifiers (HMAC-SHA256).

A keyed HMAC, unlike a plain hash, cannot be reversed by hashing every possible NHS number: without the
key there is nothing to compare against. The same NHS number gives the same pseudonym in every trust
and month, so patients can be counted across submissions.
"""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd

MIN_KEY_BYTES = 32


class PseudonymisationKeyError(ValueError):
    """The pseudonymisation key is missing or too weak (the message never contains the key)."""


class Pseudonymiser:
    def __init__(self, key: bytes):
        if len(key) < MIN_KEY_BYTES:
            raise PseudonymisationKeyError(f"the pseudonymisation key must be at least {MIN_KEY_BYTES} bytes, got {len(key)}")
        self._key = key

    def __repr__(self) -> str:  # never show the key, even in a traceback
        return f"Pseudonymiser(key_id={self.key_id})"

    @property
    def key_id(self) -> str:
        """Identifies the key without revealing it, so a key change can be detected."""
        return hmac.new(self._key, b"sact-pipeline key identifier", hashlib.sha256).hexdigest()[:16]

    def pseudonymise(self, values: pd.Series, namespace: str) -> pd.Series:
        """HMAC of namespace + value for each value; computed once per distinct value, not per row."""
        prefix = namespace.encode("utf-8") + b"\x1f"
        distinct = pd.unique(values.to_numpy())
        digests = {
            value: hmac.new(self._key, prefix + str(value).encode("utf-8"), hashlib.sha256).hexdigest()
            for value in distinct
        }
        return values.map(digests).astype("str")
