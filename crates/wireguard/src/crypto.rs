//! WireGuard's primitives (the whitepaper's §5.4): X25519 and ChaCha20-Poly1305 from aws-lc-rs,
//! BLAKE2s and HMAC-BLAKE2s from RustCrypto, XChaCha20-Poly1305 built from HChaCha20 and
//! aws-lc-rs's ChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03 §2.3).

use std::fmt;

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use blake2::Blake2s256;
use blake2::digest::consts::U16;
use blake2::digest::{Digest, KeyInit, Mac};
use hmac::SimpleHmac;

/// The length of a Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;

/// A Curve25519 key pair: a static identity or a handshake's ephemeral.
pub(crate) struct KeyPair {
    private: PrivateKey,
    public: [u8; 32],
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair").field("public", &crate::config::encode_key(&self.public)).finish()
    }
}

/// A key that does not work (a private key of the wrong length, or a failing generator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a usable Curve25519 key")]
pub(crate) struct BadKey;

impl KeyPair {
    /// The key pair of a 32-byte private key.
    pub(crate) fn from_private(bytes: &[u8; 32]) -> Result<Self, BadKey> {
        let private = PrivateKey::from_private_key(&X25519, bytes).map_err(|_| BadKey)?;
        Self::with(private)
    }

    /// A fresh random key pair.
    pub(crate) fn generate() -> Result<Self, BadKey> {
        Self::with(PrivateKey::generate(&X25519).map_err(|_| BadKey)?)
    }

    fn with(private: PrivateKey) -> Result<Self, BadKey> {
        let public = private.compute_public_key().map_err(|_| BadKey)?;
        let public: [u8; 32] = public.as_ref().try_into().map_err(|_| BadKey)?;
        Ok(Self { private, public })
    }

    pub(crate) fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// DH(self, peer). Fails for a peer key of small order, whose shared secret is all zeros
    /// (aws-lc refuses it, as the whitepaper's §5.4.1 allows).
    pub(crate) fn dh(&self, peer: &[u8; 32]) -> Result<[u8; 32], BadKey> {
        agreement::agree(&self.private, UnparsedPublicKey::new(&X25519, peer), BadKey, |s| {
            s.try_into().map_err(|_| BadKey)
        })
    }
}

/// The public key of a private key, for `wg pubkey`-style checks.
pub(crate) fn public_key(private: &[u8; 32]) -> Result<[u8; 32], BadKey> {
    Ok(*KeyPair::from_private(private)?.public())
}

/// HASH(parts...): BLAKE2s-256.
pub(crate) fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// MAC(key, parts...): keyed BLAKE2s with a 16-byte output.
pub(crate) fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // A key longer than 32 bytes is the only failure; every caller passes 16 or 32.
    let Ok(mut m) = <blake2::Blake2sMac<U16> as KeyInit>::new_from_slice(key) else {
        return [0; 16];
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes a key of any length; this cannot fail.
    let Ok(mut m) = <SimpleHmac<Blake2s256> as KeyInit>::new_from_slice(key) else {
        return [0; 32];
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// KDF1..3 (HKDF with HMAC-BLAKE2s): the first `N` outputs.
pub(crate) fn kdf<const N: usize>(key: &[u8; 32], input: &[u8]) -> [[u8; 32]; N] {
    let prk = hmac(key, &[input]);
    let mut out = [[0u8; 32]; N];
    let mut previous: &[u8] = &[];
    for (i, slot) in out.iter_mut().enumerate() {
        let counter = [u8::try_from(i + 1).unwrap_or(u8::MAX)];
        *slot = hmac(&prk, &[previous, &counter]);
        previous = slot;
    }
    out
}

/// The 96-bit nonce for a 64-bit counter: 32 zero bits, then the counter little-endian.
fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

/// A ChaCha20-Poly1305 key, ready for many messages.
pub(crate) struct AeadKey(LessSafeKey);

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AeadKey(..)")
    }
}

impl AeadKey {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        // A 32-byte key is always accepted for ChaCha20-Poly1305.
        #[allow(clippy::unwrap_used, reason = "a 32-byte key is ChaCha20-Poly1305's key length")]
        Self(LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).unwrap()))
    }

    /// Encrypts `buf` in place and appends the tag.
    pub(crate) fn seal(&self, counter: u64, aad: &[u8], buf: &mut Vec<u8>) {
        // Sealing fails only for inputs longer than 2^38 bytes.
        let _ = self.0.seal_in_place_append_tag(nonce(counter), Aad::from(aad), buf);
    }

    /// Encrypts `buf` (text then room for the tag) in place: the last 16 bytes get the tag.
    pub(crate) fn seal_in(&self, counter: u64, buf: &mut [u8]) {
        let (text, tag_room) = buf.split_at_mut(buf.len() - TAG_LEN);
        if let Ok(tag) = self.0.seal_in_place_separate_tag(nonce(counter), Aad::empty(), text) {
            tag_room.copy_from_slice(tag.as_ref());
        }
    }

    /// Decrypts `buf` (text then tag) in place; the plaintext's length, or `None` when the tag
    /// does not verify.
    pub(crate) fn open(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> Option<usize> {
        self.0.open_in_place(nonce(counter), Aad::from(aad), buf).ok().map(|p| p.len())
    }
}

