//! Matrices of precomputed activations, [rows, d] f32 row-major: the `.npy` and
//! `.safetensors` readers (whole, from bytes, for the browser; or in chunks of rows from any
//! `Read + Seek`, for files larger than one GPU buffer), the `.npy` writer, a seeded
//! shuffling buffer that serves batches, and the checked pass that measures the scale to mean row
//! norm √d (`validate.rs` holds the checks).
//!
//! Readers accept float32, float16 and (safetensors) bfloat16, little-endian, C order,
//! exactly 2-D, every value finite; anything else is refused with the file's name and
//! what is wrong. Producing activations (the model side) is not here; EEG segments are
//! written and read with the same `.npy` functions (`eeg.rs`).

use crate::data::{Source, SourceState};
use crate::error::{Error, Result};
use crate::rng::Rng;
use safetensors::tensor::Metadata;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;

/// The .npy magic string (NumPy format spec, numpy.lib.format).
const NPY_MAGIC: &[u8] = b"\x93NUMPY";
/// .npy header alignment: magic + version + length + header is a multiple of this (format 1.0+).
const NPY_ALIGN: usize = 64;
/// safetensors' own limit on the JSON header (safetensors::tensor::MAX_HEADER_SIZE).
const SAFETENSORS_MAX_HEADER: u64 = 100_000_000;
/// Bytes of safetensors' little-endian u64 header length.
const SAFETENSORS_LEN_BYTES: u64 = 8;

/// Element type of a stored matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    fn bytes(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }
}

/// A row-major matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub d: usize,
    /// [rows, d] row-major.
    pub data: Vec<f32>,
}

/// Reads a whole `.npy` or `.safetensors` file from its bytes (the format from `name`'s
/// extension, else from the bytes). `tensor` names the safetensors tensor; without it, the
/// file's only 2-D tensor.
pub fn read(name: &str, bytes: &[u8], tensor: Option<&str>) -> Result<Matrix> {
    let mut reader = ChunkReader::open(name, Cursor::new(bytes), tensor)?;
    let rows = reader.rows();
    Ok(reader.next_chunk(rows)?.unwrap_or(Matrix {
        rows: 0,
        d: reader.d(),
        data: Vec::new(),
    }))
}

/// Opens a file on disk for reading in chunks.
pub fn open(path: &Path, tensor: Option<&str>) -> Result<ChunkReader<std::io::BufReader<std::fs::File>>> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| Error::Io {
        path: name.clone(),
        message: format!("cannot open the file: {e}"),
    })?;
    ChunkReader::open(&name, std::io::BufReader::new(file), tensor)
}

/// A `.npy` file (format 1.0, '<f4', C order) holding `data` as [data.len() / d, d].
pub fn write_npy(d: usize, data: &[f32]) -> Result<Vec<u8>> {
    if d == 0 || !data.len().is_multiple_of(d) {
        return Err(Error::Shape(format!(
            ".npy writer: {} values do not make whole rows of width {d}",
            data.len()
        )));
    }
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {d}), }}",
        data.len() / d
    );
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to the alignment, ending in '\n'.
    let unpadded = NPY_MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(NPY_ALIGN) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(unpadded + NPY_ALIGN + 4 * data.len());
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Where a file's [rows, d] matrix lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    rows: usize,
    d: usize,
    dtype: Dtype,
    /// Byte offset of row 0.
    data_offset: u64,
}

/// Reads a stored matrix a chunk of rows at a time, without holding the whole file.
pub struct ChunkReader<R> {
    source: R,
    name: String,
    layout: Layout,
    next_row: usize,
}

impl<R: Read + Seek> ChunkReader<R> {
    /// Reads and checks the header (the format from `name`'s extension, else from the
    /// magic bytes) and that the file is exactly as long as the header says.
    pub fn open(name: &str, mut source: R, tensor: Option<&str>) -> Result<ChunkReader<R>> {
        let fail = |message: String| Error::Io {
            path: name.to_string(),
            message,
        };
        let io = |e: std::io::Error| fail(format!("cannot read the file: {e}"));
        let file_len = source.seek(SeekFrom::End(0)).map_err(io)?;
        source.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut magic = [0u8; 6];
        let magic_len = read_up_to(&mut source, &mut magic).map_err(io)?;
        source.seek(SeekFrom::Start(0)).map_err(io)?;
        let lower = name.to_ascii_lowercase();
        let npy = if lower.ends_with(".npy") {
            true
        } else if lower.ends_with(".safetensors") {
            false
        } else {
            magic[..magic_len] == NPY_MAGIC[..magic_len.min(NPY_MAGIC.len())] && magic_len == NPY_MAGIC.len()
        };
        let layout = if npy {
            if let Some(tensor) = tensor {
                return Err(fail(format!(
                    "a tensor name ({tensor}) was given, but a .npy file holds one unnamed array"
                )));
            }
            npy_layout(&mut source, file_len).map_err(fail)?
        } else {
            safetensors_layout(&mut source, file_len, tensor).map_err(fail)?
        };
        let mut reader = ChunkReader {
            source,
            name: name.to_string(),
            layout,
            next_row: 0,
        };
        reader.rewind()?;
        Ok(reader)
    }

