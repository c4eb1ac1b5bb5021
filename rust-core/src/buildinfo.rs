//! A Go program's build info: the `.go.buildinfo` section that `go version -m` reads
//! (Go 1.18+ layout: a 32-byte header, then the Go version and the module info as
//! varint-prefixed strings), and the ELF section lookup that finds it.

const MAGIC: &[u8] = b"\xff Go buildinf:";
const HEADER: usize = 32;
/// Flag of the header's byte 15: the strings follow the header (Go 1.18+).
const INLINE_STRINGS: u8 = 0x2;
/// The module info is framed by 16 bytes on each side.
const SENTINEL: usize = 16;

/// The two strings of a Go 1.18+ section: the Go version and the module info. None for
/// an older layout (pointers into the data segment) or a malformed section.
fn strings(section: &[u8]) -> Option<(&[u8], &[u8])> {
    if !section.starts_with(MAGIC) || section.len() < HEADER || section[15] & INLINE_STRINGS == 0 {
        return None;
    }
    let (go_version, rest) = varint_string(&section[HEADER..])?;
    let (modinfo, _) = varint_string(rest)?;
    Some((go_version, modinfo))
}

/// The Go version that built the program (`go1.26.8`, `go1.22.1 X:loopvar`).
pub fn go_version(section: &[u8]) -> Option<&str> {
    std::str::from_utf8(strings(section)?.0).ok()
}

/// The main module's version (`v1.4.2`) from the section's bytes. None for an older
/// layout, a malformed section, or "(devel)" (built outside a tagged VCS checkout: no
/// version is known).
pub fn main_module_version(section: &[u8]) -> Option<String> {
    let (_, modinfo) = strings(section)?;
    // Framed by sentinels when present; "" for a program built without modules.
    let modinfo = if modinfo.len() > 2 * SENTINEL && modinfo[modinfo.len() - SENTINEL - 1] == b'\n'
    {
        &modinfo[SENTINEL..modinfo.len() - SENTINEL]
    } else {
        modinfo
    };
    let text = std::str::from_utf8(modinfo).ok()?;
    // "mod\t<path>\t<version>\t<sum>"
    let line = text.lines().find(|l| l.starts_with("mod\t"))?;
    let version = line.split('\t').nth(2)?;
    (!version.is_empty() && version != "(devel)").then(|| version.to_string())
}

fn varint_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (mut n, mut shift, mut i) = (0u64, 0u32, 0usize);
    loop {
        let byte = *b.get(i)?;
        i += 1;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let end = i.checked_add(usize::try_from(n).ok()?)?;
    Some((b.get(i..end)?, &b[end..]))
}

/// What the section headers of an ELF file say about it as a Go program.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GoElf {
    /// It has a `.go.buildinfo` or `.note.go.buildid` section.
    pub is_go: bool,
    /// The `.go.buildinfo` section's bytes (at most 64 KiB).
    pub buildinfo: Option<Vec<u8>>,
}

/// Reads only the ELF header, the section headers, the section-name table and the
/// build info section (ELF64 little-endian, like the rest of the receiver).
pub fn read_go_elf(path: &str) -> GoElf {
    use std::io::{Read, Seek, SeekFrom};
    let read = || -> std::io::Result<GoElf> {
        let mut f = std::fs::File::open(path)?;
        let mut eh = [0u8; 64];
        f.read_exact(&mut eh)?;
        if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
            return Ok(GoElf::default());
        }
        let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
        let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let (shoff, shentsize, shnum, shstrndx) = (
            u64_at(&eh, 0x28),
            u16_at(&eh, 0x3a),
            u16_at(&eh, 0x3c),
            u16_at(&eh, 0x3e),
        );
        if shentsize < 64 || shnum == 0 || shnum > 4096 || shstrndx >= shnum {
            return Ok(GoElf::default());
        }
        let mut sh = vec![0u8; shentsize * shnum];
        f.seek(SeekFrom::Start(shoff))?;
        f.read_exact(&mut sh)?;
        let strtab = &sh[shstrndx * shentsize..];
        let (str_off, str_size) = (u64_at(strtab, 0x18), u64_at(strtab, 0x20).min(1 << 20));
        let mut names = vec![0u8; str_size as usize];
        f.seek(SeekFrom::Start(str_off))?;
        f.read_exact(&mut names)?;
        let mut out = GoElf::default();
        for i in 0..shnum {
            let h = &sh[i * shentsize..(i + 1) * shentsize];
            let n = u32::from_le_bytes(h[..4].try_into().unwrap()) as usize;
            let name = names.get(n..).unwrap_or_default();
            if name.starts_with(b".note.go.buildid\0") {
                out.is_go = true;
            } else if name.starts_with(b".go.buildinfo\0") {
                out.is_go = true;
                let (off, size) = (u64_at(h, 0x18), u64_at(h, 0x20).min(64 << 10));
                let mut data = vec![0u8; size as usize];
                f.seek(SeekFrom::Start(off))?;
                if f.read_exact(&mut data).is_ok() {
                    out.buildinfo = Some(data);
                }
            }
        }
        Ok(out)
    };
    read().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The .go.buildinfo sections of a tiny module `example.com/shop/cart` built by Go
    // 1.26 (`objcopy -O binary --only-section=.go.buildinfo`): in a git checkout tagged
    // v1.4.2 with -buildvcs=true, and without VCS stamping ("(devel)").
    const TAGGED: &[u8] = include_bytes!("../testdata/go-buildinfo-v1.4.2.bin");
    const DEVEL: &[u8] = include_bytes!("../testdata/go-buildinfo-devel.bin");

    #[test]
    fn real_sections() {
        assert_eq!(main_module_version(TAGGED).as_deref(), Some("v1.4.2"));
        assert_eq!(main_module_version(DEVEL), None, "(devel) is no version");
        for section in [TAGGED, DEVEL] {
            let v = go_version(section).unwrap();
            assert!(v.starts_with("go1.26"), "{v}");
        }
        assert_eq!(go_version(&TAGGED[..HEADER]), None);
    }

    #[test]
    fn malformed_sections() {
        assert_eq!(main_module_version(b""), None);
        assert_eq!(main_module_version(&TAGGED[..HEADER]), None);
        for cut in [HEADER + 1, 60, 120] {
            assert_eq!(main_module_version(&TAGGED[..cut]), None, "cut at {cut}");
        }
        let mut old = TAGGED.to_vec();
        old[15] &= !INLINE_STRINGS;
        assert_eq!(main_module_version(&old), None, "pre-1.18 layout");
        let mut bad = TAGGED.to_vec();
        bad[0] = 0;
        assert_eq!(main_module_version(&bad), None);
        // A length varint that never ends.
        let mut endless = TAGGED[..HEADER].to_vec();
        endless.extend([0xff; 12]);
        assert_eq!(main_module_version(&endless), None);
    }

    #[test]
    fn elf_files() {
        // The Go toolchain is a Go program (its version is "(devel)" or a toolchain
        // module's); this test binary and the shell are not Go programs.
        let go = std::process::Command::new("go")
            .args(["env", "GOROOT"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        assert!(!go.is_empty(), "go is needed to build the collector");
        let g = read_go_elf(&format!("{go}/bin/go"));
        assert!(g.is_go);
        assert!(g.buildinfo.as_deref().is_some_and(|b| b.starts_with(MAGIC)));
        assert_eq!(read_go_elf("/proc/self/exe"), GoElf::default());
        assert_eq!(read_go_elf("/bin/sh"), GoElf::default());
        assert_eq!(read_go_elf("/nonexistent"), GoElf::default());
    }
}
