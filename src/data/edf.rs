//! EDF and EDF+ files (European Data Format, Kemp et al. 1992; EDF+, Kemp & Olivan 2003):
//! the reader, from bytes (so the page can pass a file's bytes) or from a path, and a plain
//! EDF writer used by tests and to build samples.
//!
//! The reader checks every header field and the file's size against the header, scales
//! digital values to physical ones and skips the "EDF Annotations" signal of EDF+ (the
//! annotations themselves are not read). EDF+D (discontinuous) records are concatenated as
//! if they were contiguous. BDF (24-bit) files are refused. Filtering and segmenting are in
//! `eeg.rs`.

use crate::error::{Error, Result};
use std::path::Path;

/// Bytes of the fixed header, and of each signal's header (EDF spec, "header record").
const HEADER_BYTES: usize = 256;
const SIGNAL_HEADER_BYTES: usize = 256;
/// Bytes of one sample in a data record: a little-endian two's-complement i16.
const SAMPLE_BYTES: usize = 2;
/// The label of the EDF+ signal that holds annotations, not samples.
const ANNOTATIONS_LABEL: &str = "EDF Annotations";
/// The digital range the writer uses: all of i16.
const WRITE_DIGITAL_MIN: i32 = i16::MIN as i32;
const WRITE_DIGITAL_MAX: i32 = i16::MAX as i32;

/// Which flavour of EDF a file is, from the header's reserved field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Plain EDF (reserved field not "EDF+C" or "EDF+D").
    Edf,
    /// EDF+ with contiguous records ("EDF+C").
    EdfPlusContinuous,
    /// EDF+ with gaps between records ("EDF+D"); the reader concatenates the records.
    EdfPlusDiscontinuous,
}

/// A signal's samples in physical units, with what identifies it.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    pub label: String,
    /// Samples per second: samples per record / record duration.
    pub sample_rate: f64,
    /// Physical unit, e.g. "uV".
    pub physical_dimension: String,
    /// Physical values, [records · samples_per_record].
    pub samples: Vec<f32>,
}

/// The rest of a signal's header, as the file gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalHeader {
    pub transducer: String,
    pub prefiltering: String,
    /// Physical values of the digital extremes; physical_min > physical_max is allowed (inverted polarity).
    pub physical_min: f64,
    pub physical_max: f64,
    pub digital_min: i32,
    pub digital_max: i32,
    pub samples_per_record: usize,
}

/// A whole file, annotations signal left out.
#[derive(Clone, Debug, PartialEq)]
pub struct Edf {
    pub kind: Kind,
    pub patient: String,
    pub recording: String,
    /// As in the file: "dd.mm.yy" and "hh.mm.ss".
    pub start_date: String,
    pub start_time: String,
    /// Seconds per data record.
    pub record_duration: f64,
    /// Number of data records (derived from the file size when the header says -1).
    pub records: usize,
    pub signals: Vec<Signal>,
    /// The header of each signal in `signals`, in the same order.
    pub headers: Vec<SignalHeader>,
}

/// Reads an EDF or EDF+ file from disk.
pub fn read(path: &Path) -> Result<Edf> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: name.clone(),
        message: format!("cannot read the file: {e}"),
    })?;
    parse(&name, &bytes)
}