    pub fn rows(&self) -> usize {
        self.layout.rows
    }

    pub fn d(&self) -> usize {
        self.layout.d
    }

    pub fn dtype(&self) -> Dtype {
        self.layout.dtype
    }

    /// Goes back to row 0.
    pub fn rewind(&mut self) -> Result<()> {
        self.seek_row(0)
    }

    /// The next up to `max_rows` rows as f32, or None once every row has been read. A
    /// non-finite value is an error naming its row and column.
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Matrix>> {
        let Layout { rows, d, .. } = self.layout;
        let take = max_rows.min(rows - self.next_row);
        if take == 0 {
            return Ok(None);
        }
        let data = self.read_rows_here(take)?;
        self.next_row += take;
        Ok(Some(Matrix { rows: take, d, data }))
    }

    /// Moves the read position to row `row` (≤ rows): the next chunk starts there.
    pub fn seek_row(&mut self, row: usize) -> Result<()> {
        if row > self.layout.rows {
            return Err(Error::Io {
                path: self.name.clone(),
                message: format!("row {row} is past the file's {} rows", self.layout.rows),
            });
        }
        let at = self.layout.data_offset + (row * self.layout.d * self.layout.dtype.bytes()) as u64;
        self.source.seek(SeekFrom::Start(at)).map_err(|e| self.io_error(e))?;
        self.next_row = row;
        Ok(())
    }

    /// Rows `which` (each < rows), in that order, as f32 [which.len(), d]; the read
    /// position is left where it was.
    pub fn read_rows(&mut self, which: &[u64]) -> Result<Vec<f32>> {
        let here = self.next_row;
        let mut out = Vec::with_capacity(which.len() * self.layout.d);
        for &row in which {
            if row >= self.layout.rows as u64 {
                return Err(Error::Io {
                    path: self.name.clone(),
                    message: format!("row {row} is past the file's {} rows", self.layout.rows),
                });
            }
            self.seek_row(row as usize)?;
            out.extend(self.read_rows_here(1)?);
        }
        self.seek_row(here)?;
        Ok(out)
    }

    /// Reads `take` rows at the current position (which `next_row` names) as f32.
    fn read_rows_here(&mut self, take: usize) -> Result<Vec<f32>> {
        let Layout { d, dtype, .. } = self.layout;
        let mut raw = vec![0u8; take * d * dtype.bytes()];
        self.source.read_exact(&mut raw).map_err(|e| self.io_error(e))?;
        let data: Vec<f32> = match dtype {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
        };
        if let Some(at) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Io {
                path: self.name.clone(),
                message: format!(
                    "row {}, column {} is {}: every value must be finite",
                    self.next_row + at / d,
                    at % d,
                    data[at]
                ),
            });
        }
        Ok(data)
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        Error::Io {
            path: self.name.clone(),
            message: format!("cannot read the data: {e}"),
        }
    }
}

/// Fills as much of `buf` as the source has; the count read.
fn read_up_to<R: Read>(source: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Reads exactly `len` bytes at the current position, or says the file is truncated.
fn read_bytes<R: Read>(source: &mut R, len: usize, what: &str) -> std::result::Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    let got = read_up_to(source, &mut buf).map_err(|e| format!("cannot read the file: {e}"))?;
    if got < len {
        return Err(format!("truncated: the file ends inside the {what}"));
    }
    Ok(buf)
}

