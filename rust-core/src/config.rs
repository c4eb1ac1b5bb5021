//! The receiver's configuration as the Go shim hands it over (JSON), checked again here
//! so the core never runs on values the kernel side cannot honour.

use serde::Deserialize;

use crate::error::ConfigError;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// None: trace every process except the collector itself.
    #[serde(default)]
    pub discovery: Option<Discovery>,
    /// Exact paths, or prefixes written as "/prefix/*".
    #[serde(default)]
    pub exclude_paths: Vec<String>,
    /// No spans for connections with one of these ports at either end.
    #[serde(default)]
    pub exclude_ports: Vec<u16>,
    /// How trace context crosses process boundaries.
    #[serde(default)]
    pub context_propagation: Propagation,
    /// No spans for processes seen exporting OTLP themselves (an OpenTelemetry SDK).
    #[serde(default = "yes")]
    pub skip_sdk_instrumented: bool,
    /// How database query text is exported.
    #[serde(default)]
    pub database: Database,
    /// Head sampling of traces.
    #[serde(default)]
    pub sampling: Sampling,
}

/// `sampling`: the share of root traces kept (decided from the trace id as
/// OpenTelemetry's `TraceIdRatioBased` does) and whether an incoming `traceparent`'s
/// sampled flag decides instead (`parent_based`, as SDKs do by default).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Sampling {
    pub ratio: f64,
    pub parent_based: bool,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            ratio: 1.0,
            parent_based: true,
        }
    }
}

/// `database`: whether `db.query.text` is captured, sanitized (literals replaced), and how
/// long it may be.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    pub capture_queries: bool,
    pub sanitize_queries: bool,
    pub max_query_length: usize,
}

/// Longest `database.max_query_length` accepted.
pub const MAX_QUERY_LENGTH: usize = 65_536;

impl Default for Database {
    fn default() -> Self {
        Database {
            capture_queries: true,
            sanitize_queries: true,
            max_query_length: 1024,
        }
    }
}

impl Database {
    pub fn query_text(&self) -> crate::protocols::db::QueryTextOptions {
        crate::protocols::db::QueryTextOptions {
            capture: self.capture_queries,
            sanitize: self.sanitize_queries,
            max_len: self.max_query_length,
        }
    }
}

fn yes() -> bool {
    true
}

/// `headers`: insert `traceparent` into outgoing plaintext HTTP/1 requests of traced
/// processes (sock_ops + sk_msg); `off`: never touch traffic (same-node linking only).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    #[default]
    Headers,
    Off,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    #[serde(default)]
    pub instrument: Vec<Selector>,
    #[serde(default)]
    pub exclude: Vec<Selector>,
}

/// A process matches when every field that is set matches.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Inclusive port ranges.
    #[serde(default)]
    pub open_ports: Vec<(u16, u16)>,
    #[serde(default)]
    pub exe_path: Option<String>,
}

