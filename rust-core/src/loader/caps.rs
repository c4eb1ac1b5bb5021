//! The Linux capabilities start-up needs, checked from /proc/self/status before any
//! bpf(2) call, so a collector run as a non-root user says which one is missing.
//! CAP_SYS_ADMIN satisfies every check below as far as the kernel is concerned.

/// Capability numbers (linux/capability.h).
pub const DAC_READ_SEARCH: u32 = 2;
pub const NET_ADMIN: u32 = 12;
pub const SYS_PTRACE: u32 = 19;
pub const SYS_ADMIN: u32 = 21;
pub const PERFMON: u32 = 38;
pub const BPF: u32 = 39;

/// Without these the programs cannot load: start-up stops and names them.
pub const REQUIRED: &[(u32, &str, &str)] = &[
    (BPF, "CAP_BPF", "creating maps and loading programs"),
    (
        PERFMON,
        "CAP_PERFMON",
        "tracing programs that read kernel memory",
    ),
    (
        NET_ADMIN,
        "CAP_NET_ADMIN",
        "the sockhash map and the sock_ops/sk_msg programs that insert traceparent",
    ),
];

/// Without these the collector runs with less: the start-up line says what is lost.
pub const DEGRADED: &[(u32, &str, &str)] = &[
    (
        SYS_PTRACE,
        "CAP_SYS_PTRACE",
        "other users' processes: no executable path, environment or libssl mappings; their connections opened before the collector get no headers",
    ),
    (
        DAC_READ_SEARCH,
        "CAP_DAC_READ_SEARCH",
        "other users' processes: no environment (OTEL_SERVICE_NAME) and no socket list (open_ports of running processes)",
    ),
];

/// The effective set of this process, as a bit mask (0 when unreadable).
pub fn effective() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

pub fn has(eff: u64, cap: u32) -> bool {
    eff & (1 << cap) != 0
}

/// "CAP_X (why), CAP_Y (why)" for the entries of `list` missing from `eff`; a
/// missing one is covered by CAP_SYS_ADMIN when `admin_covers`.
pub fn missing(eff: u64, list: &[(u32, &str, &str)], admin_covers: bool) -> Vec<String> {
    list.iter()
        .filter(|(cap, ..)| {
            let covered = admin_covers && has(eff, SYS_ADMIN);
            !has(eff, *cap) && !covered
        })
        .map(|(_, name, why)| format!("{name} ({why})"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_exactly_the_missing_ones() {
        let eff = (1 << BPF) | (1 << PERFMON);
        let got = missing(eff, REQUIRED, true);
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("CAP_NET_ADMIN ("), "{got:?}");
        assert!(missing(eff | (1 << NET_ADMIN), REQUIRED, true).is_empty());
    }

    #[test]
    fn sys_admin_covers_the_bpf_ones_only() {
        let eff = 1 << SYS_ADMIN;
        assert!(missing(eff, REQUIRED, true).is_empty());
        let degraded = missing(eff, DEGRADED, false);
        assert_eq!(degraded.len(), 2);
        assert!(degraded[0].starts_with("CAP_SYS_PTRACE ("));
        assert!(degraded[1].starts_with("CAP_DAC_READ_SEARCH ("));
    }
}
