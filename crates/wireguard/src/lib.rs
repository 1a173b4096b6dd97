//! `nw-wireguard`: WireGuard as a packet tunnel provider on nw-tunnel's SDK.
//!
//! - [`config`] reads wg-quick's configuration format and says what settings it asks for.
//! - [`Device`] is the protocol as a pure machine (the handshake, sessions, replay windows,
//!   cookies and the timers of the whitepaper's §6), driven with the time by its caller and
//!   tested in virtual time.
//! - [`provider`] runs a device between the TUN device the host hands over and a UDP socket
//!   that stays outside the tunnel.
//!
//! The protocol is written here on aws-lc-rs (X25519, ChaCha20-Poly1305) and RustCrypto's
//! BLAKE2s, because boringtun, the userspace implementation we would have kept, depends on ring
//! unconditionally and nwkit has one crypto provider. It interoperates with wireguard-go and
//! the kernel's WireGuard (the namespace tests run against wireguard-go).

#![warn(missing_docs)]

pub mod config;
mod crypto;
mod device;
mod noise;
pub mod provider;
mod session;

pub use config::{Config, ConfigError, Parsed, PublicKey, SecretKey, parse};
pub use device::{
    Device, DeviceError, Drop, KEEPALIVE_TIMEOUT, PeerStatus, QUEUE_LIMIT, REJECT_AFTER_TIME,
    REKEY_AFTER_TIME, REKEY_ATTEMPT_TIME, REKEY_TIMEOUT, Received, TICK,
};
pub use noise::HandshakeError;
