"""The certificates etcd is run with: a private CA, a member certificate and a client one.

An etcd that kukeon starts (the embedded one, the tests', ``hack/etcd-cluster.sh``'s)
accepts only clients that show a certificate of its own CA: a local user who can reach
its listener but cannot read the key (``0600`` in a ``0700`` directory) gets nothing.
``ensure_pki`` makes the files on first use and keeps them afterwards; it makes again only
what is missing, unparseable, not signed by the current CA, not matching its key, short of
a requested name, within ``RENEW_BEFORE`` of expiry or past it, or not valid yet by the
clock (a new CA brings new leaves); a certificate made again for its dates is said in a
warning. Each is valid from ``BACKDATE`` before it is made, so a clock stepped back by
less than that finds it valid still.

- ``ca.crt``/``ca.key``: the CA (EC P-256, ``CA_DAYS``).
- ``member.crt``/``member.key``: etcd's own certificate, for the client listener and the
  peer listener alike (serverAuth and clientAuth, common name ``MEMBER_NAME``); etcd is
  told to accept only that name on its peer port, so a client certificate cannot join.
- ``client.crt``/``client.key``: what kukeond, the tests and the tools present.

Files are written atomically (temporary file, fsync, rename), keys ``0600``, everything in
a directory kept ``0700``. ``python -m kukeon.store.pki DIR [--host H]...`` does the same
for shell scripts.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kukeon.fileio import write_atomically

log = logging.getLogger(__name__)

DEFAULT_HOSTS = ("127.0.0.1", "localhost")
"""The names an etcd on loopback is dialed by (the embedded etcd, on unix sockets, asks
for its own: ``EmbeddedEtcd``)."""
MEMBER_NAME = "kukeon-etcd-member"
CLIENT_NAME = "kukeon-etcd-client"
CA_DAYS = 3650
LEAF_DAYS = 1825
RENEW_BEFORE = datetime.timedelta(days=30)
"""A certificate this close to its end is replaced at the next ``ensure_pki``."""
BACKDATE = datetime.timedelta(days=2)
"""How long before it is made a certificate is valid from. A clock stepped back after the
files were made (NTP correcting a host that booted ahead: a hardware clock kept in local
time, a VM resumed from an old snapshot) would otherwise find them not valid yet, and
etcd and its clients refuse such a certificate at every new connection until the clock
passes its start: an hour covered only a member slightly behind another."""

_KEY_MODE = 0o600
_CERT_MODE = 0o600  # nothing here needs to be read by anyone but root


@dataclass(frozen=True)
class EtcdPki:
    """Where the files of one PKI directory are."""

    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key_file(self) -> Path:
        return self.directory / "ca.key"

    @property
    def member_cert_file(self) -> Path:
        return self.directory / "member.crt"

    @property
    def member_key_file(self) -> Path:
        return self.directory / "member.key"

    @property
    def client_cert_file(self) -> Path:
        return self.directory / "client.crt"

    @property
    def client_key_file(self) -> Path:
        return self.directory / "client.key"

    def etcd_args(self) -> list[str]:
        """etcd's flags for mutual TLS on both listeners (file paths only, no secrets)."""
        return [
            "--client-cert-auth",
            "--trusted-ca-file", str(self.ca_file),
            "--cert-file", str(self.member_cert_file),
            "--key-file", str(self.member_key_file),
            "--peer-client-cert-auth",
            "--peer-trusted-ca-file", str(self.ca_file),
            "--peer-cert-file", str(self.member_cert_file),
            "--peer-key-file", str(self.member_key_file),
            "--peer-cert-allowed-cn", MEMBER_NAME,
        ]  # fmt: skip

    def client_context(self) -> ssl.SSLContext:
        """An ``ssl`` context that verifies etcd by this CA and presents the client cert."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        context.load_cert_chain(str(self.client_cert_file), str(self.client_key_file))
        return context


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kukeon"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _subject_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _save(
    key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, key_file: Path, cert_file: Path
) -> None:
    # The key first: a crash in between leaves a certificate that does not match its key,
    # which the next run replaces.
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomically(key_file, key_pem, mode=_KEY_MODE)
    write_atomically(cert_file, cert.public_bytes(serialization.Encoding.PEM), mode=_CERT_MODE)


def _load(
    key_file: Path, cert_file: Path
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    """The pair when both parse and belong together, else None."""
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return None
    if public.public_numbers() != key.public_key().public_numbers():
        return None
    return key, cert


def _stale(cert: x509.Certificate, now: datetime.datetime) -> str | None:
    """Why ``cert`` cannot serve on (None: it can), as the clock reads ``now``."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if start > now:
        return (
            f"it is not valid before {_shown(start)} and the clock reads {_shown(now)}: "
            "was the clock stepped back since it was made?"
        )
    if end <= now:
        return f"it expired at {_shown(end)} (the clock reads {_shown(now)})"
    if end - RENEW_BEFORE <= now:
        return f"it expires at {_shown(end)}, within {RENEW_BEFORE.days} days"
    return None


