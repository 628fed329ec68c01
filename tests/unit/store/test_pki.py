"""etcd's certificates: made once, kept, and made again only when they cannot serve."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kukeon.store import pki as pki_module
from kukeon.store.pki import CLIENT_NAME, MEMBER_NAME, EtcdPki, ensure_pki, main


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _files(pki: EtcdPki) -> list[Path]:
    return [
        pki.ca_file,
        pki.ca_key_file,
        pki.member_cert_file,
        pki.member_key_file,
        pki.client_cert_file,
        pki.client_key_file,
    ]


def _contents(pki: EtcdPki) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in _files(pki)}


def test_first_call_makes_a_private_ca_and_two_leaves(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki")
    assert stat.S_IMODE(pki.directory.stat().st_mode) == 0o700
    for path in _files(pki):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert sorted(p.name for p in pki.directory.iterdir()) == sorted(p.name for p in _files(pki))

    ca = _cert(pki.ca_file)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    member, client = _cert(pki.member_cert_file), _cert(pki.client_cert_file)
    for leaf in (member, client):
        leaf.verify_directly_issued_by(ca)
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert member.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == MEMBER_NAME
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CLIENT_NAME
    usages = member.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    names = member.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_later_calls_keep_everything(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    before = _contents(pki)
    ensure_pki(tmp_path)
    assert _contents(pki) == before


def test_wider_modes_are_narrowed(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki")
    pki.client_key_file.chmod(0o644)
    pki.directory.chmod(0o755)
    ensure_pki(pki.directory)
    assert stat.S_IMODE(pki.client_key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.directory.stat().st_mode) == 0o700


def test_a_missing_or_broken_leaf_is_made_again_under_the_same_ca(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    before = _contents(pki)
    pki.client_key_file.unlink()
    pki.member_cert_file.write_text("not a certificate")
    ensure_pki(tmp_path)
    after = _contents(pki)
    assert after["ca.crt"] == before["ca.crt"]
    assert after["ca.key"] == before["ca.key"]
    assert after["client.key"] != before["client.key"]
    assert after["member.crt"] != before["member.crt"]
    _cert(pki.member_cert_file).verify_directly_issued_by(_cert(pki.ca_file))


def test_a_key_that_does_not_match_its_certificate_is_replaced(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    pki.client_key_file.write_bytes(pki.member_key_file.read_bytes())
    ensure_pki(tmp_path)
    key = pki_module._load(pki.client_key_file, pki.client_cert_file)
    assert key is not None


def test_a_new_ca_brings_new_leaves(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    before = _contents(pki)
    pki.ca_key_file.unlink()
    ensure_pki(tmp_path)
    after = _contents(pki)
    assert all(after[name] != before[name] for name in after)
    for leaf in (pki.member_cert_file, pki.client_cert_file):
        _cert(leaf).verify_directly_issued_by(_cert(pki.ca_file))


def test_a_certificate_close_to_its_end_is_renewed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = ensure_pki(tmp_path)
    before = _contents(pki)
    end = _cert(pki.member_cert_file).not_valid_after_utc
    later = end - pki_module.RENEW_BEFORE + datetime.timedelta(days=1)
    monkeypatch.setattr(pki_module, "_now", lambda: later)
    ensure_pki(tmp_path)
    after = _contents(pki)
    assert after["ca.crt"] == before["ca.crt"]  # ten years: still fresh
    assert after["member.crt"] != before["member.crt"]
    assert after["client.crt"] != before["client.crt"]


def test_a_new_host_gets_a_new_member_certificate(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    before = _contents(pki)
    ensure_pki(tmp_path, hosts=("10.213.0.1", "127.0.0.1"))
    after = _contents(pki)
    assert after["member.crt"] != before["member.crt"]
    assert after["client.crt"] == before["client.crt"]
    names = _cert(pki.member_cert_file).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert {str(a) for a in names.value.get_values_for_type(x509.IPAddress)} == {
        "10.213.0.1",
        "127.0.0.1",
    }


def test_a_leaf_signed_by_another_ca_is_replaced(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "a")
    other = ensure_pki(tmp_path / "b")
    for name in ("client.crt", "client.key"):
        (pki.directory / name).write_bytes((other.directory / name).read_bytes())
    ensure_pki(pki.directory)
    client = _cert(pki.client_cert_file)
    client.verify_directly_issued_by(_cert(pki.ca_file))
    assert client.signature_hash_algorithm is not None
    assert isinstance(client.signature_hash_algorithm, hashes.SHA256)


def test_etcd_args_name_files_only(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    args = pki.etcd_args()
    assert "--client-cert-auth" in args
    assert "--peer-client-cert-auth" in args
    assert args[args.index("--peer-cert-allowed-cn") + 1] == MEMBER_NAME
    secrets = {path.read_text() for path in (pki.ca_key_file, pki.member_key_file)}
    assert not any(secret in argument for argument in args for secret in secrets)


def test_command_line_entry_point(tmp_path: Path) -> None:
    assert main([str(tmp_path / "pki"), "--host", "10.0.0.1"]) == 0
    member = _cert(tmp_path / "pki" / "member.crt")
    names = member.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]


def test_a_clock_stepped_back_a_day_finds_the_certificates_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host that made them with its clock ahead (a hardware clock in local time, a VM
    resumed) and was corrected back: they are kept, and etcd and its clients take them."""
    pki = ensure_pki(tmp_path)
    before = _contents(pki)
    earlier = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    monkeypatch.setattr(pki_module, "_now", lambda: earlier)
    ensure_pki(tmp_path)
    assert _contents(pki) == before
    for path in (pki.ca_file, pki.member_cert_file, pki.client_cert_file):
        assert _cert(path).not_valid_before_utc <= earlier


def test_a_clock_stepped_back_past_their_start_makes_them_again_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pki = ensure_pki(tmp_path)
    before = _contents(pki)
    earlier = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)
    monkeypatch.setattr(pki_module, "_now", lambda: earlier)
    with caplog.at_level("WARNING", logger=pki_module.__name__):
        ensure_pki(tmp_path)
    after = _contents(pki)
    assert all(after[name] != before[name] for name in after)
    for leaf in (pki.member_cert_file, pki.client_cert_file):
        _cert(leaf).verify_directly_issued_by(_cert(pki.ca_file))
        assert _cert(leaf).not_valid_before_utc <= earlier
    [said] = [r.getMessage() for r in caplog.records]
    assert str(pki.ca_file) in said
    assert "not valid before" in said
    assert "stepped back" in said


def test_an_expired_certificate_is_made_again_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pki = ensure_pki(tmp_path)
    later = _cert(pki.ca_file).not_valid_after_utc + datetime.timedelta(days=1)
    monkeypatch.setattr(pki_module, "_now", lambda: later)
    with caplog.at_level("WARNING", logger=pki_module.__name__):
        ensure_pki(tmp_path)
    assert _cert(pki.ca_file).not_valid_after_utc > later
    [said] = [r.getMessage() for r in caplog.records]
    assert "expired at" in said


def test_a_leaf_close_to_its_end_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pki = ensure_pki(tmp_path)
    end = _cert(pki.client_cert_file).not_valid_after_utc
    later = end - pki_module.RENEW_BEFORE + datetime.timedelta(days=1)
    monkeypatch.setattr(pki_module, "_now", lambda: later)
    with caplog.at_level("WARNING", logger=pki_module.__name__):
        ensure_pki(tmp_path)
    said = sorted(r.getMessage() for r in caplog.records)
    assert len(said) == 2  # the member and client leaves; the CA has years left
    assert all("within 30 days" in line for line in said)