/// The array a .npy file holds (NumPy format versions 1.0, 2.0, 3.0).
fn npy_layout<R: Read>(source: &mut R, file_len: u64) -> std::result::Result<Layout, String> {
    let preamble = read_bytes(source, NPY_MAGIC.len() + 2, ".npy magic string")?;
    if preamble[..NPY_MAGIC.len()] != *NPY_MAGIC {
        return Err("not a .npy file: it does not start with the \\x93NUMPY magic string".to_string());
    }
    let (major, minor) = (preamble[6], preamble[7]);
    let header_len = match major {
        1 => u16::from_le_bytes(
            read_bytes(source, 2, ".npy header length")?
                .try_into()
                .unwrap_or([0; 2]),
        ) as usize,
        2 | 3 => u32::from_le_bytes(
            read_bytes(source, 4, ".npy header length")?
                .try_into()
                .unwrap_or([0; 4]),
        ) as usize,
        _ => {
            return Err(format!(
                "unsupported .npy format version {major}.{minor}: versions 1.0, 2.0 and 3.0 are read"
            ))
        }
    };
    let header_start = NPY_MAGIC.len() as u64 + 2 + if major == 1 { 2 } else { 4 };
    let data_offset = header_start + header_len as u64;
    if data_offset > file_len {
        return Err(format!(
            "truncated: the .npy header says it is {header_len} bytes long but the file ends {} bytes after its start",
            file_len.saturating_sub(header_start)
        ));
    }
    let text = String::from_utf8_lossy(&read_bytes(source, header_len, ".npy header")?).into_owned();
    let header = NpyHeader::parse(&text)?;
    let dtype = match header.descr.as_str() {
        "<f4" => Dtype::F32,
        "<f2" => Dtype::F16,
        "<f8" => return Err("unsupported dtype float64: convert to float32".to_string()),
        big if big.starts_with('>') => {
            return Err(format!(
                "unsupported big-endian dtype '{big}': convert to little-endian float32 ('<f4')"
            ))
        }
        other => {
            return Err(format!(
                "unsupported dtype '{other}': expected float32 ('<f4') or float16 ('<f2')"
            ))
        }
    };
    if header.fortran_order {
        return Err(
            "the array is in Fortran (column-major) order: save it in C order (numpy.ascontiguousarray)".to_string(),
        );
    }
    let (rows, d) = matrix_shape(&header.shape)?;
    check_data_len(rows, d, dtype, file_len - data_offset, "follow the .npy header")?;
    Ok(Layout {
        rows,
        d,
        dtype,
        data_offset,
    })
}

/// The tensor chosen from a .safetensors file.
fn safetensors_layout<R: Read>(
    source: &mut R,
    file_len: u64,
    tensor: Option<&str>,
) -> std::result::Result<Layout, String> {
    if file_len < SAFETENSORS_LEN_BYTES {
        return Err(format!(
            "bad safetensors header: the file has {file_len} bytes, fewer than the 8 that give the header's length"
        ));
    }
    let header_len = u64::from_le_bytes(
        read_bytes(source, 8, "safetensors header length")?
            .try_into()
            .unwrap_or([0; 8]),
    );
    let after = file_len - SAFETENSORS_LEN_BYTES;
    if header_len > after || header_len > SAFETENSORS_MAX_HEADER {
        return Err(format!(
            "bad safetensors header: its length field says {header_len} bytes but the file has {after} bytes after it"
        ));
    }
    let header = read_bytes(source, header_len as usize, "safetensors header")?;
    let metadata: Metadata = serde_json::from_slice(&header).map_err(|e| format!("bad safetensors header: {e}"))?;
    let data_start = SAFETENSORS_LEN_BYTES + header_len;
    let data_len = (file_len - data_start) as usize;
    if metadata.data_len() != data_len {
        return Err(format!(
            "truncated or padded: the safetensors header describes {} bytes of tensor data but the file has {data_len}",
            metadata.data_len()
        ));
    }
    let mut names = metadata.offset_keys();
    names.sort();
    let chosen = match tensor {
        Some(wanted) => names
            .iter()
            .find(|name| *name == wanted)
            .ok_or_else(|| format!("no tensor named '{wanted}': the file holds {}", names.join(", ")))?,
        None => {
            let matrices: Vec<&String> = names
                .iter()
                .filter(|name| metadata.info(name).is_some_and(|info| info.shape.len() == 2))
                .collect();
            match matrices[..] {
                [only] => only,
                _ => {
                    return Err(format!(
                        "{} of its tensors are 2-D ({}): name the one to read",
                        matrices.len(),
                        names.join(", ")
                    ))
                }
            }
        }
    };
    let info = metadata
        .info(chosen)
        .ok_or_else(|| format!("no tensor named '{chosen}'"))?;
    let dtype = match info.dtype {
        safetensors::Dtype::F32 => Dtype::F32,
        safetensors::Dtype::F16 => Dtype::F16,
        safetensors::Dtype::BF16 => Dtype::BF16,
        safetensors::Dtype::F64 => {
            return Err(format!(
                "tensor '{chosen}': unsupported dtype float64: convert to float32"
            ))
        }
        other => {
            return Err(format!(
                "tensor '{chosen}': unsupported dtype {other:?}: expected F32, F16 or BF16"
            ))
        }
    };
    let (rows, d) = matrix_shape(&info.shape).map_err(|e| format!("tensor '{chosen}': {e}"))?;
    Ok(Layout {
        rows,
        d,
        dtype,
        data_offset: data_start + info.data_offsets.0 as u64,
    })
}

/// [rows, d] from a shape, which must be 2-D and hold at least one value.
fn matrix_shape(shape: &[usize]) -> std::result::Result<(usize, usize), String> {
    let shown = shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
    match *shape {
        [rows, d] if rows > 0 && d > 0 => Ok((rows, d)),
        [_, _] => Err(format!("the array has shape ({shown}): it holds no values")),
        _ => Err(format!(
            "the array has shape ({shown}), {} dimensions: expected a 2-D array [rows, d]",
            shape.len()
        )),
    }
}

