//! A minimal reader for MATLAB Level 5 MAT-files (what `save -v7` and `scipy.io.savemat` write),
//! enough for the official WIDER FACE ground truth: cell arrays, char arrays and numeric arrays.
//!
//! The WIDER FACE evaluation protocol ships its ground truth only as `.mat` files; reading them here
//! keeps the evaluation free of a Python dependency. Structs, objects, sparse, complex and function
//! handles are not needed for that data and are refused with an error naming the class, as is the
//! HDF5-based v7.3 format. Corrupt or truncated input is an error, never a panic: every length read
//! from the file is checked against the bytes actually present before it is used.
//!
//! Layout (MathWorks "MAT-File Format", Level 5): a 128-byte header (text, subsystem offset,
//! version, endian indicator), then data elements. Each element is an 8-byte tag (type, byte count)
//! followed by its data padded to 8 bytes, or a "small element" packing type, count and up to 4
//! bytes of data into the 8 bytes. Top-level elements are `miMATRIX` arrays or `miCOMPRESSED` zlib
//! streams that hold them. An `miMATRIX` holds sub-elements: array flags (class), dimensions, name,
//! then the data: one `miMATRIX` per cell for cells, the characters for char arrays, the real
//! part for numeric arrays, which MATLAB may store in a smaller type than the class (a `double`
//! holding small integers is often stored as `miUINT8`). All arrays are column-major.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail, ensure};
use flate2::{Decompress, FlushDecompress, Status};

/// One MATLAB value of the classes this reader supports.
#[derive(Debug, Clone, PartialEq)]
pub enum MatValue {
    /// Any numeric class, converted to `f64` (exact for every class except 64-bit integers
    /// beyond 2^53, which WIDER FACE does not use). `data` is column-major.
    Numeric {
        class: NumericClass,
        dims: Vec<usize>,
        data: Vec<f64>,
    },
    /// A char array with at most one row (an empty char array is the empty string).
    Char(String),
    /// A cell array; `items` is column-major.
    Cell {
        dims: Vec<usize>,
        items: Vec<MatValue>,
    },
}

/// MATLAB numeric classes (`mxDOUBLE_CLASS` … `mxUINT64_CLASS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericClass {
    Double,
    Single,
    Int8,
    UInt8,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Int64,
    UInt64,
}

impl NumericClass {
    fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            6 => Self::Double,
            7 => Self::Single,
            8 => Self::Int8,
            9 => Self::UInt8,
            10 => Self::Int16,
            11 => Self::UInt16,
            12 => Self::Int32,
            13 => Self::UInt32,
            14 => Self::Int64,
            15 => Self::UInt64,
            _ => return None,
        })
    }
}

impl MatValue {
    /// The items of a cell array (any shape, column-major), or an error describing what was found.
    pub fn cell_items(&self) -> Result<&[MatValue]> {
        match self {
            MatValue::Cell { items, .. } => Ok(items),
            other => bail!("expected a cell array, found {}", other.describe()),
        }
    }

    /// The text of a char array.
    pub fn as_str(&self) -> Result<&str> {
        match self {
            MatValue::Char(s) => Ok(s),
            other => bail!("expected a char array, found {}", other.describe()),
        }
    }

    /// Dimensions and column-major values of a numeric array.
    pub fn numeric(&self) -> Result<(&[usize], &[f64])> {
        match self {
            MatValue::Numeric { dims, data, .. } => Ok((dims, data)),
            other => bail!("expected a numeric array, found {}", other.describe()),
        }
    }

    /// Short description for error messages, e.g. `cell 3x1`, `double 2x4`, `char 'abc'`.
    pub fn describe(&self) -> String {
        let dims = |d: &[usize]| {
            d.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join("x")
        };
        match self {
            MatValue::Numeric { class, dims: d, .. } => {
                format!("{} {}", format!("{class:?}").to_lowercase(), dims(d))
            }
            MatValue::Char(s) => format!("char '{s}'"),
            MatValue::Cell { dims: d, .. } => format!("cell {}", dims(d)),
        }
    }
}

