//! Credentials a session asks for: the `Authorization` to send to an origin, from a
//! [`CredentialProvider`] (a token store that refreshes, a command that prints a token, as
//! `gcloud auth print-access-token` does), asked once per origin and asked again when the
//! server refuses what was sent (401) — with its challenge, so an expired token is replaced
//! and the request sent once more, as URLSession's authentication challenges work.
//!
//! An answer goes only where it may: over HTTPS, or plain HTTP to a local name or an IP
//! literal (the rule `--user` follows); never over plain HTTP to a public host, whatever the
//! provider says. The provider sees every URL it is asked for and decides per origin: a token
//! for `api.example` is its to withhold from `cdn.example` a redirect leads to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use nw_connection::{BoxFuture, Url};

use crate::altsvc::{Origin, origin};

/// What the server said to the value sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused<'a> {
    /// The value it refused.
    pub sent: &'a str,
    /// Its `WWW-Authenticate` field (`Bearer error="invalid_token"`), when it gave one.
    pub challenge: Option<&'a str>,
}

/// Gives the `Authorization` field for requests to an origin.
pub trait CredentialProvider: Send + Sync + std::fmt::Debug {
    /// The field's value for a request to `url` (`Bearer …`, `Basic …`), or `None` to send
    /// none. `refused` is set when the server has just refused what was sent (a 401): a
    /// value equal to the refused one is not tried again.
    fn authorization<'a>(
        &'a self,
        url: &'a str,
        refused: Option<Refused<'a>>,
    ) -> BoxFuture<'a, Option<String>>;
}

/// A session's provider and what it answered, per origin.
///
/// The provider is asked once at a time per origin: requests that need a value for the same
/// origin together (the segments of one download, a page's resources) wait for the one ask
/// and take its answer, so a token command runs once, not once per request.
#[derive(Debug, Default)]
pub struct Authorizer {
    provider: Option<Arc<dyn CredentialProvider>>,
    /// Each origin's value, behind the lock held while the provider is asked for it.
    values: Mutex<HashMap<Origin, Arc<tokio::sync::Mutex<Option<String>>>>>,
}

impl Authorizer {
    /// Asks `provider`, when there is one.
    pub fn new(provider: Option<Arc<dyn CredentialProvider>>) -> Self {
        Self { provider, values: Mutex::new(HashMap::new()) }
    }

    /// Whether there is a provider to ask.
    pub fn is_on(&self) -> bool {
        self.provider.is_some()
    }

    /// The value for a request to `url`: the one its origin was last given, or the provider's
    /// answer; `None` without one, or where none may be sent.
    pub async fn for_request(&self, url: &Url) -> Option<String> {
        let provider = self.provider.as_ref()?;
        if !may_carry_credentials(url) {
            return None;
        }
        let slot = self.slot(&origin(url));
        let mut value = slot.lock().await;
        if value.is_none() {
            let asked = provider.authorization(&url.to_string(), None).await;
            *value = asked.and_then(usable);
        }
        value.clone()
    }

    /// After `url` answered 401 to `sent` (with `challenge`): a different value to send once
    /// more, when the provider has one (kept for the origin), else `None` and the 401 stands.
    /// When another request to the origin has already replaced `sent` (segments of one download
    /// refused together), that value is taken and the provider is not asked again.
    pub async fn after_refusal(
        &self,
        url: &Url,
        sent: &str,
        challenge: Option<&str>,
    ) -> Option<String> {
        let provider = self.provider.as_ref()?;
        let slot = self.slot(&origin(url));
        let mut value = slot.lock().await;
        if let Some(known) = value.as_ref().filter(|known| *known != sent) {
            return Some(known.clone());
        }
        let asked =
            provider.authorization(&url.to_string(), Some(Refused { sent, challenge })).await;
        *value = asked.and_then(usable).filter(|v| v != sent);
        value.clone()
    }

    /// `origin`'s value and its lock.
    fn slot(&self, origin: &Origin) -> Arc<tokio::sync::Mutex<Option<String>>> {
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        values.entry(origin.clone()).or_default().clone()
    }
}

/// Over HTTPS, or plain HTTP to a local name or an IP literal.
pub fn may_carry_credentials(url: &Url) -> bool {
    url.scheme == "https" || crate::policy::local_exemption(&url.host).is_some()
}

