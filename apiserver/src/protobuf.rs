//! Kubernetes protobuf request bodies (`Content-Type: application/vnd.kubernetes.protobuf`),
//! decoded into the upstream v1.33 JSON the rest of the apiserver works on.
//!
//! kubectl's generators (`create configmap|secret|deployment|namespace|service|job`, `create
//! role|clusterrole|rolebinding|clusterrolebinding` (1.33; 1.27 sends JSON), `run`) and drain's
//! fallback DELETE send protobuf. A body is the magic `k8s\0` followed by a
//! `runtime.Unknown` {typeMeta = 1 {apiVersion = 1, kind = 2}, raw = 2, contentEncoding = 3,
//! contentType = 4}; `raw` is the object's message without its TypeMeta. [`decode`] looks the
//! kind up in [`crate::protobuf_schema::ROOTS`] and walks the generated field tables (tag → JSON
//! name and kind) over the wire data. Upstream's JSON rules are kept:
//!
//! * fields not in the tables (newer than v1.33, or unknown) are skipped, as upstream does;
//! * an optional scalar holding its zero value ("", 0, false) is left out (`omitempty`), unless
//!   it is required or a Go pointer (`replicas: 0`, `gracePeriodSeconds: 0` are kept); empty
//!   lists and maps are left out; messages are kept when present (`status: {}`, `resources: {}`);
//! * meta/v1 Time → `"2026-01-02T03:04:05Z"` (zero → null), MicroTime → 6 fractional digits,
//!   Duration → Go's `"1m0s"`, Quantity → its string (as sent, not re-canonicalized),
//!   IntOrString → number or string, RawExtension and FieldsV1 → the embedded JSON, bytes →
//!   base64, int64 → JSON numbers.
//!
//! The tables in `protobuf_schema.rs` are generated from k8s-pb 0.9 (tags, wire types) and
//! k8s-openapi 0.29 v1_33 (JSON names) by `deploy/gen-protobuf-schema.py` (CI does not run it):
//!
//! ```text
//! python3 deploy/gen-protobuf-schema.py > apiserver/src/protobuf_schema.rs
//! rustfmt --edition 2021 apiserver/src/protobuf_schema.rs
//! ```
//!
//! (the script's header says how to fetch the two crates offline). Add a root there to accept
//! another kind; any other kind answers [`ProtobufError::UnknownKind`], which tells the client to
//! send JSON.
//!
//! Limits: Quantity strings are passed through as sent (Go would re-canonicalize "1000m" to
//! "1"); a zero IntOrString in an optional field (a Service port without targetPort) is left out
//! where Go prints 0 (upstream defaults both the same way); which optional scalars are Go
//! pointers is a hand-checked list in the generator.

use serde_json::{Map, Number, Value};

use crate::protobuf_schema::{Field, Kind, Message, ROOTS};

/// The media type of Kubernetes protobuf.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The 4 bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";
/// Nesting bound (the tables are far shallower; embedded JSON is parsed by serde_json).
const MAX_DEPTH: usize = 64;

/// Why a protobuf body could not be decoded. Every message says what the client can do.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("not a Kubernetes protobuf body: it must start with the 4 bytes \"k8s\\0\" (found {found:?}); send JSON with Content-Type: application/json")]
    BadMagic { found: String },
    #[error("truncated protobuf data in {path}: {what} runs past the end of the body")]
    Truncated { path: String, what: &'static str },
    #[error("malformed protobuf data in {path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error("protobuf bodies are accepted for {known}, not apiVersion {api_version:?} kind {kind:?}: send this object as JSON (Content-Type: application/json)")]
    UnknownKind { api_version: String, kind: String, known: String },
    #[error("protobuf body with contentEncoding {0:?} is not supported: send it unencoded, or as JSON")]
    ContentEncoding(String),
    #[error("protobuf body with inner contentType {0:?} is not supported: send it as JSON")]
    ContentType(String),
    #[error("invalid embedded JSON in {path}: {source}")]
    EmbeddedJson { path: String, source: serde_json::Error },
}

/// Whether a Content-Type is Kubernetes protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case(CONTENT_TYPE))
}

/// Decodes a Kubernetes protobuf body (magic "k8s\0" + runtime.Unknown{typeMeta{apiVersion,kind},
/// raw, contentEncoding, contentType}) into upstream JSON, including apiVersion and kind.
/// Errors: a message a person can act on (unknown kind, truncated data, bad magic).
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let Some(payload) = body.strip_prefix(MAGIC) else {
        let found = body.iter().take(4).flat_map(|b| std::ascii::escape_default(*b)).map(char::from).collect();
        return Err(ProtobufError::BadMagic { found });
    };
    let envelope = Envelope::parse(payload)?;
    if !envelope.content_encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(envelope.content_encoding));
    }
    // Go always writes `raw`, even for an empty object; without it the body was cut short.
    let Some(raw) = envelope.raw else {
        return Err(truncated("runtime.Unknown", "the object (no raw field)"));
    };
    let inner = envelope.content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let mut object = match inner.as_str() {
        "" | CONTENT_TYPE => {
            let message = root_message(&envelope.api_version, &envelope.kind)?;
            let mut object = Map::new();
            decode_message(message, raw, &mut object, "", 0)?;
            object
        }
        "application/json" => match serde_json::from_slice(raw) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Err(malformed("raw", "the embedded JSON is not an object")),
            Err(source) => return Err(ProtobufError::EmbeddedJson { path: "raw".into(), source }),
        },
        _ => return Err(ProtobufError::ContentType(envelope.content_type)),
    };
    if !envelope.api_version.is_empty() {
        object.insert("apiVersion".into(), Value::String(envelope.api_version));
    }
    if !envelope.kind.is_empty() {
        object.insert("kind".into(), Value::String(envelope.kind));
    }
    Ok(Value::Object(object))
}

/// The message for a TypeMeta. DeleteOptions is registered in every group version upstream, so
/// it is accepted under any apiVersion (drain sends it as "v1").
fn root_message(api_version: &str, kind: &str) -> Result<&'static Message, ProtobufError> {
    ROOTS
        .iter()
        .find(|(v, k, _)| *k == kind && (*v == api_version || kind == "DeleteOptions"))
        .map(|(_, _, m)| *m)
        .ok_or_else(|| ProtobufError::UnknownKind {
            api_version: api_version.into(),
            kind: kind.into(),
            known: ROOTS.iter().map(|(v, k, _)| format!("{v} {k}")).collect::<Vec<_>>().join(", "),
        })
}

struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: Option<&'a [u8]>,
    content_encoding: String,
    content_type: String,
}

