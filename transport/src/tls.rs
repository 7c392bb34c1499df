//! TLS identities and pinned-key certificate verification (§7.2, §7.3).
//!
//! A node's TLS certificate is a self-signed X.509 certificate whose SubjectPublicKeyInfo is
//! the node's Ed25519 identity key (RFC 8410). Identity is the pinned key and nothing else:
//! the certificate's names, validity dates, extensions and self-signature are never
//! consulted, so an expired or oddly named certificate of a pinned key is accepted and a
//! perfectly formed certificate of an unpinned key is refused. Possession of the key is
//! proven by the TLS 1.3 `CertificateVerify` signature, which must be Ed25519.
//!
//! Both sides authenticate (§7.3): a server demands a client certificate and pins it against
//! the roster's keys; a client pins the server against the one key it meant to reach.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use quorate_crypto::{IdentityError, KeyId, PublicKey, SecretKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, PeerIncompatible,
    SignatureScheme,
};
use zeroize::Zeroizing;

/// ALPN protocol identifier of this protocol version (§7.4).
pub const ALPN: &[u8] = b"quorate/1";

/// DNS-name suffix of certificate subject names and of the SNI a client sends (§7.2).
/// Informational only: names are never verified.
pub const NAME_SUFFIX: &str = "node.quorate.invalid";

/// RFC 8410 object identifier of Ed25519 public keys: 1.3.101.112.
const ED25519_OID: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.3.101.112");

/// The only signature scheme offered or accepted (§7.2).
const SCHEMES: [SignatureScheme; 1] = [SignatureScheme::ED25519];

/// Errors building a TLS identity or configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The identity key could not be exported as PKCS#8.
    #[error("cannot export the node key for TLS: {0}")]
    KeyExport(#[source] IdentityError),
    /// Certificate generation failed.
    #[error("cannot generate the node certificate: {0}")]
    Certificate(#[source] rcgen::Error),
    /// The generated certificate does not carry the node's key (internal consistency check).
    #[error("the generated certificate does not carry the node's Ed25519 key")]
    CertificateKeyMismatch,
    /// rustls refused the key or the configuration.
    #[error("TLS configuration error: {0}")]
    Rustls(#[source] rustls::Error),
    /// The TLS configuration lacks the cipher suite QUIC needs for Initial packets.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(#[source] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// Why a peer's certificate or handshake signature was refused (§7.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerRefusal {
    /// The peer sent no certificate, or more than one (§7.2: exactly one).
    #[error("the peer sent {0} certificates; exactly one self-signed certificate is required")]
    ChainLength(usize),
    /// The certificate is not a well-formed X.509 v3 DER certificate.
    #[error("the peer's certificate is not a well-formed X.509 v3 certificate")]
    MalformedCertificate,
    /// The certificate's SubjectPublicKeyInfo is not an RFC 8410 Ed25519 key.
    #[error("the peer's certificate does not carry an Ed25519 key")]
    NotEd25519,
    /// The Ed25519 key is malformed or weak (§2.1).
    #[error("the peer's certificate carries an unusable Ed25519 key: {0}")]
    InvalidKey(IdentityError),
    /// The key is valid but not pinned: not in the roster, or not the node the client meant
    /// to reach.
    #[error("the peer's key {key_id} is not pinned")]
    NotPinned {
        /// Key id (§2.2) of the key the peer presented.
        key_id: KeyId,
    },
    /// The handshake was signed with a scheme other than Ed25519.
    #[error(
        "the peer signed the handshake with scheme {0:#06x}; only Ed25519 (0x0807) is accepted"
    )]
    SignatureScheme(u16),
    /// The peer attempted TLS 1.2.
    #[error("the peer attempted TLS 1.2; only TLS 1.3 is accepted")]
    Tls12,
    /// The `CertificateVerify` signature does not verify under the certificate's key.
    #[error("the peer's handshake signature does not verify under its certificate's key")]
    BadHandshakeSignature,
}

/// The set of Ed25519 keys a verifier accepts (§7.3), shared and updatable.
///
/// Clones share one set: replacing the keys (for a new roster) takes effect for every
/// handshake that starts afterwards. Established connections are not affected by the set
/// itself: a server closes those of removed keys with
/// [`MeshEndpoint::close_unpinned`](super::MeshEndpoint::close_unpinned) (§10.3.1).
#[derive(Clone, Debug, Default)]
pub struct PinnedKeys {
    inner: Arc<RwLock<HashSet<PublicKey>>>,
}

impl PinnedKeys {
    /// An empty set: refuses everyone.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding `keys`.
    pub fn from_keys(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        Self {
            inner: Arc::new(RwLock::new(keys.into_iter().collect())),
        }
    }

    /// Adds a key; returns false if it was already pinned.
    pub fn insert(&self, key: PublicKey) -> bool {
        self.write().insert(key)
    }

