"""
Ids for synthetic rows, drawn from a seeded ``random.Random`` so that the
same seed gives the same ids: UUIDv7 keys and LiveKit-style sids.
"""

from __future__ import annotations

import binascii
import random

# asyncpg's own UUID type: built from 16 bytes without the checks of
# uuid.UUID (a quarter of its cost), and encoded by asyncpg as it is.
from asyncpg.pgproto.pgproto import UUID as PgUUID

# UUIDv7 in RFC 9562's basic layout: 48 bits of Unix milliseconds, version
# 7, variant 10 and 74 random bits (here from the seeded RNG, so ids repeat
# with the seed). PostgreSQL 18's uuidv7() spends the first 12 of those
# random bits on a sub-millisecond fraction instead; both order by the
# millisecond, which is what matters to an index: time-ordered ids land at
# its right edge, so a load touches a few hot pages instead of all of it.
_V7_BITS = (0x7 << 76) | (0x2 << 62)
_LOW_62 = (1 << 62) - 1

_BASE64_TO_ALNUM = bytes.maketrans(b"+/", b"xz")


class SeededIds:
    """Ids from ``rng``: :meth:`uuid7` for primary keys, :meth:`sid` for LiveKit ids."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def uuid7(self, ms: int) -> PgUUID:
        """A UUIDv7 for the moment ``ms`` (Unix milliseconds)."""
        random_bits = self._rng.getrandbits(74)
        bits = (ms << 80) | _V7_BITS | ((random_bits >> 62) << 64) | (random_bits & _LOW_62)
        return PgUUID(bits.to_bytes(16, "big"))

    def sid(self, prefix: str) -> str:
        """A LiveKit-style id such as ``RM_Xq7NcV2pL9sK``: ``prefix`` and 12 letters and digits."""
        encoded = binascii.b2a_base64(self._rng.randbytes(9), newline=False)
        return prefix + encoded.translate(_BASE64_TO_ALNUM).decode()
