"""Sans-I/O tracker protocol drivers: bytes in, :class:`Report` objects and reply bytes out.

Each protocol is one module (``drivers.gps103``, ``drivers.pt502``, …) defining a :class:`Session`
subclass and a ``sniff`` function, registered with :func:`register`. Nothing here opens a socket,
reads a clock or writes a file.
"""

from ._decode import StreamDecode, decode_stream
from ._model import (
    KNOTS_TO_KMH,
    MAX_DEVICE_ID,
    Command,
    CommandType,
    Decoded,
    DriverBug,
    DriverError,
    FramingError,
    InvalidDeviceId,
    Report,
    Transport,
    UnsupportedCommand,
    check_device_id,
    format_time,
)
from ._registry import (
    MAX_SKIP_BYTES,
    MAX_SNIFF_BYTES,
    NEED_MORE,
    Driver,
    NeedMore,
    StreamSniffer,
    detect,
    drivers,
    get,
    register,
)
from ._session import Match, Session, UpstreamAck

__all__ = [
    "KNOTS_TO_KMH",
    "MAX_DEVICE_ID",
    "MAX_SKIP_BYTES",
    "MAX_SNIFF_BYTES",
    "NEED_MORE",
    "Command",
    "CommandType",
    "Decoded",
    "Driver",
    "DriverBug",
    "DriverError",
    "FramingError",
    "InvalidDeviceId",
    "Match",
    "NeedMore",
    "Report",
    "Session",
    "StreamDecode",
    "StreamSniffer",
    "Transport",
    "UnsupportedCommand",
    "UpstreamAck",
    "check_device_id",
    "decode_stream",
    "detect",
    "drivers",
    "format_time",
    "get",
    "register",
]

# The bundled drivers register themselves on import, in sniffing priority order (see _builtin).
from . import _builtin  # noqa: F401