    /// Removes a key; returns false if it was not pinned.
    pub fn remove(&self, key: &PublicKey) -> bool {
        self.write().remove(key)
    }

    /// Replaces the whole set, e.g. from a newly verified roster.
    pub fn replace(&self, keys: impl IntoIterator<Item = PublicKey>) {
        *self.write() = keys.into_iter().collect();
    }

    /// Whether `key` is pinned.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.read().contains(key)
    }

    /// Number of pinned keys.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no key is pinned.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    // A panic while holding the lock cannot leave a `HashSet` half-updated in a way that
    // matters here, so a poisoned lock is used as is.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashSet<PublicKey>> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashSet<PublicKey>> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A node's TLS identity: its self-signed certificate and the matching rustls signing key.
///
/// Built once per process from the node's [`SecretKey`]; cheap to share behind an `Arc`.
pub struct TlsIdentity {
    public_key: PublicKey,
    certified: Arc<CertifiedKey>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("key_id", &self.public_key.key_id())
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Builds the certificate profile of §7.2 for `secret`.
    ///
    /// Every intermediate copy of the private key (PEM, PKCS#8 DER, rcgen's key pair) is
    /// zeroized when this returns; the remaining copy lives inside ring's Ed25519 key pair.
    pub fn from_secret_key(secret: &SecretKey) -> Result<Self, TlsError> {
        let public_key = secret.public_key();
        let pem = secret.to_pem().map_err(TlsError::KeyExport)?;
        let key_pair =
            Zeroizing::new(rcgen::KeyPair::from_pem(pem.as_str()).map_err(TlsError::Certificate)?);
        if key_pair.algorithm() != &rcgen::PKCS_ED25519 {
            return Err(TlsError::CertificateKeyMismatch);
        }

        let name = format!("{}.{NAME_SUFFIX}", public_key.key_id());
        let mut params =
            rcgen::CertificateParams::new(vec![name.clone()]).map_err(TlsError::Certificate)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        // rcgen's defaults give a validity from 1975 to 4096: dates are not part of the
        // identity (§7.2), and a wide window keeps peers with skewed clocks interoperable.
        let cert = params
            .self_signed(&*key_pair)
            .map_err(TlsError::Certificate)?;
        let cert_der = cert.der().clone();

        let pkcs8 = Zeroizing::new(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        let signing_key =
            rustls::crypto::ring::sign::any_eddsa_type(&pkcs8).map_err(TlsError::Rustls)?;

        // The certificate must carry exactly the identity key.
        if public_key_of(&cert_der).ok() != Some(public_key) {
            return Err(TlsError::CertificateKeyMismatch);
        }
        let certified = CertifiedKey::new(vec![cert_der], signing_key);
        certified.keys_match().map_err(TlsError::Rustls)?;
        Ok(Self {
            public_key,
            certified: Arc::new(certified),
        })
    }

    /// The identity key the certificate carries.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// The DER certificate presented to peers.
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.certified.cert[0]
    }

    pub(crate) fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.certified)
    }
}

/// Extracts the Ed25519 key from a certificate's SubjectPublicKeyInfo (§7.3).
///
/// The certificate is parsed as X.509 v3 by webpki; the SPKI is decoded as DER and must be
/// the RFC 8410 Ed25519 algorithm with absent parameters and a 32-octet key that passes the
/// weak-key checks of §2.1.
pub fn public_key_of(cert: &CertificateDer<'_>) -> Result<PublicKey, PeerRefusal> {
    use spki::der::Decode;

    let parsed =
        webpki::EndEntityCert::try_from(cert).map_err(|_| PeerRefusal::MalformedCertificate)?;
    let spki_der = parsed.subject_public_key_info();
    let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der.as_ref())
        .map_err(|_| PeerRefusal::MalformedCertificate)?;
    if spki.algorithm.oid != ED25519_OID || spki.algorithm.parameters.is_some() {
        return Err(PeerRefusal::NotEd25519);
    }
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or(PeerRefusal::NotEd25519)?;
    PublicKey::from_bytes(key).map_err(PeerRefusal::InvalidKey)
}

/// Extracts the Ed25519 key a connected peer proved during the handshake.
///
/// Returns `None` before the handshake completed, or if the connection did not go through
/// this module's verifiers. On a connection built here, the key returned is pinned and its
/// possession was proven by the TLS 1.3 `CertificateVerify` signature.
pub fn peer_key(conn: &quinn::Connection) -> Option<PublicKey> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast_ref::<Vec<CertificateDer<'static>>>()?;
    match certs.as_slice() {
        [only] => public_key_of(only).ok(),
        _ => None,
    }
}