impl Config {
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let cfg: Config = serde_json::from_slice(bytes).map_err(|e| ConfigError::Json {
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(d) = &self.discovery {
            for (list, sels) in [("instrument", &d.instrument), ("exclude", &d.exclude)] {
                for (i, s) in sels.iter().enumerate() {
                    let key = format!("discovery.{list}[{i}]");
                    if s.open_ports.is_empty() && s.exe_path.is_none() {
                        return Err(ConfigError::Invalid {
                            key,
                            message: "empty selector: set open_ports or exe_path".into(),
                        });
                    }
                    for &(lo, hi) in &s.open_ports {
                        if lo == 0 || lo > hi {
                            return Err(ConfigError::Invalid {
                                key: format!("{key}.open_ports"),
                                message: format!("invalid port range {lo}-{hi}"),
                            });
                        }
                    }
                    if let Some(p) = &s.exe_path {
                        if p.is_empty() {
                            return Err(ConfigError::Invalid {
                                key: format!("{key}.exe_path"),
                                message: "empty glob".into(),
                            });
                        }
                    }
                }
            }
        }
        for (i, p) in self.exclude_paths.iter().enumerate() {
            if !p.starts_with('/') {
                return Err(ConfigError::Invalid {
                    key: format!("exclude_paths[{i}]"),
                    message: format!("{p:?} must start with \"/\""),
                });
            }
        }
        if !(1..=MAX_QUERY_LENGTH).contains(&self.database.max_query_length) {
            return Err(ConfigError::Invalid {
                key: "database.max_query_length".into(),
                message: format!(
                    "{} is outside 1-{MAX_QUERY_LENGTH}",
                    self.database.max_query_length
                ),
            });
        }
        if !(0.0..=1.0).contains(&self.sampling.ratio) {
            return Err(ConfigError::Invalid {
                key: "sampling.ratio".into(),
                message: format!("{} is outside 0-1", self.sampling.ratio),
            });
        }
        if self.exclude_ports.contains(&0) {
            return Err(ConfigError::Invalid {
                key: "exclude_ports".into(),
                message: "port 0 is not a port".into(),
            });
        }
        Ok(())
    }

    /// True when the path must not produce spans.
    pub fn path_excluded(&self, path: &str) -> bool {
        self.exclude_paths
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) if prefix.ends_with('/') => {
                    path.starts_with(prefix) || path == &prefix[..prefix.len() - 1]
                }
                _ => path == p,
            })
    }
}

impl Selector {
    pub fn port_matches(&self, port: u16) -> bool {
        self.open_ports
            .iter()
            .any(|&(lo, hi)| lo <= port && port <= hi)
    }
}

/// Shell-style glob with `*` (any run, including `/`) and `?` (one byte).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*/python3*", "/usr/bin/python3.11"));
        assert!(glob_match("*/sshd", "/usr/sbin/sshd"));
        assert!(!glob_match("*/sshd", "/usr/sbin/sshd-session"));
        assert!(glob_match("/usr/bin/?url", "/usr/bin/curl"));
        assert!(!glob_match("/usr/bin/?url", "/usr/bin/xcurl"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a", ""));
    }

    #[test]
    fn parses_and_validates() {
        let c = Config::from_json(
            br#"{"discovery":{"instrument":[{"open_ports":[[8080,8089]]},{"exe_path":"*/python3*"}],
                 "exclude":[{"exe_path":"*/sshd"}]},"exclude_paths":["/health","/api/*"],"exclude_ports":[22]}"#,
        )
        .unwrap();
        assert!(c.discovery.as_ref().unwrap().instrument[0].port_matches(8085));
        assert!(c.path_excluded("/health"));
        assert!(!c.path_excluded("/healthz"));
        assert!(c.path_excluded("/api/x/y"));
        assert!(c.path_excluded("/api"));
        // Query text: captured and sanitized unless turned off, 1024 bytes at most.
        assert_eq!(c.database, Database::default());
        let q = c.database.query_text();
        assert!(q.capture && q.sanitize && q.max_len == 1024);
        let c =
            Config::from_json(br#"{"database":{"sanitize_queries":false,"max_query_length":64}}"#)
                .unwrap();
        assert!(c.database.capture_queries && !c.database.sanitize_queries);
        assert_eq!(c.database.max_query_length, 64);
    }

    #[test]
    fn rejects_bad_values() {
        for (json, key) in [
            (
                r#"{"discovery":{"instrument":[{}]}}"#,
                "discovery.instrument[0]",
            ),
            (
                r#"{"discovery":{"instrument":[{"open_ports":[[90,80]]}]}}"#,
                "discovery.instrument[0].open_ports",
            ),
            (r#"{"exclude_paths":["health"]}"#, "exclude_paths[0]"),
            (r#"{"exclude_ports":[0]}"#, "exclude_ports"),
            (
                r#"{"database":{"max_query_length":0}}"#,
                "database.max_query_length",
            ),
            (
                r#"{"database":{"max_query_length":70000}}"#,
                "database.max_query_length",
            ),
            (
                r#"{"database":{"sanitise_queries":false}}"#,
                "sanitise_queries",
            ),
        ] {
            let err = Config::from_json(json.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(key), "{json}: {err}");
        }
        let err = Config::from_json(br#"{"bogus":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }
}
