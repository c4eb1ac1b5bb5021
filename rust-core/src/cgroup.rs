//! What a process's cgroup says about where it runs: its cgroup v2 path, and the
//! container and Kubernetes pod it belongs to when the path has the shape a container
//! runtime gives it. Pure parsing of /proc/<pid>/cgroup text.

use crate::spans::route::is_uuid;
/// What /proc/<pid>/cgroup told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupInfo {
    /// The cgroup v2 path (`0::<path>`), relative to the reader's cgroup namespace.
    pub path: Option<String>,
    /// The container id (64 hex digits) a runtime put into the path.
    pub container_id: Option<String>,
    /// A kubepods path's pod uid, with dashes.
    pub pod_uid: Option<String>,
}

impl CgroupInfo {
    pub fn read(pid: u32) -> CgroupInfo {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map(|t| Self::parse(&t))
            .unwrap_or_default()
    }

    /// Parses /proc/<pid>/cgroup. The container is taken from the v2 path; on a hybrid
    /// host a runtime with the cgroupfs driver may have placed the process in v1
    /// hierarchies only, so their paths are asked next.
    pub fn parse(text: &str) -> CgroupInfo {
        let mut v2 = None;
        let mut v1 = Vec::new();
        for line in text.lines() {
            let mut f = line.splitn(3, ':');
            let (Some(id), Some(_), Some(path)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if id == "0" {
                v2 = Some(path.to_string());
            } else {
                v1.push(path);
            }
        }
        let from = v2
            .as_deref()
            .and_then(container_of)
            .or_else(|| v1.iter().find_map(|p| container_of(p)));
        let (container_id, pod_uid) = match from {
            Some((c, p)) => (Some(c), p),
            None => (None, None),
        };
        CgroupInfo {
            path: v2,
            container_id,
            pod_uid,
        }
    }
}

/// The container id and pod uid a cgroup path names. The deepest component with a
/// container's shape is the container (podman's crun adds `/container` below it; a
/// container may make cgroups of its own); the pod is the component above it.
///
/// Shapes: `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `libpod-<id>.scope` (systemd driver); `<id>` alone (cgroupfs driver: `/docker/<id>`,
/// `/kubepods/burstable/pod<uid>/<id>`). Pods: `kubepods-<qos>-pod<uid_with_underscores>.slice`
/// or `pod<uid>`.
pub fn container_of(path: &str) -> Option<(String, Option<String>)> {
    let parts: Vec<&str> = path.split('/').collect();
    let at = parts.iter().rposition(|c| container_id(c).is_some())?;
    let id = container_id(parts[at])?.to_string();
    // Only a kubepods path has pods: `pod<uid>` elsewhere could be anything.
    let kube = parts[..at].iter().any(|c| c.starts_with("kubepods"));
    let pod = at
        .checked_sub(1)
        .filter(|_| kube)
        .and_then(|i| pod_uid(parts[i]));
    Some((id, pod))
}

fn container_id(component: &str) -> Option<&str> {
    let id = match component.strip_suffix(".scope") {
        Some(unit) => ["docker-", "cri-containerd-", "crio-", "libpod-"]
            .iter()
            .find_map(|p| unit.strip_prefix(p))?,
        None => component,
    };
    is_hex64(id).then_some(id)
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn pod_uid(component: &str) -> Option<String> {
    let raw = match component.strip_suffix(".slice") {
        // kubepods-burstable-pod<uid>.slice, kubepods-pod<uid>.slice (guaranteed)
        Some(unit) => unit.rsplit_once("-pod")?.1,
        None => component.strip_prefix("pod")?,
    };
    let uid = raw.replace('_', "-");
    is_uuid(&uid).then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e2b1c0d9a8b7c6d5e4f30211203948576afbecd0123456789abcdef012345";
    const UID: &str = "8a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";

    fn c(path: &str) -> Option<(String, Option<String>)> {
        container_of(path)
    }

    #[test]
    fn runtimes() {
        let plain = Some((ID.to_string(), None));
        let pod = Some((ID.to_string(), Some(UID.to_string())));
        let uscore = UID.replace('-', "_");
        for (path, want) in [
            (format!("/system.slice/docker-{ID}.scope"), &plain),
            (format!("/docker/{ID}"), &plain),
            (format!("/machine.slice/libpod-{ID}.scope/container"), &plain),
            (format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"), &plain),
            (format!("/system.slice/crio-{ID}.scope"), &plain),
            (format!("/otelcol-e2e.slice/docker-{ID}.scope"), &plain),
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uscore}.slice/cri-containerd-{ID}.scope"),
                &pod,
            ),
            (
                format!("/kubepods.slice/kubepods-pod{uscore}.slice/crio-{ID}.scope"),
                &pod,
            ),
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uscore}.slice/docker-{ID}.scope"),
                &pod,
            ),
            (format!("/kubepods/burstable/pod{UID}/{ID}"), &pod),
            (format!("/kubepods/pod{UID}/{ID}"), &pod),
            // Seen from inside a private cgroup namespace.
            (format!("/../../kubepods-besteffort-pod{uscore}.slice/cri-containerd-{ID}.scope"), &pod),
        ] {
            assert_eq!(&c(&path), want, "{path}");
        }
    }

    #[test]
    fn not_containers() {
        for path in [
            "/",
            "/user.slice/user-0.slice/session-3.scope",
            "/system.slice/docker.service",
            "/process_api/6ee87370eb9cc70ccbc7d4613a0419fb", // 32 hex digits
            // conmon, the monitor of a podman/CRI-O container, is not the container.
            &format!("/machine.slice/libpod-conmon-{ID}.scope"),
            &format!("/system.slice/crio-conmon-{ID}.scope"),
            &format!("/system.slice/docker-{}.scope", &ID[1..]),
            &format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
            &format!("/system.slice/other-{ID}.scope"),
        ] {
            assert_eq!(c(path), None, "{path}");
        }
        // A pod-shaped name outside kubepods, or a bad uid: no pod.
        assert_eq!(c(&format!("/x/pod{UID}/{ID}")), Some((ID.into(), None)));
        assert_eq!(
            c(&format!("/kubepods/burstable/pod{}/{ID}", &UID[1..])),
            Some((ID.into(), None))
        );
    }

    #[test]
    fn proc_cgroup_text() {
        let v2 = format!("0::/otelcol-e2e.slice/docker-{ID}.scope\n");
        let info = CgroupInfo::parse(&v2);
        assert_eq!(
            info.path.as_deref(),
            Some(format!("/otelcol-e2e.slice/docker-{ID}.scope").as_str())
        );
        assert_eq!(info.container_id.as_deref(), Some(ID));
        assert_eq!(info.pod_uid, None);
        // A hybrid host: the v2 line says nothing, a v1 hierarchy names the container.
        let hybrid = format!(
            "9:name=systemd:/docker/{ID}\n4:memory:/process_api/6ee87370eb9cc70ccbc7d4613a0419fb\n0::/\n"
        );
        let info = CgroupInfo::parse(&hybrid);
        assert_eq!(info.path.as_deref(), Some("/"));
        assert_eq!(info.container_id.as_deref(), Some(ID));
        // This host's own shape: no container.
        let host =
            "9:name=systemd:/\n4:memory:/process_api/6ee87370eb9cc70ccbc7d4613a0419fb\n0::/\n";
        assert_eq!(
            CgroupInfo::parse(host),
            CgroupInfo {
                path: Some("/".into()),
                ..Default::default()
            }
        );
        assert_eq!(CgroupInfo::parse(""), CgroupInfo::default());
        // Our own cgroup is readable and has a v2 path on a v2 or hybrid host.
        assert!(CgroupInfo::read(std::process::id()).path.is_some());
    }
}