/// Parses an EDF or EDF+ file's bytes; `name` (a path, or a file name from the browser)
/// names the file in errors.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Edf> {
    let fail = |message: String| Error::Io {
        path: name.to_string(),
        message,
    };
    if bytes.len() < HEADER_BYTES {
        return Err(fail(format!(
            "truncated: an EDF header is {HEADER_BYTES} bytes but the file has {} bytes",
            bytes.len()
        )));
    }
    if bytes[0] == 0xFF {
        return Err(fail(
            "this is a BDF (24-bit) file, not EDF: only 16-bit EDF and EDF+ are supported".to_string(),
        ));
    }
    let mut fields = Fields { name, bytes, at: 0 };
    let version = fields.text(8);
    if version != "0" {
        return Err(fail(format!(
            "not an EDF file: the version field is \"{version}\" where EDF has \"0\""
        )));
    }
    let patient = fields.text(80);
    let recording = fields.text(80);
    let start_date = fields.text(8);
    let start_time = fields.text(8);
    let header_bytes: usize = fields.number("header bytes", 8)?;
    let reserved = fields.text(44);
    let declared_records: i64 = fields.number("number of data records", 8)?;
    let record_duration: f64 = fields.number("data record duration", 8)?;
    let ns: usize = fields.number("number of signals", 4)?;

    let kind = if reserved.starts_with("EDF+C") {
        Kind::EdfPlusContinuous
    } else if reserved.starts_with("EDF+D") {
        Kind::EdfPlusDiscontinuous
    } else {
        Kind::Edf
    };
    if !(record_duration.is_finite() && record_duration > 0.0) {
        return Err(fail(format!(
            "the data record duration is {record_duration} s: it must be a positive number of seconds"
        )));
    }
    if ns == 0 {
        return Err(fail("the header says the file has 0 signals".to_string()));
    }
    let expected_header = ns
        .checked_add(1)
        .and_then(|n| n.checked_mul(SIGNAL_HEADER_BYTES))
        .ok_or_else(|| fail(format!("the header says {ns} signals, too many to hold")))?;
    if header_bytes != expected_header {
        return Err(fail(format!(
            "the header says it is {header_bytes} bytes long, but with {ns} signals it must be {expected_header} bytes"
        )));
    }
    if bytes.len() < header_bytes {
        return Err(fail(format!(
            "truncated: the header with its {ns} signal headers is {header_bytes} bytes but the file has {} bytes",
            bytes.len()
        )));
    }

    // Signal headers: each field for all signals, then the next field (EDF spec).
    let labels = fields.texts(16, ns);
    let transducers = fields.texts(80, ns);
    let dimensions = fields.texts(8, ns);
    let physical_mins: Vec<f64> = fields.numbers("physical minimum", 8, ns)?;
    let physical_maxs: Vec<f64> = fields.numbers("physical maximum", 8, ns)?;
    let digital_mins: Vec<i32> = fields.numbers("digital minimum", 8, ns)?;
    let digital_maxs: Vec<i32> = fields.numbers("digital maximum", 8, ns)?;
    let prefilterings = fields.texts(80, ns);
    let samples_per_record: Vec<usize> = fields.numbers("number of samples in each data record", 8, ns)?;

    for i in 0..ns {
        let label = &labels[i];
        let (pmin, pmax, dmin, dmax) = (physical_mins[i], physical_maxs[i], digital_mins[i], digital_maxs[i]);
        if !(pmin.is_finite() && pmax.is_finite()) {
            return Err(fail(format!(
                "signal {i} ({label}): the physical range {pmin} to {pmax} is not finite"
            )));
        }
        // Samples are f32: a range finite in f64 but beyond f32 (e.g. 1e300) would become ±inf.
        if pmin.abs() > f64::from(f32::MAX) || pmax.abs() > f64::from(f32::MAX) {
            return Err(fail(format!(
                "signal {i} ({label}): the physical range {pmin:e} to {pmax:e} exceeds f32's ±{:e}, \
                 so its samples cannot be held",
                f32::MAX
            )));
        }
        if pmin == pmax {
            return Err(fail(format!(
                "signal {i} ({label}): physical minimum and maximum are both {pmin}, so no value can be scaled"
            )));
        }
        if dmin >= dmax {
            return Err(fail(format!(
                "signal {i} ({label}): digital minimum {dmin} is not below digital maximum {dmax}"
            )));
        }
        if samples_per_record[i] == 0 {
            return Err(fail(format!(
                "signal {i} ({label}): 0 samples per data record; each signal needs at least 1"
            )));
        }
    }

    let record_bytes = samples_per_record
        .iter()
        .try_fold(0usize, |sum, &n| {
            n.checked_mul(SAMPLE_BYTES).and_then(|b| sum.checked_add(b))
        })
        .ok_or_else(|| fail("the samples per data record are too many to hold".to_string()))?;
    let data_bytes = bytes.len() - header_bytes;
    let records = if declared_records == -1 {
        if !data_bytes.is_multiple_of(record_bytes) {
            return Err(fail(format!(
                "the header leaves the number of data records unknown (-1) and the {data_bytes} bytes after \
                 the header are not a whole number of {record_bytes}-byte records"
            )));
        }
        data_bytes / record_bytes
    } else {
        let records = usize::try_from(declared_records).map_err(|_| {
            fail(format!(
                "the header says {declared_records} data records: it must be at least 0, or -1 for unknown"
            ))
        })?;
        let expected = records.checked_mul(record_bytes).ok_or_else(|| {
            fail(format!(
                "the header says {records} data records of {record_bytes} bytes, too many to hold"
            ))
        })?;
        if data_bytes < expected {
            return Err(fail(format!(
                "truncated: header says {records} data records of {record_bytes} bytes but the file has \
                 {data_bytes} bytes after the header"
            )));
        }
        if data_bytes > expected {
            return Err(fail(format!(
                "the header says {records} data records of {record_bytes} bytes ({expected} bytes) but the file \
                 has {data_bytes} bytes after the header: the record count or a signal's samples per record is wrong"
            )));
        }
        records
    };

    let mut signals = Vec::new();
    let mut headers = Vec::new();
    // Byte offset of each signal inside a record.
    let mut offset = 0;
    for i in 0..ns {
        let n = samples_per_record[i];
        let start = offset;
        offset += n * SAMPLE_BYTES;
        if labels[i] == ANNOTATIONS_LABEL {
            continue;
        }
        let (pmin, pmax) = (physical_mins[i], physical_maxs[i]);
        let (dmin, dmax) = (f64::from(digital_mins[i]), f64::from(digital_maxs[i]));
        let gain = (pmax - pmin) / (dmax - dmin);
        let mut samples = Vec::with_capacity(records * n);
        for record in 0..records {
            let at = header_bytes + record * record_bytes + start;
            samples.extend(
                bytes[at..at + n * SAMPLE_BYTES]
                    .chunks_exact(SAMPLE_BYTES)
                    .map(|b| ((f64::from(i16::from_le_bytes([b[0], b[1]])) - dmin) * gain + pmin) as f32),
            );
        }
        // A digital value outside the digital range extrapolates past the physical one.
        if let Some(at) = samples.iter().position(|v| !v.is_finite()) {
            return Err(fail(format!(
                "signal {i} ({}): sample {at} scales to {}: digital value outside the digital range \
                 {dmin} to {dmax} with a physical range this wide overflows f32",
                labels[i], samples[at]
            )));
        }
        signals.push(Signal {
            label: labels[i].clone(),
            sample_rate: n as f64 / record_duration,
            physical_dimension: dimensions[i].clone(),
            samples,
        });
        headers.push(SignalHeader {
            transducer: transducers[i].clone(),
            prefiltering: prefilterings[i].clone(),
            physical_min: pmin,
            physical_max: pmax,
            digital_min: digital_mins[i],
            digital_max: digital_maxs[i],
            samples_per_record: n,
        });
    }
    Ok(Edf {
        kind,
        patient,
        recording,
        start_date,
        start_time,
        record_duration,
        records,
        signals,
        headers,
    })
}

