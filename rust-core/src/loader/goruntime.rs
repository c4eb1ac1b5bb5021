//! What the kernel needs to know about a Go program's runtime to tell goroutines apart
//! (issue 14): where `runtime.g` keeps the goroutine id. The program's own DWARF says it
//! exactly when it has one (godwarf.rs, any release); a stripped program gets it from
//! its Go release, read from the build info every Go 1.18+ program carries, and a table.
//!
//! The current goroutine's `g` is in R14 in Go's register ABI (Go 1.17+ on amd64): at
//! a uprobe placed after a function's stack check (which itself reads `16(R14)`), and at
//! a syscall's exit, because the function that executes SYSCALL
//! (`internal/runtime/syscall.Syscall6`, `runtime/internal/syscall.Syscall6` in 1.21,
//! `syscall.Syscall.abi0` in 1.18) never writes R14 and the kernel restores it.

/// The Go release (major, minor) of a version written in `.go.buildinfo` (`go1.26.8`,
/// `go1.23rc1`, `go1.22.1 X:loopvar` -> (1, 26) ...). None: a development build, whose
/// runtime layout no release table describes.
pub fn parse_release(version: &str) -> Option<(u32, u32)> {
    let rest = version.strip_prefix("go")?;
    let (major, rest) = rest.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Offset of `goid` in `runtime.g` on amd64, per release, for stripped programs. Read
/// from the DWARF of real builds (scripts/goid-offset; go1.18.10, 1.19.13, 1.20.14,
/// 1.21.13, 1.22.12: 152; 1.23.12, 1.24.13: 160, `syscallbp` added; 1.25.9, 1.26.8,
/// 1.27.3: 152, `gobuf.ret` removed). A release after the last one measured is not
/// guessed.
pub fn goid_offset(release: (u32, u32)) -> Option<u64> {
    match release {
        (1, 18..=22) => Some(152),
        (1, 23..=24) => Some(160),
        (1, 25..=27) => Some(152),
        _ => None,
    }
}

/// The goroutine id offset for the Go program at `path`: Err says why there is none.
pub fn goid_offset_of(path: &str) -> Result<u64, &'static str> {
    let data = std::fs::read(path).map_err(|_| "unreadable")?;
    let file = object::File::parse(&*data).map_err(|_| "not an ELF file")?;
    let info = super::gotls::go_buildinfo(&file)?;
    // Go 1.18+ writes its version inline; older programs are left out even with DWARF
    // (the table was never checked for them, and g is in R14 only from 1.17).
    let version = crate::buildinfo::go_version(info).ok_or("Go older than 1.18")?;
    choose(parse_release(version), super::godwarf::goid_offset(&file))
}

