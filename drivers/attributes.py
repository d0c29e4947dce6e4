"""Attribute names: every key a driver puts in ``Report.attributes``, with its unit and meaning.

The convention: snake_case, ONE name per quantity, and the unit in the name's suffix when the
quantity has one (``_pct`` percent, ``_v`` volts, ``_m`` metres, ``_c`` degrees Celsius, ``_kmh``
km/h, ``_l`` litres, ``_min`` minutes). A driver converts to that unit (an odometer in km is stored
in ``odometer_m``). A value on a device's own scale, whose unit the protocol does not state, ends in
``_raw`` and is never also given under a converted name. Counts, flags, identifiers and texts carry
no suffix.

Numbered families (``io<n>``, ``adc<n>``, ``din<n>``, ``dout<n>``, ``temperature<n>_c``,
``eye_temperature<n>_c``) are checked by :func:`known`. Drivers use these constants, never string
literals, so a typo is an import error; :data:`VOCABULARY` gives each name's unit and meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute name: its unit (``""``: none; a flag, count, identifier or text) and meaning."""

    name: str
    unit: str
    meaning: str


#: Every named attribute, by name.
VOCABULARY: dict[str, Attribute] = {}


def _define(name: str, unit: str, meaning: str) -> str:
    VOCABULARY[name] = Attribute(name, unit, meaning)
    return name


# -- power and battery ---------------------------------------------------------------------------
BATTERY_PCT = _define("battery_pct", "%", "battery charge")
BATTERY_V = _define("battery_v", "V", "battery voltage")
BATTERY_RAW = _define("battery_raw", "", "battery level on the device's own scale (e.g. 0-6, a hex nibble)")
POWER_V = _define("power_v", "V", "external (vehicle) supply voltage")
POWER = _define("power", "", "external power connected (bool)")
CHARGE = _define("charge", "", "the battery is charging (bool)")

# -- distance, fuel, engine ----------------------------------------------------------------------
ODOMETER_M = _define("odometer_m", "m", "total distance travelled")
TRIP_ODOMETER_M = _define("trip_odometer_m", "m", "distance travelled this trip")
FUEL_PCT = _define("fuel_pct", "%", "fuel level")
FUEL2_PCT = _define("fuel2_pct", "%", "second tank's fuel level")
FUEL_L = _define("fuel_l", "l", "fuel level")
FUEL_RAW = _define("fuel_raw", "", "fuel level on the device's own scale (unit not stated by the protocol)")
FUEL_INSTANT = _define("fuel_instant", "", "instant fuel consumption, as the OBD unit reports it")
FUEL_AVERAGE = _define("fuel_average", "", "average fuel consumption, as the OBD unit reports it")
OIL = _define("oil", "", "oil/fuel sensor reading on the device's own scale (GT06 S5)")
ENGINE_HOURS = _define("engine_hours", "h", "engine running time")
ENGINE_LOAD_PCT = _define("engine_load_pct", "%", "engine load")
COOLANT_TEMPERATURE_C = _define("coolant_temperature_c", "°C", "engine coolant temperature")
THROTTLE_PCT = _define("throttle_pct", "%", "throttle position")
RPM = _define("rpm", "1/min", "engine speed")
OBD_SPEED_KMH = _define("obd_speed_kmh", "km/h", "speed read from the vehicle's OBD bus")
DTCS = _define("dtcs", "", "diagnostic trouble codes, space separated")
IGNITION = _define("ignition", "", "ignition (ACC) on (bool)")
MOVEMENT = _define("movement", "", "the device senses movement (bool)")
MOTION = _define("motion", "", "the phone or watch reports that it is moving (bool)")

# -- inputs, outputs, sensors --------------------------------------------------------------------
DOOR = _define("door", "", "door open (bool)")
ARMED = _define("armed", "", "the alarm is armed (bool)")
BLOCKED = _define("blocked", "", "the engine is cut off by command (bool)")
PANIC = _define("panic", "", "the panic input is active (bool)")
GPS_TRACKING = _define("gps_tracking", "", "GPS tracking is on (bool)")
INPUT = _define("input", "", "digital inputs, one bit each")
OUTPUT = _define("output", "", "digital outputs, one bit each")
TEMPERATURE_C = _define("temperature_c", "°C", "temperature (the first or only sensor)")
HUMIDITY_PCT = _define("humidity_pct", "%", "relative humidity")
HEART_RATE = _define("heart_rate", "1/min", "the wearer's heart rate")
PRESSURE_HIGH = _define("pressure_high", "mmHg", "the wearer's systolic blood pressure")
PRESSURE_LOW = _define("pressure_low", "mmHg", "the wearer's diastolic blood pressure")
SPO2_PCT = _define("spo2_pct", "%", "the wearer's blood oxygen saturation")
STEPS = _define("steps", "", "pedometer count")
TUMBLES = _define("tumbles", "", "the watch's roll-over count (3G watch protocol)")
TURNOVERS = _define("turnovers", "", "the watch's turn-over count (H02 LINK)")
CALIBRATION_CLAMPED = _define(
    "calibration_clamped",
    "",
    "calibrated attributes (a list of names) whose raw value was outside the device's table: the value"
    " given is the table's end",
)
CARD = _define("card", "", "a driver card or RFID number read by the device")