impl<'a> Envelope<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, ProtobufError> {
        let mut env = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: None,
            content_encoding: String::new(),
            content_type: String::new(),
        };
        let mut r = Reader::new(data);
        while !r.done() {
            let (tag, wire) = r.key("runtime.Unknown")?;
            match (tag, wire) {
                (1, WIRE_LEN) => {
                    let mut tm = Reader::new(r.bytes("typeMeta")?);
                    while !tm.done() {
                        match tm.key("typeMeta")? {
                            (1, WIRE_LEN) => env.api_version = utf8(tm.bytes("typeMeta.apiVersion")?),
                            (2, WIRE_LEN) => env.kind = utf8(tm.bytes("typeMeta.kind")?),
                            (_, w) => tm.skip(w, "typeMeta")?,
                        }
                    }
                }
                (2, WIRE_LEN) => env.raw = Some(r.bytes("raw")?),
                (3, WIRE_LEN) => env.content_encoding = utf8(r.bytes("contentEncoding")?),
                (4, WIRE_LEN) => env.content_type = utf8(r.bytes("contentType")?),
                (1..=4, w) => {
                    return Err(malformed("runtime.Unknown", format!("field {tag} has wire type {w}, expected 2")))
                }
                (_, w) => r.skip(w, "runtime.Unknown")?,
            }
        }
        Ok(env)
    }
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

/// Protobuf wire reader over one message's bytes.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn varint(&mut self, path: &str) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.data.get(self.pos) else {
                return Err(truncated(path, "a varint"));
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed(path, "a varint is longer than 10 bytes"))
    }

    fn key(&mut self, path: &str) -> Result<(u32, u8), ProtobufError> {
        let key = self.varint(path)?;
        let tag =
            u32::try_from(key >> 3).map_err(|_| malformed(path, format!("field number {} is too large", key >> 3)))?;
        if tag == 0 {
            return Err(malformed(path, "field number 0"));
        }
        Ok((tag, (key & 7) as u8))
    }

    fn take(&mut self, n: usize, path: &str, what: &'static str) -> Result<&'a [u8], ProtobufError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(truncated(path, what));
        };
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn bytes(&mut self, path: &str) -> Result<&'a [u8], ProtobufError> {
        let len = self.varint(path)?;
        let len = usize::try_from(len).map_err(|_| truncated(path, "a length-delimited field"))?;
        self.take(len, path, "a length-delimited field")
    }

    fn fixed64(&mut self, path: &str) -> Result<u64, ProtobufError> {
        let b = self.take(8, path, "a 64-bit field")?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    fn fixed32(&mut self, path: &str) -> Result<u32, ProtobufError> {
        let b = self.take(4, path, "a 32-bit field")?;
        Ok(u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    fn skip(&mut self, wire: u8, path: &str) -> Result<(), ProtobufError> {
        match wire {
            WIRE_VARINT => self.varint(path).map(drop),
            WIRE_FIXED64 => self.take(8, path, "a 64-bit field").map(drop),
            WIRE_LEN => self.bytes(path).map(drop),
            WIRE_FIXED32 => self.take(4, path, "a 32-bit field").map(drop),
            _ => Err(malformed(path, format!("unsupported wire type {wire} (groups are not used by Kubernetes)"))),
        }
    }
}

fn malformed(path: &str, reason: impl Into<String>) -> ProtobufError {
    ProtobufError::Malformed { path: describe(path), reason: reason.into() }
}

fn truncated(path: &str, what: &'static str) -> ProtobufError {
    ProtobufError::Truncated { path: describe(path), what }
}

fn describe(path: &str) -> String {
    if path.is_empty() {
        "the object".into()
    } else {
        path.into()
    }
}

/// Go's encoding/json writes invalid UTF-8 as U+FFFD; so do we.
fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn join(path: &str, name: &str) -> String {
    match (path.is_empty(), name.is_empty()) {
        (true, _) => name.into(),
        (false, true) => path.into(),
        (false, false) => format!("{path}.{name}"),
    }
}

/// Decodes one message's fields into `out` (an inline field's go into the same object).
fn decode_message(
    message: &'static Message,
    data: &[u8],
    out: &mut Map<String, Value>,
    path: &str,
    depth: usize,
) -> Result<(), ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(malformed(path, format!("nested deeper than {MAX_DEPTH} messages")));
    }
    let mut r = Reader::new(data);
    while !r.done() {
        let (tag, wire) = r.key(path)?;
        let Some(field) = message.fields.binary_search_by_key(&tag, |f| f.tag).ok().map(|i| &message.fields[i]) else {
            r.skip(wire, path)?;
            continue;
        };
        let fpath = join(path, field.json);
        let want = scalar_wire(&field.kind).unwrap_or(WIRE_LEN);
        if wire != want && !(field.repeated && wire == WIRE_LEN) {
            let reason = format!("field {tag} of {} has wire type {wire}, expected {want}", message.name);
            return Err(malformed(&fpath, reason));
        }
        if field.json.is_empty() {
            // A Go embedded struct: its fields belong to this object.
            let Kind::Msg(inner) = field.kind else {
                return Err(malformed(&fpath, "an inline field must be a message"));
            };
            expect_wire(wire, WIRE_LEN, &fpath)?;
            decode_message(inner, r.bytes(&fpath)?, out, path, depth + 1)?;
            continue;
        }
        if field.repeated {
            let mut items = Vec::new();
            let index = out.get(field.json).and_then(Value::as_array).map_or(0, Vec::len);
            let fpath = format!("{fpath}[{index}]");
            if wire == WIRE_LEN && scalar_wire(&field.kind).is_some() {
                // Packed repeated scalars.
                let mut packed = Reader::new(r.bytes(&fpath)?);
                while !packed.done() {
                    items.push(decode_scalar(
                        &field.kind,
                        scalar_wire(&field.kind).unwrap_or(WIRE_VARINT),
                        &mut packed,
                        &fpath,
                    )?);
                }
            } else {
                items.push(decode_value(&field.kind, wire, &mut r, &fpath, depth)?);
            }
            if !items.is_empty() {
                match out.entry(field.json).or_insert_with(|| Value::Array(Vec::new())) {
                    Value::Array(existing) => existing.extend(items),
                    other => *other = Value::Array(items),
                }
            }
            continue;
        }
        let value = decode_value(&field.kind, wire, &mut r, &fpath, depth)?;
        place(out, field, value);
    }
    Ok(())
}