/// Reads the header's fixed-width ASCII fields in order.
struct Fields<'a> {
    name: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl Fields<'_> {
    /// The next `width` bytes as trimmed text (bytes outside printable ASCII become '?').
    fn text(&mut self, width: usize) -> String {
        let raw = &self.bytes[self.at..self.at + width];
        self.at += width;
        raw.iter()
            .map(|&b| if (0x20..0x7F).contains(&b) { b as char } else { '?' })
            .collect::<String>()
            .trim()
            .to_string()
    }

    fn texts(&mut self, width: usize, ns: usize) -> Vec<String> {
        (0..ns).map(|_| self.text(width)).collect()
    }

    /// The next field parsed as a number; "1e5", "inf" and "nan" parse and are checked by the caller.
    fn number<T: std::str::FromStr>(&mut self, field: &str, width: usize) -> Result<T> {
        let text = self.text(width);
        text.parse().map_err(|_| Error::Io {
            path: self.name.to_string(),
            message: format!("the header field \"{field}\" is \"{text}\", not a number of the expected kind"),
        })
    }

    fn numbers<T: std::str::FromStr>(&mut self, field: &str, width: usize, ns: usize) -> Result<Vec<T>> {
        (0..ns)
            .map(|i| {
                self.number(field, width).map_err(|e| match e {
                    Error::Io { path, message } => Error::Io {
                        path,
                        message: format!("signal {i}: {message}"),
                    },
                    other => other,
                })
            })
            .collect()
    }
}

