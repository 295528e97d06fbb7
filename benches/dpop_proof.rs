//! What one DPoP proof costs, and how much of that is the ES256 signature itself: the floor
//! any DPoP gateway signing with aws-lc pays per request. `bench/run` uses the two figures to
//! explain its DPoP-versus-Basic ratio (the ceiling that ratio could reach if a proof added
//! nothing but its signature).
//!
//!   cargo bench --bench dpop_proof
//!
//! Prints `signature_us=…` and `proof_us=…` (microseconds per operation, the fastest of
//! several rounds on one thread, so other load on the machine only ever makes it slower),
//! `cold_signature_us=…` (the mean signature after L1 and L2 were flushed) and one
//! human-readable line. No harness (`harness = false`): two timed loops need no
//! statistics crate, and criterion would add a dependency tree to the build.

// A micro-benchmark times real CPU work on one thread, outside any runtime: std's clock is
// the one meant here, not tokio's (clippy.toml bans it elsewhere).
#![allow(clippy::disallowed_types)]

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use http::{Method, Uri};
use tango_gateway::auth::dpop::{access_token_hash, DpopKey};

const ROUNDS: usize = 7;
const PER_ROUND: u32 = 2_000;

/// The fastest round's time per call of `op`, in microseconds.
fn fastest_us(mut op: impl FnMut()) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..PER_ROUND {
                op();
            }
            start.elapsed()
        })
        .min()
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
        * 1e6
        / f64::from(PER_ROUND)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let raw = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)?;
    let message_digest = digest(&SHA256, b"the signing input of a DPoP proof");
    let signature_us = fastest_us(|| {
        black_box(raw.sign_digest(black_box(&message_digest)).ok());
    });

    // A proof as the gateway signs one on every API call: the route's upstream URI, the
    // token's `ath` computed once per token, no nonce.
    let key = DpopKey::generate()?;
    let uri: Uri = "https://integration-api.tangocard.com/raas/v2/catalogs?verbose=true".parse()?;
    let ath = access_token_hash("an-access-token-of-a-realistic-length-0123456789abcdef");
    let proof_us = fastest_us(|| {
        black_box(
            key.proof_with_ath(&Method::GET, &uri, Some(&ath), None, SystemTime::now())
                .ok(),
        );
    });

    // The same signature after 2 MB of other memory was written (more than this machine's
    // 1 MB L2 per core): as a proof starts on a gateway whose core ran the kernel's network
    // stack and other processes since the last one. Only the signature is timed.
    let mut other_memory = vec![0u8; 2 << 20];
    let cold_runs = PER_ROUND / 4;
    let mut cold_total = Duration::ZERO;
    for run in 0..cold_runs {
        for line in other_memory.chunks_mut(64) {
            line[0] = line[0].wrapping_add(run as u8);
        }
        black_box(&other_memory);
        let start = Instant::now();
        black_box(raw.sign_digest(black_box(&message_digest)).ok());
        cold_total += start.elapsed();
    }
    let cold_signature_us = cold_total.as_secs_f64() * 1e6 / f64::from(cold_runs);
    println!("cold_signature_us={cold_signature_us:.2}");
    println!("signature_us={signature_us:.2}");
    println!("proof_us={proof_us:.2}");
    println!(
        "DPoP proof: {proof_us:.2} µs, of which the ES256 signature {signature_us:.2} µs ({:.0} %)",
        100.0 * signature_us / proof_us
    );
    Ok(())
}
