"""A tiny TLS front: accepts HTTPS on 127.0.0.1 and passes the bytes to a plain HTTP server.

The OpenAI cookbook's parallel processor only accepts ``https://`` request URLs, and the
fake LLM server speaks plain HTTP. This front terminates TLS with a self-signed
certificate made at start-up (for ``127.0.0.1`` and ``localhost``) and copies bytes both
ways, so HTTP/1.1 keep-alive works unchanged. Clients trust it with
``SSL_CERT_FILE=CERT_DIR/cert.pem`` (OpenSSL's default verify paths read that variable).

    python -m infra.bench.tls_front --port 8620 --target-port 8605 --cert-dir DIR

It writes ``DIR/cert.pem`` and ``DIR/key.pem`` (0600), then listens; it stops on SIGTERM or
SIGINT. Loopback only: it refuses to bind or forward anywhere else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import ipaddress
import os
import signal
import ssl
import sys
from pathlib import Path

HOST = "127.0.0.1"
_CHUNK = 64 * 1024


def make_certificate(cert_dir: Path) -> tuple[Path, Path]:
    """A fresh self-signed P-256 certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "promptforge-bench-tls-front")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        # Its own trust anchor: a CA that may sign nothing below it.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_dir.mkdir(parents=True, exist_ok=True)
    key_path = cert_dir / "key.pem"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert_path = cert_dir / "cert.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(port: int, target_port: int, cert_path: Path, key_path: Path) -> None:
    """Listen on 127.0.0.1:port until cancelled; every connection is piped to 127.0.0.1:target_port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(HOST, target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))

    server = await asyncio.start_server(handle, HOST, port, ssl=context, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"tls_front: https://{HOST}:{port} -> http://{HOST}:{target_port}", file=sys.stderr, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="HTTPS port to listen on (127.0.0.1)")
    parser.add_argument("--target-port", type=int, required=True, help="plain HTTP port on 127.0.0.1 to forward to")
    parser.add_argument("--cert-dir", type=Path, required=True, help="where to write cert.pem and key.pem")
    args = parser.parse_args(argv)
    cert_path, key_path = make_certificate(args.cert_dir)
    asyncio.run(serve(args.port, args.target_port, cert_path, key_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
