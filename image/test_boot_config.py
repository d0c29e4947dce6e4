"""relay-boot-config on the build machine: a scratch root and boot dir, the real `relay check-config`.

Run with: python3 -m pytest -q -p no:cacheprovider image/test_boot_config.py
(image/test proves the same script inside the booted image; this covers the cases a boot cannot.)
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import stat
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCRIPT = HERE / "rootfs/usr/local/sbin/relay-boot-config"
GOOD = (HERE / "bootfs/relay.toml").read_text()


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Loads the script against scratch directories; returns (module, boot dir, root dir, data dir)."""
    boot, root, data = tmp_path / "boot", tmp_path / "root", tmp_path / "root/var/lib/relay"
    for d in (boot, root / "etc/relay", data, root / "usr/share/zoneinfo/America"):
        d.mkdir(parents=True)
    (root / "usr/share/zoneinfo/UTC").write_text("TZif")
    (root / "usr/share/zoneinfo/America/Santiago").write_text("TZif")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\trelay\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\nrelay:!:19000::::::\n")
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/raspi-firmware").write_text(
        'ROOTPART=LABEL=RELAYROOT\nCONSOLES="tty0 ttyS1,115200"\n'
    )
    hw = tmp_path / "hw"
    (hw / "proc").mkdir(parents=True)
    (hw / "proc/cpuinfo").write_text("processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 10000000a1b2c3d4\n")
    monkeypatch.setenv("RELAY_HW_ROOT", str(hw))
    monkeypatch.setenv("RELAY_STATE_FILE", str(tmp_path / "run/state.json"))
    relay_bin = tmp_path / "relay"
    relay_bin.write_text(f'#!/bin/sh\ncd "{REPO}" && exec "{sys.executable}" -m relay "$@"\n')
    relay_bin.chmod(0o755)
    monkeypatch.setenv("RELAY_BOOT_DIR", str(boot))
    monkeypatch.setenv("RELAY_ETC_ROOT", str(root))
    monkeypatch.setenv("RELAY_BIN", str(relay_bin))
    monkeypatch.setenv("RELAY_DATA_ROOT", str(data))
    loader = importlib.machinery.SourceFileLoader("relay_boot_config", str(SCRIPT))
    spec = importlib.util.spec_from_loader("relay_boot_config", loader)
    assert spec is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module, boot, root, data


def installed(root: Path) -> str:
    """The installed relay.toml without the site line relay-boot-config adds."""
    text = (root / "etc/relay/relay.toml").read_text()
    return "\n".join(ln for ln in text.split("\n") if "added by relay-boot-config" not in ln)


def relay_toml(data: Path, **changes: str) -> str:
    text = GOOD.replace('data_dir = "/var/lib/relay"', f'data_dir = "{data}"')
    for old, new in changes.items():
        text = text.replace(old, new)
    return text


def test_a_good_relay_toml_is_installed_and_clears_the_old_error(gateway):
    bc, boot, root, data = gateway
    (data / "config-error.txt").write_text("old error")
    (boot / "relay.toml").write_text(relay_toml(data))
    assert bc.main() == 0
    assert installed(root) == relay_toml(data)
    assert stat.S_IMODE((root / "etc/relay/relay.toml").stat().st_mode) == 0o640
    assert not (data / "config-error.txt").exists()


def test_a_broken_relay_toml_keeps_the_last_good_one_and_reports_why(gateway, capsys):
    bc, boot, root, data = gateway
    live = root / "etc/relay/relay.toml"
    live.write_text(relay_toml(data))
    (boot / "relay.toml").write_text(relay_toml(data, **{"port = 8888": 'port = "eighty"'}))
    assert bc.main() == 0
    assert live.read_text() == relay_toml(data)
    error = (data / "config-error.txt").read_text()
    assert "relay.toml was rejected" in error and "listen.port" in error
    assert "<3>" in capsys.readouterr().out  # an error-priority line for the journal


def test_a_data_dir_outside_the_sandbox_is_rejected(gateway):
    bc, boot, root, data = gateway
    (boot / "relay.toml").write_text(relay_toml(data, **{f'data_dir = "{data}"': 'data_dir = "/srv/relay"'}))
    bc.main()
    assert not (root / "etc/relay/relay.toml").exists()
    assert "must be" in (data / "config-error.txt").read_text()


