//! Reads TorchServe's `config.properties`: a java properties file whose values may name
//! environment variables as `$$NAME$$`.

use std::collections::BTreeMap;
use std::path::Path;

use super::ConfigError;

/// Parses a properties file into key/value pairs, with `$$ENV$$` references replaced.
pub fn read_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let file = std::fs::File::open(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(std::io::BufReader::new(file), path, |name| std::env::var(name).ok())
}

/// Parses properties text read from `path` (named in errors), resolving `$$NAME$$` with `lookup`.
/// Bytes are characters as Java's `Properties.load(InputStream)` reads them (ISO-8859-1, which
/// TorchServe uses); they reach the parser as UTF-8, which also keeps it away from a panic it has
/// on a stream that ends inside what could be a byte-order mark (a lone `0xEF`).
pub fn parse(
    mut text: impl std::io::Read,
    path: &Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut bytes = Vec::new();
    text.read_to_end(&mut bytes).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let latin1: String = bytes.iter().map(|&byte| char::from(byte)).collect();
    let mut raw = BTreeMap::new();
    java_properties::PropertiesIter::new_with_encoding(latin1.as_bytes(), encoding_rs::UTF_8)
        .read_into(|key, value| {
            raw.insert(key, value);
        })
        .map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    raw.into_iter()
        .map(|(key, value)| Ok((key, substitute_env(&value, &lookup)?)))
        .collect()
}

/// Replaces each `$$NAME$$` with the environment variable `NAME`, as TorchServe's ConfigManager
/// does; an unset variable is an error, since silently serving with an empty value is worse.
pub fn substitute_env(
    value: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("$$") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("$$") else { break };
        let name = &after[..end];
        let resolved = lookup(name).ok_or_else(|| ConfigError::EnvVar(name.to_string()))?;
        out.push_str(&rest[..start]);
        out.push_str(&resolved);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        (name == "PORT").then(|| "9090".to_string())
    }

    #[test]
    fn replaces_env_references() {
        let value = substitute_env("http://0.0.0.0:$$PORT$$", lookup).unwrap();
        assert_eq!(value, "http://0.0.0.0:9090");
    }

    #[test]
    fn bytes_are_latin1_as_in_java_and_a_lone_bom_byte_is_harmless() {
        let props = parse(&b"a=caf\xe9\n\xef"[..], Path::new("c"), lookup).unwrap();
        assert_eq!(props["a"], "caf\u{e9}");
        assert_eq!(props["\u{ef}"], "");
        assert!(parse(&b"\xef"[..], Path::new("c"), lookup).is_ok());
    }

    #[test]
    fn unset_env_is_an_error() {
        let err = substitute_env("$$NOPE$$", lookup).unwrap_err();
        assert_eq!(err.to_string(), "Invalid Environment Variable NOPE");
    }

    #[test]
    fn lone_markers_are_kept() {
        assert_eq!(substitute_env("a$$b", lookup).unwrap(), "a$$b");
    }

    #[test]
    fn parses_comments_and_separators() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.properties");
        std::fs::write(
            &path,
            "# comment\ninference_address=http://127.0.0.1:$$PORT$$\njob_queue_size = 7\n",
        )
        .unwrap();
        std::env::set_var("PORT", "9090");
        let props = read_file(&path).unwrap();
        assert_eq!(props["inference_address"], "http://127.0.0.1:9090");
        assert_eq!(props["job_queue_size"], "7");
        assert_eq!(props.len(), 2);
    }
}
