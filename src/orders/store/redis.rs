//! `orders.store: redis` (§10): the `externalRefID` ledger and the spend windows shared by a
//! fleet, so that a reference is claimed once and a spend limit holds across every replica.
//!
//! Invariants:
//! - every state change is one Lua script, which Redis runs atomically: two replicas can never
//!   both claim a reference, nor together reserve past a limit;
//! - every operation goes through the shared [`RedisLink`]: bounded to
//!   [`OPERATION_TIMEOUT`](crate::redis_link::OPERATION_TIMEOUT), connection included, and
//!   any failure (unreachable, timed out, an error reply) is [`StoreDown`]: the caller fails
//!   closed (503), an order is never sent unchecked. An operation that timed out may still
//!   have run; its effect errs on the safe side too (a claim lapses with its lease, a
//!   reservation stays counted for its window);
//! - the time is the gateway's (`now`, unix ms, in the scripts' arguments), never Redis's
//!   `TIME`: the scripts decide exactly as the memory store does, and tests can use any time.
//!   Redis's own key expiry only removes what the scripts already treat as gone (give or take
//!   the clock difference between the replicas and Redis);
//! - keys hold no reference and no body: a reference's key is the SHA-256 of it, so a caller
//!   cannot make long keys; nothing read from Redis and no reference is logged.
//!
//! Keys, under `{prefix}orders:` (`prefix` is `key_prefix` and `:`, unless empty or already
//! ending in `:`, as for the token store):
//! - `ref:{sha256(reference), lower-case hex}`: a hash with `hash` (the body's), `caller`,
//!   `held_until_ms` (absent once the order finished) and `expires_ms` (when the reference is
//!   forgotten: the memory store's expiry, kept in the entry so it is judged by the gateway's
//!   clock); the key's PEXPIRE is the same moment, max(window, lease) after the claim and at
//!   least the window after a kept finish;
//! - per caller (a configured name): `spend:at:{caller}`, a sorted set of reservation ids
//!   scored by their reservation time (ms); `spend:amount:{caller}`, a hash id → amount in
//!   micros; `spend:total:{caller}`, their sum. Each script first forgets the reservations
//!   that left the window; all three keys expire a window after the caller's last operation
//!   and are deleted when its window is empty. Reservation ids are random 128-bit values,
//!   unique across the fleet.
//!
//! Unlike the memory store, the ledger has no `max_references` bound: each reference expires
//! on its own, so the ledger holds at most one window of orders. Redis must not evict keys
//! early (`maxmemory-policy noeviction`): an evicted total would under-count a caller's spend.
//! One Redis (a primary), not Redis Cluster: a spend script touches three keys of a caller.
//! Amounts are compared in Lua's doubles, exact up to 2^53 micros (9 billion units); sums are
//! kept by Redis's own integer commands (`INCRBY`, `DECRBY`), exact.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use redis::Cmd;

use super::memory::{later, unix_ms};
use super::{
    Begin, Claim, Conflict, Finish, Micros, OrderStore, ReservationId, Reserve, Settle, StoreDown,
    StoreFuture,
};
use crate::metrics::metrics;
use crate::redis_link::{millis, namespace, Purpose, RedisLink, RedisUrlError};

/// The order store's link: its outage refuses the orders that need it, never sends them.
static ORDERS: Purpose = Purpose {
    setting: "orders.url",
    down: "the Redis order store is unreachable; orders that need it are refused (503) until \
           it answers",
    up: "the Redis order store answers again; orders are checked across the fleet",
    set_up: |up| {
        metrics().order_store_up.set(i64::from(up));
    },
    // The order store has no error counter: its gauge and the log lines mark an outage.
    count_error: |_| {},
};

