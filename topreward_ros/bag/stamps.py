"""A message's header stamp read from its CDR bytes, without deserialising it.

The offline sources cut episodes and schedule samples by the primary
camera's header stamps; reading 8 bytes per message instead of decoding
every 30 Hz frame is what makes planning a long bag cheap.
"""

from __future__ import annotations

import struct

from topreward_ros.scoring.stamps import NS_PER_S


class StampError(ValueError):
    """The bytes are too short to hold a header stamp."""


def header_stamp_ns(cdr: bytes) -> int:
    """``header.stamp`` of a CDR message whose first field is ``std_msgs/Header``.

    Image and CompressedImage both start with their header, so the stamp
    sits right after the 4-byte encapsulation header: int32 seconds and
    uint32 nanoseconds, in the byte order the encapsulation names. Reading
    these 8 bytes lets the 2 fps schedule drop a frame without
    deserialising its pixels.
    """
    if len(cdr) < 12:
        raise StampError(f"message of {len(cdr)} bytes is too short to hold a header stamp")
    little = cdr[1] & 1  # encapsulation id: 0x0000 CDR_BE, 0x0001 CDR_LE (and PL variants)
    sec, nanosec = struct.unpack_from("<iI" if little else ">iI", cdr, 4)
    return sec * NS_PER_S + nanosec
