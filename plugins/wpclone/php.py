"""PHP data formats written from Python: ``serialize()`` (seed data, tests, benchmarks) and WordPress's
phpass password hashes (a clone's fresh admin password)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PhpObject:
    """An object to serialize: ``O:<len>:"<class>":<n>:{...}``."""

    cls: str
    props: dict[str, Any] = field(default_factory=dict)


def php_serialize(value: Any) -> str:
    """PHP ``serialize()`` of a Python value; string lengths are UTF-8 byte lengths, as PHP counts them."""
    if value is None:
        return "N;"
    if isinstance(value, bool):
        return f"b:{int(value)};"
    if isinstance(value, int):
        return f"i:{value};"
    if isinstance(value, float):
        return f"d:{value!r};"
    if isinstance(value, str):
        return f's:{len(value.encode())}:"{value}";'
    if isinstance(value, list):
        value = dict(enumerate(value))
    if isinstance(value, dict):
        body = "".join(php_serialize(k) + php_serialize(v) for k, v in value.items())
        return f"a:{len(value)}:{{{body}}}"
    if isinstance(value, PhpObject):
        body = "".join(php_serialize(k) + php_serialize(v) for k, v in value.props.items())
        return f'O:{len(value.cls.encode())}:"{value.cls}":{len(value.props)}:{{{body}}}'
    raise TypeError(f"cannot serialize {type(value).__name__}")


# -- WordPress password hashes (phpass 0.5 "portable" hashes, as WordPress 6.1 writes and checks them) ------

PHPASS_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# WordPress's PasswordHash(8, true) writes 2**(8 + 5) rounds; phpass accepts 2**7 .. 2**30.
PHPASS_DEFAULT_ROUNDS_LOG2 = 13
PHPASS_MIN_ROUNDS_LOG2 = 7
PHPASS_MAX_ROUNDS_LOG2 = 30
PHPASS_MAX_PASSWORD_BYTES = 4096  # phpass refuses longer passwords (WordPress 4.4+)
PHPASS_SALT_BYTES = 6
PHPASS_HASH_LENGTH = 34


def _phpass_encode64(data: bytes, count: int) -> str:
    """phpass's ``encode64()``: little-endian base64 over :data:`PHPASS_ITOA64`, byte for byte as in PHP."""
    out = []
    i = 0
    while True:
        value = data[i]
        i += 1
        out.append(PHPASS_ITOA64[value & 0x3F])
        if i < count:
            value |= data[i] << 8
        out.append(PHPASS_ITOA64[(value >> 6) & 0x3F])
        if i >= count:
            break
        i += 1
        if i < count:
            value |= data[i] << 16
        out.append(PHPASS_ITOA64[(value >> 12) & 0x3F])
        if i >= count:
            break
        i += 1
        out.append(PHPASS_ITOA64[(value >> 18) & 0x3F])
        if i >= count:
            break
    return "".join(out)


def _phpass_password_bytes(password: str | bytes) -> bytes:
    return password.encode() if isinstance(password, str) else password


def _phpass_crypt(password: bytes, setting: str) -> str | None:
    """phpass's ``crypt_private()``; None where PHP returns its ``*0``/``*1`` failure marker."""
    if setting[:3] not in ("$P$", "$H$") or len(setting) < 12:
        return None
    rounds_log2 = PHPASS_ITOA64.find(setting[3])
    if not PHPASS_MIN_ROUNDS_LOG2 <= rounds_log2 <= PHPASS_MAX_ROUNDS_LOG2:
        return None
    salt = setting[4:12].encode()
    digest = hashlib.md5(salt + password).digest()
    for _ in range(1 << rounds_log2):
        digest = hashlib.md5(digest + password).digest()
    return setting[:12] + _phpass_encode64(digest, 16)


def phpass_hash(
    password: str, *, rounds_log2: int = PHPASS_DEFAULT_ROUNDS_LOG2, salt: bytes | None = None
) -> str:
    """WordPress's password hash (``wp_hash_password()`` in 6.1): a 34-character phpass portable hash.

    ``$P$`` + the rounds character + 8 salt characters + 22 characters of the MD5 chain. ``salt`` is the
    6 random bytes phpass draws (fresh from :mod:`secrets` when omitted); the password is hashed as its
    UTF-8 bytes, which is what PHP sees for a UTF-8 form or string.

    Note that WordPress's login form checks the password *with PHP magic-quote slashes added* (wp_signon
    reads the slashed ``$_POST['pwd']``), so a password that must work in the login form should contain no
    ``'``, ``"`` or backslash.
    """
    raw = _phpass_password_bytes(password)
    if len(raw) > PHPASS_MAX_PASSWORD_BYTES:
        raise ValueError(f"a WordPress password is at most {PHPASS_MAX_PASSWORD_BYTES} bytes long.")
    if not PHPASS_MIN_ROUNDS_LOG2 <= rounds_log2 <= PHPASS_MAX_ROUNDS_LOG2:
        raise ValueError(
            f"rounds_log2 must be between {PHPASS_MIN_ROUNDS_LOG2} and {PHPASS_MAX_ROUNDS_LOG2}, "
            f"not {rounds_log2}."
        )
    if salt is None:
        salt = secrets.token_bytes(PHPASS_SALT_BYTES)
    if len(salt) != PHPASS_SALT_BYTES:
        raise ValueError(f"the phpass salt is {PHPASS_SALT_BYTES} bytes, not {len(salt)}.")
    setting = "$P$" + PHPASS_ITOA64[rounds_log2] + _phpass_encode64(salt, PHPASS_SALT_BYTES)
    hashed = _phpass_crypt(raw, setting)
    if hashed is None or len(hashed) != PHPASS_HASH_LENGTH:  # pragma: no cover - setting is ours
        raise AssertionError("phpass produced no hash for a valid setting")
    return hashed


def phpass_check(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a phpass portable hash (``$P$``/``$H$``), as phpass's CheckPassword.

    Other hash kinds (WordPress's legacy plain MD5, bcrypt) are not phpass portable hashes: False.
    """
    raw = _phpass_password_bytes(password)
    if len(raw) > PHPASS_MAX_PASSWORD_BYTES or len(hashed) != PHPASS_HASH_LENGTH:
        return False
    computed = _phpass_crypt(raw, hashed)
    return computed is not None and hmac.compare_digest(computed.encode(), hashed.encode())