def _shown(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _remade(path: Path, why: str) -> None:
    log.warning("etcd certificate %s is made again: %s", path, why)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _new_key()
    name = _name("kukeon etcd CA")
    cert = (
        _builder(name, name, key, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_leaf(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    common_name: str,
    usages: Sequence[x509.ObjectIdentifier],
    hosts: Sequence[str],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    ca_key, ca_cert = ca
    key = _new_key()
    builder = (
        _builder(_name(common_name), ca_cert.subject, key, LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_subject_names(hosts)), critical=False
        )
    return key, builder.sign(ca_key, hashes.SHA256())


def _leaf_ok(cert: x509.Certificate, ca_cert: x509.Certificate, hosts: Sequence[str]) -> bool:
    """Signed by ``ca_cert`` and naming every one of ``hosts`` (its dates: ``_stale``)."""
    if cert.issuer != ca_cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    if not hosts:
        return True
    try:
        present = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return all(name in present for name in _subject_names(hosts))


def ensure_pki(directory: Path, *, hosts: Sequence[str] = DEFAULT_HOSTS) -> EtcdPki:
    """Make (or keep) the CA, member and client certificates in ``directory``.

    ``hosts``: the IP addresses and DNS names the member certificate must name (every
    address clients and peers dial). Blocking (file I/O, key generation): call it from a
    thread in async code.
    """
    pki = EtcdPki(Path(directory))
    pki.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(pki.directory, 0o700)
    now = _now()

    ca = _load(pki.ca_key_file, pki.ca_file)
    why = None if ca is None else _stale(ca[1], now)
    new_ca = ca is None or why is not None
    if why is not None:
        _remade(pki.ca_file, f"{why} (the leaves are made again under the new CA)")
    if ca is None or new_ca:
        ca = _make_ca()
        _save(*ca, pki.ca_key_file, pki.ca_file)

    leaves = (
        (
            pki.member_key_file,
            pki.member_cert_file,
            MEMBER_NAME,
            (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
            tuple(hosts),
        ),
        (
            pki.client_key_file,
            pki.client_cert_file,
            CLIENT_NAME,
            (ExtendedKeyUsageOID.CLIENT_AUTH,),
            (),
        ),
    )
    for key_file, cert_file, common_name, usages, names in leaves:
        current = None if new_ca else _load(key_file, cert_file)
        why = None if current is None else _stale(current[1], now)
        if why is not None:
            _remade(cert_file, why)
        elif current is not None and _leaf_ok(current[1], ca[1], names):
            # Keys written by an older version may be wider than 0600.
            for path in (key_file, cert_file):
                if path.stat().st_mode & 0o077:
                    os.chmod(path, _KEY_MODE)
            continue
        _save(*_make_leaf(ca, common_name, usages, names), key_file, cert_file)
    for path in (pki.ca_key_file, pki.ca_file):
        if path.stat().st_mode & 0o077:
            os.chmod(path, _KEY_MODE)
    return pki


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kukeon.store.pki",
        description="Make (or keep) etcd's CA, member and client certificates in DIR.",
    )
    parser.add_argument("directory", type=Path, metavar="DIR")
    parser.add_argument(
        "--host",
        action="append",
        dest="hosts",
        metavar="HOST",
        help="an IP address or DNS name etcd is dialed by (repeatable; "
        f"default {', '.join(DEFAULT_HOSTS)})",
    )
    arguments = parser.parse_args(argv)
    try:
        ensure_pki(arguments.directory, hosts=tuple(arguments.hosts or DEFAULT_HOSTS))
    except OSError as error:
        print(f"kukeon.store.pki: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
