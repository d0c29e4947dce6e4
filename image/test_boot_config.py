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
    assert (root / "etc/relay/relay.toml").read_text() == relay_toml(data)
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
    assert not (root / "etc/hostname").exists()
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
