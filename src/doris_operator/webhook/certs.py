"""The webhook's serving certificate: a self-signed CA and a serving certificate the operator issues,
keeps in a Secret and rotates, or files mounted by cert-manager.

Rotation with the operator's own CA, in steps that never leave the apiserver without a way to verify
the certificate being served (every replica runs the same steps; the Secret is the only state, written
with optimistic concurrency):

1. **stage**: when the serving certificate has less than ``renew_fraction`` of its validity left, issue a
   new CA and a certificate signed by it, store them as ``next``, and add the new CA to ``ca.crt``;
2. **publish**: put ``ca.crt`` (old and new CA) into the webhook configurations, then record when;
3. **promote**: once the bundle has been published for ``propagation`` (the apiserver's informer
   picks it up), serve ``next``.  Connections made before keep their certificate, new ones get the new
   one; both verify against the bundle;
4. **prune**: a CA leaves the bundle when it has expired, so nothing it signed is valid any more.

A CA signs exactly one serving certificate and its private key is dropped at once: the Secret never
holds a key that could sign anything else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, Subject, VerificationError

log = logging.getLogger(__name__)

TLS_CRT = "tls.crt"
TLS_KEY = "tls.key"
CA_CRT = "ca.crt"
NEXT_CRT = "next.crt"
NEXT_KEY = "next.key"
ANNOTATION_PUBLISHED = "doris.apache.org/webhook-ca-published-at"
"""When the bundle holding ``next``'s CA was put into the webhook configurations."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class KeyPair:
    """A serving certificate (PEM) and its private key (PEM)."""

    cert_pem: bytes
    key_pem: bytes

    @cached_property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def not_before(self) -> dt.datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.cert_pem + self.key_pem).hexdigest()

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    def hosts(self) -> set[str]:
        try:
            san = self.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return set()
        names = set(san.get_values_for_type(x509.DNSName))
        return names | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}

    def covers(self, hosts: Iterable[str]) -> bool:
        return set(hosts) <= self.hosts()

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.not_after

    def due(self, now: dt.datetime, renew_fraction: float) -> bool:
        """Less than ``renew_fraction`` of the validity left (or not valid yet or any more)."""
        window = (self.not_after - self.not_before).total_seconds()
        left = (self.not_after - now).total_seconds()
        return now < self.not_before or left < window * renew_fraction

    def check(self) -> None:
        """Raise ValueError unless the key belongs to the certificate."""
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        cert_key = self.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if (
            key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            != cert_key
        ):
            raise ValueError("the private key does not belong to the certificate")


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def backdate(validity: dt.timedelta) -> dt.timedelta:
    """How far before "now" a certificate starts: tolerates clock skew between the operator and the
    apiserver (5 minutes; a tenth of the validity for the short ones tests use)."""
    return min(dt.timedelta(minutes=5), validity / 10)