/// Writes signals as a plain EDF file (reserved field empty, no annotations), `record_duration`
/// seconds per data record. Each signal's physical range is its samples' minimum and maximum
/// (rounded outwards to fit the 8-character fields; a constant signal gets max = min + 1),
/// mapped onto the digital range of i16. Every signal must fill the same whole number of records.
pub fn write(signals: &[Signal], record_duration: f64) -> Result<Vec<u8>> {
    if signals.is_empty() {
        return Err(Error::Config("EDF writer: no signals to write".to_string()));
    }
    if !(record_duration.is_finite() && record_duration > 0.0) {
        return Err(Error::Config(format!(
            "EDF writer: the record duration {record_duration} s must be a positive number of seconds"
        )));
    }
    let duration_text = format!("{record_duration}");
    if duration_text.len() > 8 {
        return Err(Error::Config(format!(
            "EDF writer: the record duration {record_duration} s does not fit the 8-character header field"
        )));
    }
    let mut per_record = Vec::new();
    let mut ranges = Vec::new();
    for signal in signals {
        let label = &signal.label;
        let exact = signal.sample_rate * record_duration;
        let n = exact.round();
        if !(n >= 1.0 && (exact - n).abs() <= 1e-9 * n) {
            return Err(Error::Config(format!(
                "EDF writer: signal {label} at {} Hz does not give a whole number of samples per {record_duration} s record",
                signal.sample_rate
            )));
        }
        per_record.push(n as usize);
        if let Some(bad) = signal.samples.iter().find(|v| !v.is_finite()) {
            return Err(Error::Config(format!(
                "EDF writer: signal {label} holds {bad}; EDF can only store finite values"
            )));
        }
        let min = signal.samples.iter().fold(f64::INFINITY, |m, &v| m.min(f64::from(v)));
        let max = signal
            .samples
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let (min_text, min) = fit_field(min, f64::floor).ok_or_else(|| {
            Error::Config(format!(
                "EDF writer: signal {label}'s minimum {min} does not fit 8 characters"
            ))
        })?;
        let max = if max > min { max } else { min + 1.0 };
        let (max_text, max) = fit_field(max, f64::ceil).ok_or_else(|| {
            Error::Config(format!(
                "EDF writer: signal {label}'s maximum {max} does not fit 8 characters"
            ))
        })?;
        ranges.push((min_text, min, max_text, max));
    }
    let records = signals[0].samples.len() / per_record[0];
    for (signal, &n) in signals.iter().zip(&per_record) {
        if signal.samples.len() != records * n {
            return Err(Error::Config(format!(
                "EDF writer: signal {} has {} samples, not {records} whole records of {n} samples like signal {}",
                signal.label,
                signal.samples.len(),
                signals[0].label
            )));
        }
    }

    let ns = signals.len();
    let mut out = Vec::new();
    let mut put = |text: &str, width: usize| {
        let mut field: Vec<u8> = text.bytes().filter(|b| (0x20..0x7F).contains(b)).take(width).collect();
        field.resize(width, b' ');
        out.extend_from_slice(&field);
    };
    put("0", 8);
    put("X X X X", 80);
    put("Startdate X X X X", 80);
    put("01.01.85", 8);
    put("00.00.00", 8);
    put(&((ns + 1) * SIGNAL_HEADER_BYTES).to_string(), 8);
    put("", 44);
    put(&records.to_string(), 8);
    put(&duration_text, 8);
    put(&ns.to_string(), 4);
    for signal in signals {
        put(&signal.label, 16);
    }
    for _ in signals {
        put("", 80);
    }
    for signal in signals {
        put(&signal.physical_dimension, 8);
    }
    for (min_text, ..) in &ranges {
        put(min_text, 8);
    }
    for (_, _, max_text, _) in &ranges {
        put(max_text, 8);
    }
    for _ in signals {
        put(&WRITE_DIGITAL_MIN.to_string(), 8);
    }
    for _ in signals {
        put(&WRITE_DIGITAL_MAX.to_string(), 8);
    }
    for _ in signals {
        put("", 80);
    }
    for &n in &per_record {
        put(&n.to_string(), 8);
    }
    for _ in signals {
        put("", 32);
    }
    let digital_span = f64::from(WRITE_DIGITAL_MAX - WRITE_DIGITAL_MIN);
    for record in 0..records {
        for ((signal, &n), &(_, min, _, max)) in signals.iter().zip(&per_record).zip(&ranges) {
            for &v in &signal.samples[record * n..(record + 1) * n] {
                let digital =
                    ((f64::from(v) - min) / (max - min) * digital_span + f64::from(WRITE_DIGITAL_MIN)).round();
                let digital = digital.clamp(f64::from(WRITE_DIGITAL_MIN), f64::from(WRITE_DIGITAL_MAX)) as i16;
                out.extend_from_slice(&digital.to_le_bytes());
            }
        }
    }
    Ok(out)
}