/// Reads the named variables from a MAT-file, in the order asked; a missing one is an error.
/// Variables not asked for are skipped without decoding their contents.
pub fn read_mat_file(path: &Path, names: &[&str]) -> Result<Vec<MatValue>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    read_mat_bytes(&bytes, names).with_context(|| format!("{}", path.display()))
}

/// [`read_mat_file`] on bytes already in memory.
pub fn read_mat_bytes(bytes: &[u8], names: &[&str]) -> Result<Vec<MatValue>> {
    let mut found = parse(bytes, &|name| names.contains(&name))?;
    names
        .iter()
        .map(|&name| {
            let i = found
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| anyhow!("no variable '{name}' in the MAT-file"))?;
            Ok(found.swap_remove(i).1)
        })
        .collect()
}

/// Every variable in the file, in file order.
pub fn read_all_variables(bytes: &[u8]) -> Result<Vec<(String, MatValue)>> {
    parse(bytes, &|_| true)
}

// Data element types (MAT-File Format, table 1-1).
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;

// Array classes other than the numeric ones.
const MX_CELL: u32 = 1;
const MX_STRUCT: u32 = 2;
const MX_OBJECT: u32 = 3;
const MX_CHAR: u32 = 4;
const MX_SPARSE: u32 = 5;
const FLAG_COMPLEX: u32 = 0x0800;

/// Far above any WIDER FACE file (a few MB) but stops a zlib bomb from exhausting memory.
const MAX_DECOMPRESSED: u64 = 1 << 30;
/// Cells nest two levels in WIDER FACE; a crafted file could nest deep enough to overflow the stack.
const MAX_DEPTH: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Endian {
    Little,
    Big,
}

