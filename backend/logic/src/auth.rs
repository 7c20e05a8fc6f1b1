//! Passwords (argon2id) and tokens (JWT, HS256).
//!
//! Tokens are JWTs signed and checked with `jsonwebtoken` (HS256 only, fixed claims).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params, Version};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use ringchat_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// What a ringchat token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// user id, as a string (JWT convention)
    pub sub: String,
    pub name: String,
    pub guest: bool,
    /// token id: what logout revokes and the session cache is keyed by
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

impl Claims {
    pub fn user_id(&self) -> Result<i64> {
        self.sub
            .parse()
            .map_err(|_| Error::auth("token subject is not a user id"))
    }
}

/// Signs and verifies tokens with one HS256 secret, through `jsonwebtoken`: the
/// validation accepts HS256 only, so `alg: none` and algorithm confusion are refused.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // expiry is checked against the caller's clock in `verify`; logout reads expired
        // tokens too
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// Checks signature, algorithm and expiry (at `now`, unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims> {
        let claims = self.verify_signature(token)?;
        if claims.exp <= now {
            return Err(Error::auth("token expired"));
        }
        Ok(claims)
    }

    /// Checks signature and algorithm only.
    pub fn verify_signature(&self, token: &str) -> Result<Claims> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                Error::auth(match e.kind() {
                    ErrorKind::InvalidSignature => "token signature is invalid",
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        "token algorithm must be HS256"
                    }
                    _ => "malformed token",
                })
            })
    }
}

/// A random 128-bit token id.
pub fn new_jti() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Argon2id password hashing with configured cost, on a bounded pool.
///
/// Each hash holds `memory_kib` and a CPU for tens of milliseconds, so a login storm must
/// not become one thread and one arena per request: at most `workers` hashes run at once,
/// at most `queue` more wait, and beyond that the caller gets `RATE_LIMITED` at once.
/// Memory stays bounded by `workers x memory_kib` whatever arrives.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    /// A hash of nothing anyone knows: unknown users are checked against it, so they cost
    /// what known users cost (no user enumeration by timing).
    dummy: Arc<str>,
}

impl Passwords {
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Self> {
        Self::bounded(memory_kib, iterations, 0, 64)
    }

    /// `workers` 0 = one per CPU.
    pub fn bounded(memory_kib: u32, iterations: u32, workers: usize, queue: usize) -> Result<Self> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| Error::invalid(format!("argon2 parameters: {e}")))?;
        let workers = match workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut p = Passwords {
            params,
            running: Arc::new(Semaphore::new(workers)),
            admitted: Arc::new(Semaphore::new(workers + queue)),
            dummy: Arc::from(""),
        };
        let mut unknown = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut unknown);
        p.dummy = Arc::from(p.hash(&format!("{unknown:?}"))?);
        Ok(p)
    }

    /// Runs `f` on the pool; `RATE_LIMITED` when the pool and its queue are full.
    async fn on_pool<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Passwords) -> T + Send + 'static,
    ) -> Result<T> {
        let _admitted = self.admitted.clone().try_acquire_owned().map_err(|_| {
            Error::rate_limited(
                "too many logins in progress: retry shortly",
                Duration::from_secs(1),
            )
        })?;
        let _running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::unavailable("password hashing is shut down"))?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| Error::internal(format!("password hashing: {e}")))
    }

    /// Hashes on the pool.
    pub async fn hash_bounded(&self, password: String) -> Result<String> {
        self.on_pool(move |p| p.hash(&password)).await?
    }

    /// Verifies on the pool; `None` (no such user, or no password) costs the same as a
    /// real check and never matches.
    pub async fn verify_bounded(&self, password: String, phc: Option<String>) -> Result<bool> {
        self.on_pool(move |p| match phc {
            Some(phc) if !phc.is_empty() => p.verify(&password, &phc),
            _ => {
                let _ = p.verify(&password, &p.dummy);
                false
            }
        })
        .await
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(
            argon2::Algorithm::Argon2id,
            Version::V0x13,
            self.params.clone(),
        )
    }

    /// PHC string (`$argon2id$v=19$...`); CPU-heavy, call from a blocking thread.
    pub fn hash(&self, password: &str) -> Result<String> {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        self.argon()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::internal(format!("hashing password: {e}")))
    }

    /// Verifies against a stored PHC string; an empty or foreign hash never matches.
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        match PasswordHash::new(phc) {
            Ok(parsed) => self
                .argon()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "42".into(),
            name: "alice".into(),
            guest: false,
            jti: new_jti(),
            iat: 1000,
            exp,
        }
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let c = claims(2000);
        let t = keys.sign(&c);
        assert_eq!(keys.verify(&t, 1500).unwrap(), c);
        assert_eq!(keys.verify(&t, 2000).unwrap_err().message, "token expired");
        assert_eq!(keys.verify_signature(&t).unwrap().user_id().unwrap(), 42);
    }

    #[test]
    fn forged_tokens_are_refused() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let other = TokenKeys::new(b"another-secret-another-secret!!");
        let t = other.sign(&claims(i64::MAX));
        assert!(keys.verify(&t, 0).is_err());
        // payload swapped under a valid signature
        let good = keys.sign(&claims(i64::MAX));
        let evil = other.sign(&Claims {
            sub: "1".into(),
            ..claims(i64::MAX)
        });
        let g: Vec<&str> = good.split('.').collect();
        let e: Vec<&str> = evil.split('.').collect();
        assert!(keys
            .verify(&format!("{}.{}.{}", g[0], e[1], g[2]), 0)
            .is_err());
        // alg none
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            g[1]
        );
        assert!(keys.verify(&none, 0).is_err());
        // another algorithm with the same secret (HS512), or an asymmetric one named in
        // the header over an HMAC signature (RS256 confusion)
        let secret = b"0123456789abcdef0123456789abcdef";
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(i64::MAX),
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        assert_eq!(
            keys.verify(&hs512, 0).unwrap_err().message,
            "token algorithm must be HS256"
        );
        let rs = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            g[1],
            g[2]
        );
        assert!(keys.verify(&rs, 0).is_err());
        for junk in ["", "a.b", "a.b.c.d", "!!!.@@@.###"] {
            assert!(keys.verify(junk, 0).is_err(), "{junk:?} accepted");
        }
    }

    #[test]
    fn passwords_hash_and_verify() {
        let p = Passwords::new(64, 1).unwrap();
        let h = p.hash("secret1").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(p.verify("secret1", &h));
        assert!(!p.verify("secret2", &h));
        assert!(!p.verify("secret1", ""));
    }
}
