//! Token authorization, as TorchServe 0.12 ships it (on by default): three keys, written to
//! `key_file.json` in the working folder (mode 0600): a management key and an inference key that
//! expire after `token_expiration_min`, and an API key that does not and rotates the other two
//! through `/token`. Every request but the API descriptions must carry
//! `Authorization: Bearer <key>` for its API. Keys are compared in constant time; the keys in use
//! are read without a lock (a rotation publishes a new set).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine;
use serde_json::json;
use subtle::ConstantTimeEq;

/// The file TorchServe writes the keys to, in its working folder.
pub const KEY_FILE: &str = "key_file.json";

/// Which key a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Inference,
    Management,
    /// The key that rotates the others (`/token`).
    Api,
}

#[derive(Clone)]
struct Key {
    key: String,
    expires: chrono::DateTime<chrono::Utc>,
}

/// The key itself is left out: a `{:?}` in a log line or a panic message must not leak it.
impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("key", &"<redacted>").field("expires", &self.expires).finish()
    }
}

#[derive(Clone)]
struct Keys {
    management: Key,
    inference: Key,
    api: String,
}

/// As [`Key`]'s: the API key is left out.
impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("management", &self.management)
            .field("inference", &self.inference)
            .field("api", &"<redacted>")
            .finish()
    }
}

/// The keys in use and where they are written.
pub struct Tokens {
    keys: ArcSwap<Keys>,
    rotation: std::sync::Mutex<()>,
    file: PathBuf,
    lifetime: Duration,
}