/// A cursor over one buffer; every read is bounds-checked.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    endian: Endian,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8], endian: Endian) -> Self {
        Self {
            buf,
            pos: 0,
            endian,
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| {
            anyhow!(
                "truncated: {n} bytes needed at offset {}, {} left",
                self.pos,
                self.buf.len() - self.pos
            )
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32> {
        let b: [u8; 4] = self.take(4)?.try_into().expect("4 bytes");
        Ok(match self.endian {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        })
    }

    /// One data element: `(type, data)`, with the padding after it skipped.
    fn element(&mut self) -> Result<(u32, &'a [u8])> {
        let start = self.pos;
        let first = self.u32()?;
        if first >> 16 != 0 {
            // Small data element: byte count in the upper half, data in the next 4 bytes.
            let (ty, n) = (first & 0xffff, (first >> 16) as usize);
            ensure!(
                n <= 4,
                "small data element at offset {start} claims {n} bytes (at most 4)"
            );
            let data = self.take(4)?;
            return Ok((ty, &data[..n]));
        }
        let ty = first;
        let n = self.u32()? as usize;
        let data = self
            .take(n)
            .with_context(|| format!("data element of type {ty} at offset {start}"))?;
        // Compressed elements are not padded; the last element of a buffer may lack its padding.
        if ty != MI_COMPRESSED {
            let pad = (8 - n % 8) % 8;
            self.pos = (self.pos + pad).min(self.buf.len());
        }
        Ok((ty, data))
    }
}

/// Parses the header and the top-level elements, decoding the variables `wanted` accepts.
fn parse(bytes: &[u8], wanted: &dyn Fn(&str) -> bool) -> Result<Vec<(String, MatValue)>> {
    ensure!(
        bytes.len() >= 128,
        "not a MAT-file: {} bytes, shorter than the 128-byte header",
        bytes.len()
    );
    let endian = match &bytes[126..128] {
        b"IM" => Endian::Little,
        b"MI" => Endian::Big,
        _ => bail!("not a Level 5 MAT-file (no 'IM'/'MI' endian indicator in the header)"),
    };
    let version = match endian {
        Endian::Little => u16::from_le_bytes([bytes[124], bytes[125]]),
        Endian::Big => u16::from_be_bytes([bytes[124], bytes[125]]),
    };
    ensure!(
        version != 0x0200,
        "MAT-file v7.3 (HDF5) is not supported: save it with MATLAB's -v7 option"
    );
    ensure!(
        version == 0x0100,
        "unknown MAT-file version 0x{version:04x} (expected 0x0100)"
    );
    let mut out = Vec::new();
    parse_elements(&bytes[128..], endian, 128, wanted, &mut out)?;
    Ok(out)
}

/// Top-level elements of one buffer (the file body, or a decompressed `miCOMPRESSED` stream).
fn parse_elements(
    buf: &[u8],
    endian: Endian,
    base: usize,
    wanted: &dyn Fn(&str) -> bool,
    out: &mut Vec<(String, MatValue)>,
) -> Result<()> {
    let mut cur = Cursor::new(buf, endian);
    while !cur.at_end() {
        let start = base + cur.pos;
        let (ty, data) = cur.element().with_context(|| "top-level data element")?;
        match ty {
            MI_COMPRESSED => {
                let inflated = inflate(data)
                    .with_context(|| format!("compressed element at file offset {start}"))?;
                // Offsets inside the stream are reported relative to the stream.
                parse_elements(&inflated, endian, 0, wanted, out)
                    .with_context(|| format!("inside the compressed element at offset {start}"))?;
            }
            MI_MATRIX => {
                if let Some(named) = parse_matrix(data, endian, 0, Some(wanted))
                    .with_context(|| format!("variable at file offset {start}"))?
                {
                    out.push(named);
                }
            }
            other => bail!("unexpected top-level data element type {other} at offset {start}"),
        }
    }
    Ok(())
}

/// Inflates one zlib stream, which must be complete: `flate2`'s `Read` adapters treat a stream cut
/// short as a normal end, so a truncated file would go unnoticed when the cut falls after the data.
fn inflate(data: &[u8]) -> Result<Vec<u8>> {
    const CHUNK: usize = 64 * 1024;
    let mut z = Decompress::new(true);
    let mut out: Vec<u8> = Vec::with_capacity(data.len().saturating_mul(4).clamp(CHUNK, 1 << 24));
    loop {
        if out.capacity() - out.len() < CHUNK {
            out.reserve(out.len().max(CHUNK));
        }
        let (in_before, out_before) = (z.total_in(), z.total_out());
        let rest = &data[(z.total_in() as usize).min(data.len())..];
        let status = z
            .decompress_vec(rest, &mut out, FlushDecompress::None)
            .map_err(|e| anyhow!("corrupt zlib data: {e}"))?;
        ensure!(
            out.len() as u64 <= MAX_DECOMPRESSED,
            "decompresses to more than {MAX_DECOMPRESSED} bytes"
        );
        if status == Status::StreamEnd {
            return Ok(out);
        }
        // With room to write, no progress means the input ran out before the stream's end.
        ensure!(
            z.total_in() != in_before || z.total_out() != out_before,
            "truncated zlib data ({} bytes read, stream not finished)",
            data.len()
        );
    }
}

/// One `miMATRIX` element's data. With `wanted`, a top-level variable: returns `None` (without
/// decoding the contents) when the name is not wanted. Without, a cell's item, name ignored.
fn parse_matrix(
    data: &[u8],
    endian: Endian,
    depth: usize,
    wanted: Option<&dyn Fn(&str) -> bool>,
) -> Result<Option<(String, MatValue)>> {
    ensure!(depth <= MAX_DEPTH, "cells nested deeper than {MAX_DEPTH}");
    if data.is_empty() {
        // MATLAB writes an empty miMATRIX for an empty array inside a cell.
        let empty = MatValue::Numeric {
            class: NumericClass::Double,
            dims: vec![0, 0],
            data: Vec::new(),
        };
        return Ok(Some((String::new(), empty)));
    }
    let mut cur = Cursor::new(data, endian);

    let (ty, flags) = cur.element().context("array flags")?;
    ensure!(
        ty == MI_UINT32 && flags.len() == 8,
        "array flags: expected 8 bytes of miUINT32, found type {ty} with {} bytes",
        flags.len()
    );
    let flags = Cursor::new(flags, endian).u32()?;
    let class = flags & 0xff;

    let (ty, raw_dims) = cur.element().context("array dimensions")?;
    ensure!(
        ty == MI_INT32 && raw_dims.len().is_multiple_of(4) && raw_dims.len() >= 8,
        "array dimensions: expected at least 2 miINT32 values, found type {ty} with {} bytes",
        raw_dims.len()
    );
    let mut dims_cur = Cursor::new(raw_dims, endian);
    let mut dims = Vec::with_capacity(raw_dims.len() / 4);
    while !dims_cur.at_end() {
        let d = dims_cur.u32()? as i32;
        ensure!(d >= 0, "negative array dimension {d}");
        dims.push(d as usize);
    }
    let numel = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| anyhow!("array dimensions {dims:?} overflow"))?;

    let (ty, name) = cur.element().context("array name")?;
    ensure!(
        ty == MI_INT8 || ty == MI_UTF8 || ty == MI_UINT8,
        "array name: expected miINT8 characters, found type {ty}"
    );
    let name = String::from_utf8(name.to_vec()).map_err(|_| anyhow!("array name is not text"))?;
    if let Some(wanted) = wanted
        && !wanted(&name)
    {
        return Ok(None);
    }
    let context = || {
        if name.is_empty() {
            String::from("cell item")
        } else {
            format!("variable '{name}'")
        }
    };

    let value = match class {
        MX_CELL => {
            // Each item takes at least one 8-byte tag, so `numel` is bounded by the bytes left
            // before anything is allocated for it.
            ensure!(
                numel <= (data.len() - cur.pos) / 8,
                "{}: cell of {numel} items in {} bytes",
                context(),
                data.len() - cur.pos
            );
            let mut items = Vec::with_capacity(numel);
            for i in 0..numel {
                let (ty, item) = cur
                    .element()
                    .with_context(|| format!("{}: cell item {i}", context()))?;
                ensure!(
                    ty == MI_MATRIX,
                    "{}: cell item {i} is data element type {ty}, not miMATRIX",
                    context()
                );
                let (_, v) = parse_matrix(item, endian, depth + 1, None)
                    .with_context(|| format!("{}: cell item {i}", context()))?
                    .expect("items are never filtered");
                items.push(v);
            }
            MatValue::Cell { dims, items }
        }
        MX_CHAR => {
            ensure!(
                dims.iter().filter(|&&d| d != 1).count() <= 1 || numel == 0,
                "{}: char matrix {dims:?} (only single strings are supported)",
                context()
            );
            let (ty, raw) = if cur.at_end() {
                (MI_UTF8, &[][..]) // some writers omit the data of an empty char array
            } else {
                cur.element()
                    .with_context(|| format!("{}: characters", context()))?
            };
            let text = decode_chars(ty, raw, endian).with_context(context)?;
            if matches!(ty, MI_UINT16 | MI_INT8 | MI_UINT8 | MI_UTF32) {
                let units = match ty {
                    MI_UINT16 => raw.len() / 2,
                    MI_UTF32 => raw.len() / 4,
                    _ => raw.len(),
                };
                ensure!(
                    units == numel,
                    "{}: {units} characters stored for a char array of {numel}",
                    context()
                );
            }
            MatValue::Char(text)
        }
        code => {
            let Some(numeric) = NumericClass::from_code(code) else {
                let what = match code {
                    MX_STRUCT => "struct",
                    MX_OBJECT => "object",
                    MX_SPARSE => "sparse",
                    16 => "function handle",
                    17 => "opaque object",
                    _ => "unknown",
                };
                bail!(
                    "{}: MATLAB class {code} ({what}) is not supported (only cell, char and \
                     numeric arrays)",
                    context()
                );
            };
            ensure!(
                flags & FLAG_COMPLEX == 0,
                "{}: complex arrays are not supported",
                context()
            );
            let (ty, raw) = cur
                .element()
                .with_context(|| format!("{}: real part", context()))?;
            let values = decode_numbers(ty, raw, endian).with_context(context)?;
            ensure!(
                values.len() == numel,
                "{}: {} values stored for dimensions {dims:?}",
                context(),
                values.len()
            );
            MatValue::Numeric {
                class: numeric,
                dims,
                data: values,
            }
        }
    };
    Ok(Some((name, value)))
}

