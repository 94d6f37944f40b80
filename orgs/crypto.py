"""Encryption at rest for provider keys and collection secrets (Fernet, rotatable)."""

from __future__ import annotations

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@functools.cache
def _fernet() -> MultiFernet:
    keys = list(settings.JETTY_ENCRYPTION_KEYS)
    if not keys:
        derived = hashlib.sha256(b"jetty-encryption:" + settings.SECRET_KEY.encode()).digest()
        keys = [base64.urlsafe_b64encode(derived).decode()]
    return MultiFernet([Fernet(k) for k in keys])


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(cipher: str) -> str:
    try:
        return _fernet().decrypt(cipher.encode()).decode()
    except InvalidToken:
        raise ValueError("secret cannot be decrypted with the configured JETTY_ENCRYPTION_KEYS") from None