/// Stores a singular field's value: later occurrences win (messages and maps merge, as in
/// protobuf); zero scalars of optional non-pointer fields are left out.
fn place(out: &mut Map<String, Value>, field: &Field, value: Value) {
    let zero = match (&field.kind, &value) {
        (Kind::Msg(_) | Kind::Map(_) | Kind::Time | Kind::MicroTime | Kind::FieldsV1 | Kind::RawExtension, _) => false,
        (Kind::Quantity | Kind::Duration, _) => false,
        (_, Value::String(s)) => s.is_empty(),
        (_, Value::Bool(b)) => !b,
        (_, Value::Number(n)) => n.as_f64() == Some(0.0),
        _ => false,
    };
    if zero && !field.keep_zero {
        out.remove(field.json);
        return;
    }
    if let Kind::Map(_) = field.kind {
        if let Value::Object(map) = &value {
            if map.is_empty() {
                return;
            }
        }
    }
    match (out.get_mut(field.json), value) {
        (Some(Value::Object(existing)), Value::Object(new)) if matches!(field.kind, Kind::Msg(_) | Kind::Map(_)) => {
            merge(existing, new)
        }
        (_, value) => {
            out.insert(field.json.into(), value);
        }
    }
}

fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b),
            (Some(Value::Array(a)), Value::Array(b)) => a.extend(b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

fn expect_wire(got: u8, want: u8, path: &str) -> Result<(), ProtobufError> {
    if got == want {
        Ok(())
    } else {
        Err(malformed(path, format!("wire type {got}, expected {want}")))
    }
}

/// The wire type of a scalar kind (None for length-delimited kinds).
fn scalar_wire(kind: &Kind) -> Option<u8> {
    match kind {
        Kind::I32 | Kind::I64 | Kind::U32 | Kind::U64 | Kind::Bool => Some(WIRE_VARINT),
        Kind::F64 => Some(WIRE_FIXED64),
        Kind::F32 => Some(WIRE_FIXED32),
        _ => None,
    }
}

fn decode_scalar(kind: &Kind, wire: u8, r: &mut Reader, path: &str) -> Result<Value, ProtobufError> {
    let want = scalar_wire(kind).unwrap_or(WIRE_LEN);
    expect_wire(wire, want, path)?;
    Ok(match kind {
        // int32 is sign-extended to 64 bits on the wire; truncation is the protobuf rule.
        Kind::I32 => Value::from(r.varint(path)? as i32),
        Kind::I64 => Value::from(r.varint(path)? as i64),
        Kind::U32 => Value::from(r.varint(path)? as u32),
        Kind::U64 => Value::from(r.varint(path)?),
        Kind::Bool => Value::Bool(r.varint(path)? != 0),
        Kind::F64 => float(f64::from_bits(r.fixed64(path)?), path)?,
        Kind::F32 => float(f64::from(f32::from_bits(r.fixed32(path)?)), path)?,
        _ => return Err(malformed(path, "not a scalar")),
    })
}

fn float(v: f64, path: &str) -> Result<Value, ProtobufError> {
    Number::from_f64(v).map(Value::Number).ok_or_else(|| malformed(path, format!("{v} has no JSON form")))
}

/// One value of `kind` at the reader's position (after its key).
fn decode_value(kind: &Kind, wire: u8, r: &mut Reader, path: &str, depth: usize) -> Result<Value, ProtobufError> {
    if scalar_wire(kind).is_some() {
        return decode_scalar(kind, wire, r, path);
    }
    expect_wire(wire, WIRE_LEN, path)?;
    let data = r.bytes(path)?;
    decode_len(kind, data, path, depth)
}

/// A length-delimited value of `kind` (its payload without the length).
fn decode_len(kind: &Kind, data: &[u8], path: &str, depth: usize) -> Result<Value, ProtobufError> {
    Ok(match kind {
        Kind::Str => Value::String(utf8(data)),
        Kind::Bytes => Value::String(base64(data)),
        Kind::Msg(message) => {
            let mut object = Map::new();
            decode_message(message, data, &mut object, path, depth + 1)?;
            Value::Object(object)
        }
        Kind::Map(value_kind) => {
            let (key, value) = map_entry(value_kind, data, path, depth)?;
            let mut object = Map::new();
            object.insert(key, value);
            Value::Object(object)
        }
        Kind::Time | Kind::MicroTime => {
            let (mut seconds, mut nanos) = (0i64, 0i64);
            let mut r = Reader::new(data);
            while !r.done() {
                match r.key(path)? {
                    (1, WIRE_VARINT) => seconds = r.varint(path)? as i64,
                    (2, WIRE_VARINT) => nanos = i64::from(r.varint(path)? as i32),
                    (_, w) => r.skip(w, path)?,
                }
            }
            time(seconds, nanos, matches!(kind, Kind::MicroTime), path)?
        }
        Kind::Duration => {
            let mut ns = 0i64;
            let mut r = Reader::new(data);
            while !r.done() {
                match r.key(path)? {
                    (1, WIRE_VARINT) => ns = r.varint(path)? as i64,
                    (_, w) => r.skip(w, path)?,
                }
            }
            Value::String(go_duration(ns))
        }
        Kind::Quantity => {
            let mut s = String::new();
            let mut r = Reader::new(data);
            while !r.done() {
                match r.key(path)? {
                    (1, WIRE_LEN) => s = utf8(r.bytes(path)?),
                    (_, w) => r.skip(w, path)?,
                }
            }
            // A zero resource.Quantity prints as "0" upstream.
            Value::String(if s.is_empty() { "0".into() } else { s })
        }
        Kind::IntOrString => {
            let (mut ty, mut int_val, mut str_val) = (0i64, 0i32, String::new());
            let mut r = Reader::new(data);
            while !r.done() {
                match r.key(path)? {
                    (1, WIRE_VARINT) => ty = r.varint(path)? as i64,
                    (2, WIRE_VARINT) => int_val = r.varint(path)? as i32,
                    (3, WIRE_LEN) => str_val = utf8(r.bytes(path)?),
                    (_, w) => r.skip(w, path)?,
                }
            }
            match ty {
                0 => Value::from(int_val),
                1 => Value::String(str_val),
                other => return Err(malformed(path, format!("IntOrString type {other} (0 = int, 1 = string)"))),
            }
        }
        Kind::FieldsV1 | Kind::RawExtension => {
            let mut raw: &[u8] = &[];
            let mut r = Reader::new(data);
            while !r.done() {
                match r.key(path)? {
                    (1, WIRE_LEN) => raw = r.bytes(path)?,
                    (_, w) => r.skip(w, path)?,
                }
            }
            if raw.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(raw)
                    .map_err(|source| ProtobufError::EmbeddedJson { path: path.into(), source })?
            }
        }
        Kind::I32 | Kind::I64 | Kind::U32 | Kind::U64 | Kind::Bool | Kind::F64 | Kind::F32 => {
            return Err(malformed(path, "a scalar sent length-delimited"))
        }
    })
}