/// Numeric data stored as any MAT numeric type, widened to `f64`.
fn decode_numbers(ty: u32, raw: &[u8], endian: Endian) -> Result<Vec<f64>> {
    let size = match ty {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        other => bail!("numeric data stored as unsupported type {other}"),
    };
    ensure!(
        raw.len().is_multiple_of(size),
        "{} bytes of numeric data is not a multiple of the {size}-byte element",
        raw.len()
    );
    let word = |c: &[u8]| -> u64 {
        let mut b = [0u8; 8];
        match endian {
            Endian::Little => {
                b[..c.len()].copy_from_slice(c);
                u64::from_le_bytes(b)
            }
            Endian::Big => {
                b[8 - c.len()..].copy_from_slice(c);
                u64::from_be_bytes(b)
            }
        }
    };
    Ok(raw
        .chunks_exact(size)
        .map(|c| {
            let w = word(c);
            match ty {
                MI_INT8 => w as u8 as i8 as f64,
                MI_UINT8 => w as u8 as f64,
                MI_INT16 => w as u16 as i16 as f64,
                MI_UINT16 => w as u16 as f64,
                MI_INT32 => w as u32 as i32 as f64,
                MI_UINT32 => w as u32 as f64,
                MI_SINGLE => f32::from_bits(w as u32) as f64,
                MI_DOUBLE => f64::from_bits(w),
                MI_INT64 => w as i64 as f64,
                _ => w as f64, // MI_UINT64
            }
        })
        .collect())
}