def issue(hosts: list[str], validity: dt.timedelta, now: dt.datetime | None = None) -> tuple[KeyPair, bytes]:
    """A new CA and a serving certificate for ``hosts`` signed by it: ``(serving pair, CA PEM)``.
    Both end at ``now + validity``; the CA's key is not returned."""
    if not hosts:
        raise ValueError("a serving certificate needs at least one host name or IP")
    now = now or utcnow()
    start, end = now - backdate(validity), now + validity
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "doris-operator"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"doris-operator-webhook-ca-{int(now.timestamp())}"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
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
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pair = KeyPair(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    return pair, ca.public_bytes(serialization.Encoding.PEM)


def load_bundle(pem: bytes) -> list[x509.Certificate]:
    if not pem.strip():
        return []
    return x509.load_pem_x509_certificates(pem)


def dump_bundle(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass(frozen=True)
class RotationPolicy:
    validity: dt.timedelta = dt.timedelta(days=90)
    renew_fraction: float = 1 / 3
    propagation: dt.timedelta = dt.timedelta(seconds=30)
    """How long a new CA is in the published bundle before its certificate is served."""

    def __post_init__(self) -> None:
        if self.validity <= dt.timedelta(seconds=3):
            raise ValueError("certificate validity must be more than 3 seconds")
        if not 0 < self.renew_fraction < 1:
            raise ValueError("renew_fraction must be between 0 and 1")

    @property
    def effective_propagation(self) -> dt.timedelta:
        """``propagation``, at most a tenth of the validity, so promotion always happens well before the
        serving certificate expires (it is renewed with ``renew_fraction`` of the validity left)."""
        return min(self.propagation, self.validity * min(0.1, self.renew_fraction / 3))


@dataclass(frozen=True)
class CertState:
    """What the Secret holds."""

    current: KeyPair | None = None
    next: KeyPair | None = None
    bundle: tuple[x509.Certificate, ...] = ()
    published_at: dt.datetime | None = None
    """When the bundle with ``next``'s CA was published; None while it has not been."""
    resource_version: str | None = field(default=None, compare=False)

    @property
    def bundle_pem(self) -> bytes:
        return dump_bundle(self.bundle)

    def data(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {CA_CRT: self.bundle_pem}
        if self.current is not None:
            out[TLS_CRT], out[TLS_KEY] = self.current.cert_pem, self.current.key_pem
        if self.next is not None:
            out[NEXT_CRT], out[NEXT_KEY] = self.next.cert_pem, self.next.key_pem
        return out

    def annotations(self) -> dict[str, str]:
        if self.next is not None and self.published_at is not None:
            return {ANNOTATION_PUBLISHED: self.published_at.isoformat()}
        return {}

    @classmethod
    def from_secret(
        cls, data: Mapping[str, bytes], annotations: Mapping[str, str], resource_version: str | None = None
    ) -> CertState:
        """The state in a Secret; unusable parts (malformed PEM, a key of another certificate) are
        dropped, so the next :func:`plan` replaces them."""

        def pair(crt: str, key: str) -> KeyPair | None:
            if not data.get(crt) or not data.get(key):
                return None
            candidate = KeyPair(data[crt], data[key])
            try:
                candidate.check()
            except ValueError as err:
                log.warning("ignoring %s/%s in the certificate Secret: %s", crt, key, err)
                return None
            return candidate

        try:
            bundle = tuple(load_bundle(data.get(CA_CRT, b"")))
        except ValueError as err:
            log.warning("ignoring the malformed %s in the certificate Secret: %s", CA_CRT, err)
            bundle = ()
        published: dt.datetime | None = None
        if annotations.get(ANNOTATION_PUBLISHED):
            try:
                published = dt.datetime.fromisoformat(annotations[ANNOTATION_PUBLISHED])
            except ValueError:
                published = None
        nxt = pair(NEXT_CRT, NEXT_KEY)
        return cls(
            current=pair(TLS_CRT, TLS_KEY),
            next=nxt,
            bundle=bundle,
            published_at=published if nxt is not None else None,
            resource_version=resource_version,
        )


def _with_ca(bundle: tuple[x509.Certificate, ...], pem: bytes) -> tuple[x509.Certificate, ...]:
    return (*bundle, *load_bundle(pem))


def plan(state: CertState, hosts: list[str], policy: RotationPolicy, now: dt.datetime) -> CertState:
    """The next state of the certificate Secret (``state`` itself when nothing is due).  Pure."""
    current, nxt, bundle, published = state.current, state.next, state.bundle, state.published_at
    if nxt is not None and (nxt.expired(now) or not nxt.covers(hosts)):
        nxt, published = None, None
    if current is None or current.expired(now):
        # Nothing valid to serve meanwhile: use the staged certificate, or a new one, at once.
        if nxt is not None:
            current, nxt, published = nxt, None, None
        else:
            current, ca_pem = issue(hosts, policy.validity, now)
            bundle = _with_ca(bundle, ca_pem)
    elif nxt is None and (
        current.due(now, policy.renew_fraction)
        or not current.covers(hosts)
        or not verify_chain(current, bundle, hosts[0], now)
    ):
        nxt, ca_pem = issue(hosts, policy.validity, now)
        bundle, published = _with_ca(bundle, ca_pem), None
    elif (
        nxt is not None
        and published is not None
        and now - published >= policy.effective_propagation
        and now >= nxt.not_before
    ):
        current, nxt, published = nxt, None, None
    # Prune expired CAs and duplicates; keep the order (oldest first).
    kept: list[x509.Certificate] = []
    for ca in bundle:
        if ca.not_valid_after_utc > now and ca not in kept:
            kept.append(ca)
    return replace(state, current=current, next=nxt, bundle=tuple(kept), published_at=published)


def verify_chain(pair: KeyPair, bundle: Iterable[x509.Certificate], host: str, now: dt.datetime) -> bool:
    """Whether a client trusting ``bundle`` accepts ``pair`` for ``host`` at ``now``."""
    certs = list(bundle)
    if not certs:
        return False
    try:
        subject: Subject
        try:
            subject = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            subject = x509.DNSName(host)
        verifier = PolicyBuilder().store(Store(certs)).time(now).build_server_verifier(subject)
        verifier.verify(pair.certificate, [])
    except (VerificationError, ValueError):
        return False
    return True


@dataclass
class CertDir:
    """cert-manager mode: ``tls.crt`` and ``tls.key`` in a mounted Secret directory, reread on change.

    The kubelet updates a mounted Secret by swapping a symlink, so both files change at once; the pair is
    checked (key matches certificate) before it is used, and a half-written pair is retried later."""

    path: Path
    cert_file: str = TLS_CRT
    key_file: str = TLS_KEY

    def read(self) -> KeyPair:
        pair = KeyPair((self.path / self.cert_file).read_bytes(), (self.path / self.key_file).read_bytes())
        pair.check()
        return pair
