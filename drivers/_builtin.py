"""The bundled drivers, in sniffing priority order. Importing a module registers its driver."""

# ruff: noqa: I001  (the order is the sniffing priority, not the alphabet)
from . import gps103  # noqa: F401
from . import pt502  # noqa: F401
from . import osmand  # noqa: F401
from . import gt06  # noqa: F401
from . import teltonika  # noqa: F401
from . import h02  # noqa: F401
from . import tk103  # noqa: F401
from . import watch  # noqa: F401