/// `value` rounded by `round` (floor or ceil) at the most decimals that fit an 8-character
/// field, as text and as the number the text says; None if not even the integer part fits.
fn fit_field(value: f64, round: fn(f64) -> f64) -> Option<(String, f64)> {
    (0..=7).rev().find_map(|decimals: i32| {
        let scale = 10f64.powi(decimals);
        let rounded = round(value * scale) / scale;
        let text = format!("{rounded:.prec$}", prec = decimals as usize);
        (text.len() <= 8).then(|| (text.clone(), text.parse().unwrap_or(rounded)))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde::Deserialize;

    /// A signal in µV, for tests here and in `eeg.rs`.
    pub(crate) fn signal(label: &str, sample_rate: f64, samples: Vec<f32>) -> Signal {
        Signal {
            label: label.to_string(),
            sample_rate,
            physical_dimension: "uV".to_string(),
            samples,
        }
    }

    /// Two signals at different rates over 3 records of 0.5 s.
    fn two_signals() -> Vec<Signal> {
        vec![
            signal("Fp1", 8.0, (0..12).map(|i| (i as f32 * 0.7).sin() * 50.0).collect()),
            signal("O2", 4.0, (0..6).map(|i| i as f32 - 2.5).collect()),
        ]
    }

    fn message(result: Result<Edf>) -> String {
        match result {
            Err(Error::Io { path, message }) => {
                assert_eq!(path, "test.edf");
                message
            }
            other => panic!("expected an Io error, got {other:?}"),
        }
    }

    /// Overwrites the fixed-width field at `at` with `text`, space-padded.
    fn set_field(bytes: &mut [u8], at: usize, width: usize, text: &str) {
        let mut field = text.as_bytes().to_vec();
        field.resize(width, b' ');
        bytes[at..at + width].copy_from_slice(&field);
    }

    /// Offsets of the fixed header's fields (EDF spec).
    const RECORDS_AT: usize = 236;
    const DURATION_AT: usize = 244;
    const NS_AT: usize = 252;
    const HEADER_BYTES_AT: usize = 184;
    /// Offset of signal `i`'s field that starts `field_offset_per_signal·ns` into the signal headers.
    fn signal_field(ns: usize, field_start: usize, width: usize, i: usize) -> usize {
        HEADER_BYTES + field_start * ns + width * i
    }
    // Start of each signal-header field, in units of ns (label 16, transducer 80, dimension 8, pmin 8, ...).
    const PHYS_MIN: usize = 16 + 80 + 8;
    const PHYS_MAX: usize = PHYS_MIN + 8;
    const DIG_MIN: usize = PHYS_MAX + 8;
    const DIG_MAX: usize = DIG_MIN + 8;
    const SAMPLES_PER_RECORD: usize = DIG_MAX + 8 + 80;

    #[test]
    fn written_signals_read_back_within_one_quantisation_step() {
        let signals = two_signals();
        let edf = parse("test.edf", &write(&signals, 0.5).unwrap()).unwrap();
        assert_eq!(edf.kind, Kind::Edf);
        assert_eq!(edf.records, 3);
        assert_eq!(edf.record_duration, 0.5);
        for ((read, written), header) in edf.signals.iter().zip(&signals).zip(&edf.headers) {
            assert_eq!(read.label, written.label);
            assert_eq!(read.sample_rate, written.sample_rate);
            assert_eq!(read.physical_dimension, "uV");
            let step = (header.physical_max - header.physical_min) / 65535.0;
            for (a, b) in read.samples.iter().zip(&written.samples) {
                assert!((a - b).abs() as f64 <= step, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn a_constant_signal_is_written_with_a_unit_physical_range() {
        let edf = parse("test.edf", &write(&[signal("flat", 2.0, vec![3.0; 4])], 1.0).unwrap()).unwrap();
        assert_eq!((edf.headers[0].physical_min, edf.headers[0].physical_max), (3.0, 4.0));
        assert!(edf.signals[0].samples.iter().all(|&v| (v - 3.0).abs() < 1e-4));
    }

    #[test]
    fn the_writer_refuses_signals_that_do_not_fill_whole_records_or_hold_nan() {
        assert!(write(&[signal("a", 4.0, vec![0.0; 5])], 1.0).is_err());
        assert!(write(&[signal("a", 3.0, vec![0.0; 6])], 0.5).is_err());
        assert!(write(&[signal("a", 2.0, vec![f32::NAN, 0.0])], 1.0).is_err());
    }

    #[test]
    fn digital_values_scale_linearly_onto_the_physical_range_even_when_inverted() {
        let mut bytes = write(&[signal("x", 2.0, vec![0.0, 1.0])], 1.0).unwrap();
        set_field(&mut bytes, signal_field(1, PHYS_MIN, 8, 0), 8, "100");
        set_field(&mut bytes, signal_field(1, PHYS_MAX, 8, 0), 8, "-100");
        set_field(&mut bytes, signal_field(1, DIG_MIN, 8, 0), 8, "-1000");
        set_field(&mut bytes, signal_field(1, DIG_MAX, 8, 0), 8, "1000");
        let data = 2 * HEADER_BYTES;
        bytes[data..data + 2].copy_from_slice(&(-1000i16).to_le_bytes());
        bytes[data + 2..data + 4].copy_from_slice(&500i16.to_le_bytes());
        let edf = parse("test.edf", &bytes).unwrap();
        assert_eq!(edf.signals[0].samples, vec![100.0, -50.0]);
    }

    #[test]
    fn the_annotations_signal_of_edf_plus_is_skipped() {
        let mut bytes = write(
            &[signal("EEG Cz", 2.0, vec![1.0, 2.0]), signal("x", 2.0, vec![0.0, 0.0])],
            1.0,
        )
        .unwrap();
        set_field(&mut bytes, signal_field(2, 0, 16, 1), 16, ANNOTATIONS_LABEL);
        set_field(&mut bytes, 192, 44, "EDF+C");
        let edf = parse("test.edf", &bytes).unwrap();
        assert_eq!(edf.kind, Kind::EdfPlusContinuous);
        assert_eq!(edf.signals.len(), 1);
        assert_eq!(edf.headers.len(), 1);
        assert_eq!(edf.signals[0].label, "EEG Cz");
    }

    #[test]
    fn an_unknown_record_count_is_derived_from_the_file_size() {
        let mut bytes = write(&two_signals(), 0.5).unwrap();
        set_field(&mut bytes, RECORDS_AT, 8, "-1");
        assert_eq!(parse("test.edf", &bytes).unwrap().records, 3);
        bytes.pop();
        assert!(message(parse("test.edf", &bytes)).contains("not a whole number of 12-byte records"));
    }

    #[test]
    fn a_truncated_file_is_refused_saying_how_many_bytes_are_missing() {
        let bytes = write(&two_signals(), 0.5).unwrap();
        assert_eq!(
            message(parse("test.edf", &bytes[..bytes.len() - 1])),
            "truncated: header says 3 data records of 12 bytes but the file has 35 bytes after the header"
        );
        assert!(message(parse("test.edf", &bytes[..100])).starts_with("truncated: an EDF header is 256 bytes"));
        assert!(message(parse("test.edf", &bytes[..600])).starts_with("truncated: the header with its 2 signal"));
    }

    #[test]
    fn a_header_that_lies_about_the_record_count_or_size_is_refused() {
        let bytes = write(&two_signals(), 0.5).unwrap();
        let mut more = bytes.clone();
        set_field(&mut more, RECORDS_AT, 8, "4");
        assert!(message(parse("test.edf", &more)).starts_with("truncated: header says 4 data records"));
        let mut fewer = bytes.clone();
        set_field(&mut fewer, RECORDS_AT, 8, "2");
        assert!(
            message(parse("test.edf", &fewer)).contains("the record count or a signal's samples per record is wrong")
        );
        let mut header_size = bytes.clone();
        set_field(&mut header_size, HEADER_BYTES_AT, 8, "512");
        assert_eq!(
            message(parse("test.edf", &header_size)),
            "the header says it is 512 bytes long, but with 2 signals it must be 768 bytes"
        );
    }

    #[test]
    fn non_numeric_header_fields_are_named() {
        let mut bytes = write(&two_signals(), 0.5).unwrap();
        set_field(&mut bytes, NS_AT, 4, "two");
        assert_eq!(
            message(parse("test.edf", &bytes)),
            "the header field \"number of signals\" is \"two\", not a number of the expected kind"
        );
        let mut bytes = write(&two_signals(), 0.5).unwrap();
        set_field(&mut bytes, signal_field(2, PHYS_MAX, 8, 1), 8, "12,5");
        assert_eq!(
            message(parse("test.edf", &bytes)),
            "signal 1: the header field \"physical maximum\" is \"12,5\", not a number of the expected kind"
        );
    }

    #[test]
    fn zero_or_negative_sample_counts_and_durations_are_refused() {
        let bytes = write(&two_signals(), 0.5).unwrap();
        for (at, width, text, expected) in [
            (
                signal_field(2, SAMPLES_PER_RECORD, 8, 1),
                8,
                "0",
                "signal 1 (O2): 0 samples per data record",
            ),
            (
                signal_field(2, SAMPLES_PER_RECORD, 8, 1),
                8,
                "-2",
                "not a number of the expected kind",
            ),
            (DURATION_AT, 8, "0", "the data record duration is 0 s"),
            (DURATION_AT, 8, "-1", "the data record duration is -1 s"),
            (RECORDS_AT, 8, "-3", "the header says -3 data records"),
            (NS_AT, 4, "0", "the header says the file has 0 signals"),
        ] {
            let mut bad = bytes.clone();
            set_field(&mut bad, at, width, text);
            let got = message(parse("test.edf", &bad));
            assert!(got.contains(expected), "{text}: {got}");
        }
    }

    #[test]
    fn samples_that_overflow_f32_through_a_narrow_digital_range_are_refused() {
        let mut bytes = write(&two_signals(), 0.5).unwrap();
        for (field, text) in [(PHYS_MIN, "-3e38"), (PHYS_MAX, "3e38"), (DIG_MIN, "0"), (DIG_MAX, "1")] {
            set_field(&mut bytes, signal_field(2, field, 8, 1), 8, text);
        }
        let got = message(parse("test.edf", &bytes));
        assert!(got.contains("signal 1 (O2): sample 0 scales to"), "{got}");
        assert!(got.contains("overflows f32"), "{got}");
    }

    #[test]
    fn degenerate_physical_or_digital_ranges_and_nan_are_refused() {
        let bytes = write(&two_signals(), 0.5).unwrap();
        for (field, text, expected) in [
            (
                PHYS_MAX,
                "-2.5",
                "signal 1 (O2): physical minimum and maximum are both -2.5",
            ),
            (
                DIG_MAX,
                "-32768",
                "signal 1 (O2): digital minimum -32768 is not below digital maximum -32768",
            ),
            (
                DIG_MIN,
                "32767",
                "digital minimum 32767 is not below digital maximum 32767",
            ),
            (
                PHYS_MIN,
                "NaN",
                "signal 1 (O2): the physical range NaN to 2.5 is not finite",
            ),
            (PHYS_MAX, "inf", "is not finite"),
            (
                PHYS_MAX,
                "1e300",
                "signal 1 (O2): the physical range -2.5e0 to 1e300 exceeds f32's",
            ),
        ] {
            let mut bad = bytes.clone();
            set_field(&mut bad, signal_field(2, field, 8, 1), 8, text);
            let got = message(parse("test.edf", &bad));
            assert!(got.contains(expected), "{text}: {got}");
        }
    }

    #[test]
    fn bdf_and_other_formats_are_refused_by_name() {
        let mut bytes = write(&two_signals(), 0.5).unwrap();
        bytes[0] = 0xFF;
        assert!(message(parse("test.edf", &bytes)).contains("BDF (24-bit)"));
        bytes[0] = b'7';
        assert!(message(parse("test.edf", &bytes)).starts_with("not an EDF file"));
    }

    #[test]
    fn a_missing_file_is_named() {
        match read(Path::new("/nonexistent/recording.edf")) {
            Err(Error::Io { path, message }) => {
                assert_eq!(path, "/nonexistent/recording.edf");
                assert!(message.starts_with("cannot read the file"));
            }
            other => panic!("{other:?}"),
        }
    }

    /// What pyedflib (an independent reader) reads, written by scripts/make_edf_fixtures.py.
    #[derive(Deserialize)]
    struct Fixture {
        record_duration: f64,
        records: usize,
        signals: Vec<FixtureSignal>,
    }

    #[derive(Deserialize)]
    struct FixtureSignal {
        label: String,
        sample_rate: f64,
        physical_min: f64,
        physical_max: f64,
        n_samples: usize,
        first: Vec<f64>,
        last: Vec<f64>,
    }

    /// Our reader agrees with pyedflib to 1e-6 of each signal's physical range, plus the
    /// rounding of an f32 sample (which dominates for a large offset like the Emotiv's ~4200 µV).
    fn agrees_with_pyedflib(name: &str, bytes: &[u8], fixture: &str) -> Edf {
        let edf = parse(name, bytes).unwrap();
        let fixture: Fixture = serde_json::from_str(fixture).unwrap();
        assert_eq!(edf.record_duration, fixture.record_duration);
        assert_eq!(edf.records, fixture.records);
        assert_eq!(edf.signals.len(), fixture.signals.len());
        for ((ours, header), theirs) in edf.signals.iter().zip(&edf.headers).zip(&fixture.signals) {
            assert_eq!(ours.label, theirs.label);
            assert_eq!(ours.sample_rate, theirs.sample_rate);
            assert_eq!(
                (header.physical_min, header.physical_max),
                (theirs.physical_min, theirs.physical_max)
            );
            assert_eq!(ours.samples.len(), theirs.n_samples);
            let range_tolerance = 1e-6 * (theirs.physical_max - theirs.physical_min).abs();
            let tail = &ours.samples[ours.samples.len() - theirs.last.len()..];
            for (a, b) in ours
                .samples
                .iter()
                .zip(&theirs.first)
                .chain(tail.iter().zip(&theirs.last))
            {
                let tolerance = range_tolerance + b.abs() * f64::from(f32::EPSILON);
                assert!((f64::from(*a) - b).abs() <= tolerance, "{}: {a} vs {b}", ours.label);
            }
        }
        edf
    }

    #[test]
    fn an_edf_plus_file_written_by_other_software_reads_as_pyedflib_reads_it() {
        let edf = agrees_with_pyedflib(
            "pyedflib_test_subsecond.edf",
            include_bytes!("../../tests/fixtures/pyedflib_test_subsecond.edf"),
            include_str!("../../tests/fixtures/pyedflib_test_subsecond.json"),
        );
        assert_eq!(edf.kind, Kind::EdfPlusContinuous);
        assert_eq!(edf.signals[0].physical_dimension, "uV");
    }

    #[test]
    fn the_shipped_eeg_sample_reads_as_pyedflib_reads_it() {
        let edf = agrees_with_pyedflib(
            "eyes_open_shut.edf",
            include_bytes!("../../web/samples/eeg/eyes_open_shut.edf"),
            include_str!("../../tests/fixtures/eyes_open_shut.json"),
        );
        assert_eq!(edf.signals.len(), 14);
        assert!(edf
            .signals
            .iter()
            .all(|s| s.sample_rate == 128.0 && s.samples.len() == 98 * 128));
    }
}