/// Claims a reference, as `State::begin` does. KEYS[1] = the reference's entry; ARGV = body
/// hash, caller, now, held until, expires at (unix ms), time to live (ms). Answers `new`,
/// `repeat`, `in_flight`, `other_body` or `other_caller`.
///
/// Times are passed as strings and stored as given: Lua's numbers would print large ones in
/// exponent notation.
const BEGIN_SCRIPT: &str = r#"
local key = KEYS[1]
local now = tonumber(ARGV[3])
local entry = redis.call('HMGET', key, 'hash', 'caller', 'held_until_ms', 'expires_ms')
local expires = tonumber(entry[4])
-- An entry past its expiry (by the gateway's clock) is forgotten, as in memory.
if entry[1] and (expires == nil or expires > now) then
  if entry[2] ~= ARGV[2] then return 'other_caller' end
  if entry[1] ~= ARGV[1] then return 'other_body' end
  local held = tonumber(entry[3])
  if held and held > now then return 'in_flight' end
  redis.call('HSET', key, 'held_until_ms', ARGV[4], 'expires_ms', ARGV[5])
  redis.call('PEXPIRE', key, ARGV[6])
  return 'repeat'
end
redis.call('DEL', key)
redis.call('HSET', key, 'hash', ARGV[1], 'caller', ARGV[2], 'held_until_ms', ARGV[4],
  'expires_ms', ARGV[5])
redis.call('PEXPIRE', key, ARGV[6])
return 'new'
"#;

/// Ends a claim and keeps the reference (`Finish::Kept`): no longer held, remembered at least
/// a window from now. KEYS[1] = the entry; ARGV = now, now + window (unix ms).
const KEEP_SCRIPT: &str = r#"
local key = KEYS[1]
local old = redis.call('HGET', key, 'expires_ms')
if not old then return 0 end
local expires = ARGV[2]
if tonumber(old) > tonumber(expires) then expires = old end
redis.call('HDEL', key, 'held_until_ms')
redis.call('HSET', key, 'expires_ms', expires)
-- A difference of two times: small enough for Lua to pass on exactly.
redis.call('PEXPIRE', key, math.max(tonumber(expires) - tonumber(ARGV[1]), 1))
return 1
"#;

/// What both spend scripts start with. KEYS[1] = `spend:at`, KEYS[2] = `spend:amount`,
/// KEYS[3] = `spend:total` of one caller.
macro_rules! spend_functions {
    () => {
        r#"
-- Forgets the reservations made at or before `cutoff` (now - window), as in memory.
local function forget_old(cutoff)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)) do
    local amount = redis.call('HGET', KEYS[2], id)
    if amount then redis.call('DECRBY', KEYS[3], amount) end
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[1], id)
  end
end
-- An empty window leaves no keys; a live one lives a window past its last use.
local function tidy(ttl)
  if redis.call('ZCARD', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  else
    for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
local function total()
  return redis.call('GET', KEYS[3]) or '0'
end
"#
    };
}

/// Reserves an amount unless it would pass the limit, as `State::reserve` does. ARGV =
/// cutoff, now (ms), reservation id, amount, limit, window (ms). Answers {granted (1 or 0),
/// the window's total}.
const RESERVE_SCRIPT: &str = concat!(
    spend_functions!(),
    r#"
forget_old(ARGV[1])
if tonumber(total()) + tonumber(ARGV[4]) > tonumber(ARGV[5]) then
  tidy(ARGV[6])
  return {0, total()}
end
if redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[3]) == 0 then
  return redis.error_reply('reservation id in use')
end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('INCRBY', KEYS[3], ARGV[4])
tidy(ARGV[6])
return {1, total()}
"#
);

/// Settles a reservation, as `State::settle` does: a release gives its amount back (if it is
/// still in the window); a commit or keep leaves it counted. ARGV = cutoff, reservation id,
/// release (`1` or `0`), window (ms). Answers the window's total.
const SETTLE_SCRIPT: &str = concat!(
    spend_functions!(),
    r#"
if ARGV[3] == '1' and redis.call('ZREM', KEYS[1], ARGV[2]) == 1 then
  local amount = redis.call('HGET', KEYS[2], ARGV[2])
  if amount then redis.call('DECRBY', KEYS[3], amount) end
  redis.call('HDEL', KEYS[2], ARGV[2])
end
forget_old(ARGV[1])
tidy(ARGV[4])
return total()
"#
);

#[derive(Debug)]
pub(crate) struct RedisOrderStore {
    link: RedisLink,
    /// `{prefix}orders:`.
    namespace: String,
}

impl RedisOrderStore {
    /// Connects lazily: building the store never waits for Redis.
    pub(crate) fn new(url: &str, key_prefix: &str) -> Result<Self, RedisUrlError> {
        Ok(RedisOrderStore {
            link: RedisLink::new(url, &ORDERS)?,
            namespace: format!("{}orders:", namespace(key_prefix)),
        })
    }

    /// Checks that Redis answers, updating the store's health (gauge and log lines).
    pub(crate) async fn probe(&self) -> Result<(), StoreDown> {
        let command = redis::cmd("PING");
        self.run::<String>("ping", &command).await.map(|_| ())
    }

