//! Random (v4) UUIDs for ids made on every request: request ids and DPoP proof `jti`s.
//!
//! Invariant: the 122 random bits come from rand's thread-local CSPRNG (ChaCha12, seeded and
//! periodically reseeded from the OS), unpredictable like `Uuid::new_v4`, without its
//! `getrandom` system call per id (the benchmark's profile showed it on the request path).

/// A fresh random UUID.
pub(crate) fn uuid_v4() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_a_distinct_version_4_uuid() {
        let a = uuid_v4();
        let b = uuid_v4();
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 4);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
    }
}
