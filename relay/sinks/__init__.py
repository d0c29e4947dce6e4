"""Bytes out: every sink reads committed reports through its own durable position
(:class:`Delivery`) and confirms them only when its server did: mqtt, http, osmand and passthrough.

Imports: :mod:`relay.journal`, the base modules and ``drivers``; never a source or the service.
"""

from ._table import Sink, make_sink

__all__ = ["Sink", "make_sink"]
