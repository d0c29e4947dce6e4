"""MQTT over TLS (mqtts://) to a real mosquitto with a private CA: verified, and refused when unverifiable."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests import devices
from tests.broker import Mosquitto
from tests.relay.harness import running_relay, wait_until

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl is needed to make certificates"
)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    )
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


@pytest.fixture
def tls_broker(tmp_path: Path):
    ca, cert, key = make_certificates(tmp_path)
    broker = Mosquitto(tmp_path)
    broker.config.write_text(broker.config.read_text() + f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
    broker.start()
    yield broker, ca
    broker.stop()


async def test_tls_with_the_private_ca_delivers_and_an_unknown_ca_is_refused(
    tmp_path: Path, tls_broker
) -> None:
    broker, ca = tls_broker
    url = f"mqtts://127.0.0.1:{broker.port}"
    sink = {
        "name": "tls",
        "type": "mqtt",
        "url": url,
        "topic_prefix": "relay/tls",
        "ca_file": str(ca),
        "retry_min_s": 0.2,
        "retry_max_s": 0.5,
    }
    async with running_relay(tmp_path / "ok", sinks=[sink]) as relay:
        await devices.tcp_exchange(relay.port, [devices.gps103_position("868683020419374", 1)], replies=1)
        await wait_until(lambda: relay.sinks[0].acknowledged == 1, what="a PUBACK over TLS")
    untrusted = {key: value for key, value in sink.items() if key != "ca_file"}  # system CAs only
    async with running_relay(tmp_path / "bad", sinks=[untrusted]) as relay:
        await wait_until(lambda: relay.sinks[0].last_error is not None, what="a refused certificate")
        assert not relay.sinks[0].connected
        assert "certificate" in relay.sinks[0].last_error.lower()