impl Tokens {
    /// Makes new keys and writes the key file in `dir`.
    pub fn start(dir: &Path, lifetime: Duration) -> std::io::Result<Arc<Self>> {
        let keys = Keys {
            management: new_key(lifetime)?,
            inference: new_key(lifetime)?,
            api: random_key()?,
        };
        let tokens = Self {
            keys: ArcSwap::from_pointee(keys),
            rotation: std::sync::Mutex::new(()),
            file: dir.join(KEY_FILE),
            lifetime,
        };
        tokens.write_file()?;
        Ok(Arc::new(tokens))
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Whether `authorization` (the header's value) carries the valid key of `kind`: TorchServe's
    /// `^Bearer\s+(\S+)$`, the key equal (in constant time) and not expired.
    pub fn check(&self, kind: TokenKind, authorization: Option<&str>) -> bool {
        let Some(token) = authorization.and_then(bearer_token) else {
            return false;
        };
        let keys = self.keys.load();
        let (key, expires) = match kind {
            TokenKind::Api => (&keys.api, None),
            TokenKind::Management => (&keys.management.key, Some(keys.management.expires)),
            TokenKind::Inference => (&keys.inference.key, Some(keys.inference.expires)),
        };
        let equal: bool = token.as_bytes().ct_eq(key.as_bytes()).into();
        equal && expires.is_none_or(|at| chrono::Utc::now() < at)
    }

    /// A new key for `kind` (management or inference), with a new expiry; the key file is
    /// rewritten. Blocking (file I/O).
    pub fn rotate(&self, kind: TokenKind) -> std::io::Result<()> {
        // One rotation at a time, from reading the keys to writing the file: two at once would
        // each store a copy holding only its own new key, and one would be lost.
        let _one_at_a_time = self.rotation.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut keys = Keys::clone(&self.keys.load());
        match kind {
            TokenKind::Management => keys.management = new_key(self.lifetime)?,
            TokenKind::Inference => keys.inference = new_key(self.lifetime)?,
            TokenKind::Api => return Ok(()),
        }
        self.keys.store(Arc::new(keys));
        self.write_file()
    }

    /// TorchServe's key file: pretty JSON, `expiration time` an ISO-8601 instant with
    /// nanoseconds, readable by its owner only.
    fn write_file(&self) -> std::io::Result<()> {
        use std::io::Write;

        let keys = self.keys.load();
        let instant = |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let body = json!({
            "management": {"key": keys.management.key, "expiration time": instant(keys.management.expires)},
            "inference": {"key": keys.inference.key, "expiration time": instant(keys.inference.expires)},
            "API": {"key": keys.api},
        });
        let text = serde_json::to_string_pretty(&body).map_err(std::io::Error::other)?;
        // Written to a new file of our own beside it (created exclusively, 0600, never an
        // existing file or link someone else put there) and renamed into place: a reader never
        // sees half a file, and the keys are never readable by others, not even for a moment.
        let dir = self.file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut partial = tempfile::Builder::new().prefix(".key_file-").tempfile_in(dir)?;
        partial.write_all(text.as_bytes())?;
        partial.persist(&self.file).map_err(|e| e.error)?;
        Ok(())
    }
}

fn bearer_token(header: &str) -> Option<&str> {
    let rest = header.strip_prefix("Bearer")?;
    let token = rest.trim_start();
    let whitespace_before = rest.len() > token.len();
    (whitespace_before && !token.is_empty() && !token.chars().any(char::is_whitespace)).then_some(token)
}

/// Six random bytes, URL-safe base64: TorchServe's 8-character keys.
fn random_key() -> std::io::Result<String> {
    let mut bytes = [0u8; 6];
    getrandom::getrandom(&mut bytes).map_err(std::io::Error::other)?;
    Ok(base64::engine::general_purpose::URL_SAFE.encode(bytes))
}

fn new_key(lifetime: Duration) -> std::io::Result<Key> {
    let lifetime = chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
    Ok(Key {
        key: random_key()?,
        expires: chrono::Utc::now().checked_add_signed(lifetime).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_file_is_torchserves_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::start(dir.path(), Duration::from_secs(3600)).unwrap();
        let file = dir.path().join(KEY_FILE);
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let keys: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let management = keys["management"]["key"].as_str().unwrap();
        assert_eq!(management.len(), 8);
        let expiry = keys["inference"]["expiration time"].as_str().unwrap();
        assert!(regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$").unwrap().is_match(expiry), "{expiry}");
        assert!(keys["API"].get("expiration time").is_none());
        assert!(tokens.check(TokenKind::Management, Some(&format!("Bearer {management}"))));
        assert!(!tokens.check(TokenKind::Inference, Some(&format!("Bearer {management}"))), "each API its own key");
    }

    #[test]
    fn debug_output_holds_no_key() {
        let keys = Keys {
            management: new_key(Duration::from_secs(60)).unwrap(),
            inference: new_key(Duration::from_secs(60)).unwrap(),
            api: random_key().unwrap(),
        };
        let text = format!("{keys:?} {:?}", keys.management);
        for secret in [&keys.management.key, &keys.inference.key, &keys.api] {
            assert!(!text.contains(secret.as_str()), "{secret} in {text}");
        }
        assert!(text.contains("expires"), "the rest is still shown: {text}");
    }

    #[test]
    fn the_header_must_be_a_bearer_token() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Bearer \t abc"), Some("abc"));
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("Bearer a b"), None);
        assert_eq!(bearer_token("bearer abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }

    #[test]
    fn keys_expire_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::start(dir.path(), Duration::ZERO).unwrap();
        let read = |kind: &str| {
            let keys: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap()).unwrap();
            keys[kind]["key"].as_str().unwrap().to_string()
        };
        let inference = read("inference");
        assert!(!tokens.check(TokenKind::Inference, Some(&format!("Bearer {inference}"))), "expired at once");
        assert!(tokens.check(TokenKind::Api, Some(&format!("Bearer {}", read("API")))), "the API key never expires");
        tokens.rotate(TokenKind::Inference).unwrap();
        assert_ne!(read("inference"), inference);
    }

    #[test]
    fn rotations_at_once_lose_no_key_and_leave_no_stray_file() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::start(dir.path(), Duration::from_secs(3600)).unwrap();
        for _ in 0..50 {
            std::thread::scope(|scope| {
                scope.spawn(|| tokens.rotate(TokenKind::Management).unwrap());
                scope.spawn(|| tokens.rotate(TokenKind::Inference).unwrap());
            });
            // The file holds the keys in use, both of them.
            let keys: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap()).unwrap();
            for (kind, name) in [(TokenKind::Management, "management"), (TokenKind::Inference, "inference")] {
                let key = keys[name]["key"].as_str().unwrap();
                assert!(tokens.check(kind, Some(&format!("Bearer {key}"))), "{name}");
            }
        }
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(files, [KEY_FILE], "no partial files left");
    }
}