# -- fix quality ---------------------------------------------------------------------------------
HDOP = _define("hdop", "", "horizontal dilution of precision")
PDOP = _define("pdop", "", "position dilution of precision")
ACCURACY_M = _define("accuracy_m", "m", "horizontal accuracy of the fix")
SATELLITES_VISIBLE = _define("satellites_visible", "", "satellites in view (not only those used)")
GNSS_STATUS = _define("gnss_status", "", "Teltonika GNSS state (0 off, 1 no fix, 2 fix, 3 sleep...)")
LAST_LAT = _define("last_lat", "°", "latitude of the last known fix, when the report has none")
LAST_LON = _define("last_lon", "°", "longitude of the last known fix, when the report has none")

# -- network -------------------------------------------------------------------------------------
RSSI = _define("rssi", "", "mobile signal strength on the device's scale (often 0-31 CSQ, or 0-5 bars)")
MCC = _define("mcc", "", "mobile country code")
MNC = _define("mnc", "", "mobile network code")
LAC = _define("lac", "", "location area code of the serving cell")
CID = _define("cid", "", "cell id of the serving cell")
CELLS = _define("cells", "", "the cells heard: a list of {lac, cid[, rssi]}")
WIFI = _define("wifi", "", "the Wi-Fi access points heard: a list of {mac, rssi[, ssid]}")
WIFI_COUNT = _define("wifi_count", "", "how many Wi-Fi access points the device heard")
OPERATOR = _define("operator", "", "the GSM operator code (MCC and MNC as one number)")
ICCID = _define("iccid", "", "the SIM card's ICCID")
IMSI = _define("imsi", "", "the SIM card's IMSI")
IMEI = _define("imei", "", "the modem's IMEI, when the frame carries it beside another id")

# -- the device and its messages -----------------------------------------------------------------
STATUS = _define("status", "", "the device's status word, as sent")
ALARM = _define("alarm", "", "alarm names the decoder does not know, comma separated (OsmAnd)")
ALARM_CODE = _define("alarm_code", "", "the device's alarm code, as sent")
EVENT_CODE = _define("event_code", "", "the device's event code, as sent")
EVENT_IO = _define("event_io", "", "the Teltonika IO id that triggered the record")
EVENT_FILES = _define("event_files", "", "names of the files an event recorded (GT06 video units)")
PRIORITY = _define("priority", "", "the Teltonika record priority (0 low, 1 high, 2 panic)")
KEYWORD = _define("keyword", "", "the frame's keyword (GPS103 and SMS texts)")
NAME = _define("name", "", "the sender's name field (GPS103 OBD, names the unit)")
TYPE = _define("type", "", "the message type, as sent")
INFO_TYPE = _define("info_type", "", "the GT06 information packet's subtype")
MESSAGE_TYPE = _define("message_type", "", "the Teltonika codec 12-14 message type")
DEVICE_TYPE = _define("device_type", "", "the device type code sent at login")
TIMEZONE_MIN = _define("timezone_min", "min", "the device's time zone offset from UTC")
DEVICE_TIME = _define("device_time", "", "the device's clock reading, as sent, when it is not the fix time")
TIME_RAW = _define("time_raw", "", "the time text of an SMS, as sent")
TIME_SOURCE = _define("time_source", "", "how an SMS report's time was found")
SENDER = _define("sender", "", "the SMS sender's number")
RESULT = _define("result", "", "the text of a command result")
RESULT_HEX = _define("result_hex", "", "a binary command result, hex")
TEXT = _define("text", "", "a text message from the device")
DATA = _define("data", "", "the fields of a message the decoder keeps as text")
EXTRA = _define("extra", "", "trailing fields the decoder does not interpret, as text")
RAW = _define("raw", "", "the body of a packet the decoder does not interpret, hex")
SERIAL = _define("serial", "", "the device's serial number")
HARDWARE = _define("hardware", "", "the device's hardware version")
MODULE = _define("module", "", "the device's module or firmware name")
MARKER = _define("marker", "", "the H02 frame marker (``*`` text, ``$`` binary)")
STARTUP_STATUS = _define("startup_status", "", "the GT06 start-up status byte")
CRC_OK = _define("crc_ok", "", "False when the frame's checksum failed and it was decoded anyway")
BYTES = _define("bytes", "", "the size of a file or payload being sent, in bytes")
PHOTO_SIZE = _define("photo_size", "", "the size of the photo being sent, in bytes")
PHOTO_PACKETS = _define("photo_packets", "", "how many packets the photo is sent in")
CAMERA_MESSAGE = _define("camera_message", "", "the Teltonika camera message type, hex")
VIN = _define("vin", "", "the vehicle identification number")

# -- phone apps (OsmAnd JSON form) ---------------------------------------------------------------
ACTIVITY = _define("activity", "", "the activity the phone detects (still, on_foot, in_vehicle...)")
TRIGGER = _define("trigger", "", "what made the app record the location (motionchange, heartbeat...)")
UUID = _define("uuid", "", "the app's id for the location record")
MOCK = _define("mock", "", "the location is simulated (bool)")

#: Numbered families: ``io<n>`` (a Teltonika IO element by id, as sent), ``adc<n>`` (analog input n),
#: ``din<n>``/``dout<n>`` (digital input/output n, bool), ``temperature<n>_c`` and
#: ``eye_temperature<n>_c`` (temperature sensor n, °C).
FAMILIES = re.compile(r"(?:io|adc|din|dout)[0-9]+|(?:eye_)?temperature[0-9]+_c")


def io(element: int) -> str:
    """A Teltonika IO element's name when it has no name of its own."""
    return f"io{element}"


def adc(index: int) -> str:
    """Analog input ``index`` (from 1)."""
    return f"adc{index}"


def known(name: str) -> bool:
    """Whether ``name`` is in the vocabulary (a named attribute or a numbered family)."""
    return name in VOCABULARY or FAMILIES.fullmatch(name) is not None
