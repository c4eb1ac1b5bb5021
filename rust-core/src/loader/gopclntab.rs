//! Go's own function table (`.gopclntab`), which stays in programs stripped of their symbol
//! table (`-ldflags=-s`, the usual container build): function names and entry offsets, as
//! the runtime reads them for stack traces. Layout of Go 1.18 and later (64-bit).

/// `runtime.pcHeader` magics: Go 1.18–1.19 and Go 1.20+ (same layout).
const MAGICS: [u32; 2] = [0xffff_fff0, 0xffff_fff1];

/// Whether `tab` starts with a function table of the layout read here.
pub fn valid(tab: &[u8]) -> bool {
    tab.len() >= 72
        && MAGICS.contains(&u32::from_le_bytes([tab[0], tab[1], tab[2], tab[3]]))
        && tab[7] == 8
}

/// (virtual address, size) of the function called `name`. Entry offsets count from the
/// start of Go's code, which the file leaves at zero (the runtime fills it in); `text`,
/// the address of `.text`, stands in for it. That holds for Go's own linker; after an
/// external link (cgo) C code comes first, so callers must check what they find there.
pub fn lookup(tab: &[u8], name: &str, text: u64) -> Option<(u64, u64)> {
    let u32_at = |o: usize| {
        Some(u32::from_le_bytes(
            tab.get(o..o.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    let u64_at = |o: usize| {
        Some(u64::from_le_bytes(
            tab.get(o..o.checked_add(8)?)?.try_into().ok()?,
        ))
    };
    if !valid(tab) {
        return None;
    }
    let nfunc = usize::try_from(u64_at(8)?).ok()?;
    let base = match u64_at(24)? {
        0 => text,
        t => t,
    };
    let names = usize::try_from(u64_at(32)?).ok()?;
    let pcln = usize::try_from(u64_at(64)?).ok()?;
    let want = name.as_bytes();
    // functab: nfunc + 1 pairs (entry offset, offset of the function's _func from pcln).
    for i in 0..nfunc {
        let at = pcln.checked_add(i.checked_mul(8)?)?;
        let (entry, func, next) = (
            u32_at(at)?,
            u32_at(at.checked_add(4)?)?,
            u32_at(at.checked_add(8)?)?,
        );
        // _func: entryOff u32, nameOff i32, ...
        let name_off = u32_at(pcln.checked_add(func as usize)?.checked_add(4)?)? as usize;
        let start = names.checked_add(name_off)?;
        let got = tab.get(start..start.checked_add(want.len() + 1)?)?;
        if &got[..want.len()] == want && got[want.len()] == 0 {
            let start = base.checked_add(u64::from(entry))?;
            return Some((start, u64::from(next.checked_sub(entry)?)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table with the given (name, entry offset) functions, in order, ending at `end`.
    fn table(funcs: &[(&str, u32)], end: u32, text_start: u64) -> Vec<u8> {
        let mut names = Vec::new();
        let mut name_offs = Vec::new();
        for (n, _) in funcs {
            name_offs.push(names.len() as u32);
            names.extend_from_slice(n.as_bytes());
            names.push(0);
        }
        let header = 72;
        let names_at = header;
        let pcln = names_at + names.len();
        let mut t = vec![0u8; header];
        t[..4].copy_from_slice(&0xffff_fff1u32.to_le_bytes());
        t[6] = 1;
        t[7] = 8;
        t[8..16].copy_from_slice(&(funcs.len() as u64).to_le_bytes());
        t[24..32].copy_from_slice(&text_start.to_le_bytes());
        t[32..40].copy_from_slice(&(names_at as u64).to_le_bytes());
        t[64..72].copy_from_slice(&(pcln as u64).to_le_bytes());
        t.extend_from_slice(&names);
        let funcs_at = (funcs.len() + 1) * 8;
        let mut ftab = Vec::new();
        let mut fdata = Vec::new();
        for (i, (_, entry)) in funcs.iter().enumerate() {
            ftab.extend_from_slice(&entry.to_le_bytes());
            ftab.extend_from_slice(&((funcs_at + fdata.len()) as u32).to_le_bytes());
            fdata.extend_from_slice(&entry.to_le_bytes());
            fdata.extend_from_slice(&name_offs[i].to_le_bytes());
        }
        ftab.extend_from_slice(&end.to_le_bytes());
        ftab.extend_from_slice(&0u32.to_le_bytes());
        t.extend_from_slice(&ftab);
        t.extend_from_slice(&fdata);
        t
    }

    #[test]
    fn finds_functions_by_name() {
        let funcs = [
            ("main.main", 0x0),
            ("crypto/tls.(*Conn).Read", 0x100),
            ("crypto/tls.(*Conn).ReadFrom", 0x180),
            ("crypto/tls.(*Conn).Write", 0x200),
        ];
        let t = table(&funcs, 0x290, 0x401000);
        assert_eq!(
            lookup(&t, "crypto/tls.(*Conn).Read", 0),
            Some((0x401100, 0x80))
        );
        assert_eq!(
            lookup(&t, "crypto/tls.(*Conn).Write", 0),
            Some((0x401200, 0x90))
        );
        assert_eq!(lookup(&t, "crypto/tls.(*Conn).Rea", 0), None);
        assert_eq!(lookup(&t, "nope", 0), None);
        // A zero base in the header (as Go writes it): the .text address stands in.
        let t = table(&funcs, 0x290, 0);
        assert_eq!(lookup(&t, "main.main", 0x500000), Some((0x500000, 0x100)));
    }

    #[test]
    fn refuses_other_layouts_and_garbage() {
        let mut t = table(&[("main.main", 0)], 0x10, 0x1000);
        t[0] = 0xfa; // Go 1.16
        assert_eq!(lookup(&t, "main.main", 0), None);
        for n in 0..t.len() {
            let _ = lookup(&t[..n], "main.main", 0);
        }
        let mut t = table(&[("main.main", 0)], 0x10, 0x1000);
        t[64..72].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(lookup(&t, "main.main", 0), None);
    }
}
