"""Sans-I/O tracker protocol drivers: bytes in, :class:`Report` objects and reply bytes out.

Each protocol is one module (``drivers.gps103``, ``drivers.pt502``, …) defining a :class:`Session`
subclass and a ``sniff`` function, registered with :func:`register`. Nothing here opens a socket,
reads a clock or writes a file.
"""

from ._commands import COMMON_PARAMETERS, PARAMETERS, Param
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
    InvalidCommand,
    InvalidDeviceId,
    Report,
    Transport,
    UnsupportedCommand,
    Via,
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
    check_command,
    detect,
    drivers,
    encode_sms,
    get,
    register,
    supported_commands,
)
from ._session import Match, Session, UpstreamAck

__all__ = [
    "COMMON_PARAMETERS",
    "KNOTS_TO_KMH",
    "MAX_DEVICE_ID",
    "MAX_SKIP_BYTES",
    "MAX_SNIFF_BYTES",
    "NEED_MORE",
    "PARAMETERS",
    "Command",
    "CommandType",
    "Decoded",
    "Driver",
    "DriverBug",
    "DriverError",
    "FramingError",
    "InvalidCommand",
    "InvalidDeviceId",
    "Match",
    "NeedMore",
    "Param",
    "Report",
    "Session",
    "StreamDecode",
    "StreamSniffer",
    "Transport",
    "UnsupportedCommand",
    "UpstreamAck",
    "Via",
    "check_command",
    "check_device_id",
    "decode_stream",
    "detect",
    "drivers",
    "encode_sms",
    "format_time",
    "get",
    "register",
    "supported_commands",
]

# The bundled drivers register themselves on import, in sniffing priority order (see _builtin).
from . import _builtin  # noqa: F401