/// The DWARF's offset when there is one (it describes this very build, so it wins over
/// the table, and covers releases after the table and development builds); else the
/// table's for the release.
fn choose(release: Option<(u32, u32)>, dwarf: Option<u64>) -> Result<u64, &'static str> {
    let table = release.and_then(goid_offset);
    match (dwarf, table) {
        (Some(off), Some(t)) if off != t => {
            log::debug!("goid at {off} per the DWARF, {t} per the table for {release:?}");
            Ok(off)
        }
        (Some(off), _) => Ok(off),
        (None, Some(t)) => Ok(t),
        (None, None) if release.is_none() => Err("a stripped development build of Go"),
        (None, None) => Err("a stripped Go release without a known runtime.g layout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go_release(info: &[u8]) -> Option<(u32, u32)> {
        parse_release(crate::buildinfo::go_version(info)?)
    }

    fn info(version: &str) -> Vec<u8> {
        let mut b = b"\xff Go buildinf:".to_vec();
        b.extend([8, 2]);
        b.resize(32, 0);
        b.push(version.len() as u8);
        b.extend(version.as_bytes());
        b.extend([3, b'm', b'o', b'd']);
        b
    }

    #[test]
    fn reads_the_release_from_build_info() {
        assert_eq!(go_release(&info("go1.26.8")), Some((1, 26)));
        assert_eq!(go_release(&info("go1.23rc1")), Some((1, 23)));
        assert_eq!(go_release(&info("go1.22.1 X:loopvar")), Some((1, 22)));
        assert_eq!(go_release(&info("devel go1.27-abcdef")), None);
        // Pre-1.18 layout (pointers to the strings, flag 2 clear).
        let mut old = info("go1.17.13");
        old[15] = 0;
        assert_eq!(go_release(&old), None);
        assert_eq!(go_release(b"\xff Go buildinf:"), None);
        let mut cut = info("go1.26.8");
        cut.truncate(36);
        assert_eq!(go_release(&cut), None);
    }

    #[test]
    fn goid_offsets_per_release() {
        assert_eq!(goid_offset((1, 18)), Some(152));
        assert_eq!(goid_offset((1, 22)), Some(152));
        assert_eq!(goid_offset((1, 23)), Some(160));
        assert_eq!(goid_offset((1, 24)), Some(160));
        assert_eq!(goid_offset((1, 25)), Some(152));
        assert_eq!(goid_offset((1, 26)), Some(152));
        assert_eq!(goid_offset((1, 27)), Some(152));
        assert_eq!(goid_offset((1, 17)), None);
        assert_eq!(goid_offset((1, 28)), None);
    }

    #[test]
    fn reads_the_go_toolchain_itself() {
        // The `go` command on PATH is a Go program built by its own release.
        let out = std::process::Command::new("go")
            .args(["env", "GOROOT", "GOVERSION"])
            .output()
            .expect("go on PATH");
        let out = String::from_utf8(out.stdout).unwrap();
        let mut lines = out.lines();
        let (root, version) = (lines.next().unwrap(), lines.next().unwrap());
        let want = goid_offset(parse_release(version).unwrap());
        use object::{Object, ObjectSection};
        let data = std::fs::read(format!("{root}/bin/go")).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let sec = file.section_by_name(".go.buildinfo").unwrap();
        let got = go_release(sec.data().unwrap());
        assert_eq!(got, parse_release(version));
        assert_eq!(
            goid_offset_of(&format!("{root}/bin/go")).ok(),
            want,
            "{version}"
        );
    }

    /// Releases whose runtime layout or code shape differs from the local Go's (register
    /// ABI's first release; the last with the old epilogue; `syscallbp`; the newest),
    /// fetched by `go` from the module proxy (scripts/deps.sh fetches them ahead).
    const RELEASES: &[&str] = &["go1.18.10", "go1.20.14", "go1.23.12", "go1.27.3", "local"];

    /// Builds the single-file program `src` (repository path) with Go `release` into
    /// `dir`; `flags` go to `go build`.
    fn build(release: &str, dir: &std::path::Path, src: &str, flags: &[&str]) -> String {
        use std::process::Command;
        let root = Command::new("go")
            .args(["env", "GOROOT"])
            .env("GOTOOLCHAIN", release)
            .output()
            .expect("go on PATH");
        assert!(root.status.success(), "{release}: {root:?}");
        let go = format!("{}/bin/go", String::from_utf8(root.stdout).unwrap().trim());
        let name = src.rsplit('/').nth(1).unwrap();
        let out = dir.join(format!("{name}-{release}{}", flags.join("")));
        let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let built = Command::new(go)
            .args(["build"])
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(format!("{repo}/{src}"))
            .env("GOTOOLCHAIN", "local")
            .env("GO111MODULE", "off")
            .env("CGO_ENABLED", "0")
            .output()
            .unwrap();
        assert!(built.status.success(), "{release} {src}: {built:?}");
        out.display().to_string()
    }

    fn scratch(what: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("goruntime-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn goid_offsets_match_each_releases_dwarf() {
        let dir = scratch("dwarf");
        for release in RELEASES {
            let exe = build(release, &dir, "scripts/goid-offset/main.go", &[]);
            let out = std::process::Command::new(&exe).output().unwrap();
            let out = String::from_utf8(out.stdout).unwrap();
            let (version, off) = out.trim().split_once(' ').expect("version offset");
            let off: u64 = off.parse().unwrap();
            assert_eq!(
                goid_offset(parse_release(version).unwrap()),
                Some(off),
                "{version}"
            );
            assert_eq!(goid_offset_of(&exe), Ok(off), "{version}");
            // The Rust DWARF reader agrees with Go's debug/dwarf.
            let data = std::fs::read(&exe).unwrap();
            let file = object::File::parse(&*data).unwrap();
            assert_eq!(
                super::super::godwarf::goid_offset(&file),
                Some(off),
                "{version}"
            );
            // Stripped: no DWARF, the table's offset.
            let exe = build(
                release,
                &dir,
                "scripts/goid-offset/main.go",
                &["-ldflags=-s -w"],
            );
            let data = std::fs::read(&exe).unwrap();
            let file = object::File::parse(&*data).unwrap();
            assert_eq!(super::super::godwarf::goid_offset(&file), None, "{version}");
            assert_eq!(goid_offset_of(&exe), Ok(off), "{version} stripped");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_dwarf_wins_over_the_table() {
        assert_eq!(choose(Some((1, 26)), Some(152)), Ok(152));
        assert_eq!(choose(Some((1, 26)), Some(168)), Ok(168));
        assert_eq!(choose(Some((1, 26)), None), Ok(152));
        // A release after the table, or a development build: only with DWARF.
        assert_eq!(choose(Some((1, 40)), Some(176)), Ok(176));
        assert_eq!(choose(None, Some(176)), Ok(176));
        assert!(choose(Some((1, 40)), None).is_err());
        assert!(choose(None, None).is_err());
    }

    #[test]
    fn probe_sites_are_found_in_each_release() {
        let dir = scratch("sites");
        for release in RELEASES {
            for flags in [&[][..], &["-ldflags=-s -w"][..]] {
                let exe = build(release, &dir, "test/e2e/apps/gofanoutstd/main.go", flags);
                let sites = super::super::goctx::sites(&exe).unwrap();
                let count = |name| sites.iter().filter(|(p, _)| *p == name).count();
                for once in [
                    "on_go_round_trip",
                    "on_go_request_write",
                    "on_go_request_done",
                ] {
                    assert_eq!(count(once), 1, "{release} {flags:?} {once}");
                }
                // The new g where runtime.newproc queues it, in every release.
                assert_eq!(count("on_go_newproc"), 1, "{release} {flags:?}");
                assert_eq!(count("on_go_newproc_queued"), 1, "{release} {flags:?}");
                assert_eq!(count("on_go_newproc_ret"), 0, "{release} {flags:?}");
                // The fallback: newproc1 has one return in every release.
                let data = std::fs::read(&exe).unwrap();
                let file = object::File::parse(&*data).unwrap();
                let (_, code) = super::super::gotls::find_func(&file, "runtime.newproc1")
                    .unwrap()
                    .unwrap();
                assert_eq!(super::super::gotls::go_returns(code).len(), 1, "{release}");
                let exe = build(release, &dir, "test/e2e/apps/gotls/main.go", flags);
                let tls = super::super::gotls::sites(&exe)
                    .unwrap()
                    .expect("crypto/tls");
                assert!(!tls.read_rets.is_empty(), "{release} {flags:?}");
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