/// Checks that exactly rows·d values of `dtype` are present.
fn check_data_len(rows: usize, d: usize, dtype: Dtype, present: u64, place: &str) -> std::result::Result<(), String> {
    let needed = (rows as u128) * (d as u128) * (dtype.bytes() as u128);
    let present = u128::from(present);
    if needed > present {
        return Err(format!(
            "truncated: the header says shape ({rows}, {d}) of {dtype:?} ({needed} bytes) but only {present} bytes {place}"
        ));
    }
    if needed < present {
        return Err(format!(
            "the header says shape ({rows}, {d}) of {dtype:?} ({needed} bytes) but {present} bytes {place}"
        ));
    }
    Ok(())
}

/// The three entries of a .npy header, a Python dict literal like
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
struct NpyHeader {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl NpyHeader {
    fn parse(text: &str) -> std::result::Result<NpyHeader, String> {
        let bad = |why: &str| {
            format!(
                "the .npy header {:?} is not a dict of the expected form: {why}",
                text.trim()
            )
        };
        let mut p = Literal {
            s: text.trim().as_bytes(),
            at: 0,
        };
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        p.expect(b'{').map_err(|e| bad(&e))?;
        loop {
            p.skip_space();
            if p.eat(b'}') {
                break;
            }
            let key = p.string().map_err(|e| bad(&e))?;
            p.expect(b':').map_err(|e| bad(&e))?;
            p.skip_space();
            match key.as_str() {
                "descr" => descr = Some(p.string().map_err(|e| bad(&e))?),
                "fortran_order" => fortran_order = Some(p.boolean().map_err(|e| bad(&e))?),
                "shape" => shape = Some(p.tuple().map_err(|e| bad(&e))?),
                other => return Err(bad(&format!("unknown key '{other}'"))),
            }
            p.skip_space();
            if !p.eat(b',') {
                p.expect(b'}').map_err(|e| bad(&e))?;
                break;
            }
        }
        Ok(NpyHeader {
            descr: descr.ok_or_else(|| bad("no 'descr'"))?,
            fortran_order: fortran_order.ok_or_else(|| bad("no 'fortran_order'"))?,
            shape: shape.ok_or_else(|| bad("no 'shape'"))?,
        })
    }
}

/// A cursor over a Python literal: strings, True/False, tuples of integers.
struct Literal<'a> {
    s: &'a [u8],
    at: usize,
}

impl Literal<'_> {
    fn skip_space(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_space();
        let hit = self.s.get(self.at) == Some(&c);
        self.at += usize::from(hit);
        hit
    }

    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at character {}", c as char, self.at))
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        self.skip_space();
        let quote = match self.s.get(self.at) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at character {}", self.at)),
        };
        let start = self.at + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == quote)
            .ok_or_else(|| "unterminated string".to_string())?;
        self.at = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn boolean(&mut self) -> std::result::Result<bool, String> {
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.at..].starts_with(word) {
                self.at += word.len();
                return Ok(value);
            }
        }
        Err(format!("expected True or False at character {}", self.at))
    }

    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut items = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(items);
            }
            let start = self.at;
            while self.s.get(self.at).is_some_and(u8::is_ascii_digit) {
                self.at += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.at]).unwrap_or("");
            items.push(
                digits
                    .parse()
                    .map_err(|_| format!("expected a dimension at character {start}"))?,
            );
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(items);
            }
        }
    }
}

/// IEEE 754 half precision to single: exact for every value, subnormals and infinities included.
fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1F);
    let mantissa = u32::from(bits & 0x3FF);
    let magnitude = match exponent {
        // Zero and subnormals: mantissa · 2⁻²⁴, exact in f32.
        0 => return f32::from_bits(sign) + if sign == 0 { 1.0 } else { -1.0 } * mantissa as f32 * 2f32.powi(-24),
        // Infinity and NaN keep their mantissa.
        0x1F => 0xFF << 23 | mantissa << 13,
        // Rebias the exponent from 15 to 127.
        _ => (exponent + 127 - 15) << 23 | mantissa << 13,
    };
    f32::from_bits(sign | magnitude)
}

