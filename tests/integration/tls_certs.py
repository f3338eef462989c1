"""Certificates for the TLS tests, made by the test run itself (Python's
`cryptography`): a test CA, and servers' certificates signed by it for
127.0.0.1 and localhost, for another host name, and already expired; plus a
second CA that nothing trusts, and a certificate it signed.

    certs = make_certs(tmp_dir)
    certs.ca            # the trusted CA's certificate (PEM file)
    certs.good          # (cert PEM, key PEM) for 127.0.0.1 / localhost
    certs.wrong_host    # for wrong-host.invalid only
    certs.expired       # for 127.0.0.1, valid until yesterday
    certs.unknown_ca    # for 127.0.0.1, signed by the untrusted CA
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Certs:
    ca: Path
    good: tuple[Path, Path]
    wrong_host: tuple[Path, Path]
    expired: tuple[Path, Path]
    unknown_ca: tuple[Path, Path]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _ca(cn: str, now: datetime.datetime):
    key = _key()
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key, ca_cert, names, not_before, not_after):
    key = _key()
    sans = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n)
            for n in names]
    cert = (x509.CertificateBuilder()
            .subject_name(_name(names[0])).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def _write(folder: Path, stem: str, key, cert) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def make_certs(folder: Path) -> Certs:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, ca_cert = _ca("stoker test CA", now)
    other_key, other_cert = _ca("stoker untrusted CA", now)
    ca_path = folder / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    day = datetime.timedelta(days=1)
    local = ["127.0.0.1", "localhost"]
    return Certs(
        ca=ca_path,
        good=_write(folder, "good", *_leaf(ca_key, ca_cert, local, now - day, now + 30 * day)),
        wrong_host=_write(folder, "wrong_host",
                          *_leaf(ca_key, ca_cert, ["wrong-host.invalid"], now - day, now + 30 * day)),
        expired=_write(folder, "expired",
                       *_leaf(ca_key, ca_cert, local, now - 30 * day, now - day)),
        unknown_ca=_write(folder, "unknown_ca",
                          *_leaf(other_key, other_cert, local, now - day, now + 30 * day)),
    )