def test_a_port_below_1024_grants_only_cap_net_bind_service_and_moving_up_removes_it(gateway):
    bc, boot, root, data = gateway
    dropin = root / "etc/systemd/system/relay.service.d/50-low-port.conf"
    (boot / "relay.toml").write_text(relay_toml(data, **{"port = 8888": "port = 80"}))
    bc.main()
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in dropin.read_text()
    (boot / "relay.toml").write_text(relay_toml(data))
    bc.main()
    assert not dropin.exists()


def test_system_toml_sets_hostname_zone_static_ethernet_and_wifi(gateway, monkeypatch):
    bc, boot, root, _data = gateway
    (boot / "system.toml").write_text(
        '[system]\nhostname = "depot-7"\ntimezone = "America/Santiago"\n'
        '[ethernet]\ndhcp = false\naddress = "192.168.1.50/24"\ngateway = "192.168.1.1"\ndns = ["1.1.1.1"]\n'
        '[wifi]\nssid = "Depot \\"A\\""\npsk = "correct horse"\ncountry = "CL"\nhidden = true\n'
    )
    bc.main()
    assert (root / "etc/hostname").read_text() == "depot-7\n"
    assert "127.0.1.1\tdepot-7" in (root / "etc/hosts").read_text()
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/America/Santiago"
    network = (root / "etc/systemd/network/10-relay-ethernet.network").read_text()
    assert (
        "Address=192.168.1.50/24" in network and "Gateway=192.168.1.1" in network and "DNS=1.1.1.1" in network
    )
    wpa = root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
    text = wpa.read_text()
    assert 'ssid="Depot \\"A\\""' in text and 'psk="correct horse"' in text
    assert "country=CL" in text and "scan_ssid=1" in text
    assert stat.S_IMODE(wpa.stat().st_mode) == 0o600
    assert bc.errors == []


