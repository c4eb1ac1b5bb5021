//! The receiver's configuration as the Go shim hands it over (JSON), checked again here
//! so the core never runs on values the kernel side cannot honour.

use serde::Deserialize;

use crate::error::ConfigError;

#[derive(Debug, Clone, Deserialize, PartialEq)]
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
    /// Processes never traced, with or without `discovery` (other collectors by
    /// default); only selectors on the process (no `open_ports`).
    #[serde(default = "collector_family")]
    pub default_exclude: Vec<Selector>,
}

impl Default for Config {
    /// What `{}` gives.
    fn default() -> Self {
        Config {
            discovery: None,
            exclude_paths: Vec::new(),
            exclude_ports: Vec::new(),
            context_propagation: Propagation::default(),
            skip_sdk_instrumented: true,
            database: Database::default(),
            sampling: Sampling::default(),
            default_exclude: collector_family(),
        }
    }
}

/// The default of `default_exclude`: collectors, whose exports would be traced as
/// requests of their own (this collector never traces itself).
pub fn collector_family() -> Vec<Selector> {
    vec![Selector {
        exe_name: Some("*otelcol*".into()),
        ..Default::default()
    }]
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
    /// Glob on the executable's path.
    #[serde(default)]
    pub exe_path: Option<String>,
    /// Glob on the executable's file name.
    #[serde(default)]
    pub exe_name: Option<String>,
    /// Glob on the cgroup v2 path (`/kubepods.slice/...`).
    #[serde(default)]
    pub cgroup_path: Option<String>,
    /// Only processes whose cgroup names a container.
    #[serde(default)]
    pub containers_only: bool,
}

/// What selectors ask of a process, read when it execs (and at start-up).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProcFacts {
    pub exe: String,
    pub cgroup: crate::cgroup::CgroupInfo,
}

impl ProcFacts {
    /// Reads the cgroup only when a selector asks for it.
    pub fn read(cfg: &Config, pid: u32, exe: String) -> ProcFacts {
        let cgroup = if cfg.uses_cgroup() {
            crate::cgroup::CgroupInfo::read(pid)
        } else {
            Default::default()
        };
        ProcFacts { exe, cgroup }
    }
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
        let mut lists = vec![("default_exclude".to_string(), &self.default_exclude)];
        if let Some(d) = &self.discovery {
            lists.push(("discovery.instrument".into(), &d.instrument));
            lists.push(("discovery.exclude".into(), &d.exclude));
        }
        for (list, sels) in lists {
            for (i, s) in sels.iter().enumerate() {
                s.validate(&format!("{list}[{i}]"))?;
                if list == "default_exclude" && !s.open_ports.is_empty() {
                    return Err(ConfigError::Invalid {
                        key: format!("{list}[{i}].open_ports"),
                        message: "not here: select by ports in discovery.exclude".into(),
                    });
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

    /// Every selector that excludes: discovery's, then the default ones.
    pub fn excludes(&self) -> impl Iterator<Item = &Selector> {
        let d = self.discovery.as_ref().map(|d| d.exclude.as_slice());
        d.unwrap_or_default().iter().chain(&self.default_exclude)
    }

    /// Whether some selector asks about processes (then every exec is decided).
    pub fn selects_processes(&self) -> bool {
        let d = self.discovery.as_ref().map(|d| d.instrument.as_slice());
        d.unwrap_or_default()
            .iter()
            .chain(self.excludes())
            .any(Selector::by_process)
    }

    /// Whether some selector asks about cgroups.
    pub fn uses_cgroup(&self) -> bool {
        let d = self.discovery.as_ref().map(|d| d.instrument.as_slice());
        d.unwrap_or_default()
            .iter()
            .chain(self.excludes())
            .any(|s| s.containers_only || s.cgroup_path.is_some())
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
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| ConfigError::Invalid {
            key: format!("{key}{field}"),
            message,
        };
        if self.open_ports.is_empty() && !self.by_process() {
            return Err(bad(
                "",
                "empty selector: set open_ports, exe_path, exe_name, cgroup_path or containers_only".into(),
            ));
        }
        for &(lo, hi) in &self.open_ports {
            if lo == 0 || lo > hi {
                return Err(bad(".open_ports", format!("invalid port range {lo}-{hi}")));
            }
        }
        for (field, glob) in [
            (".exe_path", &self.exe_path),
            (".exe_name", &self.exe_name),
            (".cgroup_path", &self.cgroup_path),
        ] {
            if glob.as_deref() == Some("") {
                return Err(bad(field, "empty glob".into()));
            }
        }
        if let Some(g) = &self.cgroup_path {
            if !g.starts_with(['/', '*']) {
                return Err(bad(
                    ".cgroup_path",
                    format!("{g:?} never matches: cgroup paths start with \"/\""),
                ));
            }
        }
        Ok(())
    }

    /// Whether it asks anything of the process itself (decided at exec, in userspace).
    pub fn by_process(&self) -> bool {
        self.exe_path.is_some()
            || self.exe_name.is_some()
            || self.cgroup_path.is_some()
            || self.containers_only
    }

    /// Whether every process field that is set matches (ports are the kernel's).
    pub fn process_matches(&self, p: &ProcFacts) -> bool {
        let name = p.exe.rsplit('/').next().unwrap_or_default();
        let glob =
            |g: &Option<String>, text: &str| g.as_deref().is_none_or(|g| glob_match(g, text));
        glob(&self.exe_path, &p.exe)
            && glob(&self.exe_name, name)
            && (!self.containers_only || p.cgroup.container_id.is_some())
            && self.cgroup_path.as_deref().is_none_or(|g| {
                p.cgroup
                    .path
                    .as_deref()
                    .is_some_and(|path| glob_match(g, path))
            })
    }

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
    fn default_exclusion() {
        assert_eq!(Config::from_json(b"{}").unwrap(), Config::default());
        assert_eq!(Config::default().default_exclude, collector_family());
        let none = Config::from_json(br#"{"default_exclude":[]}"#).unwrap();
        assert!(none.default_exclude.is_empty() && !none.selects_processes());
        assert!(Config::default().selects_processes());
        assert!(!Config::default().uses_cgroup());
        let collector = |exe: &str| ProcFacts {
            exe: exe.into(),
            ..Default::default()
        };
        let family = &collector_family()[0];
        for exe in [
            "/usr/bin/otelcol",
            "/opt/x/otelcol-contrib",
            "/bin/my-otelcol-k8s",
        ] {
            assert!(family.process_matches(&collector(exe)), "{exe}");
        }
        for exe in ["/root/otelcol/bin/python3", "/usr/bin/curl"] {
            assert!(!family.process_matches(&collector(exe)), "{exe}");
        }
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
            (
                r#"{"discovery":{"instrument":[{"containers_only":false}]}}"#,
                "discovery.instrument[0]",
            ),
            (
                r#"{"discovery":{"instrument":[{"exe_name":""}]}}"#,
                "discovery.instrument[0].exe_name",
            ),
            (
                r#"{"discovery":{"instrument":[{"open_ports":[[80,80]]}],"exclude":[{"cgroup_path":"kubepods*"}]}}"#,
                "discovery.exclude[0].cgroup_path",
            ),
            (r#"{"default_exclude":[{}]}"#, "default_exclude[0]"),
            (
                r#"{"default_exclude":[{"exe_name":"x"},{"open_ports":[[80,80]]}]}"#,
                "default_exclude[1].open_ports",
            ),
            (r#"{"default_exclude":[{"exe_nam":"x"}]}"#, "exe_nam"),
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