    fn reference_key(&self, reference: &str) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, reference.as_bytes());
        let mut key = format!("{}ref:", self.namespace);
        for byte in digest.as_ref() {
            let _ = write!(key, "{byte:02x}"); // writing to a String cannot fail
        }
        key
    }

    /// `spend:at`, `spend:amount`, `spend:total` of `caller`: the spend scripts' KEYS.
    fn spend_keys(&self, caller: &str) -> [String; 3] {
        ["at", "amount", "total"].map(|kind| format!("{}spend:{kind}:{caller}", self.namespace))
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        command: &Cmd,
    ) -> Result<T, StoreDown> {
        self.link.query(operation, command).await.ok_or(StoreDown)
    }
}

/// `EVAL script numkeys keys...`, ready for its arguments.
fn eval(script: &str, keys: &[String]) -> Cmd {
    let mut command = redis::cmd("EVAL");
    command.arg(script).arg(keys.len());
    for key in keys {
        command.arg(key);
    }
    command
}

/// The reservations made at or before this moment have left the window.
fn cutoff(now_ms: u64, window: Duration) -> u64 {
    now_ms.saturating_sub(later(0, window))
}

impl OrderStore for RedisOrderStore {
    fn begin<'a>(
        &'a self,
        claim: Claim<'a>,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<Begin, StoreDown>> {
        Box::pin(async move {
            let now_ms = unix_ms(now);
            let remembered = claim.window.max(claim.lease);
            let command = eval(BEGIN_SCRIPT, &[self.reference_key(claim.reference)])
                .arg(claim.hash)
                .arg(claim.caller)
                .arg(now_ms)
                .arg(later(now_ms, claim.lease))
                .arg(later(now_ms, remembered))
                .arg(millis(remembered))
                .to_owned();
            let answer: String = self.run("begin", &command).await?;
            match answer.as_str() {
                "new" => Ok(Begin::New),
                "repeat" => Ok(Begin::Repeat),
                "in_flight" => Ok(Begin::InFlight),
                "other_body" => Ok(Begin::Conflict(Conflict::OtherBody)),
                "other_caller" => Ok(Begin::Conflict(Conflict::OtherCaller)),
                // Only a script that is not ours answers otherwise: refuse, do not guess.
                _ => {
                    tracing::warn!("the Redis order store's ledger script answered unexpectedly");
                    Err(StoreDown)
                }
            }
        })
    }

    fn finish<'a>(
        &'a self,
        reference: &'a str,
        window: Duration,
        how: Finish,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<(), StoreDown>> {
        Box::pin(async move {
            let key = self.reference_key(reference);
            match how {
                // Refused by Tango: forgotten, whoever holds it (as in memory).
                Finish::Forgotten => {
                    let command = redis::cmd("DEL").arg(key).to_owned();
                    self.run::<i64>("finish", &command).await?;
                }
                Finish::Kept => {
                    let now_ms = unix_ms(now);
                    let command = eval(KEEP_SCRIPT, &[key])
                        .arg(now_ms)
                        .arg(later(now_ms, window))
                        .to_owned();
                    self.run::<i64>("finish", &command).await?;
                }
            }
            Ok(())
        })
    }

    fn reserve<'a>(
        &'a self,
        caller: &'a str,
        amount: Micros,
        limit: Micros,
        window: Duration,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<Reserve, StoreDown>> {
        Box::pin(async move {
            let now_ms = unix_ms(now);
            // Random rather than counted: unique across the fleet without a shared counter.
            let id = format!("{:032x}", rand::random::<u128>());
            let command = eval(RESERVE_SCRIPT, &self.spend_keys(caller))
                .arg(cutoff(now_ms, window))
                .arg(now_ms)
                .arg(&id)
                .arg(amount)
                .arg(limit)
                .arg(millis(window))
                .to_owned();
            let (granted, window): (i64, Micros) = self.run("reserve", &command).await?;
            Ok(if granted == 1 {
                Reserve::Granted {
                    id: ReservationId(id),
                    window,
                }
            } else {
                Reserve::Exceeded { window }
            })
        })
    }

    fn settle<'a>(
        &'a self,
        caller: &'a str,
        id: &'a ReservationId,
        how: Settle,
        window: Duration,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<Micros, StoreDown>> {
        Box::pin(async move {
            let release = if how == Settle::Release { "1" } else { "0" };
            let command = eval(SETTLE_SCRIPT, &self.spend_keys(caller))
                .arg(cutoff(unix_ms(now), window))
                .arg(&id.0)
                .arg(release)
                .arg(millis(window))
                .to_owned();
            self.run("settle", &command).await
        })
    }
}

#[cfg(test)]
#[path = "redis_tests.rs"]
mod tests;