/// Per-handshake record of the verifier's decision, so a failed connection can be reported
/// with the precise reason and a successful one with the proven key.
#[derive(Debug, Default, Clone)]
pub(crate) struct Verdict(Arc<Mutex<Option<Result<PublicKey, PeerRefusal>>>>);

impl Verdict {
    fn record(&self, outcome: Result<PublicKey, PeerRefusal>) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Keep the first refusal: it is the cause, anything later is a consequence.
        if !matches!(*slot, Some(Err(_))) {
            *slot = Some(outcome);
        }
    }

    /// The refusal recorded during the handshake, if any.
    pub(crate) fn refusal(&self) -> Option<PeerRefusal> {
        match &*self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(Err(r)) => Some(r.clone()),
            _ => None,
        }
    }
}

/// The verifier behind both [`ServerCertVerifier`] and [`ClientCertVerifier`] (§7.3).
#[derive(Debug)]
pub(crate) struct PinnedVerifier {
    pinned: PinnedKeys,
    provider: Arc<CryptoProvider>,
    verdict: Verdict,
}

impl PinnedVerifier {
    pub(crate) fn new(pinned: PinnedKeys, provider: Arc<CryptoProvider>, verdict: Verdict) -> Self {
        Self {
            pinned,
            provider,
            verdict,
        }
    }

    fn refuse(&self, refusal: PeerRefusal) -> rustls::Error {
        self.verdict.record(Err(refusal.clone()));
        let cert_error = match refusal {
            PeerRefusal::ChainLength(_)
            | PeerRefusal::MalformedCertificate
            | PeerRefusal::NotEd25519
            | PeerRefusal::InvalidKey(_)
            | PeerRefusal::NotPinned { .. } => {
                CertificateError::Other(OtherError(Arc::new(refusal)))
            }
            PeerRefusal::SignatureScheme(_) | PeerRefusal::BadHandshakeSignature => {
                CertificateError::BadSignature
            }
            PeerRefusal::Tls12 => {
                return rustls::Error::PeerIncompatible(PeerIncompatible::Tls13RequiredForQuic);
            }
        };
        rustls::Error::InvalidCertificate(cert_error)
    }

    /// §7.3 steps 1–3: one certificate, an Ed25519 SPKI, a pinned key.
    fn check_certificate(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<PublicKey, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(self.refuse(PeerRefusal::ChainLength(1 + intermediates.len())));
        }
        let key = public_key_of(end_entity).map_err(|r| self.refuse(r))?;
        if !self.pinned.contains(&key) {
            return Err(self.refuse(PeerRefusal::NotPinned {
                key_id: key.key_id(),
            }));
        }
        self.verdict.record(Ok(key));
        Ok(key)
    }

    /// §7.3 step 4: the `CertificateVerify` signature, Ed25519 only.
    fn check_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(self.refuse(PeerRefusal::SignatureScheme(u16::from(dss.scheme))));
        }
        // rustls passes the certificate accepted by `check_certificate`; checking the pin
        // again costs one parse and keeps this function sound on its own.
        self.check_certificate(cert, &[])?;
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
        .map_err(|_| self.refuse(PeerRefusal::BadHandshakeSignature))
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Names and dates are not part of the identity (§7.2).
        self.check_certificate(end_entity, intermediates)
            .map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(self.refuse(PeerRefusal::Tls12))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

impl ClientCertVerifier for PinnedVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // §7.3: a client without a certificate is refused.
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check_certificate(end_entity, intermediates)
            .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(self.refuse(PeerRefusal::Tls12))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

/// The ring crypto provider (§7.2): TLS 1.3 suites of ring's default set.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// rustls server configuration for one incoming handshake (§7.2–§7.4).
pub(crate) fn server_config(
    identity: &TlsIdentity,
    pinned: PinnedKeys,
    verdict: Verdict,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = PinnedVerifier::new(pinned, Arc::clone(&provider), verdict);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Rustls)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
            identity.certified_key(),
        )));
    config.alpn_protocols = vec![ALPN.to_vec()];
    // §7.2: no resumption, so every connection authenticates both keys afresh; no 0-RTT.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(config)
}

/// rustls client configuration for one outgoing handshake to `expected` (§7.2–§7.4).
pub(crate) fn client_config(
    identity: &TlsIdentity,
    expected: PublicKey,
    verdict: Verdict,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = PinnedVerifier::new(
        PinnedKeys::from_keys([expected]),
        Arc::clone(&provider),
        verdict,
    );
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Rustls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
            identity.certified_key(),
        )));
    config.alpn_protocols = vec![alpn.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_early_data = false;
    Ok(config)
}

/// The SNI a client sends when it means to reach `key` (informational, §7.2).
pub(crate) fn server_name_for(key: &PublicKey) -> String {
    format!("{}.{NAME_SUFFIX}", key.key_id())
}
