//! Where `runtime.g` keeps `goid`, read from a Go program's own DWARF (issue 14): exact
//! for any release, including one newer than goruntime.rs's table, when the program was
//! not stripped. Go's linker compresses DWARF with zlib (SHF_COMPRESSED sections, or
//! `.zdebug_*` ones in older releases); an external linker may use zstd.
//!
//! Cheap: `.debug_info` is inflated one unit at a time and the walk stops at the first
//! `runtime.g`, so the rest of the section is never decompressed; of the other sections
//! only `.debug_abbrev` (and `.debug_str`, which Go does not write) are read.

use gimli::{constants, AttributeValue, DebugAbbrev, DebugStr, EndianSlice, LittleEndian};
use object::{CompressionFormat, Object, ObjectSection};
use std::io::Read;

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// Offset of `goid` in `runtime.g` from the DWARF of `file`. None: no DWARF (stripped),
/// no `runtime.g` with a `goid`, or DWARF that does not parse.
pub fn goid_offset(file: &object::File) -> Option<u64> {
    if !file.is_little_endian() {
        return None;
    }
    let info = section(file, "info")?;
    let abbrev = read_all(section(file, "abbrev")?)?;
    // Go writes names inline (DW_FORM_string); other linkers' may be in .debug_str.
    let strs = section(file, "str").and_then(read_all).unwrap_or_default();
    member_offset(
        info,
        &DebugAbbrev::new(&abbrev, LittleEndian),
        &DebugStr::new(&strs, LittleEndian),
        b"runtime.g",
        b"goid",
    )
}

/// The uncompressed bytes of `.debug_<name>` (or `.zdebug_<name>`) as a stream, read no
/// further than the size its header gives.
fn section<'d>(file: &object::File<'d>, name: &str) -> Option<Box<dyn Read + 'd>> {
    let sec = file
        .section_by_name(&format!(".debug_{name}"))
        .or_else(|| file.section_by_name(&format!(".zdebug_{name}")))?;
    let data = sec.compressed_data().ok()?;
    let size = data.uncompressed_size;
    Some(match data.format {
        CompressionFormat::None => Box::new(data.data),
        CompressionFormat::Zlib => Box::new(flate2::read::ZlibDecoder::new(data.data).take(size)),
        CompressionFormat::Zstandard => {
            Box::new(zstd::stream::read::Decoder::new(data.data).ok()?.take(size))
        }
        _ => return None,
    })
}

fn read_all(mut r: Box<dyn Read + '_>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).ok()?;
    Some(out)
}

/// Walks `info` unit by unit (a unit is its length, 4 bytes or 0xffffffff and 8, then
/// that many bytes) until one describes struct `ty` with a member `member`.
fn member_offset(
    mut info: impl Read,
    abbrev: &DebugAbbrev<Slice>,
    strs: &DebugStr<Slice>,
    ty: &[u8],
    member: &[u8],
) -> Option<u64> {
    let mut unit = Vec::new();
    loop {
        unit.clear();
        let mut len4 = [0u8; 4];
        info.read_exact(&mut len4).ok()?;
        unit.extend(len4);
        let mut len = u64::from(u32::from_le_bytes(len4));
        if len == 0xffff_ffff {
            let mut len8 = [0u8; 8];
            info.read_exact(&mut len8).ok()?;
            unit.extend(len8);
            len = u64::from_le_bytes(len8);
        }
        // Read, not preallocated: a bogus length cannot ask for more than there is.
        let got = info.by_ref().take(len).read_to_end(&mut unit).ok()?;
        if got as u64 != len {
            return None;
        }
        match unit_member(&unit, abbrev, strs, ty, member) {
            Ok(Some(off)) => return Some(off),
            Ok(None) => {}
            Err(_) => return None,
        }
    }
}

fn unit_member(
    unit: &[u8],
    abbrev: &DebugAbbrev<Slice>,
    strs: &DebugStr<Slice>,
    ty: &[u8],
    member: &[u8],
) -> gimli::Result<Option<u64>> {
    let Some(header) = gimli::DebugInfo::new(unit, LittleEndian).units().next()? else {
        return Ok(None);
    };
    let abbrevs = header.abbreviations(abbrev)?;
    let mut entries = header.entries(&abbrevs);
    // Depth of the struct `ty` once found: its members are one deeper.
    let mut within = None;
    while let Some(e) = entries.next_dfs()? {
        match within {
            Some(depth) if e.depth() <= depth => return Ok(None),
            Some(depth) => {
                if e.depth() == depth + 1
                    && e.tag() == constants::DW_TAG_member
                    && name(e, strs) == Some(member)
                {
                    return Ok(e
                        .attr_value(constants::DW_AT_data_member_location)
                        .and_then(|v| v.udata_value()));
                }
            }
            None => {
                if e.tag() == constants::DW_TAG_structure_type && name(e, strs) == Some(ty) {
                    within = Some(e.depth());
                }
            }
        }
    }
    Ok(None)
}

fn name<'a>(
    e: &gimli::DebuggingInformationEntry<Slice<'a>>,
    strs: &DebugStr<Slice<'a>>,
) -> Option<&'a [u8]> {
    match e.attr_value(constants::DW_AT_name)? {
        AttributeValue::String(s) => Some(s.slice()),
        AttributeValue::DebugStrRef(off) => Some(strs.get_str(off).ok()?.slice()),
        _ => None,
    }
}