/// AEAD(key, counter, plaintext, aad) as a new vector.
pub(crate) fn seal(key: &[u8; 32], counter: u64, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut buf = plaintext.to_vec();
    AeadKey::new(key).seal(counter, aad, &mut buf);
    buf
}

/// The inverse of [`seal`]: the plaintext, or `None` when it does not verify.
pub(crate) fn open(key: &[u8; 32], counter: u64, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let mut buf = sealed.to_vec();
    let n = AeadKey::new(key).open(counter, aad, &mut buf)?;
    buf.truncate(n);
    Some(buf)
}

/// XChaCha20-Poly1305: a subkey from HChaCha20 over the nonce's first 16 bytes, then
/// ChaCha20-Poly1305 with the last 8 bytes as the nonce's low 64 bits.
fn xsubkey(key: &[u8; 32], nonce: &[u8; 24]) -> ([u8; 32], u64) {
    let sub = hchacha20(key, nonce[..16].try_into().unwrap_or(&[0; 16]));
    let counter = u64::from_le_bytes(nonce[16..].try_into().unwrap_or([0; 8]));
    (sub, counter)
}

/// HChaCha20 (draft-irtf-cfrg-xchacha-03 §2.2).
pub(crate) fn hchacha20(key: &[u8; 32], input: &[u8; 16]) -> [u8; 32] {
    let key = chacha20::Key::from(*key);
    let input = chacha20::cipher::array::Array::from(*input);
    chacha20::hchacha::<chacha20::R20>(&key, &input).into()
}

/// XAEAD(key, nonce, plaintext, aad); we only open cookie replies, tests seal them.
#[cfg(test)]
pub(crate) fn xseal(key: &[u8; 32], nonce: &[u8; 24], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let (sub, counter) = xsubkey(key, nonce);
    seal(&sub, counter, plaintext, aad)
}

/// The inverse of [`xseal`].
pub(crate) fn xopen(
    key: &[u8; 32],
    nonce: &[u8; 24],
    sealed: &[u8],
    aad: &[u8],
) -> Option<Vec<u8>> {
    let (sub, counter) = xsubkey(key, nonce);
    open(&sub, counter, sealed, aad)
}

/// Random bytes from aws-lc's generator.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // aws-lc's generator does not fail once the library is initialised.
    let _ = aws_lc_rs::rand::fill(&mut b);
    b
}

/// Equality in time that does not depend on where the inputs differ.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// RFC 7693 Appendix B: BLAKE2s-256("abc").
    #[test]
    fn blake2s_matches_rfc_7693() {
        assert_eq!(
            hash(&[b"a", b"bc"]).to_vec(),
            hex("508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")
        );
    }

    /// draft-irtf-cfrg-xchacha-03 §2.2.1.
    #[test]
    fn hchacha20_matches_the_draft() {
        let key: [u8; 32] = hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
            .try_into()
            .unwrap();
        let input: [u8; 16] = hex("000000090000004a0000000031415927").try_into().unwrap();
        assert_eq!(
            hchacha20(&key, &input).to_vec(),
            hex("82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc")
        );
    }

    /// RFC 7748 §6.1: Alice's and Bob's keys agree on the same secret.
    #[test]
    fn x25519_matches_rfc_7748() {
        let alice: [u8; 32] =
            hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .try_into()
                .unwrap();
        let bob_public: [u8; 32] =
            hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
                .try_into()
                .unwrap();
        let a = KeyPair::from_private(&alice).unwrap();
        assert_eq!(
            a.public().to_vec(),
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(
            a.dh(&bob_public).unwrap().to_vec(),
            hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        );
        // A small-order point (all zeros) gives an all-zero secret: refused.
        assert_eq!(a.dh(&[0; 32]), Err(BadKey));
    }

    #[test]
    fn aead_round_trips_and_refuses_tampering() {
        let key = [7u8; 32];
        let sealed = seal(&key, 5, b"hello", b"aad");
        assert_eq!(sealed.len(), 5 + TAG_LEN);
        assert_eq!(open(&key, 5, &sealed, b"aad").unwrap(), b"hello");
        assert!(open(&key, 6, &sealed, b"aad").is_none());
        assert!(open(&key, 5, &sealed, b"aab").is_none());
        let n = [9u8; 24];
        let x = xseal(&key, &n, b"cookie", b"mac1");
        assert_eq!(xopen(&key, &n, &x, b"mac1").unwrap(), b"cookie");
        assert!(xopen(&key, &[8u8; 24], &x, b"mac1").is_none());
    }

    #[test]
    fn kdf_outputs_chain() {
        let [a, b, c] = kdf::<3>(&[1; 32], b"input");
        let [a1] = kdf::<1>(&[1; 32], b"input");
        let [a2, b2] = kdf::<2>(&[1; 32], b"input");
        assert_eq!((a, a), (a1, a2));
        assert_eq!(b, b2);
        assert_ne!(b, c);
    }
}
