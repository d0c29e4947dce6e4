"""The command API of the status endpoint: ``GET`` and ``POST /api/devices/<id>/commands``.

``POST`` takes the JSON document MQTT takes (``{"id", "type", "params", "expires_s", "via"}``, only
``type`` required), checks it against the device's protocol and queues it in the journal before it
answers ``202`` with the command; a bad one gets ``400`` (``404``: an unknown device) and the reason as
``{"error": …}``. ``GET`` lists the device's newest commands with their states, answers and errors.
Who may call it is the endpoint's rule (:mod:`._status`): ``[status] token`` when set, always off
loopback, and for ``POST`` only as ``Authorization: Bearer`` (never ``?token=``, which links leak).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import trio

from ..errors import CommandRefused, RelayError, UnknownDevice
from ..journal import Journal, parse_command_json
from ..logs import log_event

if TYPE_CHECKING:
    from ._running import Running

log = logging.getLogger("relay.status")

#: ``/api/devices/<id>/commands``, the id percent-encoded as in MQTT topics.
API_PATH = re.compile(r"/api/devices/([^/]+)/commands/?")
#: The largest request body read.
MAX_BODY = 16 * 1024


async def commands_api(running: Running, method: str, device: str, body: bytes) -> tuple[str, dict[str, Any]]:
    """The status line and JSON document answering one API request for ``device`` (still encoded)."""
    device_id = unquote(device)
    journal = running.journal
    if method == "GET":
        def read() -> list[dict[str, Any]]:
            with Journal.open_read_only(running.config.database) as reader:
                return reader.commands(device_id=device_id)

        try:
            rows = await trio.to_thread.run_sync(read)
        except RelayError as error:
            return "503 Service Unavailable", {"error": str(error)}
        return "200 OK", {"device_id": device_id, "commands": rows}
    try:
        fields = parse_command_json(body)
        command = journal.commands.prepare(device_id, fields, source="http", now=datetime.now(UTC))
        items = journal.queue_command(command)
        document = command.to_json()  # as queued: the device may have it before the commit returns
        await journal.append(items)
    except UnknownDevice as error:
        journal.commands.refused("http")
        return "404 Not Found", {"error": str(error)}
    except CommandRefused as error:
        journal.commands.refused("http")
        log_event(log, logging.WARNING, "command_refused", source="http", device=device_id, reason=str(error))
        return "400 Bad Request", {"error": str(error)}
    except RelayError as error:  # the journal could not store it
        return "503 Service Unavailable", {"error": f"the relay could not store it: {error}"}
    log_event(log, logging.INFO, "command_queued", device=device_id, id=command.id,
              type=command.type.value, source="http")  # fmt: skip
    return "202 Accepted", document