def test_a_bad_system_section_is_reported_and_the_others_still_apply(gateway):
    bc, boot, root, data = gateway
    (boot / "system.toml").write_text(
        '[system]\nhostname = "Depot_7!"\n[wifi]\nssid = "x"\npsk = "short"\ncountry = "CL"\n'
        '[ethernet]\ndhcp = false\naddress = "10.0.0.9/8"\n'
    )
    bc.main()
    assert (root / "etc/hostname").read_text() == "relay-a1b2c3d4\n"  # never the image's placeholder
    assert not (root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf").exists()
    assert "Address=10.0.0.9/8" in (root / "etc/systemd/network/10-relay-ethernet.network").read_text()
    error = (data / "config-error.txt").read_text()
    assert "[system]: hostname" in error and "[wifi]: psk" in error


def test_removing_wifi_and_static_ethernet_goes_back_to_defaults(gateway):
    bc, boot, root, _data = gateway
    (boot / "system.toml").write_text(
        '[ethernet]\naddress = "10.0.0.9/8"\n[wifi]\nssid = "x"\npsk = "12345678"\ncountry = "DE"\n'
    )
    bc.main()
    assert (root / "etc/systemd/network/10-relay-ethernet.network").exists()
    (boot / "system.toml").write_text("[system]\n")
    bc.main()
    assert not (root / "etc/systemd/network/10-relay-ethernet.network").exists()
    assert not (root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf").exists()


def test_authorized_keys_needs_a_valid_key(gateway):
    bc, boot, root, data = gateway
    (boot / "authorized_keys").write_text("# comment only\n")
    bc.main()
    assert not (root / "root/.ssh/authorized_keys").exists()
    (boot / "authorized_keys").write_text("ssh-ed25519 not-a-key me@laptop\n")
    bc.main()
    assert not (root / "root/.ssh/authorized_keys").exists()
    assert "authorized_keys was rejected" in (data / "config-error.txt").read_text()


def test_bom_and_crlf_are_accepted_in_every_boot_file(gateway):
    bc, boot, root, data = gateway
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop"
    bom = b"\xef\xbb\xbf"
    (boot / "system.toml").write_bytes(bom + b'[system]\r\nhostname = "depot-9"\r\ntimezone = "UTC"\r\n')
    (boot / "relay.toml").write_bytes(bom + relay_toml(data).replace("\n", "\r\n").encode())
    (boot / "authorized_keys").write_bytes(bom + key.encode() + b"\r\n")
    bc.main()
    assert bc.errors == []
    assert (root / "etc/hostname").read_text() == "depot-9\n"
    assert installed(root) == relay_toml(data)  # installed with LF endings, without the BOM
    assert (root / "root/.ssh/authorized_keys").read_text() == key + "\n"
    # Notepad's "Unicode" is UTF-16 with a BOM: accepted too.
    (boot / "system.toml").write_bytes('[system]\r\nhostname = "depot-10"\r\n'.encode("utf-16"))
    bc.main()
    assert (root / "etc/hostname").read_text() == "depot-10\n"


def load_config(root: Path):
    sys.path.insert(0, str(REPO))
    from relay.config import load

    return load(root / "etc/relay/relay.toml")


MQTT_SINK = '\n[[sinks]]\nname = "broker"\ntype = "mqtt"\nurl = "mqtt://10.0.0.1:1883"\n'


def test_without_a_name_the_identity_comes_from_the_board_serial_and_reaches_the_mqtt_client_id(gateway):
    bc, boot, root, data = gateway
    (boot / "relay.toml").write_text(relay_toml(data) + MQTT_SINK)
    bc.main()
    assert bc.errors == []
    assert (root / "etc/hostname").read_text() == "relay-a1b2c3d4\n"
    config = load_config(root)
    assert config.site == "relay-a1b2c3d4"
    assert config.sinks[0].client_id == "relay-relay-a1b2c3d4-broker"
    # Another board (here: no Pi serial, a machine id as in qemu) gets another name.
    (Path(os.environ["RELAY_HW_ROOT"]) / "proc/cpuinfo").write_text("processor\t: 0\n")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    bc.main()
    assert (root / "etc/hostname").read_text() == "relay-89abcdef\n"
    assert load_config(root).site == "relay-89abcdef"


def test_system_toml_names_the_site_and_relay_toml_wins_when_it_names_one(gateway):
    bc, boot, root, data = gateway
    (boot / "system.toml").write_text('[system]\nhostname = "gw-7"\nsite = "depot-7"\n')
    (boot / "relay.toml").write_text(relay_toml(data) + MQTT_SINK)
    bc.main()
    assert load_config(root).site == "depot-7"
    (boot / "relay.toml").write_text(relay_toml(data, **{"#site = ": "site = "}) + MQTT_SINK)
    bc.main()
    assert load_config(root).sinks[0].client_id == "relay-depot-1-broker"


def test_console_password_only_as_a_hash(gateway):
    bc, boot, root, _data = gateway
    digest = "$6$salt1234$" + "a" * 86
    (boot / "system.toml").write_text(f'[system]\nconsole_password_hash = "{digest}"\n')
    bc.main()
    assert (root / "etc/shadow").read_text().startswith(f"root:{digest}:")
    (boot / "system.toml").write_text('[system]\nconsole_password_hash = "hunter2"\n')
    bc.main()
    assert "never the password itself" in bc.errors[-1]
    assert (root / "etc/shadow").read_text().startswith(f"root:{digest}:")  # the section was not applied
    (boot / "system.toml").write_text("[system]\n")
    bc.main()
    assert (root / "etc/shadow").read_text().startswith("root:*:")


def test_ntp_unattended_upgrades_and_the_uart_switch(gateway):
    bc, boot, root, _data = gateway
    (boot / "system.toml").write_text(
        '[system]\nntp = ["ntp.example.com", "10.0.0.1"]\nunattended_upgrades = false\nuart = "modem"\n'
    )
    bc.main()
    assert bc.errors == []
    assert "NTP=ntp.example.com 10.0.0.1" in (root / "etc/systemd/timesyncd.conf.d/50-relay.conf").read_text()
    assert 'Unattended-Upgrade "0"' in (root / "etc/apt/apt.conf.d/20auto-upgrades").read_text()
    assert 'CONSOLES="tty0"\n' in (root / "etc/default/raspi-firmware").read_text()
    (boot / "system.toml").write_text("[system]\n")
    bc.main()
    assert not (root / "etc/systemd/timesyncd.conf.d/50-relay.conf").exists()
    assert 'Unattended-Upgrade "1"' in (root / "etc/apt/apt.conf.d/20auto-upgrades").read_text()
    assert 'CONSOLES="tty0 ttyS1,115200"' in (root / "etc/default/raspi-firmware").read_text()
    (boot / "system.toml").write_text('[system]\nuart = "gps"\n')
    bc.main()
    assert "uart = 'gps'" in bc.errors[-1]


def test_the_firewall_opens_ssh_the_relay_ports_and_the_extras(gateway):
    bc, boot, root, data = gateway
    (boot / "relay.toml").write_text(
        relay_toml(data) + '\n[status]\nlisten = "0.0.0.0:8080"\ntoken = "t0ken-t0ken-t0ken-t0ken"\n'
    )
    (boot / "system.toml").write_text("[firewall]\nallow_tcp = [502]\nallow_udp = [5020]\n")
    bc.main()
    assert bc.errors == []
    rules = (root / "etc/nftables.conf").read_text()
    assert "policy drop" in rules
    assert "tcp dport { 22, 502, 8080, 8888 } accept" in rules
    assert "udp dport { 5020, 8888 } accept" in rules
    (boot / "system.toml").write_text('[firewall]\nallow_tcp = ["ssh"]\n')
    bc.main()
    assert "tcp dport { 22, 8080, 8888 } accept" in (root / "etc/nftables.conf").read_text()
    assert "allow_tcp" in bc.errors[-1]


def test_secrets_move_off_the_card_at_first_use_and_stay_usable(gateway):
    bc, boot, root, data = gateway
    sink = MQTT_SINK + 'username = "u"\npassword = "mqtt-pass-1"\n'
    (boot / "relay.toml").write_bytes(relay_toml(data).replace("\n", "\r\n").encode() + sink.encode())
    (boot / "system.toml").write_text('[wifi]\nssid = "depot"\npsk = "wifi-pass-1"\ncountry = "CL"\n')
    bc.main()
    assert bc.errors == []
    card = (boot / "relay.toml").read_bytes() + (boot / "system.toml").read_bytes()
    assert b"mqtt-pass-1" not in card and b"wifi-pass-1" not in card
    assert bc.SCRUBBED.encode() in card
    assert b"\r\n" in (boot / "relay.toml").read_bytes()  # the file's own line endings are kept
    assert load_config(root).sinks[0].password == "mqtt-pass-1"
    wpa = root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
    assert 'psk="wifi-pass-1"' in wpa.read_text()
    assert stat.S_IMODE((root / "etc/relay/secrets.json").stat().st_mode) == 0o600
    # The next boot reads the placeholders and keeps the stored secrets; a new value replaces them.
    bc.errors.clear()
    bc.main()
    assert bc.errors == []
    assert load_config(root).sinks[0].password == "mqtt-pass-1"
    assert 'psk="wifi-pass-1"' in wpa.read_text()
    (boot / "system.toml").write_text('[wifi]\nssid = "depot"\npsk = "wifi-pass-2"\ncountry = "CL"\n')
    bc.main()
    assert 'psk="wifi-pass-2"' in wpa.read_text()
    assert b"wifi-pass-2" not in (boot / "system.toml").read_bytes()


def test_the_status_file_on_the_boot_partition_says_what_was_rejected(gateway):
    bc, boot, _root, data = gateway
    (boot / "relay.toml").write_text(relay_toml(data))
    bc.main()
    (boot / "relay.toml").write_text(relay_toml(data, **{"port = 8888": 'port = "eighty"'}))
    bc.errors.clear()
    bc.main()
    bc.main(["relay-boot-config", "--report"])
    raw = (boot / "relay-status.txt").read_bytes()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # Windows line endings throughout
    text = raw.decode()
    assert "relay.toml on this card: REJECTED" in text and "listen.port" in text
    assert "Last good config (the one running)" in text
    assert "Hostname:  relay-a1b2c3d4 (from the board serial)" in text
    assert "Last boot's log" in text