/// One `map<string, V>` entry {key = 1, value = 2}; absent parts are their zero values.
fn map_entry(value_kind: &Kind, data: &[u8], path: &str, depth: usize) -> Result<(String, Value), ProtobufError> {
    let (mut key, mut value) = (String::new(), None);
    let mut r = Reader::new(data);
    while !r.done() {
        match r.key(path)? {
            (1, WIRE_LEN) => key = utf8(r.bytes(path)?),
            (2, w) => value = Some(decode_value(value_kind, w, &mut r, path, depth)?),
            (_, w) => r.skip(w, path)?,
        }
    }
    let value = match value {
        Some(v) => v,
        None if scalar_wire(value_kind).is_some() => Value::from(0),
        None => decode_len(value_kind, &[], path, depth)?,
    };
    Ok((key, value))
}

/// meta/v1 Time (`2006-01-02T15:04:05Z`) or MicroTime (`2006-01-02T15:04:05.000000Z`), in UTC;
/// the zero time is null, as upstream's MarshalJSON writes it.
fn time(seconds: i64, nanos: i64, micro: bool, path: &str) -> Result<Value, ProtobufError> {
    if seconds == 0 && nanos == 0 {
        return Ok(Value::Null);
    }
    let nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000);
    let t = nanos.and_then(|n| chrono::DateTime::from_timestamp(seconds, n));
    let Some(t) = t else {
        return Err(malformed(path, format!("time {seconds}s {nanos:?}ns is out of range")));
    };
    Ok(Value::String(if micro {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }))
}

/// Go's `time.Duration.String()`: "1h2m3.5s", "1m0s", "1.5ms", "0s".
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    // `int` with up to `prec` fractional digits, trailing zeros (and a bare dot) trimmed.
    fn frac(v: u64, prec: u32) -> String {
        let scale = 10u64.pow(prec);
        let (whole, rest) = (v / scale, v % scale);
        if rest == 0 {
            return whole.to_string();
        }
        let digits = format!("{rest:0width$}", width = prec as usize);
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
    if u < 1_000_000_000 {
        let (value, unit) = match u {
            0..=999 => (frac(u, 0), "ns"),
            1_000..=999_999 => (frac(u, 3), "µs"),
            _ => (frac(u, 6), "ms"),
        };
        return format!("{sign}{value}{unit}");
    }
    let secs = u / 1_000_000_000;
    let seconds = frac(u % 60_000_000_000, 9);
    let (minutes, hours) = (secs / 60 % 60, secs / 3600);
    match (hours, secs / 60) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, _) => format!("{sign}{minutes}m{seconds}s"),
        _ => format!("{sign}{hours}h{minutes}m{seconds}s"),
    }
}