/// Characters stored as UTF-16 code units (MATLAB's usual `miUINT16`), single bytes, UTF-8 or
/// UTF-32.
fn decode_chars(ty: u32, raw: &[u8], endian: Endian) -> Result<String> {
    let invalid = || anyhow!("char data of type {ty} is not valid text");
    match ty {
        MI_UINT16 | MI_UTF16 => {
            ensure!(
                raw.len().is_multiple_of(2),
                "odd byte count for UTF-16 characters"
            );
            let units = raw.chunks_exact(2).map(|c| match endian {
                Endian::Little => u16::from_le_bytes([c[0], c[1]]),
                Endian::Big => u16::from_be_bytes([c[0], c[1]]),
            });
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|_| invalid())
        }
        // Single bytes are Latin-1 code points.
        MI_INT8 | MI_UINT8 => Ok(raw.iter().map(|&b| b as char).collect()),
        MI_UTF8 => String::from_utf8(raw.to_vec()).map_err(|_| invalid()),
        MI_UTF32 => {
            ensure!(
                raw.len().is_multiple_of(4),
                "UTF-32 characters not in 4-byte units"
            );
            raw.chunks_exact(4)
                .map(|c| {
                    let b = [c[0], c[1], c[2], c[3]];
                    let v = match endian {
                        Endian::Little => u32::from_le_bytes(b),
                        Endian::Big => u32::from_be_bytes(b),
                    };
                    char::from_u32(v).ok_or_else(invalid)
                })
                .collect()
        }
        other => bail!("characters stored as unsupported type {other}"),
    }
}

#[cfg(test)]
mod tests {
    //! Hand-built files for what scipy never writes (small elements, doubles stored as bytes,
    //! big-endian, UTF-16 chars), and corrupt input. scipy-written files are tested in
    //! `eval::scipy_tests`.
    use super::*;