/// A value that can be a header field's: one line, visible characters and spaces.
fn usable(value: String) -> Option<String> {
    let value = value.trim().to_owned();
    let fine = !value.is_empty() && hyper::header::HeaderValue::from_str(&value).is_ok();
    if !fine {
        tracing::warn!("the credential provider's answer is not a header field's value; none sent");
    }
    fine.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out "Bearer t1", "Bearer t2", … and records what it was told.
    #[derive(Debug, Default)]
    struct Counter {
        asked: Mutex<Vec<(String, Option<String>)>>,
    }

    impl CredentialProvider for Counter {
        fn authorization<'a>(
            &'a self,
            url: &'a str,
            refused: Option<Refused<'a>>,
        ) -> BoxFuture<'a, Option<String>> {
            Box::pin(async move {
                let mut asked = self.asked.lock().unwrap();
                asked.push((url.to_owned(), refused.and_then(|r| r.challenge.map(str::to_owned))));
                Some(format!("Bearer t{}", asked.len()))
            })
        }
    }

    fn url(text: &str) -> Url {
        match nw_connection::Endpoint::parse(text) {
            Ok(nw_connection::Endpoint::Url(u)) => u,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn asked_once_per_origin_again_after_a_refusal_and_never_for_plain_http_afar() {
        let counter = Arc::new(Counter::default());
        let auth = Authorizer::new(Some(counter.clone()));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let api = url("https://api.example/a");
            assert_eq!(auth.for_request(&api).await.as_deref(), Some("Bearer t1"));
            let same_origin = url("https://api.example/b");
            assert_eq!(auth.for_request(&same_origin).await.as_deref(), Some("Bearer t1"));
            let challenge = Some("Bearer error=\"invalid_token\"");
            let fresh = auth.after_refusal(&api, "Bearer t1", challenge).await;
            assert_eq!(fresh.as_deref(), Some("Bearer t2"));
            assert_eq!(auth.for_request(&same_origin).await.as_deref(), Some("Bearer t2"));
            // A second request refused the old value too: the fresh one, without asking.
            let again = auth.after_refusal(&same_origin, "Bearer t1", challenge).await;
            assert_eq!(again.as_deref(), Some("Bearer t2"));
            assert_eq!(auth.for_request(&url("http://api.example/")).await, None, "plain HTTP");
            let local = url("http://127.0.0.1:8080/");
            assert_eq!(auth.for_request(&local).await.as_deref(), Some("Bearer t3"));
        });
        let asked = counter.asked.lock().unwrap();
        assert_eq!(asked.len(), 3, "{asked:?}");
        assert_eq!(asked[1].1.as_deref(), Some("Bearer error=\"invalid_token\""));
    }

    #[test]
    fn requests_that_need_a_value_together_ask_once() {
        /// Takes a while to answer, as a token command does.
        #[derive(Debug, Default)]
        struct Slow(Mutex<u32>);
        impl CredentialProvider for Slow {
            fn authorization<'a>(
                &'a self,
                _: &'a str,
                _: Option<Refused<'a>>,
            ) -> BoxFuture<'a, Option<String>> {
                Box::pin(async move {
                    for _ in 0..10 {
                        tokio::task::yield_now().await;
                    }
                    let mut n = self.0.lock().unwrap();
                    *n += 1;
                    Some(format!("Bearer s{n}"))
                })
            }
        }
        let slow = Arc::new(Slow::default());
        let auth = Authorizer::new(Some(slow.clone()));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let (a, b) = (url("https://api.example/a"), url("https://api.example/b"));
            let (x, y) = tokio::join!(auth.for_request(&a), auth.for_request(&b));
            assert_eq!((x.as_deref(), y.as_deref()), (Some("Bearer s1"), Some("Bearer s1")));
            let (x, y) = tokio::join!(
                auth.after_refusal(&a, "Bearer s1", None),
                auth.after_refusal(&b, "Bearer s1", None)
            );
            assert_eq!((x.as_deref(), y.as_deref()), (Some("Bearer s2"), Some("Bearer s2")));
        });
        assert_eq!(*slow.0.lock().unwrap(), 2, "one ask for the value, one after the refusal");
    }

    #[test]
    fn the_refused_value_again_or_a_broken_one_is_not_sent() {
        #[derive(Debug)]
        struct Same(&'static str);
        impl CredentialProvider for Same {
            fn authorization<'a>(
                &'a self,
                _: &'a str,
                _: Option<Refused<'a>>,
            ) -> BoxFuture<'a, Option<String>> {
                Box::pin(async move { Some(self.0.to_owned()) })
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let u = url("https://api.example/");
            let same = Authorizer::new(Some(Arc::new(Same("Bearer x"))));
            assert_eq!(same.after_refusal(&u, "Bearer x", None).await, None);
            let broken = Authorizer::new(Some(Arc::new(Same("Bearer x\r\nX-Evil: 1"))));
            assert_eq!(broken.for_request(&u).await, None, "a line break would smuggle a field");
        });
    }
}