/// Standard base64 with padding, as Go's encoding/json writes []byte.
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A tiny protobuf encoder for building bodies by hand.
    #[derive(Default)]
    struct Enc(Vec<u8>);

    impl Enc {
        fn new() -> Self {
            Self::default()
        }
        fn raw_varint(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.0.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
        }
        fn key(&mut self, tag: u32, wire: u8) {
            self.raw_varint(u64::from(tag) << 3 | u64::from(wire));
        }
        /// A varint field (negative numbers sign-extended, as protobuf does).
        fn v(mut self, tag: u32, v: i64) -> Self {
            self.key(tag, WIRE_VARINT);
            self.raw_varint(v as u64);
            self
        }
        fn b(mut self, tag: u32, data: &[u8]) -> Self {
            self.key(tag, WIRE_LEN);
            self.raw_varint(data.len() as u64);
            self.0.extend_from_slice(data);
            self
        }
        fn s(self, tag: u32, s: &str) -> Self {
            self.b(tag, s.as_bytes())
        }
        fn m(self, tag: u32, inner: Enc) -> Self {
            self.b(tag, &inner.0)
        }
        /// A `map<string, string>` entry.
        fn kv(self, tag: u32, k: &str, v: &str) -> Self {
            self.m(tag, Enc::new().s(1, k).s(2, v))
        }
        /// A `map<string, Quantity>` entry.
        fn quantity(self, tag: u32, k: &str, q: &str) -> Self {
            self.m(tag, Enc::new().s(1, k).m(2, Enc::new().s(1, q)))
        }
    }

    /// k8s\0 + runtime.Unknown, as Go writes it (empty contentEncoding and contentType included).
    fn body(api_version: &str, kind: &str, object: Enc) -> Vec<u8> {
        let unknown = Enc::new().m(1, Enc::new().s(1, api_version).s(2, kind)).m(2, object).s(3, "").s(4, "");
        [MAGIC.as_slice(), &unknown.0].concat()
    }

    fn time(seconds: i64) -> Enc {
        Enc::new().v(1, seconds).v(2, 0)
    }

    /// ObjectMeta as gogo-protobuf writes it: every non-pointer field, zero or not.
    fn meta(name: &str) -> Enc {
        Enc::new().s(1, name).s(2, "").s(3, "").s(4, "").s(5, "").s(6, "").v(7, 0).m(8, Enc::new())
    }

    fn int_or_string_int(v: i64) -> Enc {
        Enc::new().v(1, 0).v(2, v).s(3, "")
    }

    fn int_or_string_str(s: &str) -> Enc {
        Enc::new().v(1, 1).v(2, 0).s(3, s)
    }

    // Bodies captured from kubectl v1.33 (a logging HTTP server answering discovery), next to
    // the JSON the same command prints with `--dry-run=client -o json`.
    const KUBECTL_CONFIGMAP: &[u8] = b"k8s\x00\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x1b\x0a\x11\x0a\x01x\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x12\x06\x0a\x01a\x12\x01b\x1a\x00\x22\x00";
    const KUBECTL_DEPLOYMENT: &[u8] = b"k8s\x00\x0a\x15\x0a\x07apps/v1\x12\x0aDeployment\x12\xb8\x01\x0a\x1f\x0a\x03web\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00Z\x0a\x0a\x03app\x12\x03web\x12\x86\x01\x08\x02\x12\x0c\x0a\x0a\x0a\x03app\x12\x03web\x1al\x0a\x1c\x0a\x00\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00Z\x0a\x0a\x03app\x12\x03web\x12L\x12.\x0a\x05nginx\x12\x05nginx*\x002\x0a\x0a\x00\x10\x00\x18P\x22\x00*\x00B\x00j\x00r\x00\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x002\x00B\x00J\x00R\x00X\x00`\x00h\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00\x22\x02\x0a\x00(\x008\x00\x1a\x0c\x08\x00\x10\x00\x18\x00 \x00(\x008\x00\x1a\x00\x22\x00";
    const KUBECTL_DEPLOYMENT_ZERO: &[u8] = b"k8s\x00\x0a\x15\x0a\x07apps/v1\x12\x0aDeployment\x12\xaf\x01\x0a!\x0a\x04zero\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00Z\x0b\x0a\x03app\x12\x04zero\x12|\x08\x00\x12\x0d\x0a\x0b\x0a\x03app\x12\x04zero\x1aa\x0a\x1d\x0a\x00\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00Z\x0b\x0a\x03app\x12\x04zero\x12@\x12\x22\x0a\x05nginx\x12\x05nginx*\x00B\x00j\x00r\x00\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x002\x00B\x00J\x00R\x00X\x00`\x00h\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00\x22\x02\x0a\x00(\x008\x00\x1a\x0c\x08\x00\x10\x00\x18\x00 \x00(\x008\x00\x1a\x00\x22\x00";
    const KUBECTL_NAMESPACE: &[u8] = b"k8s\x00\x0a\x0f\x0a\x02v1\x12\x09Namespace\x12\x1b\x0a\x13\x0a\x03ns1\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x12\x00\x1a\x02\x0a\x00\x1a\x00\x22\x00";
    const KUBECTL_SECRET: &[u8] = b"k8s\x00\x0a\x0c\x0a\x02v1\x12\x06Secret\x12)\x0a\x11\x0a\x01s\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x12\x0a\x0a\x03bin\x12\x03x\x01\xff\x12\x06\x0a\x01k\x12\x01v\x1a\x00\x1a\x00\x22\x00";
    const KUBECTL_SERVICE: &[u8] = b"k8s\x00\x0a\x0d\x0a\x02v1\x12\x07Service\x12\x8d\x01\x0a\x1f\x0a\x03svc\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00Z\x0a\x0a\x03app\x12\x03svc\x12f\x0a\x1b\x0a\x0780-8080\x12\x03TCP\x18P\x22\x07\x08\x00\x10\x90?\x1a\x00(\x00\x0a\x22\x0a\x09443-https\x12\x03TCP\x18\xbb\x03\x22\x0b\x08\x01\x10\x00\x1a\x05https(\x00\x12\x0a\x0a\x03app\x12\x03svc\x1a\x00\x22\x09ClusterIP:\x00B\x00R\x00Z\x00`\x00h\x00\x1a\x02\x0a\x00\x1a\x00\x22\x00";
    const KUBECTL_JOB: &[u8] = b"k8s\x00\x0a\x0f\x0a\x08batch/v1\x12\x03Job\x12\x82\x01\x0a\x11\x0a\x01j\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x12c2a\x0a\x10\x0a\x00\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x12M\x12*\x0a\x01j\x12\x07busybox\x1a\x04echo\x1a\x02hi*\x00B\x00j\x00r\x00\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x05Never2\x00B\x00J\x00R\x00X\x00`\x00h\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00\x1a\x08 \x00(\x000\x00:\x00\x1a\x00\x22\x00";

    // kubectl v1.33 `create role|clusterrole|rolebinding|clusterrolebinding` (captured the same way).
    const KUBECTL_ROLE: &[u8] = b"k8s\x00\x0a$\x0a\x1crbac.authorization.k8s.io/v1\x12\x04Role\x12Y\x0a\x18\x0a\x08cap-role\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x12\x18\x0a\x03get\x0a\x04list\x12\x00\x1a\x04pods\x22\x03web\x12#\x0a\x03get\x0a\x04list\x12\x04apps\x1a\x0bdeployments\x22\x03web\x1a\x00\x22\x00";
    const KUBECTL_CLUSTER_ROLE_URLS: &[u8] = b"k8s\x00\x0a+\x0a\x1crbac.authorization.k8s.io/v1\x12\x0bClusterRole\x123\x0a\x16\x0a\x06cap-cr\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x12\x19\x0a\x03get*\x08/healthz*\x08/version\x1a\x00\x22\x00";
    const KUBECTL_CLUSTER_ROLE_AGGREGATED: &[u8] = b"k8s\x00\x0a+\x0a\x1crbac.authorization.k8s.io/v1\x12\x0bClusterRole\x12A\x0a\x17\x0a\x07cap-agg\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x1a&\x0a$\x0a\x22\x0a\x1arbac.example.com/aggregate\x12\x04true\x1a\x00\x22\x00";
    const KUBECTL_ROLE_BINDING: &[u8] = b"k8s\x00\x0a+\x0a\x1crbac.authorization.k8s.io/v1\x12\x0bRoleBinding\x12\xc9\x01\x0a\x16\x0a\x06cap-rb\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x12)\x0a\x04User\x12\x19rbac.authorization.k8s.io\x1a\x04jane\x22\x00\x12*\x0a\x05Group\x12\x19rbac.authorization.k8s.io\x1a\x04devs\x22\x00\x12(\x0a\x0eServiceAccount\x12\x00\x1a\x07builder\x22\x0bkube-system\x1a.\x0a\x19rbac.authorization.k8s.io\x12\x0bClusterRole\x1a\x04view\x1a\x00\x22\x00";
    const KUBECTL_CLUSTER_ROLE_BINDING: &[u8] = b"k8s\x00\x0a2\x0a\x1crbac.authorization.k8s.io/v1\x12\x12ClusterRoleBinding\x12\x88\x01\x0a\x17\x0a\x07cap-crb\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x124\x0a\x05Group\x12\x19rbac.authorization.k8s.io\x1a\x0esystem:masters\x22\x00\x1a7\x0a\x19rbac.authorization.k8s.io\x12\x0bClusterRole\x1a\x0dcluster-admin\x1a\x00\x22\x00";

    #[test]
    fn kubectl_rbac_generator_bodies_decode_to_kubectl_json() {
        let cases: &[(&[u8], &str)] = &[
            (
                KUBECTL_ROLE,
                r#"{"kind":"Role","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"cap-role","creationTimestamp":null},"rules":[{"verbs":["get","list"],"apiGroups":[""],"resources":["pods"],"resourceNames":["web"]},{"verbs":["get","list"],"apiGroups":["apps"],"resources":["deployments"],"resourceNames":["web"]}]}"#,
            ),
            (
                KUBECTL_CLUSTER_ROLE_URLS,
                r#"{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"cap-cr","creationTimestamp":null},"rules":[{"verbs":["get"],"nonResourceURLs":["/healthz","/version"]}]}"#,
            ),
            (
                // kubectl's JSON also has "rules":null; an empty list is left out here.
                KUBECTL_CLUSTER_ROLE_AGGREGATED,
                r#"{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"cap-agg","creationTimestamp":null},"aggregationRule":{"clusterRoleSelectors":[{"matchLabels":{"rbac.example.com/aggregate":"true"}}]}}"#,
            ),
            (
                KUBECTL_ROLE_BINDING,
                r#"{"kind":"RoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"cap-rb","creationTimestamp":null},"subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"jane"},{"kind":"Group","apiGroup":"rbac.authorization.k8s.io","name":"devs"},{"kind":"ServiceAccount","name":"builder","namespace":"kube-system"}],"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"}}"#,
            ),
            (
                KUBECTL_CLUSTER_ROLE_BINDING,
                r#"{"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"cap-crb","creationTimestamp":null},"subjects":[{"kind":"Group","apiGroup":"rbac.authorization.k8s.io","name":"system:masters"}],"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"}}"#,
            ),
        ];
        for (body, want) in cases {
            let want: Value = serde_json::from_str(want).unwrap();
            assert_eq!(decode(body).unwrap(), want, "{}", want["kind"]);
        }
    }

    #[test]
    fn kubectl_generator_bodies_decode_to_kubectl_json() {
        let cases: &[(&[u8], &str)] = &[
            (
                KUBECTL_CONFIGMAP,
                r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"x","creationTimestamp":null},"data":{"a":"b"}}"#,
            ),
            (
                KUBECTL_DEPLOYMENT,
                r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","creationTimestamp":null,"labels":{"app":"web"}},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"creationTimestamp":null,"labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","image":"nginx","ports":[{"containerPort":80}],"resources":{}}]}},"strategy":{}},"status":{}}"#,
            ),
            (
                KUBECTL_DEPLOYMENT_ZERO,
                r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"zero","creationTimestamp":null,"labels":{"app":"zero"}},"spec":{"replicas":0,"selector":{"matchLabels":{"app":"zero"}},"template":{"metadata":{"creationTimestamp":null,"labels":{"app":"zero"}},"spec":{"containers":[{"name":"nginx","image":"nginx","resources":{}}]}},"strategy":{}},"status":{}}"#,
            ),
            (
                KUBECTL_NAMESPACE,
                r#"{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"ns1","creationTimestamp":null},"spec":{},"status":{}}"#,
            ),
            (
                KUBECTL_SECRET,
                r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"s","creationTimestamp":null},"data":{"bin":"eAH/","k":"dg=="}}"#,
            ),
            (
                KUBECTL_SERVICE,
                r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"svc","creationTimestamp":null,"labels":{"app":"svc"}},"spec":{"ports":[{"name":"80-8080","protocol":"TCP","port":80,"targetPort":8080},{"name":"443-https","protocol":"TCP","port":443,"targetPort":"https"}],"selector":{"app":"svc"},"type":"ClusterIP"},"status":{"loadBalancer":{}}}"#,
            ),
            (
                KUBECTL_JOB,
                r#"{"kind":"Job","apiVersion":"batch/v1","metadata":{"name":"j","creationTimestamp":null},"spec":{"template":{"metadata":{"creationTimestamp":null},"spec":{"containers":[{"name":"j","image":"busybox","command":["echo","hi"],"resources":{}}],"restartPolicy":"Never"}}},"status":{}}"#,
            ),
        ];
        for (body, want) in cases {
            let want: Value = serde_json::from_str(want).unwrap();
            assert_eq!(decode(body).unwrap(), want, "{}", want["kind"]);
        }
    }

    #[test]
    fn configmap_hand_encoded() {
        let cm = Enc::new()
            .m(1, meta("x").s(3, "default").kv(11, "team", "a"))
            .kv(2, "a", "b")
            .kv(2, "empty", "")
            .m(3, Enc::new().s(1, "blob").b(2, &[0, 1, 2, 250]))
            .v(4, 0);
        let got = decode(&body("v1", "ConfigMap", cm)).unwrap();
        let want = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "default", "labels": {"team": "a"}, "creationTimestamp": null},
            "data": {"a": "b", "empty": ""},
            "binaryData": {"blob": "AAEC+g=="},
            "immutable": false,
        });
        assert_eq!(got, want);
    }

    #[test]
    fn deployment_with_pod_template_resources_and_probes() {
        let container = Enc::new()
            .s(1, "web")
            .s(2, "nginx:1.27")
            .s(3, "nginx")
            .s(4, "-g")
            .s(4, "daemon off;")
            .m(6, Enc::new().s(1, "http").v(2, 0).v(3, 8080).s(4, "TCP").s(5, ""))
            .m(7, Enc::new().s(1, "MODE").s(2, "prod"))
            .m(8, Enc::new().quantity(1, "cpu", "500m").quantity(1, "memory", "128Mi").quantity(2, "cpu", "100m"))
            // readinessProbe: the inline ProbeHandler (httpGet with a named port), then its own fields.
            .m(
                11,
                Enc::new()
                    .m(1, Enc::new().m(2, Enc::new().s(1, "/healthz").m(2, int_or_string_str("http")).s(4, "HTTP")))
                    .v(2, 0)
                    .v(3, 1)
                    .v(4, 10),
            )
            .m(15, Enc::new().v(4, 0).v(5, 1).v(2, 0))
            .v(16, 0)
            .s(14, "IfNotPresent");
        let pod_spec = Enc::new()
            .m(2, container)
            .s(3, "Always")
            .v(4, 30)
            .s(6, "ClusterFirst")
            .m(
                1,
                Enc::new().s(1, "cfg").m(2, Enc::new().m(19, Enc::new().m(1, Enc::new().s(1, "web-config")).v(3, 420))),
            )
            .m(22, Enc::new().s(1, "node.kubernetes.io/not-ready").s(2, "Exists").s(4, "NoExecute").v(5, 300));
        let template = Enc::new().m(1, meta("").kv(11, "app", "web")).m(2, pod_spec);
        let strategy =
            Enc::new().s(1, "RollingUpdate").m(2, Enc::new().m(1, int_or_string_str("25%")).m(2, int_or_string_int(1)));
        let spec = Enc::new()
            .v(1, 3)
            .m(2, Enc::new().kv(1, "app", "web"))
            .m(3, template)
            .m(4, strategy)
            .v(5, 0)
            .v(6, 10)
            .v(7, 0)
            .v(9, 600);
        let deploy = Enc::new().m(1, meta("web").s(3, "default")).m(2, spec).m(3, Enc::new().v(1, 0).v(2, 0));
        let got = decode(&body("apps/v1", "Deployment", deploy)).unwrap();
        let want = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                    "spec": {
                        "volumes": [{"name": "cfg", "configMap": {"name": "web-config", "defaultMode": 420}}],
                        "containers": [{
                            "name": "web",
                            "image": "nginx:1.27",
                            "command": ["nginx"],
                            "args": ["-g", "daemon off;"],
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "env": [{"name": "MODE", "value": "prod"}],
                            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}},
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                                "timeoutSeconds": 1,
                                "periodSeconds": 10,
                            },
                            "securityContext": {"runAsUser": 0, "runAsNonRoot": true, "privileged": false},
                            "imagePullPolicy": "IfNotPresent",
                        }],
                        "restartPolicy": "Always",
                        "terminationGracePeriodSeconds": 30,
                        "dnsPolicy": "ClusterFirst",
                        "tolerations": [{
                            "key": "node.kubernetes.io/not-ready", "operator": "Exists",
                            "effect": "NoExecute", "tolerationSeconds": 300,
                        }],
                    },
                },
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}},
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            },
            "status": {},
        });
        assert_eq!(got, want);
    }

    #[test]
    fn service_ports_with_int_or_string_target_port() {
        let ports = |e: Enc| {
            e.m(1, Enc::new().s(1, "http").s(2, "TCP").v(3, 80).m(4, int_or_string_int(8080)).v(5, 0))
                .m(1, Enc::new().s(1, "metrics").s(2, "TCP").v(3, 9090).m(4, int_or_string_str("metrics")).v(5, 30090))
                // A port without a targetPort: Go writes the zero IntOrString (defaulted to port upstream).
                .m(1, Enc::new().s(1, "").s(2, "UDP").v(3, 53).m(4, int_or_string_int(0)).v(5, 0))
        };
        let spec = ports(Enc::new()).kv(2, "app", "web").s(3, "10.0.0.7").s(4, "NodePort").s(19, "IPv4").v(20, 0);
        let svc = Enc::new().m(1, meta("web")).m(2, spec).m(3, Enc::new().m(1, Enc::new()));
        let got = decode(&body("v1", "Service", svc)).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "creationTimestamp": null},
                "spec": {
                    "ports": [
                        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                        {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": "metrics", "nodePort": 30090},
                        {"protocol": "UDP", "port": 53},
                    ],
                    "selector": {"app": "web"},
                    "clusterIP": "10.0.0.7",
                    "type": "NodePort",
                    "ipFamilies": ["IPv4"],
                    "allocateLoadBalancerNodePorts": false,
                },
                "status": {"loadBalancer": {}},
            })
        );
    }

    #[test]
    fn pod_with_timestamps_and_packed_groups() {
        let created = 1_767_323_045; // 2026-01-02T03:04:05Z
        let metadata = meta("p")
            .s(3, "default")
            .s(5, "0b9e-uid")
            .s(6, "42")
            .v(7, 0)
            .m(8, Enc::new().v(1, created).v(2, 999_999_999))
            .m(9, time(created + 60))
            .v(10, 0)
            .s(14, "example.com/guard")
            .m(13, Enc::new().s(1, "ReplicaSet").s(3, "web-1").s(4, "rs-uid").s(5, "apps/v1").v(6, 1).v(7, 1))
            .m(
                17,
                Enc::new()
                    .s(1, "kubectl")
                    .s(2, "Update")
                    .s(3, "v1")
                    .m(4, time(created))
                    .s(6, "FieldsV1")
                    .m(7, Enc::new().b(1, br#"{"f:spec":{}}"#)),
            );
        // supplementalGroups packed (as Go writes) and then one more unpacked value.
        let mut packed = Enc::new();
        packed.raw_varint(1000);
        packed.raw_varint(2000);
        let security = Enc::new().b(4, &packed.0).v(4, 3000).v(2, 0);
        let spec = Enc::new()
            .m(2, Enc::new().s(1, "c").s(2, "busybox"))
            .m(14, security)
            .s(10, "node1")
            .v(25, -5) // a negative int32 (10-byte varint)
            .v(11, 0);
        let status = Enc::new()
            .s(1, "Running")
            .m(2, Enc::new().s(1, "Ready").s(2, "True").m(3, Enc::new()).m(4, time(created + 5)))
            .s(6, "10.244.1.5")
            .m(7, time(created + 1))
            .m(12, Enc::new().s(1, "10.244.1.5"))
            .m(8, Enc::new().s(1, "c").m(2, Enc::new()).m(3, Enc::new()).v(4, 0).v(5, 0).s(6, "busybox").s(7, ""))
            // An unknown field (a newer apiserver's) is skipped.
            .v(99, 7)
            .m(100, Enc::new().s(1, "x"));
        let pod = Enc::new().m(1, metadata).m(2, spec).m(3, status);
        let got = decode(&body("v1", "Pod", pod)).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": "p", "namespace": "default", "uid": "0b9e-uid", "resourceVersion": "42",
                    "creationTimestamp": "2026-01-02T03:04:05Z",
                    "deletionTimestamp": "2026-01-02T03:05:05Z",
                    "deletionGracePeriodSeconds": 0,
                    "finalizers": ["example.com/guard"],
                    "ownerReferences": [{
                        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "rs-uid",
                        "controller": true, "blockOwnerDeletion": true,
                    }],
                    "managedFields": [{
                        "manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                        "time": "2026-01-02T03:04:05Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}},
                    }],
                },
                "spec": {
                    "containers": [{"name": "c", "image": "busybox"}],
                    "securityContext": {"supplementalGroups": [1000, 2000, 3000], "runAsUser": 0},
                    "nodeName": "node1",
                    "priority": -5,
                },
                "status": {
                    "phase": "Running",
                    "conditions": [{
                        "type": "Ready", "status": "True", "lastProbeTime": null,
                        "lastTransitionTime": "2026-01-02T03:04:10Z",
                    }],
                    "podIP": "10.244.1.5",
                    "podIPs": [{"ip": "10.244.1.5"}],
                    "startTime": "2026-01-02T03:04:06Z",
                    "containerStatuses": [{
                        "name": "c", "state": {}, "lastState": {}, "ready": false, "restartCount": 0,
                        "image": "busybox", "imageID": "",
                    }],
                },
            })
        );
    }

    #[test]
    fn lease_micro_time_and_event() {
        let lease = Enc::new()
            .m(1, meta("node1").s(3, "kube-node-lease"))
            .m(2, Enc::new().s(1, "node1").v(2, 40).m(4, Enc::new().v(1, 1_767_323_045).v(2, 123_456_789)).v(5, 0));
        let got = decode(&body("coordination.k8s.io/v1", "Lease", lease)).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "node1", "namespace": "kube-node-lease", "creationTimestamp": null},
                "spec": {
                    "holderIdentity": "node1", "leaseDurationSeconds": 40,
                    "renewTime": "2026-01-02T03:04:05.123456Z", "leaseTransitions": 0,
                },
            })
        );
        let event = Enc::new()
            .m(1, meta("p.1"))
            .m(2, Enc::new().s(1, "Pod").s(2, "default").s(3, "p"))
            .s(3, "Scheduled")
            .v(8, 1)
            .m(10, Enc::new().v(1, 1_767_323_045).v(2, 5_000))
            .s(9, "Normal");
        let got = decode(&body("v1", "Event", event)).unwrap();
        assert_eq!(got["eventTime"], json!("2026-01-02T03:04:05.000005Z"));
        assert_eq!(got["involvedObject"], json!({"kind": "Pod", "namespace": "default", "name": "p"}));
        assert_eq!(got["count"], json!(1));
    }

    #[test]
    fn delete_options_from_drain_and_with_fields() {
        // drain's fallback DELETE: 31 bytes, an empty DeleteOptions under "v1".
        let drain = body("v1", "DeleteOptions", Enc::new());
        assert_eq!(drain.len(), 31);
        assert_eq!(decode(&drain).unwrap(), json!({"apiVersion": "v1", "kind": "DeleteOptions"}));
        let opts = Enc::new().v(1, 0).m(2, Enc::new().s(1, "uid-1")).s(4, "Foreground").s(5, "All");
        assert_eq!(
            decode(&body("meta.k8s.io/v1", "DeleteOptions", opts)).unwrap(),
            json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions",
                "gracePeriodSeconds": 0, "preconditions": {"uid": "uid-1"},
                "propagationPolicy": "Foreground", "dryRun": ["All"],
            })
        );
        let eviction = Enc::new().m(1, meta("db-1").s(3, "default")).m(2, Enc::new().v(1, 30));
        assert_eq!(
            decode(&body("policy/v1", "Eviction", eviction)).unwrap(),
            json!({
                "apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": "db-1", "namespace": "default", "creationTimestamp": null},
                "deleteOptions": {"gracePeriodSeconds": 30},
            })
        );
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = decode(b"{\"kind\":\"Pod\"}").unwrap_err();
        assert!(matches!(e, ProtobufError::BadMagic { .. }), "{e}");
        assert!(e.to_string().contains("k8s\\0") && e.to_string().contains("application/json"), "{e}");
        assert!(matches!(decode(b"k8"), Err(ProtobufError::BadMagic { .. })));

        let e = decode(&body("v1", "PersistentVolume", Enc::new())).unwrap_err();
        assert!(matches!(e, ProtobufError::UnknownKind { .. }), "{e}");
        assert!(e.to_string().contains("\"PersistentVolume\"") && e.to_string().contains("as JSON"), "{e}");
        let e = decode(&body("apps/v2", "Deployment", Enc::new())).unwrap_err();
        assert!(matches!(e, ProtobufError::UnknownKind { .. }), "{e}");

        // Cut anywhere: an error, never a panic or a partial object (a cut after `raw` only
        // loses the envelope's empty trailing fields).
        let full = decode(KUBECTL_DEPLOYMENT).unwrap();
        for cut in 0..KUBECTL_DEPLOYMENT.len() {
            if let Ok(v) = decode(&KUBECTL_DEPLOYMENT[..cut]) {
                assert_eq!(v, full, "decoded a body cut at {cut}");
            }
        }
        let e = decode(&KUBECTL_DEPLOYMENT[..120]).unwrap_err();
        assert!(matches!(e, ProtobufError::Truncated { .. }), "{e}");

        // A truncated length inside raw (raw itself complete).
        let bad = body("v1", "ConfigMap", Enc::new().b(1, &[0x0a, 0x05, b'x']));
        let e = decode(&bad).unwrap_err();
        assert!(e.to_string().contains("truncated protobuf data in metadata"), "{e}");

        let bad = body("v1", "ConfigMap", Enc::new().v(1, 3));
        let e = decode(&bad).unwrap_err();
        assert!(e.to_string().contains("metadata") && e.to_string().contains("wire type 0"), "{e}");

        let gz = Enc::new().m(1, Enc::new().s(1, "v1").s(2, "ConfigMap")).s(3, "gzip");
        let e = decode(&[MAGIC.as_slice(), &gz.0].concat()).unwrap_err();
        assert!(matches!(e, ProtobufError::ContentEncoding(_)), "{e}");

        let bad = body("v1", "Pod", Enc::new().m(1, meta("p").m(17, Enc::new().m(7, Enc::new().b(1, b"{nope")))));
        assert!(matches!(decode(&bad), Err(ProtobufError::EmbeddedJson { .. })));

        let bad = body("v1", "Service", Enc::new().m(2, Enc::new().m(1, Enc::new().m(4, Enc::new().v(1, 7)))));
        let e = decode(&bad).unwrap_err();
        assert!(e.to_string().contains("spec.ports[0].targetPort"), "{e}");
    }

    #[test]
    fn json_inside_the_envelope_is_accepted() {
        let unknown = Enc::new()
            .m(1, Enc::new().s(1, "v1").s(2, "ConfigMap"))
            .b(2, br#"{"metadata":{"name":"x"}}"#)
            .s(4, "application/json");
        assert_eq!(
            decode(&[MAGIC.as_slice(), &unknown.0].concat()).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
        );
    }

    #[test]
    fn content_types() {
        assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
        assert!(is_protobuf("Application/VND.Kubernetes.Protobuf ; charset=binary"));
        assert!(is_protobuf("application/vnd.kubernetes.protobuf;stream=watch"));
        assert!(!is_protobuf("application/json"));
        assert!(!is_protobuf("application/vnd.kubernetes.protobuf+json"));
        assert!(!is_protobuf(""));
    }

    #[test]
    fn go_durations() {
        for (ns, want) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (2_000_000, "2ms"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
            (-5_000_000_000, "-5s"),
        ] {
            assert_eq!(go_duration(ns), want, "{ns}");
        }
    }

    #[test]
    fn base64_matches_go() {
        for (data, want) in [(&b""[..], ""), (b"f", "Zg=="), (b"fo", "Zm8="), (b"foo", "Zm9v"), (b"foob", "Zm9vYg==")] {
            assert_eq!(base64(data), want);
        }
    }

    #[test]
    fn tables_are_sorted_and_every_root_resolves() {
        fn check(m: &'static Message, seen: &mut Vec<&'static str>) {
            if seen.contains(&m.name) {
                return;
            }
            seen.push(m.name);
            assert!(m.fields.windows(2).all(|w| w[0].tag < w[1].tag), "{} is not sorted by tag", m.name);
            for f in m.fields {
                let mut kind = &f.kind;
                if let Kind::Map(v) = kind {
                    kind = v;
                }
                if let Kind::Msg(inner) = kind {
                    check(inner, seen);
                } else {
                    assert!(!f.json.is_empty(), "{}: only messages can be inline", m.name);
                }
            }
        }
        let mut seen = Vec::new();
        for (v, k, m) in ROOTS {
            check(m, &mut seen);
            assert!(root_message(v, k).is_ok());
        }
        assert!(seen.len() > 150, "{}", seen.len());
    }
}