    /// Test-only writer for little- or big-endian Level 5 elements.
    struct W {
        big: bool,
    }

    impl W {
        fn u32(&self, v: u32) -> [u8; 4] {
            if self.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn header(&self) -> Vec<u8> {
            let mut h = b"MATLAB 5.0 MAT-file, test".to_vec();
            h.resize(116, b' ');
            h.extend([0u8; 8]);
            h.extend(if self.big { [1, 0] } else { [0, 1] });
            h.extend(if self.big { b"MI" } else { b"IM" });
            h
        }

        /// A normal element, padded to 8 bytes.
        fn el(&self, ty: u32, data: &[u8]) -> Vec<u8> {
            let mut v = self.u32(ty).to_vec();
            v.extend(self.u32(data.len() as u32));
            v.extend(data);
            v.resize(v.len().div_ceil(8) * 8, 0);
            v
        }

        /// A small element (at most 4 bytes of data).
        fn small(&self, ty: u32, data: &[u8]) -> Vec<u8> {
            let mut v = self.u32((data.len() as u32) << 16 | ty).to_vec();
            let mut d = data.to_vec();
            d.resize(4, 0);
            v.extend(d);
            v
        }

        fn matrix(&self, class: u32, dims: &[u32], name: &str, body: &[u8]) -> Vec<u8> {
            let mut m = self.el(MI_UINT32, &[self.u32(class), self.u32(0)].concat());
            let d: Vec<u8> = dims.iter().flat_map(|&d| self.u32(d)).collect();
            m.extend(self.el(MI_INT32, &d));
            m.extend(if name.len() <= 4 {
                self.small(MI_INT8, name.as_bytes())
            } else {
                self.el(MI_INT8, name.as_bytes())
            });
            m.extend(body);
            self.el(MI_MATRIX, &m)
        }
    }

    #[test]
    fn doubles_stored_as_uint8_and_small_elements() {
        for big in [false, true] {
            let w = W { big };
            let mut file = w.header();
            // 2x2 double [1 3; 2 250] stored as 4 uint8 values in a small element.
            file.extend(w.matrix(6, &[2, 2], "m", &w.small(MI_UINT8, &[1, 2, 3, 250])));
            // int16 row vector [-2 7] stored as int16.
            let v: Vec<u8> = [-2i16, 7]
                .iter()
                .flat_map(|x| {
                    if big {
                        x.to_be_bytes()
                    } else {
                        x.to_le_bytes()
                    }
                })
                .collect();
            file.extend(w.matrix(10, &[1, 2], "i", &w.small(MI_INT16, &v)));
            let vars = read_all_variables(&file).unwrap();
            assert_eq!(vars.len(), 2);
            assert_eq!(vars[0].0, "m");
            assert_eq!(
                vars[0].1,
                MatValue::Numeric {
                    class: NumericClass::Double,
                    dims: vec![2, 2],
                    data: vec![1.0, 2.0, 3.0, 250.0]
                }
            );
            assert_eq!(vars[1].1.numeric().unwrap().1, &[-2.0, 7.0]);
        }
    }

    #[test]
    fn utf16_chars_in_cells_and_empty_matrix_items() {
        let w = W { big: false };
        let units: Vec<u8> = "0--Pärade"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        let s = w.matrix(4, &[1, 9], "", &w.el(MI_UINT16, &units));
        let mut body = s;
        body.extend(w.el(MI_MATRIX, &[])); // empty item
        let mut file = w.header();
        file.extend(w.matrix(1, &[2, 1], "event_list", &body));
        let v = read_mat_bytes(&file, &["event_list"]).unwrap().remove(0);
        let items = v.cell_items().unwrap();
        assert_eq!(items[0].as_str().unwrap(), "0--Pärade");
        assert_eq!(items[1].numeric().unwrap(), (&[0usize, 0][..], &[][..]));
    }