/// bfloat16 is the top half of an f32.
fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Checks every row of the file (`validate::RowStats`: finite, not all zero or all equal,
/// no squared norm that overflows f32 sums) in one pass in chunks of `chunk_rows` (the
/// reader is rewound after), and returns the factor the rows are multiplied by: with
/// `normalise`, s = √d / mean‖x_row‖, else 1. A model trained on s·x serves raw x once
/// folded back (`export`): b_enc ← b_enc/s, b_dec ← b_dec/s, W_enc and the unit-row W_dec
/// unchanged, so that the latents are the trained ones / s and decode returns x's scale.
pub fn checked_scale<R: Read + Seek>(reader: &mut ChunkReader<R>, chunk_rows: usize, normalise: bool) -> Result<f32> {
    reader.rewind()?;
    let mut stats = crate::data::validate::RowStats::new(&reader.name, reader.d(), 0);
    while let Some(chunk) = reader.next_chunk(chunk_rows.max(1))? {
        stats.add(&chunk.data)?;
    }
    reader.rewind()?;
    stats.scale(normalise)
}

/// A seeded shuffling buffer over a chunked reader: holds up to `capacity` rows, serves
/// each batch row drawn uniformly from the buffer (and removed from it), and tops up from
/// the file in one read whenever it falls to half. Once the file is read to its end the
/// buffer drains, then the file starts over: every epoch serves each row exactly once, and
/// the stream never ends. Rows are multiplied by `scale` (1 unless set). Its state for a
/// checkpoint is the generator, the file position and which file rows the buffer holds.
pub struct Shuffler<R> {
    reader: ChunkReader<R>,
    capacity: usize,
    /// [held rows, d]
    buffer: Vec<f32>,
    /// The file row of each held row: [held rows].
    held_rows: Vec<u64>,
    rng: Rng,
    scale: f32,
}

impl<R: Read + Seek> Shuffler<R> {
    pub fn new(reader: ChunkReader<R>, capacity: usize, seed: u64) -> Result<Shuffler<R>> {
        if capacity == 0 {
            return Err(Error::Config(
                "shuffling buffer: the capacity must be at least 1 row".to_string(),
            ));
        }
        Ok(Shuffler {
            buffer: Vec::with_capacity(capacity * reader.d()),
            held_rows: Vec::with_capacity(capacity),
            reader,
            capacity,
            rng: Rng::new(seed),
            scale: 1.0,
        })
    }

    /// Multiplies every served row by `scale` (e.g. from `checked_scale`).
    pub fn with_scale(mut self, scale: f32) -> Shuffler<R> {
        self.scale = scale;
        self
    }

    fn held(&self) -> usize {
        self.buffer.len() / self.reader.d()
    }

    /// Reads up to the capacity from the file, starting the next epoch if the buffer has drained.
    fn top_up(&mut self) -> Result<()> {
        if self.held() == 0 && self.reader.next_row == self.reader.rows() {
            self.reader.rewind()?;
        }
        let first = self.reader.next_row as u64;
        if let Some(chunk) = self.reader.next_chunk(self.capacity - self.held())? {
            self.buffer.extend_from_slice(&chunk.data);
            self.held_rows.extend(first..first + chunk.rows as u64);
        }
        Ok(())
    }
}

impl<R: Read + Seek> Source for Shuffler<R> {
    fn d(&self) -> usize {
        self.reader.d()
    }

    fn next_batch(&mut self, rows: usize) -> Result<Vec<f32>> {
        let d = self.reader.d();
        let mut batch = Vec::with_capacity(rows * d);
        for _ in 0..rows {
            if self.held() <= self.capacity / 2 {
                self.top_up()?;
            }
            let pick = self.rng.below(self.held());
            batch.extend(self.buffer[pick * d..(pick + 1) * d].iter().map(|v| v * self.scale));
            // Remove the row by moving the last row into its place.
            let last = self.held() - 1;
            self.buffer.copy_within(last * d..(last + 1) * d, pick * d);
            self.buffer.truncate(last * d);
            self.held_rows.swap_remove(pick);
        }
        Ok(batch)
    }

    fn state(&self) -> Option<SourceState> {
        Some(SourceState {
            rng: self.rng.state(),
            position: self.reader.next_row as u64,
            rows: self.held_rows.clone(),
        })
    }

    /// Re-reads the held rows from the file by their row numbers, so a checkpoint
    /// stores row numbers, not the buffer's values.
    fn restore(&mut self, state: &SourceState) -> Result<()> {
        if state.rows.len() > self.capacity || state.position > self.reader.rows() as u64 {
            return Err(Error::Config(format!(
                "the saved shuffling buffer ({} rows, file position {}) does not fit a buffer of {} rows \
                 over {} rows of {}",
                state.rows.len(),
                state.position,
                self.capacity,
                self.reader.rows(),
                self.reader.name
            )));
        }
        self.buffer = self.reader.read_rows(&state.rows)?;
        self.held_rows = state.rows.clone();
        self.reader.seek_row(state.position as usize)?;
        self.rng = Rng::from_state(&state.rng)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    fn ramp(rows: usize, d: usize) -> Vec<f32> {
        (0..rows * d).map(|i| i as f32 * 0.25 - 3.0).collect()
    }

    fn message<T: std::fmt::Debug>(result: Result<T>, name: &str) -> String {
        match result {
            Err(Error::Io { path, message }) => {
                assert_eq!(path, name);
                message
            }
            other => panic!("expected an Io error, got {other:?}"),
        }
    }

    /// A .npy file with a hand-written header dict and format version.
    fn npy(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
        let mut out = NPY_MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        let header = format!("{dict}\n");
        if version == 1 {
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn safetensors(tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(&str, TensorView)> = tensors
            .iter()
            .map(|(name, dtype, shape, data)| (*name, TensorView::new(*dtype, shape.clone(), data).unwrap()))
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn npy_round_trips_and_its_header_is_64_byte_aligned() {
        let data = ramp(5, 3);
        let bytes = write_npy(3, &data).unwrap();
        assert_eq!((bytes.len() - data.len() * 4) % NPY_ALIGN, 0);
        assert_eq!(read("x.npy", &bytes, None).unwrap(), Matrix { rows: 5, d: 3, data });
        assert!(write_npy(3, &[1.0; 4]).is_err());
    }

    #[test]
    fn npy_format_versions_1_2_and_3_and_float16_are_read() {
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
        for version in [1, 2, 3] {
            let m = read("x.npy", &npy(version, dict, &f32_bytes(&[1.0, 2.0, 3.0, 4.0])), None).unwrap();
            assert_eq!(m.data, vec![1.0, 2.0, 3.0, 4.0]);
        }
        let halves: Vec<u8> = [0x3C00u16, 0xC000, 0x3800, 0x0001]
            .iter()
            .flat_map(|b| b.to_le_bytes())
            .collect();
        let m = read(
            "h.npy",
            &npy(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (1, 4)}", &halves),
            None,
        )
        .unwrap();
        assert_eq!(m.data, vec![1.0, -2.0, 0.5, 2f32.powi(-24)]);
    }

    #[test]
    fn float16_converts_exactly_including_subnormals_and_infinities() {
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert!(f16_to_f32(0x8000).is_sign_negative() && f16_to_f32(0x8000) == 0.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24)); // smallest subnormal
        assert_eq!(f16_to_f32(0x03FF), 1023.0 * 2f32.powi(-24)); // largest subnormal
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14)); // smallest normal
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x7BFF), 65504.0); // largest finite
        assert_eq!(f16_to_f32(0x7C00), f32::INFINITY);
        assert_eq!(f16_to_f32(0xFC00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7E00).is_nan());
        assert_eq!(bf16_to_f32(0x3F80), 1.0);
        assert_eq!(bf16_to_f32(0xC040), -3.0);
    }

    #[test]
    fn a_fortran_order_npy_is_refused() {
        let bytes = npy(
            1,
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
            &[0; 16],
        );
        assert!(message(read("f.npy", &bytes, None), "f.npy").contains("Fortran (column-major) order"));
    }

    #[test]
    fn a_float64_npy_is_refused_with_what_to_do() {
        let bytes = npy(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }",
            &[0; 32],
        );
        assert_eq!(
            message(read("d.npy", &bytes, None), "d.npy"),
            "unsupported dtype float64: convert to float32"
        );
        let bytes = npy(
            1,
            "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }",
            &[0; 16],
        );
        assert!(message(read("b.npy", &bytes, None), "b.npy").contains("big-endian"));
    }

    #[test]
    fn a_3d_npy_is_refused() {
        let bytes = npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }",
            &[0; 32],
        );
        assert_eq!(
            message(read("c.npy", &bytes, None), "c.npy"),
            "the array has shape (2, 2, 2), 3 dimensions: expected a 2-D array [rows, d]"
        );
        let bytes = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", &[0; 16]);
        assert!(message(read("v.npy", &bytes, None), "v.npy").contains("1 dimensions"));
    }

    #[test]
    fn an_npy_whose_shape_needs_more_bytes_than_the_file_has_is_refused() {
        let bytes = npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 768), }",
            &[0; 64],
        );
        assert_eq!(
            message(read("big.npy", &bytes, None), "big.npy"),
            "truncated: the header says shape (1000000, 768) of F32 (3072000000 bytes) but only 64 bytes follow \
             the .npy header"
        );
        let header_cut = &write_npy(2, &[1.0; 4]).unwrap()[..40];
        assert!(message(read("cut.npy", header_cut, None), "cut.npy").starts_with("truncated: the .npy header says"));
    }

    #[test]
    fn a_malformed_npy_header_is_refused() {
        let bytes = npy(1, "{'descr': '<f4', 'shape': (2, 2), }", &[0; 16]);
        assert!(message(read("m.npy", &bytes, None), "m.npy").contains("no 'fortran_order'"));
        let bytes = npy(1, "{'descr': '<f4' 'fortran_order': False}", &[0; 16]);
        assert!(message(read("m.npy", &bytes, None), "m.npy").contains("not a dict of the expected form"));
        assert!(message(read("m.npy", &npy(9, "{}", &[]), None), "m.npy").contains("format version 9.0"));
    }

    #[test]
    fn non_finite_values_are_refused_naming_the_row() {
        let mut data = ramp(4, 3);
        data[2 * 3 + 1] = f32::NAN;
        assert_eq!(
            message(read("n.npy", &write_npy(3, &data).unwrap(), None), "n.npy"),
            "row 2, column 1 is NaN: every value must be finite"
        );
        data[2 * 3 + 1] = 0.0;
        data[3 * 3] = f32::NEG_INFINITY;
        assert!(
            message(read("n.npy", &write_npy(3, &data).unwrap(), None), "n.npy").starts_with("row 3, column 0 is -inf")
        );
        let inf_half = npy(
            1,
            "{'descr': '<f2', 'fortran_order': False, 'shape': (1, 1)}",
            &0x7C00u16.to_le_bytes(),
        );
        assert!(message(read("h.npy", &inf_half, None), "h.npy").starts_with("row 0, column 0 is inf"));
    }

    #[test]
    fn safetensors_reads_a_named_tensor_or_the_only_2d_one_in_f32_f16_bf16() {
        let data = ramp(3, 2);
        let ones_f16: Vec<u8> = [0x3C00u16; 4].iter().flat_map(|b| b.to_le_bytes()).collect();
        let twos_bf16: Vec<u8> = [0x4000u16; 2].iter().flat_map(|b| b.to_le_bytes()).collect();
        let bytes = safetensors(&[
            ("acts", safetensors::Dtype::F32, vec![3, 2], f32_bytes(&data)),
            ("tokens", safetensors::Dtype::F32, vec![3], f32_bytes(&[7.0; 3])),
        ]);
        assert_eq!(
            read("a.safetensors", &bytes, None).unwrap(),
            Matrix {
                rows: 3,
                d: 2,
                data: data.clone()
            }
        );
        let bytes = safetensors(&[
            ("acts", safetensors::Dtype::F32, vec![3, 2], f32_bytes(&data)),
            ("half", safetensors::Dtype::F16, vec![2, 2], ones_f16),
            ("brain", safetensors::Dtype::BF16, vec![1, 2], twos_bf16),
        ]);
        assert_eq!(read("a.safetensors", &bytes, Some("half")).unwrap().data, vec![1.0; 4]);
        assert_eq!(read("a.safetensors", &bytes, Some("brain")).unwrap().data, vec![2.0; 2]);
        assert_eq!(
            message(read("a.safetensors", &bytes, None), "a.safetensors"),
            "3 of its tensors are 2-D (acts, brain, half): name the one to read"
        );
    }

    #[test]
    fn a_missing_safetensors_tensor_lists_the_names_present() {
        let bytes = safetensors(&[
            ("acts", safetensors::Dtype::F32, vec![1, 2], f32_bytes(&[1.0, 2.0])),
            ("norms", safetensors::Dtype::F32, vec![1], f32_bytes(&[1.0])),
        ]);
        assert_eq!(
            message(read("a.safetensors", &bytes, Some("resid")), "a.safetensors"),
            "no tensor named 'resid': the file holds acts, norms"
        );
    }

    #[test]
    fn a_bad_safetensors_header_is_refused() {
        let good = safetensors(&[("acts", safetensors::Dtype::F32, vec![1, 2], f32_bytes(&[1.0, 2.0]))]);
        let mut garbled = good.clone();
        garbled[9] = b'#';
        assert!(message(read("a.safetensors", &garbled, None), "a.safetensors").starts_with("bad safetensors header:"));
        let mut too_long = good.clone();
        too_long[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(message(read("a.safetensors", &too_long, None), "a.safetensors").contains("its length field says"));
        assert!(message(read("a.safetensors", &good[..5], None), "a.safetensors").contains("fewer than the 8"));
        assert!(
            message(read("a.safetensors", &good[..good.len() - 1], None), "a.safetensors")
                .contains("describes 8 bytes")
        );
        let f64s = safetensors(&[("acts", safetensors::Dtype::F64, vec![1, 1], 1f64.to_le_bytes().to_vec())]);
        assert!(message(read("a.safetensors", &f64s, None), "a.safetensors").contains("float64: convert to float32"));
        let cube = safetensors(&[("acts", safetensors::Dtype::F32, vec![1, 1, 1], f32_bytes(&[1.0]))]);
        assert!(message(read("a.safetensors", &cube, Some("acts")), "a.safetensors").contains("3 dimensions"));
    }

    #[test]
    fn the_format_is_sniffed_when_the_name_does_not_say() {
        let data = ramp(2, 2);
        assert_eq!(read("upload", &write_npy(2, &data).unwrap(), None).unwrap().data, data);
        let st = safetensors(&[("x", safetensors::Dtype::F32, vec![2, 2], f32_bytes(&data))]);
        assert_eq!(read("upload", &st, None).unwrap().data, data);
    }

    #[test]
    fn streaming_in_chunks_across_boundaries_equals_reading_whole() {
        let (rows, d) = (50, 3);
        let data = ramp(rows, d);
        let files = [
            ("s.npy", write_npy(d, &data).unwrap()),
            (
                "s.safetensors",
                safetensors(&[
                    ("a_first", safetensors::Dtype::F32, vec![4], f32_bytes(&[9.0; 4])),
                    ("acts", safetensors::Dtype::F32, vec![rows, d], f32_bytes(&data)),
                ]),
            ),
        ];
        for (name, bytes) in &files {
            let whole = read(name, bytes, None).unwrap();
            for chunk_rows in [1, 7, 50, 64] {
                let mut reader = ChunkReader::open(name, Cursor::new(bytes), None).unwrap();
                let mut streamed = Vec::new();
                while let Some(chunk) = reader.next_chunk(chunk_rows).unwrap() {
                    assert!(chunk.rows <= chunk_rows && chunk.d == d);
                    streamed.extend(chunk.data);
                }
                assert_eq!(streamed, whole.data, "{name} in chunks of {chunk_rows}");
                reader.rewind().unwrap();
                assert_eq!(reader.next_chunk(2).unwrap().unwrap().data, data[..2 * d]);
            }
        }
    }

    #[test]
    fn a_file_on_disk_streams_and_a_missing_one_is_named() {
        let path = std::env::temp_dir().join(format!("mfr-sae-activations-{}.npy", std::process::id()));
        std::fs::write(&path, write_npy(4, &ramp(10, 4)).unwrap()).unwrap();
        let mut reader = open(&path, None).unwrap();
        assert_eq!((reader.rows(), reader.d(), reader.dtype()), (10, 4, Dtype::F32));
        assert_eq!(reader.next_chunk(3).unwrap().unwrap().data, ramp(10, 4)[..12]);
        std::fs::remove_file(&path).unwrap();
        assert!(message(
            open(Path::new("/nonexistent/a.npy"), None).map(|_| ()),
            "/nonexistent/a.npy"
        )
        .starts_with("cannot open the file"));
    }

    #[test]
    fn checked_scale_brings_the_mean_row_norm_to_sqrt_d() {
        let (rows, d) = (40, 16);
        let data: Vec<f32> = (0..rows * d).map(|i| ((i * 37 % 11) as f32 - 5.0) * 3.0).collect();
        let bytes = write_npy(d, &data).unwrap();
        let mut reader = ChunkReader::open("n.npy", Cursor::new(&bytes), None).unwrap();
        let scale = checked_scale(&mut reader, 7, true).unwrap();
        let mean_norm: f32 = data
            .chunks_exact(d)
            .map(|r| r.iter().map(|v| (v * scale).powi(2)).sum::<f32>().sqrt())
            .sum::<f32>()
            / rows as f32;
        assert!((mean_norm - (d as f32).sqrt()).abs() < 1e-4);
        assert_eq!(
            reader.next_chunk(1).unwrap().unwrap().data,
            data[..d],
            "rewound after the pass"
        );
        let zeros = write_npy(2, &[0.0; 4]).unwrap();
        let mut reader = ChunkReader::open("z.npy", Cursor::new(&zeros), None).unwrap();
        assert!(message(checked_scale(&mut reader, 2, false), "z.npy").contains("every one of the 2 rows is zero"));
    }

    /// Row i of the test file is [i, i] so a served row names itself.
    fn numbered(rows: usize) -> Vec<u8> {
        write_npy(2, &(0..rows).flat_map(|i| [i as f32, i as f32]).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn the_shuffler_is_seeded_mixes_rows_and_serves_every_row_of_an_epoch() {
        let bytes = numbered(100);
        let shuffler = |seed| {
            Shuffler::new(
                ChunkReader::open("s.npy", Cursor::new(bytes.clone()), None).unwrap(),
                32,
                seed,
            )
        };
        let mut a = shuffler(7).unwrap();
        let first = a.next_batch(100).unwrap();
        assert_eq!(first, shuffler(7).unwrap().next_batch(100).unwrap());
        assert_ne!(first, shuffler(8).unwrap().next_batch(100).unwrap());
        let served: Vec<usize> = first.chunks_exact(2).map(|r| r[0] as usize).collect();
        assert_ne!(served, (0..100).collect::<Vec<_>>());
        let mut sorted = served.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            (0..100).collect::<Vec<_>>(),
            "the first epoch serves each row once"
        );
        let mut counts = [0usize; 100];
        for r in a.next_batch(900).unwrap().chunks_exact(2) {
            counts[r[0] as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c == 9), "nine more epochs: {counts:?}");
    }

    #[test]
    fn the_shuffler_applies_the_scale_and_refuses_zero_capacity() {
        let reader = || ChunkReader::open("s.npy", Cursor::new(numbered(5)), None).unwrap();
        let mut s = Shuffler::new(reader(), 5, 1).unwrap().with_scale(2.0);
        assert_eq!(s.d(), 2);
        let mut served: Vec<f32> = s.next_batch(5).unwrap().into_iter().step_by(2).collect();
        served.sort_by(f32::total_cmp);
        assert_eq!(served, vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        assert!(Shuffler::new(reader(), 0, 1).is_err());
    }
}
