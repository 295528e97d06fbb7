//! What Tango saw, collected while the soak runs: the fakes' records are drained every
//! 200 ms (so an hour-long run keeps little in memory) and reduced to the facts the soak
//! needs — how often each unreferenced order arrived, which credentials and client
//! certificates were presented (a rotation waits on them), and a fingerprint of every access
//! token and DPoP proof (for the output scan).
//!
//! Invariant: no record is lost between drains (each drain takes everything recorded so far)
//! and no secret is kept in clear here, only 64-bit fingerprints of tokens and proofs.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tango_sandbox::fake::{RecordedRequest, TOKEN_PATH};

use crate::load::MARKER_PREFIX;
use crate::world::World;

/// How often the fakes are drained.
const DRAIN_EVERY: Duration = Duration::from_millis(200);

#[derive(Default)]
pub(crate) struct Seen {
    /// Arrivals at Tango per marker of an order without `externalRefID`.
    pub(crate) markers: HashMap<String, u32>,
    /// Fingerprints of every access token and DPoP proof presented to the fake.
    pub(crate) credentials: HashSet<u64>,
    /// `Authorization` values presented to the Basic fake (fingerprints).
    pub(crate) basic_headers: HashSet<u64>,
    /// Client certificate common names presented, by either fake.
    pub(crate) client_cns: HashSet<String>,
    /// Client secrets sent to the token endpoint (fingerprints).
    pub(crate) token_secrets: HashSet<u64>,
    pub(crate) requests: usize,
}

/// The observer's shared state.
#[derive(Clone, Default)]
pub(crate) struct Observed(Arc<Mutex<Seen>>);

impl Observed {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Seen> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drains both fakes every [`DRAIN_EVERY`] until the task is aborted.
    pub(crate) fn spawn(&self, world: Arc<World>) -> tokio::task::JoinHandle<()> {
        let observed = self.clone();
        tokio::spawn(async move {
            loop {
                observed.drain(&world);
                tokio::time::sleep(DRAIN_EVERY).await;
            }
        })
    }

    /// Takes everything the fakes recorded since the last drain.
    pub(crate) fn drain(&self, world: &World) {
        let basic = world.basic.take_received();
        let dpop = world.dpop.take_received();
        let mut seen = self.lock();
        for request in &basic {
            if let Some(value) = request.header("authorization") {
                seen.basic_headers.insert(fingerprint(value));
            }
            seen.note(request);
        }
        for request in &dpop {
            if request.path_and_query == TOKEN_PATH {
                let form = String::from_utf8_lossy(&request.body).into_owned();
                for (name, value) in form_pairs(&form) {
                    if name == "client_secret" {
                        seen.token_secrets.insert(fingerprint(&value));
                    }
                }
            }
            seen.note(request);
        }
    }
}

impl Seen {
    fn note(&mut self, request: &RecordedRequest) {
        self.requests += 1;
        if let Some(cn) = &request.client_cn {
            if !self.client_cns.contains(cn) {
                self.client_cns.insert(cn.clone());
            }
        }
        if let Some(token) = request
            .header("authorization")
            .and_then(|v| v.split_once(' '))
            .map(|(_, token)| token.trim())
        {
            self.credentials.insert(fingerprint(token));
        }
        for proof in request.header_all("dpop") {
            self.credentials.insert(fingerprint(proof));
        }
        if let Some(marker) = request
            .body_json()
            .and_then(|body| body.get("message")?.as_str().map(str::to_owned))
            .filter(|m| m.starts_with(MARKER_PREFIX))
        {
            *self.markers.entry(marker).or_insert(0) += 1;
        }
    }

    /// Markers (orders without `externalRefID`) that reached Tango more than once.
    pub(crate) fn resent_markers(&self) -> Vec<(&str, u32)> {
        let mut resent: Vec<_> = self
            .markers
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(m, n)| (m.as_str(), *n))
            .collect();
        resent.sort();
        resent
    }
}

/// A 64-bit fingerprint (not a secret-keeping hash: only compared within this process).
pub(crate) fn fingerprint(value: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// `name=value` pairs of an `application/x-www-form-urlencoded` body (values decoded).
fn form_pairs(form: &str) -> Vec<(String, String)> {
    form.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