    #[test]
    fn unwanted_variables_are_skipped_even_if_unsupported() {
        let w = W { big: false };
        let mut file = w.header();
        file.extend(w.matrix(2, &[1, 1], "s", &[])); // a struct: unsupported
        file.extend(w.matrix(6, &[1, 1], "x", &w.el(MI_DOUBLE, &2.5f64.to_le_bytes())));
        assert_eq!(
            read_mat_bytes(&file, &["x"]).unwrap()[0]
                .numeric()
                .unwrap()
                .1,
            &[2.5]
        );
        let err = read_all_variables(&file).unwrap_err();
        assert!(format!("{err:#}").contains("struct"), "{err:#}");
        let err = read_mat_bytes(&file, &["nope"]).unwrap_err();
        assert!(err.to_string().contains("no variable 'nope'"), "{err}");
    }

    #[test]
    fn count_mismatch_complex_and_v73_are_errors() {
        let w = W { big: false };
        let mut file = w.header();
        file.extend(w.matrix(6, &[3, 1], "x", &w.el(MI_DOUBLE, &1f64.to_le_bytes())));
        let err = format!("{:#}", read_all_variables(&file).unwrap_err());
        assert!(
            err.contains("1 values stored for dimensions [3, 1]"),
            "{err}"
        );

        let mut file = w.header();
        file.extend(w.matrix(
            6 | FLAG_COMPLEX,
            &[1, 1],
            "z",
            &w.el(MI_DOUBLE, &1f64.to_le_bytes()),
        ));
        let err = format!("{:#}", read_all_variables(&file).unwrap_err());
        assert!(err.contains("complex"), "{err}");

        let mut file = w.header();
        file[124] = 0;
        file[125] = 2;
        let err = format!("{:#}", read_all_variables(&file).unwrap_err());
        assert!(err.contains("v7.3"), "{err}");
    }

    #[test]
    fn garbage_and_truncation_never_panic() {
        let w = W { big: false };
        let mut file = w.header();
        let mut cell = w.matrix(
            4,
            &[1, 3],
            "",
            &w.el(MI_UINT16, &[b'a', 0, b'b', 0, b'c', 0]),
        );
        cell.extend(w.matrix(6, &[1, 2], "", &w.el(MI_DOUBLE, &[0u8; 16])));
        file.extend(w.matrix(1, &[2, 1], "c", &cell));
        assert!(read_all_variables(&file).is_ok());
        // Every truncation is an error, not a panic.
        for len in 0..file.len() {
            assert!(read_mat_bytes(&file[..len], &["c"]).is_err(), "{len}");
        }
        // Flipped bytes: may or may not parse, must not panic.
        for i in 128..file.len() {
            for v in [0x00, 0xff, 0x7f, 0x80] {
                let mut f = file.clone();
                f[i] = v;
                let _ = read_all_variables(&f);
            }
        }
        // Pseudo-random garbage after a valid header.
        let mut x: u32 = 12345;
        for round in 0..200 {
            let mut f = w.header();
            for _ in 0..(round * 7 % 300) {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                f.push((x >> 16) as u8);
            }
            let _ = read_all_variables(&f);
        }
        // Huge claimed sizes fail on the bytes present, before allocating.
        let mut f = w.header();
        f.extend(w.u32(MI_MATRIX));
        f.extend(w.u32(u32::MAX));
        assert!(read_all_variables(&f).is_err());
        let huge = w.matrix(1, &[0x7fff_ffff, 0x7fff_ffff], "h", &[]);
        let mut f = w.header();
        f.extend(huge);
        assert!(read_all_variables(&f).is_err());
    }

    #[test]
    fn corrupt_zlib_is_an_error() {
        let w = W { big: false };
        let mut file = w.header();
        file.extend(w.u32(MI_COMPRESSED));
        file.extend(w.u32(6));
        file.extend([0x78, 0x9c, 1, 2, 3, 4]);
        let err = format!("{:#}", read_all_variables(&file).unwrap_err());
        assert!(err.contains("zlib"), "{err}");
    }
}
