//! Revocation by CRL: the lists named in each certificate's distribution points, fetched
//! through a pluggable [`CrlFetcher`], kept in a [`CrlCache`] until their nextUpdate, and
//! handed to webpki (which checks each list's signature and issuer). Soft fail by default: a
//! list that cannot be fetched leaves the certificate's status unknown and the chain passes;
//! hard fail makes an unknown status a failure.
//!
//! [`Revocation::prepare`] does the fetching before an evaluation and puts the lists into its
//! [`Options`]: `evaluate` itself does no I/O. The fetcher is synchronous; the cache makes it
//! rare.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::Options;

/// Gets a CRL's DER from a URL.
pub trait CrlFetcher: Send + Sync + fmt::Debug {
    /// The CRL's DER, or why it could not be had.
    fn fetch(&self, url: &str) -> Result<Vec<u8>, String>;
}

/// What an unknown status means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Unknown passes (the default: a CRL server that is down must not take every
    /// connection down with it).
    #[default]
    SoftFail,
    /// Unknown fails.
    HardFail,
}

/// Revocation checking for an evaluation.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// How CRLs are fetched.
    pub fetcher: Arc<dyn CrlFetcher>,
    /// CRLs already fetched.
    pub cache: Arc<CrlCache>,
    /// What an unknown status means.
    pub mode: Mode,
}

impl Revocation {
    /// HTTP fetching (5 s per request), a fresh cache, soft fail.
    pub fn http() -> Self {
        Self {
            fetcher: Arc::new(HttpFetcher { timeout: Duration::from_secs(5) }),
            cache: Arc::new(CrlCache::default()),
            mode: Mode::SoftFail,
        }
    }

    /// `options` ready for an evaluation of `chain` at `at`: the CRLs its distribution points
    /// name added (from the cache while current, else fetched), those that could not be had
    /// listed with why, and this mode set. The I/O happens here, so `evaluate` stays pure.
    pub fn prepare(&self, chain: &[CertificateDer<'_>], at: i64, options: &Options) -> Options {
        let certs: Vec<&[u8]> = chain.iter().map(AsRef::as_ref).collect();
        let (lists, failures) = self.lists_for(&certs, at);
        let mut prepared = Options { revocation: self.mode, ..options.clone() };
        prepared.crls_unavailable.extend(failures);
        for der in lists {
            // A list webpki cannot read is "unavailable", not bad input from the caller.
            match webpki::BorrowedCertRevocationList::from_der(&der) {
                Ok(_) => prepared.crls.push(der),
                Err(e) => {
                    prepared.crls_unavailable.push(format!("a fetched CRL cannot be used: {e:?}"))
                }
            }
        }
        prepared
    }

    /// The CRLs for `certs` (DER): each distribution point's list, from the cache while its
    /// nextUpdate is after `at`, else fetched. Returns the lists and, per failure, why.
    fn lists_for(&self, certs: &[&[u8]], at: i64) -> (Vec<Vec<u8>>, Vec<String>) {
        let (mut lists, mut failures) = (Vec::new(), Vec::new());
        let mut seen = Vec::new();
        for url in certs.iter().flat_map(|c| distribution_points(c)) {
            if seen.contains(&url) {
                continue;
            }
            match self.cache.get_or_fetch(&url, at, self.fetcher.as_ref()) {
                Ok(der) => lists.push(der),
                Err(why) => failures.push(format!("{url}: {why}")),
            }
            seen.push(url);
        }
        (lists, failures)
    }
}

/// CRLs by URL, each kept until its nextUpdate.
#[derive(Debug, Default)]
pub struct CrlCache {
    entries: Mutex<HashMap<String, (Vec<u8>, i64)>>,
}

impl CrlCache {
    /// The cached list for `url` if it is still current at `at`, else a fetched one (cached
    /// when it parses and has a nextUpdate).
    pub fn get_or_fetch(
        &self,
        url: &str,
        at: i64,
        fetcher: &dyn CrlFetcher,
    ) -> Result<Vec<u8>, String> {
        if let Some((der, next_update)) = self.lock().get(url)
            && *next_update > at
        {
            return Ok(der.clone());
        }
        let der = fetcher.fetch(url)?;
        let (_, crl) =
            CertificateRevocationList::from_der(&der).map_err(|e| format!("not a DER CRL: {e}"))?;
        if let Some(next) = crl.next_update() {
            self.lock().insert(url.to_owned(), (der.clone(), next.timestamp()));
        }
        Ok(der)
    }

    /// How many lists are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No CRLs are cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Vec<u8>, i64)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The HTTP URLs in a certificate's CRL distribution points.
pub fn distribution_points(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else { return Vec::new() };
    let mut urls = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for point in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    for name in names {
                        if let GeneralName::URI(uri) = name
                            && uri.starts_with("http://")
                        {
                            urls.push((*uri).to_owned());
                        }
                    }
                }
            }
        }
    }
    urls
}

/// Plain HTTP/1.0 GET (CRLs are published over http:// so they can be fetched before any
/// TLS trust exists), bounded in time and size.
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    /// The longest a fetch may take.
    pub timeout: Duration,
}

/// The largest CRL fetched (big public CAs publish lists of tens of MB; beyond this it is
/// refused rather than held in memory).
const MAX_CRL: u64 = 64 << 20;

impl CrlFetcher for HttpFetcher {
    fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let rest = url.strip_prefix("http://").ok_or("only http:// CRL URLs are fetched")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority} has no address"))?;
        let mut stream = TcpStream::connect_timeout(&addr, self.timeout)
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream.set_read_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: nwkit\r\n\r\n");
        stream.write_all(request.as_bytes()).map_err(|e| format!("sending the request: {e}"))?;
        let mut response = Vec::new();
        stream
            .take(MAX_CRL + 64 * 1024)
            .read_to_end(&mut response)
            .map_err(|e| format!("reading the response: {e}"))?;
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("the response has no header end")?;
        let head = String::from_utf8_lossy(&response[..end]);
        let status = head.split_whitespace().nth(1).unwrap_or_default();
        if status != "200" {
            return Err(format!("the server answered {}", head.lines().next().unwrap_or_default()));
        }
        let body = response[end + 4..].to_vec();
        if body.len() as u64 > MAX_CRL {
            return Err(format!("the CRL is larger than {MAX_CRL} bytes"));
        }
        Ok(body)
    }
}
