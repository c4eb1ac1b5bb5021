//! What a span's resource says about its process, read once from /proc per process.

use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub exe_path: String,
    pub exe_name: String,
    pub service_name: String,
    /// Every pair of OTEL_RESOURCE_ATTRIBUTES, in order.
    pub resource_attrs: Vec<(String, String)>,
}

impl ProcessInfo {
    /// Reads /proc/<pid>; `comm` and `exec_path` (from the kernel) stand in when the
    /// process is already gone, as short-lived clients often are.
    pub fn read(pid: u32, comm: &str, exec_path: Option<&str>) -> ProcessInfo {
        let exe_path = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| {
                p.to_string_lossy()
                    .trim_end_matches(" (deleted)")
                    .to_string()
            })
            .or_else(|| exec_path.map(str::to_string))
            .unwrap_or_default();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        Self::from_parts(pid, comm, &exe_path, &environ)
    }

    pub fn from_parts(pid: u32, comm: &str, exe_path: &str, environ: &[u8]) -> ProcessInfo {
        let exe_name = match exe_path.rsplit('/').next() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => comm.to_string(),
        };
        let mut service_env = None;
        let mut attrs = Vec::new();
        for var in environ.split(|&b| b == 0) {
            let var = String::from_utf8_lossy(var);
            if let Some(v) = var.strip_prefix("OTEL_SERVICE_NAME=") {
                if !v.is_empty() {
                    service_env = Some(v.to_string());
                }
            } else if let Some(v) = var.strip_prefix("OTEL_RESOURCE_ATTRIBUTES=") {
                attrs = parse_resource_attributes(v);
            }
        }
        let service_name = service_env
            .or_else(|| {
                attrs
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| exe_name.clone());
        ProcessInfo {
            pid,
            exe_path: exe_path.to_string(),
            exe_name,
            service_name,
            resource_attrs: attrs,
        }
    }
}

/// `k1=v1,k2=v2` with percent-encoded values, as the OTel SDK spec defines it; malformed
/// pairs are skipped.
pub fn parse_resource_attributes(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            if k.is_empty() {
                return None;
            }
            Some((k.to_string(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Process infos by pid, filled lazily; entries go when the process exits.
/// Reads a process's info: /proc in production, a stand-in when replaying recordings.
pub type ProcReader = fn(pid: u32, comm: &str, exec_path: Option<&str>) -> ProcessInfo;

pub struct ProcessTable {
    procs: HashMap<u32, Arc<ProcessInfo>>,
    exec_paths: HashMap<u32, String>,
    reader: ProcReader,
}

impl Default for ProcessTable {
    fn default() -> Self {
        Self::with_reader(ProcessInfo::read)
    }
}

impl ProcessTable {
    pub fn with_reader(reader: ProcReader) -> Self {
        ProcessTable {
            procs: HashMap::new(),
            exec_paths: HashMap::new(),
            reader,
        }
    }

    pub fn get(&mut self, pid: u32, comm: &str) -> Arc<ProcessInfo> {
        if let Some(p) = self.procs.get(&pid) {
            return p.clone();
        }
        let exec = self.exec_paths.get(&pid).map(String::as_str);
        let p = Arc::new((self.reader)(pid, comm, exec));
        self.procs.insert(pid, p.clone());
        p
    }

    /// The process replaced its image: forget what we knew.
    pub fn exec(&mut self, pid: u32, filename: &str) {
        self.procs.remove(&pid);
        self.exec_paths.insert(pid, filename.to_string());
    }

    pub fn exit(&mut self, pid: u32) {
        self.procs.remove(&pid);
        self.exec_paths.remove(&pid);
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_precedence() {
        let p = ProcessInfo::from_parts(
            1,
            "python3",
            "/usr/bin/python3.11",
            b"A=1\0OTEL_RESOURCE_ATTRIBUTES=service.name=svc,deployment.environment=prod%20eu\0",
        );
        assert_eq!(p.service_name, "svc");
        assert_eq!(
            p.resource_attrs[1],
            ("deployment.environment".into(), "prod eu".into())
        );
        let p = ProcessInfo::from_parts(
            1,
            "python3",
            "/usr/bin/python3.11",
            b"OTEL_SERVICE_NAME=orders\0OTEL_RESOURCE_ATTRIBUTES=service.name=svc\0",
        );
        assert_eq!(p.service_name, "orders");
        let p = ProcessInfo::from_parts(1, "python3", "/usr/bin/python3.11", b"");
        assert_eq!(p.service_name, "python3.11");
        let p = ProcessInfo::from_parts(1, "curl", "", b"");
        assert_eq!(p.service_name, "curl");
    }
}
