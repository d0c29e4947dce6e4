"""The registry: the devices the relay knows (``[[devices]]``), looked up by id and by phone number.

A base module: the sources (SMS senders, time zones), the journal's derived events (offline limits), the
status and the commands read it. Built from a :class:`~relay.config.Config`; ``[modem.senders]`` (the
older form) still maps SMS senders, for numbers no device claims.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from drivers import Report
from drivers.sms import sender_device

from . import calibration
from .config import Config, DeviceSettings, UnknownDevices


class Registry:
    """The known devices. ``get(id)``, ``by_phone(number)``, ``in``, ``len`` and iteration (config order).

    One object for the whole relay: :meth:`update` (SIGHUP) changes it in place for every holder."""

    def __init__(self, devices: tuple[DeviceSettings, ...] = (), *, offline_after_s: float = 0.0,
                 senders: dict[str, str] | None = None,
                 unknown_devices: UnknownDevices = UnknownDevices.ACCEPT) -> None:  # fmt: skip
        self._by_id = {device.id: device for device in devices}
        #: SMS sender number -> device id: each device's phone, then ``[modem.senders]``.
        self.senders = {**(senders or {}), **{d.phone: d.id for d in devices if d.phone}}
        self.default_offline_after_s = offline_after_s
        #: What is done with a device not listed here (``[relay] unknown_devices``).
        self.unknown_devices = unknown_devices

    @classmethod
    def from_config(cls, config: Config) -> Registry:
        senders = dict(config.modem.senders) if config.modem is not None else {}
        return cls(config.devices, offline_after_s=config.offline_after_s, senders=senders,
                   unknown_devices=config.unknown_devices)  # fmt: skip

    def update(self, other: Registry) -> None:
        """Take ``other``'s devices and policy (a reloaded config), in place."""
        self._by_id, self.senders = other._by_id, other.senders
        self.default_offline_after_s = other.default_offline_after_s
        self.unknown_devices = other.unknown_devices

    def refusal(self, device_id: str | None) -> UnknownDevices | None:
        """How a report of ``device_id`` is refused (quarantine or reject), or None: it is taken. A
        report without a device id is taken (nothing to look up)."""
        policy = self.unknown_devices
        if policy is UnknownDevices.ACCEPT or device_id is None or device_id in self._by_id:
            return None
        return policy

    def calibrate(self, report: Report) -> Report:
        """``report`` with its device's calibrated sensors added (the raw values kept)."""
        device = self._by_id.get(report.device_id) if report.device_id is not None else None
        if device is None or not device.calibration or not report.attributes:
            return report
        return calibration.apply(report, device.calibration)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[DeviceSettings]:
        return iter(self._by_id.values())

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._by_id

    def get(self, device_id: str | None) -> DeviceSettings | None:
        return self._by_id.get(device_id) if device_id is not None else None

    def by_phone(self, number: str | None) -> DeviceSettings | None:
        """The device whose ``phone`` (or ``[modem.senders]`` entry) is ``number``, compared on digits as
        SMS senders are (:func:`drivers.sms.sender_device`)."""
        return self.get(sender_device(number, self.senders))

    def offline_after(self, device_id: str) -> float:
        """Seconds of silence after which ``device_id`` is offline (0: never)."""
        device = self._by_id.get(device_id)
        if device is not None and device.offline_after_s is not None:
            return device.offline_after_s
        return self.default_offline_after_s

    def utc_offset(self, device_id: str, at: datetime) -> timedelta | None:
        """The UTC offset of the device's ``timezone`` at ``at`` (None: not known)."""
        device = self._by_id.get(device_id)
        if device is None or device.timezone is None:
            return None
        return at.astimezone(ZoneInfo(device.timezone)).utcoffset()

    def zones(self, at: datetime) -> dict[str, timedelta]:
        """Device id -> UTC offset at ``at``, for the devices with a ``timezone`` (SMS texts' local time)."""
        return {d.id: offset for d in self if (offset := self.utc_offset(d.id, at)) is not None}
