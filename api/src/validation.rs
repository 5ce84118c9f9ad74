//! Upstream's validation rules as pure functions returning [`FieldError`]s.
//!
//! This is a port of the parts of `k8s.io/apimachinery/pkg/util/validation`,
//! `k8s.io/apimachinery/pkg/api/validation` and `k8s.io/kubernetes/pkg/apis/{core,apps,
//! batch,discovery,coordination,rbac}/validation` (v1.33) that Skiff's resources use.
//!
//! Start reading at the per-kind entry points the apiserver's strategies call:
//! `validate_<kind>(&obj)` on create and `validate_<kind>_update(&new, &old)` on update
//! (the update functions include the create checks on `new`). Below them sit
//! [`validate_object_meta`], [`validate_pod_spec`] and the string primitives
//! ([`is_dns1123_subdomain`], [`is_qualified_name`], ...), which return upstream's
//! messages as plain strings (empty = valid).
//!
//! How errors read: `field` is the path as upstream prints it (`spec.containers[0].name`,
//! `metadata.labels`, `data[key]`), `message` is upstream's `ErrorBody()`, i.e. the type
//! and the bad value before the detail (`Invalid value: "Foo": a lowercase RFC 1123 ...`,
//! `Required value`, `Unsupported value: "Sometimes": supported values: "Always", ...`),
//! so `format!("{err}")` is exactly upstream's `field: body` line.
//!
//! Invariants and assumptions:
//! - Pure: no IO, no allocation-heavy regexes (every pattern is hand-written).
//! - Objects are validated as they arrive, *before* defaulting: a field that upstream
//!   defaults (`protocol`, `restartPolicy`, `dnsPolicy`, `imagePullPolicy`, a missing
//!   `targetPort`, a volume with no source, ...) is accepted when absent; its value is
//!   checked when present. Defaulting is the apiserver's job.
//! - As upstream, the caller prepares objects first: the namespace of a cluster-scoped
//!   object is cleared, and on update `uid`/`creationTimestamp` (and a Service's
//!   allocated `clusterIP`) are carried over from the stored object when the client left
//!   them empty.
//! - Upstream reasons this crate's [`FieldErrorType`] lacks are mapped to the closest one:
//!   `NotFound` → `Invalid` (message `Not found: ...`), `TooMany` → `TooLong` (message
//!   `Too many: ...`).

use serde::Serialize;

/// What kind of field error, named as upstream's `field.ErrorType` reasons
/// (`FieldValueRequired`, `FieldValueInvalid`, ...), which is what goes into
/// `Status.details.causes[].reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FieldErrorType {
    #[serde(rename = "FieldValueRequired")]
    Required,
    #[serde(rename = "FieldValueInvalid")]
    Invalid,
    #[serde(rename = "FieldValueDuplicate")]
    Duplicate,
    #[serde(rename = "FieldValueNotSupported")]
    NotSupported,
    #[serde(rename = "FieldValueTooLong")]
    TooLong,
    #[serde(rename = "FieldValueForbidden")]
    Forbidden,
}

/// One invalid field: `field` is the JSON path as upstream prints it
/// (`spec.containers[0].name`, `metadata.labels`), `message` says what is wrong
/// in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub kind: FieldErrorType,
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(kind: FieldErrorType, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { kind, field: field.into(), message: message.into() }
    }
    pub fn required(field: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Required, field, "Required value")
    }
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Invalid, field, message)
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

// ===========================================================================
// Imports and small shared helpers
// ===========================================================================

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::batch::v1 as batch;
use k8s_openapi::api::coordination::v1 as coordination;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::api::scheduling::v1 as scheduling;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A list of field errors, as every `validate_*` function returns.
pub type FieldErrors = Vec<FieldError>;

type StrMap = BTreeMap<String, String>;

/// `Option<String>` as Go's string (absent = empty).
fn s(o: &Option<String>) -> &str {
    o.as_deref().unwrap_or("")
}

/// An optional list as a slice (absent = empty).
fn sl<T>(o: &Option<Vec<T>>) -> &[T] {
    o.as_deref().unwrap_or(&[])
}

/// A value upstream defaults, absent or empty both meaning "not given".
fn given(o: &Option<String>) -> Option<&str> {
    o.as_deref().filter(|v| !v.is_empty())
}

// --- field paths -----------------------------------------------------------

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

// --- bad values printed as Go's ErrorBody prints them ------------------------

/// Go's `%q` for a string.
fn q(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A structured bad value (Go prints `%#v`; JSON is the readable equivalent here).
fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_string())
}

/// A `map[string]string` as Go's `%#v` prints it.
fn go_map(m: Option<&StrMap>) -> String {
    match m {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let items: Vec<String> = m.iter().map(|(k, v)| format!("{}:{}", q(k), q(v))).collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
    }
}

/// A `[]string` as Go's `%#v` prints it.
fn go_strings(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|x| q(x)).collect();
    format!("[]string{{{}}}", items.join(", "))
}

fn int_or_string_repr(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(st) => q(st),
    }
}

// --- error constructors (upstream's field.Required, field.Invalid, ...) ------

fn required(path: impl Into<String>, detail: &str) -> FieldError {
    let message = if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") };
    FieldError::new(FieldErrorType::Required, path, message)
}

/// `bad` is the already-printed bad value (see [`q`], [`json`]).
fn invalid(path: impl Into<String>, bad: &str, detail: &str) -> FieldError {
    let message =
        if detail.is_empty() { format!("Invalid value: {bad}") } else { format!("Invalid value: {bad}: {detail}") };
    FieldError::new(FieldErrorType::Invalid, path, message)
}

fn invalid_str(path: impl Into<String>, value: &str, detail: &str) -> FieldError {
    invalid(path, &q(value), detail)
}

fn invalid_int(path: impl Into<String>, value: i64, detail: &str) -> FieldError {
    invalid(path, &value.to_string(), detail)
}

fn duplicate(path: impl Into<String>, bad: &str) -> FieldError {
    FieldError::new(FieldErrorType::Duplicate, path, format!("Duplicate value: {bad}"))
}

fn not_supported(path: impl Into<String>, bad: &str, valid: &[&str]) -> FieldError {
    let quoted: Vec<String> = valid.iter().map(|v| q(v)).collect();
    FieldError::new(
        FieldErrorType::NotSupported,
        path,
        format!("Unsupported value: {bad}: supported values: {}", quoted.join(", ")),
    )
}

fn forbidden(path: impl Into<String>, detail: &str) -> FieldError {
    FieldError::new(FieldErrorType::Forbidden, path, format!("Forbidden: {detail}"))
}

fn too_long_bytes(path: impl Into<String>, max: usize) -> FieldError {
    FieldError::new(FieldErrorType::TooLong, path, format!("Too long: may not be more than {max} bytes"))
}

/// Upstream's `field.TooMany`; this crate has no `TooMany` reason, so it is a `TooLong`.
fn too_many(path: impl Into<String>, actual: usize, max: usize) -> FieldError {
    let items = if max == 1 { "item" } else { "items" };
    FieldError::new(FieldErrorType::TooLong, path, format!("Too many: {actual}: must have at most {max} {items}"))
}

/// Upstream's `field.NotFound`; this crate has no `NotFound` reason, so it is an `Invalid`.
fn not_found(path: impl Into<String>, bad: &str) -> FieldError {
    FieldError::new(FieldErrorType::Invalid, path, format!("Not found: {bad}"))
}

/// Every message of a primitive check as an `Invalid` error on one path.
fn invalid_each(errs: &mut FieldErrors, path: &str, value: &str, msgs: Vec<String>) {
    for m in msgs {
        errs.push(invalid_str(path, value, &m));
    }
}

const IS_NEGATIVE_ERROR_MSG: &str = "must be greater than or equal to 0";
const FIELD_IMMUTABLE_ERROR_MSG: &str = "field is immutable";
const IS_NOT_INTEGER_ERROR_MSG: &str = "must be an integer";
const FILE_MODE_ERROR_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";

fn validate_nonnegative(errs: &mut FieldErrors, path: &str, value: Option<i64>) {
    if let Some(v) = value {
        if v < 0 {
            errs.push(invalid_int(path, v, IS_NEGATIVE_ERROR_MSG));
        }
    }
}

// ===========================================================================
// Primitives (k8s.io/apimachinery/pkg/util/validation)
// ===========================================================================

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
/// Max length of a DNS-1123 label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
/// Max length of a DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
const DNS1123_SUBDOMAIN_UNDERSCORE_FMT: &str = "_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_UNDERSCORE_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
/// Max length of a label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
const C_IDENTIFIER_FMT: &str = "[A-Za-z_][A-Za-z0-9_]*";
const C_IDENTIFIER_ERR_MSG: &str = "a valid C identifier must start with alphabetic character or '_', followed by a string of alphanumeric characters or '_'";
const RELAXED_ENV_VAR_NAME_ERR_MSG: &str =
    "a valid environment variable name must consist only of printable ASCII characters other than '='";
const CONFIG_MAP_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_MAP_KEY_ERR_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const PERCENT_FMT: &str = "[0-9]+%";
const PERCENT_ERR_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%'";
const IP_ERR_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const CIDR_ERR_MSG: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

/// Upstream's `MaxLenError`.
fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// Upstream's `RegexError`.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

/// Upstream's `InclusiveRangeError`.
fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

fn lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
fn matches_dns1123_label(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && lower_alnum(b[0]) && lower_alnum(b[b.len() - 1]) && b.iter().all(|&c| lower_alnum(c) || c == b'-')
}

fn matches_dns1123_subdomain(v: &str) -> bool {
    !v.is_empty() && v.split('.').all(matches_dns1123_label)
}

/// `^_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?$`
fn matches_dns1123_label_with_underscore(v: &str) -> bool {
    let v = v.strip_prefix('_').unwrap_or(v);
    let b = v.as_bytes();
    !b.is_empty()
        && lower_alnum(b[0])
        && lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| lower_alnum(c) || c == b'-' || c == b'_')
}

/// `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`
fn matches_qualified_name_part(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// Tests for a string that conforms to the definition of a subdomain in DNS (RFC 1123):
/// at most 253 characters, dot-separated DNS-1123 labels. The name rule of most kinds.
pub fn is_dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(v) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_ERR_MSG, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// A DNS subdomain that may also contain `_` (pod `dnsConfig.searches`, v1.33 relaxed rule).
fn is_dns1123_subdomain_with_underscore(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if v.is_empty() || !v.split('.').all(matches_dns1123_label_with_underscore) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_UNDERSCORE_ERR_MSG,
            DNS1123_SUBDOMAIN_UNDERSCORE_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Tests for a string that conforms to the definition of a label in DNS (RFC 1123):
/// at most 63 lower-case alphanumerics or '-', starting and ending alphanumeric.
/// The name rule of namespaces; also container, port and volume names.
pub fn is_dns1123_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(v) {
        if matches_dns1123_subdomain(v) {
            // A valid subdomain but not a label: it must be the dots.
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(DNS1123_LABEL_ERR_MSG, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errs
}

/// Tests for a string that conforms to the definition of a label in DNS (RFC 1035):
/// like a DNS-1123 label but starting with a letter. The name rule of Services.
pub fn is_dns1035_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !(matches_dns1123_label(v) && v.as_bytes()[0].is_ascii_lowercase()) {
        errs.push(regex_error(DNS1035_LABEL_ERR_MSG, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

/// Tests for what Kubernetes calls a "qualified name": an optional DNS-subdomain prefix
/// and '/', then a name of at most 63 alphanumerics, '-', '_' or '.' starting and ending
/// alphanumeric. Label keys, annotation keys, finalizers.
pub fn is_qualified_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = v.split('/').collect();
    let name = match parts.len() {
        1 => parts[0],
        2 => {
            let prefix = parts[0];
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                for m in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            parts[1]
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX_LENGTH)));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_ERR_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// Tests whether the value is a valid label value: empty, or at most 63 alphanumerics,
/// '-', '_' or '.' starting and ending alphanumeric.
pub fn is_valid_label_value(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !(v.is_empty() || matches_qualified_name_part(v)) {
        errs.push(regex_error(LABEL_VALUE_ERR_MSG, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// Tests that the argument is a valid, non-zero port number (1-65535).
pub fn is_valid_port_num(port: i32) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

/// Tests that a named port is valid IANA_SVC_NAME syntax: at most 15 characters of
/// `[-a-z0-9]`, at least one letter, no leading/trailing or doubled hyphens.
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty() || !port.bytes().all(|c| lower_alnum(c) || c == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string());
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// Tests that the argument is a valid IP address (IPv4, including the legacy form with
/// leading zeros upstream still accepts, or IPv6).
pub fn is_valid_ip(v: &str) -> Vec<String> {
    if parse_ip_sloppy(v).is_some() {
        Vec::new()
    } else {
        vec![IP_ERR_MSG.to_string()]
    }
}

/// Tests that the argument is a valid CIDR value (`10.9.8.0/24`, `2001:db8::/64`).
pub fn is_valid_cidr(v: &str) -> Vec<String> {
    if parse_cidr_sloppy(v).is_some() {
        Vec::new()
    } else {
        vec![CIDR_ERR_MSG.to_string()]
    }
}

/// Tests for a string that conforms to the definition of an identifier in C
/// (`[A-Za-z_][A-Za-z0-9_]*`).
///
/// Note: container environment variable names are *not* checked with this any more;
/// since v1.32 upstream accepts any printable ASCII except '=' (see
/// [`is_relaxed_env_var_name`], which the pod validation uses).
pub fn is_c_identifier(v: &str) -> Vec<String> {
    let b = v.as_bytes();
    let ok = !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_');
    if ok {
        Vec::new()
    } else {
        vec![regex_error(C_IDENTIFIER_ERR_MSG, C_IDENTIFIER_FMT, &["my_name", "MY_NAME", "MyName"])]
    }
}

/// Upstream's v1.33 rule for environment variable names (and `envFrom` prefixes):
/// non-empty, printable ASCII (space included) except '='.
pub fn is_relaxed_env_var_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.is_empty() {
        errs.push("environment variable name must be non-empty".to_string());
    }
    if v.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(RELAXED_ENV_VAR_NAME_ERR_MSG.to_string());
    }
    errs
}

/// Tests for a valid ConfigMap / Secret key: at most 253 characters of `[-._a-zA-Z0-9]`,
/// not `.`, `..` or starting with `..`.
pub fn is_config_map_key(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_') {
        errs.push(regex_error(CONFIG_MAP_KEY_ERR_MSG, CONFIG_MAP_KEY_FMT, &["key.name", "KEY_NAME", "key-name"]));
    }
    if v == "." {
        errs.push("must not be '.'".to_string());
    } else if v == ".." {
        errs.push("must not be '..'".to_string());
    } else if v.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

/// Tests that a string is a percentage (`[0-9]+%`).
pub fn is_valid_percent(v: &str) -> Vec<String> {
    let ok = v.strip_suffix('%').is_some_and(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()));
    if ok {
        Vec::new()
    } else {
        vec![regex_error(PERCENT_ERR_MSG, PERCENT_FMT, &["1%", "93%"])]
    }
}

/// Upstream's name functions are called with `prefix = true` for `generateName`, which
/// allows a trailing dash (a random suffix is appended).
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        format!("{}a", &name[..name.len() - 1])
    } else {
        name.to_string()
    }
}

// ===========================================================================
// IP addresses and CIDRs (k8s.io/utils/net's "sloppy" parsers)
// ===========================================================================

/// IPv4 as Go 1.16 parsed it: four decimal fields, leading zeros allowed.
fn parse_ipv4_sloppy(v: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut fields = v.split('.');
    for o in octets.iter_mut() {
        let f = fields.next()?;
        if f.is_empty() || f.len() > 10 || !f.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let n: u32 = f.parse().ok()?;
        *o = u8::try_from(n).ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

fn parse_ip_sloppy(v: &str) -> Option<IpAddr> {
    if v.contains(':') {
        v.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        parse_ipv4_sloppy(v).map(IpAddr::V4)
    }
}

/// An IPv4-mapped IPv6 address counts as IPv4, as in Go.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn parse_cidr_sloppy(v: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = v.split_once('/')?;
    let ip = parse_ip_sloppy(addr)?;
    if bits.is_empty() || bits.len() > 3 || !bits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

/// Upstream's `ValidateNonSpecialIP` (Endpoints, EndpointSlices, external IPs).
fn validate_non_special_ip(errs: &mut FieldErrors, path: &str, v: &str) {
    let Some(ip) = parse_ip_sloppy(v).map(unmap) else {
        errs.push(invalid_str(path, v, "must be a valid IP address"));
        return;
    };
    if ip.is_unspecified() {
        errs.push(invalid_str(path, v, &format!("may not be unspecified ({v})")));
    }
    if ip.is_loopback() {
        errs.push(invalid_str(path, v, "may not be in the loopback range (127.0.0.0/8, ::1/128)"));
    }
    let (link_local_unicast, link_local_multicast) = match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            (o[0] == 169 && o[1] == 254, o[0] == 224 && o[1] == 0 && o[2] == 0)
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            (o[0] == 0xfe && (o[1] & 0xc0) == 0x80, o[0] == 0xff && (o[1] & 0x0f) == 0x02)
        }
    };
    if link_local_unicast {
        errs.push(invalid_str(path, v, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"));
    }
    if link_local_multicast {
        errs.push(invalid_str(path, v, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"));
    }
}

// ===========================================================================
// Quantities (k8s.io/apimachinery/pkg/api/resource)
// ===========================================================================

const QUANTITY_FORMAT_ERR_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// An exactly parsed quantity: `(-1)^negative * mantissa * 10^exp10 * 2^exp2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParsedQuantity {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

const MAX_MANTISSA_DIGITS: usize = 36;

fn parse_quantity_exact(v: &str) -> Option<ParsedQuantity> {
    let b = v.as_bytes();
    let mut pos = 0;
    let mut negative = false;
    match b.first()? {
        b'-' => {
            negative = true;
            pos = 1;
        }
        b'+' => pos = 1,
        _ => {}
    }
    let int_start = pos;
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let int_digits = &v[int_start..pos];
    let mut frac_digits = "";
    if pos < b.len() && b[pos] == b'.' {
        pos += 1;
        let frac_start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        frac_digits = &v[frac_start..pos];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return None;
    }
    let (exp10, exp2) = match &v[pos..] {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        suffix => {
            let rest = suffix.strip_prefix(['e', 'E'])?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            (rest.parse::<i32>().ok()?, 0)
        }
    };
    // All digits as one integer, scaled by the fraction's length.
    let all: String = format!("{int_digits}{frac_digits}");
    let all = all.trim_start_matches('0');
    let mut exp10 = exp10.checked_sub(i32::try_from(frac_digits.len()).ok()?)?;
    let (kept, dropped) = if all.len() > MAX_MANTISSA_DIGITS {
        (&all[..MAX_MANTISSA_DIGITS], &all[MAX_MANTISSA_DIGITS..])
    } else {
        (all, "")
    };
    let mut mantissa: u128 = if kept.is_empty() { 0 } else { kept.parse().ok()? };
    if !dropped.is_empty() {
        exp10 = exp10.checked_add(i32::try_from(dropped.len()).ok()?)?;
        if dropped.bytes().any(|c| c != b'0') {
            mantissa += 1; // round the magnitude up, as upstream rounds scaled values up
        }
    }
    Some(ParsedQuantity { negative: negative && mantissa != 0, mantissa, exp10, exp2 })
}

impl ParsedQuantity {
    fn to_f64(self) -> f64 {
        if self.mantissa == 0 {
            return 0.0; // not 0 * inf = NaN for `0e999999999`
        }
        let v = self.mantissa as f64 * 2f64.powi(self.exp2 as i32) * 10f64.powi(self.exp10);
        if self.negative {
            -v
        } else {
            v
        }
    }

    /// `ceil(value / 10^scale)`, as upstream's `ScaledValue`; `None` on overflow.
    fn scaled_ceil(self, scale: i32) -> Option<i128> {
        if self.mantissa == 0 {
            return Some(0); // `0e999999999` is 0, not an overflow
        }
        let base = self.mantissa.checked_mul(1u128.checked_shl(self.exp2)?)?;
        let shift = self.exp10.checked_sub(scale)?;
        let magnitude: u128;
        let mut inexact = false;
        if shift >= 0 {
            magnitude = base.checked_mul(10u128.checked_pow(shift as u32)?)?;
        } else {
            match 10u128.checked_pow(shift.unsigned_abs()) {
                Some(d) => {
                    magnitude = base / d;
                    inexact = base % d != 0;
                }
                None => {
                    magnitude = 0;
                    inexact = base != 0;
                }
            }
        }
        let magnitude = i128::try_from(magnitude).ok()?;
        Some(if self.negative {
            -magnitude
        } else if inexact {
            magnitude + 1
        } else {
            magnitude
        })
    }

    fn cmp_exact(self, other: ParsedQuantity) -> Ordering {
        let sign = |p: &ParsedQuantity| {
            if p.mantissa == 0 {
                0
            } else if p.negative {
                -1
            } else {
                1
            }
        };
        let (sa, sb) = (sign(&self), sign(&other));
        if sa != sb || sa == 0 {
            return sa.cmp(&sb);
        }
        let common = self.exp10.min(other.exp10);
        let scaled = |p: ParsedQuantity| -> Option<u128> {
            let pow = 10u128.checked_pow(u32::try_from(p.exp10 - common).ok()?)?;
            p.mantissa.checked_mul(pow)?.checked_mul(1u128.checked_shl(p.exp2)?)
        };
        let magnitude = match (scaled(self), scaled(other)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self.to_f64().abs().partial_cmp(&other.to_f64().abs()).unwrap_or(Ordering::Equal),
        };
        if sa < 0 {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

/// Parses a Kubernetes quantity (`100m`, `0.5`, `128Mi`, `1G`, `1e3`) into a float.
/// `None` if it is not a valid quantity.
pub fn parse_quantity(v: &str) -> Option<f64> {
    parse_quantity_exact(v).map(ParsedQuantity::to_f64)
}

/// A quantity in exact milli-units, rounded up as upstream's `MilliValue()` does
/// (`"100m"` → 100, `"1"` → 1000, `"128Mi"` → 134217728000). Saturates at the `i64`
/// range; `None` if it is not a valid quantity.
pub fn parse_quantity_milli(v: &str) -> Option<i64> {
    let p = parse_quantity_exact(v)?;
    Some(saturate(p.scaled_ceil(-3), p.negative))
}

/// A quantity in whole units, rounded up as upstream's `Value()` does (`"128Mi"` →
/// 134217728, `"100m"` → 1). Saturates at the `i64` range; `None` if invalid.
pub fn parse_quantity_value(v: &str) -> Option<i64> {
    let p = parse_quantity_exact(v)?;
    Some(saturate(p.scaled_ceil(0), p.negative))
}

fn saturate(v: Option<i128>, negative: bool) -> i64 {
    match v {
        Some(v) => i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX }),
        None if negative => i64::MIN,
        None => i64::MAX,
    }
}

/// Compares two quantities exactly (`"1"` == `"1000m"`, `"1Gi"` > `"1G"`). `None` if
/// either is not a valid quantity.
pub fn compare_quantities(a: &str, b: &str) -> Option<Ordering> {
    Some(parse_quantity_exact(a)?.cmp_exact(parse_quantity_exact(b)?))
}

// ===========================================================================
// Label selectors (just what validation needs: syntax checks and matching)
// ===========================================================================

/// Upstream's `ValidateLabels`: keys are qualified names, values label values; errors on
/// the map's path.
fn validate_labels(errs: &mut FieldErrors, path: &str, labels: Option<&StrMap>) {
    for (k, v) in labels.into_iter().flatten() {
        invalid_each(errs, path, k, is_qualified_name(k));
        invalid_each(errs, path, v, is_valid_label_value(v));
    }
}

/// Upstream's `ValidateLabelSelector` (strict label values).
fn validate_label_selector(errs: &mut FieldErrors, path: &str, sel: &LabelSelector) {
    validate_labels(errs, &child(path, "matchLabels"), sel.match_labels.as_ref());
    for (i, r) in sl(&sel.match_expressions).iter().enumerate() {
        let p = index(&child(path, "matchExpressions"), i);
        let values = sl(&r.values);
        match r.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(required(child(&p, "values"), "must be specified when `operator` is 'In' or 'NotIn'"));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(forbidden(
                        child(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            op => errs.push(invalid_str(child(&p, "operator"), op, "not a valid selector operator")),
        }
        invalid_each(errs, &child(&p, "key"), &r.key, is_qualified_name(&r.key));
        for (j, v) in values.iter().enumerate() {
            invalid_each(errs, &index(&child(&p, "values"), j), v, is_valid_label_value(v));
        }
    }
}

/// Whether upstream's `LabelSelectorAsSelector` would accept the selector.
fn selector_convertible(sel: &LabelSelector) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| is_qualified_name(k).is_empty() && is_valid_label_value(v).is_empty());
    let exprs_ok = sl(&sel.match_expressions).iter().all(|r| {
        let values = sl(&r.values);
        let op_ok = match r.operator.as_str() {
            "In" | "NotIn" => !values.is_empty(),
            "Exists" | "DoesNotExist" => values.is_empty(),
            _ => false,
        };
        op_ok && is_qualified_name(&r.key).is_empty() && values.iter().all(|v| is_valid_label_value(v).is_empty())
    });
    labels_ok && exprs_ok
}

fn selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty()) && sl(&sel.match_expressions).is_empty()
}

/// Matches a (convertible) selector against a label set. An empty selector matches
/// everything.
fn selector_matches(sel: &LabelSelector, labels: Option<&StrMap>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k));
    let labels_ok = sel.match_labels.iter().flatten().all(|(k, v)| get(k) == Some(v));
    let exprs_ok = sl(&sel.match_expressions).iter().all(|r| {
        let values = sl(&r.values);
        match r.operator.as_str() {
            "In" => get(&r.key).is_some_and(|v| values.contains(v)),
            "NotIn" => get(&r.key).is_none_or(|v| !values.contains(v)),
            "Exists" => get(&r.key).is_some(),
            "DoesNotExist" => get(&r.key).is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// Semantic equality of selectors: an absent map/list equals an empty one (as Go's
/// `apiequality.Semantic.DeepEqual` treats nil and empty).
fn selectors_equal(a: &LabelSelector, b: &LabelSelector) -> bool {
    normalized_json(a) == normalized_json(b)
}

/// JSON with nulls, empty arrays and empty objects removed, so absent == empty.
fn normalized_json<T: serde::Serialize + ?Sized>(v: &T) -> serde_json::Value {
    fn norm(v: serde_json::Value) -> Option<serde_json::Value> {
        match v {
            serde_json::Value::Null => None,
            serde_json::Value::Array(a) if a.is_empty() => None,
            serde_json::Value::Array(a) => {
                Some(serde_json::Value::Array(a.into_iter().map(|x| norm(x).unwrap_or_default()).collect()))
            }
            serde_json::Value::Object(o) => {
                let o: serde_json::Map<String, serde_json::Value> =
                    o.into_iter().filter_map(|(k, v)| norm(v).map(|v| (k, v))).collect();
                (!o.is_empty()).then_some(serde_json::Value::Object(o))
            }
            other => Some(other),
        }
    }
    norm(serde_json::to_value(v).unwrap_or_default()).unwrap_or_default()
}

/// The leaf paths where two normalized JSON values differ, as `-`/`+` lines (a stand-in
/// for the `cmp.Diff` upstream appends to some messages). At most `limit` entries.
fn json_diff(path: &str, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<String>, limit: usize) {
    use serde_json::Value;
    if out.len() >= limit * 2 || old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let null = Value::Null;
                json_diff(&child(path, k), a.get(k).unwrap_or(&null), b.get(k).unwrap_or(&null), out, limit);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                json_diff(&index(path, i), x, y, out, limit);
            }
        }
        _ => {
            out.push(format!("-  {path}: {old}"));
            out.push(format!("+  {path}: {new}"));
        }
    }
}

// ===========================================================================
// ObjectMeta (k8s.io/apimachinery/pkg/api/validation/objectmeta.go)
// ===========================================================================

/// Upstream's limit on the summed length of annotation keys and values (256 KiB).
pub const TOTAL_ANNOTATION_SIZE_LIMIT_B: usize = 256 * 1024;

const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// Validates an object's metadata on create, as upstream's `ValidateObjectMeta` (core's
/// flavour, with the extra finalizer-name rule): `name` (or `generateName`) present and
/// valid per `name_fn` (e.g. [`is_dns1123_subdomain`], [`is_dns1123_label`],
/// [`is_dns1035_label`]); `namespace` required and a DNS-1123 label iff `namespaced`
/// (forbidden otherwise: clear it first for cluster-scoped kinds); labels; annotations
/// (qualified keys, ≤ 256 KiB in total); ownerReferences; finalizers.
pub fn validate_object_meta(meta: &ObjectMeta, namespaced: bool, name_fn: fn(&str) -> Vec<String>) -> FieldErrors {
    let mut errs = Vec::new();
    validate_object_meta_at(&mut errs, meta, namespaced, name_fn, "metadata");
    errs
}

fn validate_object_meta_at(
    errs: &mut FieldErrors,
    meta: &ObjectMeta,
    namespaced: bool,
    name_fn: fn(&str) -> Vec<String>,
    path: &str,
) {
    let generate_name = s(&meta.generate_name);
    if !generate_name.is_empty() {
        invalid_each(errs, &child(path, "generateName"), generate_name, name_fn(&mask_trailing_dash(generate_name)));
    }
    let name = s(&meta.name);
    if name.is_empty() {
        errs.push(required(child(path, "name"), "name or generateName is required"));
    } else {
        invalid_each(errs, &child(path, "name"), name, name_fn(name));
    }

    let namespace = s(&meta.namespace);
    if namespaced {
        if namespace.is_empty() {
            errs.push(required(child(path, "namespace"), ""));
        } else {
            invalid_each(errs, &child(path, "namespace"), namespace, is_dns1123_label(namespace));
        }
    } else if !namespace.is_empty() {
        errs.push(forbidden(child(path, "namespace"), "not allowed on this type"));
    }

    validate_nonnegative(errs, &child(path, "generation"), meta.generation);
    validate_labels(errs, &child(path, "labels"), meta.labels.as_ref());
    validate_annotations(errs, &child(path, "annotations"), meta.annotations.as_ref());
    validate_owner_references(errs, &child(path, "ownerReferences"), sl(&meta.owner_references));
    validate_finalizers(errs, &child(path, "finalizers"), sl(&meta.finalizers));
}

fn validate_annotations(errs: &mut FieldErrors, path: &str, annotations: Option<&StrMap>) {
    let mut total = 0usize;
    for (k, v) in annotations.into_iter().flatten() {
        // Qualified name, except that case doesn't matter.
        invalid_each(errs, path, k, is_qualified_name(&k.to_lowercase()));
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B {
        errs.push(too_long_bytes(path, TOTAL_ANNOTATION_SIZE_LIMIT_B));
    }
}

fn validate_owner_references(
    errs: &mut FieldErrors,
    path: &str,
    refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
) {
    let mut first_controller: Option<String> = None;
    for r in refs {
        // schema.FromAPIVersionAndKind: "v1" or "group/v1"; anything else has no version.
        let (group, version) = match r.api_version.split('/').collect::<Vec<_>>()[..] {
            [v] => ("", v),
            [g, v] => (g, v),
            _ => ("", ""),
        };
        if version.is_empty() {
            errs.push(invalid_str(child(path, "apiVersion"), &r.api_version, "version must not be empty"));
        }
        if r.kind.is_empty() {
            errs.push(invalid_str(child(path, "kind"), &r.kind, "must not be empty"));
        }
        if r.name.is_empty() {
            errs.push(invalid_str(child(path, "name"), &r.name, "must not be empty"));
        }
        if r.uid.is_empty() {
            errs.push(invalid_str(child(path, "uid"), &r.uid, "must not be empty"));
        }
        if group.is_empty() && version == "v1" && r.kind == "Event" {
            errs.push(invalid(path, &json(r), "/v1, Kind=Event is disallowed from being an owner"));
        }
        if r.controller == Some(true) {
            let current = format!("{}/{}", r.kind, r.name);
            match &first_controller {
                Some(first) => errs.push(invalid(
                    path,
                    &json(refs),
                    &format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    ),
                )),
                None => first_controller = Some(current),
            }
        }
    }
}

fn validate_finalizers(errs: &mut FieldErrors, path: &str, finalizers: &[String]) {
    for f in finalizers {
        invalid_each(errs, path, f, is_qualified_name(f));
    }
    if finalizers.iter().any(|f| f == "orphan") && finalizers.iter().any(|f| f == "foregroundDeletion") {
        errs.push(invalid(path, &go_strings(finalizers), "finalizer orphan and foregroundDeletion cannot be both set"));
    }
    for (i, f) in finalizers.iter().enumerate() {
        if !f.contains('/') && !STANDARD_FINALIZERS.contains(&f.as_str()) {
            errs.push(invalid_str(
                index(path, i),
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

/// Validates what an update may change in metadata: `name`, `namespace`, `uid` and
/// `creationTimestamp` are immutable ("field is immutable"), and no finalizer may be
/// added once the object is being deleted. Pair it with [`validate_object_meta`] on the
/// new object (every `validate_<kind>_update` does).
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta) -> FieldErrors {
    let mut errs = Vec::new();
    let path = "metadata";
    if old.deletion_timestamp.is_some() {
        let old_f: BTreeSet<&String> = sl(&old.finalizers).iter().collect();
        let extra: BTreeSet<&String> = sl(&new.finalizers).iter().filter(|f| !old_f.contains(f)).collect();
        if !extra.is_empty() {
            let extra: Vec<String> = extra.into_iter().cloned().collect();
            errs.push(forbidden(
                child(path, "finalizers"),
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    go_strings(&extra)
                ),
            ));
        }
    }
    for (field, n, o) in
        [("name", &new.name, &old.name), ("namespace", &new.namespace, &old.namespace), ("uid", &new.uid, &old.uid)]
    {
        if s(n) != s(o) {
            errs.push(invalid_str(child(path, field), s(n), FIELD_IMMUTABLE_ERROR_MSG));
        }
    }
    if new.creation_timestamp != old.creation_timestamp {
        let bad = match &new.creation_timestamp {
            Some(t) => json(t).trim_matches('"').to_string(),
            None => "0001-01-01 00:00:00 +0000 UTC".to_string(),
        };
        errs.push(invalid(child(path, "creationTimestamp"), &bad, FIELD_IMMUTABLE_ERROR_MSG));
    }
    errs
}

// ===========================================================================
// Pods (k8s.io/kubernetes/pkg/apis/core/validation: ValidatePodCreate, ValidatePodSpec)
// ===========================================================================

const SUPPORTED_PORT_PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const ENV_RESOURCE_FIELDS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];
/// The order upstream's `validateVolumeSource` checks volume types in (JSON names).
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "quobyte",
    "cinder",
    "cephfs",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "projected",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];
const HOST_PATH_TYPES: &[&str] =
    &["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"];

/// Validates a Pod on create: metadata (name a DNS subdomain, namespaced) and the pod
/// spec ([`validate_pod_spec`] at `spec`); ephemeral containers may not be set on create.
pub fn validate_pod(pod: &core::Pod) -> FieldErrors {
    let mut errs = validate_pod_metadata_and_spec(pod);
    if pod.spec.as_ref().is_some_and(|sp| !sl(&sp.ephemeral_containers).is_empty()) {
        errs.push(forbidden("spec.ephemeralContainers", "cannot be set on create"));
    }
    errs
}

fn validate_pod_metadata_and_spec(pod: &core::Pod) -> FieldErrors {
    let mut errs = validate_object_meta(&pod.metadata, true, is_dns1123_subdomain);
    let default = core::PodSpec::default();
    errs.extend(validate_pod_spec(pod.spec.as_ref().unwrap_or(&default), "spec"));
    errs
}

/// Validates a pod template (`spec.template` of a workload): its labels and annotations
/// (reported at `<path>.labels` / `<path>.annotations`, as upstream does) and its pod spec
/// at `<path>.spec`. Ephemeral containers are not allowed in templates.
pub fn validate_pod_template_spec(template: &core::PodTemplateSpec, path: &str) -> FieldErrors {
    let mut errs = Vec::new();
    if let Some(meta) = &template.metadata {
        validate_labels(&mut errs, &child(path, "labels"), meta.labels.as_ref());
        validate_annotations(&mut errs, &child(path, "annotations"), meta.annotations.as_ref());
    }
    let default = core::PodSpec::default();
    let spec = template.spec.as_ref().unwrap_or(&default);
    errs.extend(validate_pod_spec(spec, &child(path, "spec")));
    if !sl(&spec.ephemeral_containers).is_empty() {
        errs.push(forbidden(
            child(&child(path, "spec"), "ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

/// Validates a pod spec found at `path` (`spec` for a Pod, `spec.template.spec` for a
/// workload): volumes, containers and init containers (names, images, ports, env,
/// mounts, resources, probes), restart and DNS policy, node selector, tolerations,
/// host aliases, DNS config, the names it refers to (node, service account, priority
/// class, runtime class) and the numeric limits.
pub fn validate_pod_spec(spec: &core::PodSpec, path: &str) -> FieldErrors {
    let mut errs = Vec::new();
    let volumes = validate_volumes(&mut errs, sl(&spec.volumes), &child(path, "volumes"));
    let containers = &spec.containers;
    let init_containers = sl(&spec.init_containers);

    // Containers (required, unique names across containers and init containers).
    let cpath = child(path, "containers");
    if containers.is_empty() {
        errs.push(required(&cpath, ""));
    }
    let mut names: HashSet<&str> = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = index(&cpath, i);
        validate_container(&mut errs, c, &volumes, &p, false);
        if !names.insert(c.name.as_str()) {
            errs.push(duplicate(child(&p, "name"), &q(&c.name)));
        }
        if let Some(probe) = &c.readiness_probe {
            if probe.termination_grace_period_seconds.is_some() {
                errs.push(invalid(
                    child(&child(&p, "readinessProbe"), "terminationGracePeriodSeconds"),
                    &json(&probe.termination_grace_period_seconds),
                    "must not be set for readinessProbes",
                ));
            }
        }
    }
    validate_unique_host_ports(&mut errs, containers, &cpath);

    let ipath = child(path, "initContainers");
    let regular: HashSet<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let mut init_names: HashSet<&str> = HashSet::new();
    for (i, c) in init_containers.iter().enumerate() {
        let p = index(&ipath, i);
        validate_container(&mut errs, c, &volumes, &p, true);
        if regular.contains(c.name.as_str()) || !init_names.insert(c.name.as_str()) {
            errs.push(duplicate(child(&p, "name"), &q(&c.name)));
        }
    }
    validate_unique_host_ports(&mut errs, init_containers, &ipath);

    // hostNetwork: hostPort must equal containerPort (a missing hostPort is defaulted to it).
    if spec.host_network == Some(true) {
        for (i, c) in containers.iter().enumerate() {
            for (j, port) in sl(&c.ports).iter().enumerate() {
                if port.host_port.is_some_and(|hp| hp != port.container_port) {
                    errs.push(invalid_int(
                        child(&index(&child(&index(&cpath, i), "ports"), j), "containerPort"),
                        port.container_port.into(),
                        "must match `hostPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }

    if let Some(rp) = given(&spec.restart_policy) {
        if !RESTART_POLICIES.contains(&rp) {
            errs.push(not_supported(child(path, "restartPolicy"), &q(rp), RESTART_POLICIES));
        }
    }
    let dns_policy = given(&spec.dns_policy);
    if let Some(dp) = dns_policy {
        if !DNS_POLICIES.contains(&dp) {
            errs.push(not_supported(child(path, "dnsPolicy"), &q(dp), DNS_POLICIES));
        }
    }
    validate_labels(&mut errs, &child(path, "nodeSelector"), spec.node_selector.as_ref());
    validate_pod_dns_config(&mut errs, spec.dns_config.as_ref(), dns_policy, &child(path, "dnsConfig"));
    for (i, gate) in sl(&spec.readiness_gates).iter().enumerate() {
        let p = child(&index(&child(path, "readinessGates"), i), "conditionType");
        invalid_each(&mut errs, &p, &gate.condition_type, is_qualified_name(&gate.condition_type));
    }
    for (field, value) in [
        ("serviceAccountName", &spec.service_account_name),
        ("nodeName", &spec.node_name),
        ("priorityClassName", &spec.priority_class_name),
    ] {
        if let Some(v) = given(value) {
            invalid_each(&mut errs, &child(path, field), v, is_dns1123_subdomain(v));
        }
    }
    if let Some(v) = &spec.runtime_class_name {
        invalid_each(&mut errs, &child(path, "runtimeClassName"), v, is_dns1123_subdomain(v));
    }
    if let Some(v) = spec.active_deadline_seconds {
        if !(1..=i64::from(i32::MAX)).contains(&v) {
            errs.push(invalid_int(child(path, "activeDeadlineSeconds"), v, &inclusive_range_error(1, i32::MAX.into())));
        }
    }
    validate_nonnegative(
        &mut errs,
        &child(path, "terminationGracePeriodSeconds"),
        spec.termination_grace_period_seconds,
    );
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(v) = given(value) {
            invalid_each(&mut errs, &child(path, field), v, is_dns1123_label(v));
        }
    }
    validate_tolerations(&mut errs, sl(&spec.tolerations), &child(path, "tolerations"));
    for (i, alias) in sl(&spec.host_aliases).iter().enumerate() {
        let p = index(&child(path, "hostAliases"), i);
        invalid_each(&mut errs, &child(&p, "ip"), &alias.ip, is_valid_ip(&alias.ip));
        for h in sl(&alias.hostnames) {
            invalid_each(&mut errs, &child(&p, "hostnames"), h, is_dns1123_subdomain(h));
        }
    }
    validate_preemption_policy(&mut errs, &child(path, "preemptionPolicy"), spec.preemption_policy.as_deref());
    for (name, qty) in spec.overhead.iter().flatten() {
        let p = key(&child(path, "overhead"), name);
        validate_resource_name(&mut errs, name, &p);
        validate_resource_quantity(&mut errs, name, qty, &p);
    }
    errs
}

/// Validates one container; `init` selects init-container rules (sidecars with
/// `restartPolicy: Always`; no probes or lifecycle otherwise).
fn validate_container(errs: &mut FieldErrors, c: &core::Container, volumes: &HashSet<String>, path: &str, init: bool) {
    let name_path = child(path, "name");
    if c.name.is_empty() {
        errs.push(required(&name_path, ""));
    } else {
        invalid_each(errs, &name_path, &c.name, is_dns1123_label(&c.name));
    }
    if s(&c.image).is_empty() {
        errs.push(required(child(path, "image"), ""));
    }
    if let Some(pp) = given(&c.image_pull_policy) {
        if !PULL_POLICIES.contains(&pp) {
            errs.push(not_supported(child(path, "imagePullPolicy"), &q(pp), PULL_POLICIES));
        }
    }
    if let Some(tmp) = given(&c.termination_message_policy) {
        if !TERMINATION_MESSAGE_POLICIES.contains(&tmp) {
            errs.push(not_supported(child(path, "terminationMessagePolicy"), &q(tmp), TERMINATION_MESSAGE_POLICIES));
        }
    }

    let sidecar = init && s(&c.restart_policy) == "Always";
    match (init, c.restart_policy.as_deref()) {
        (_, None) => {}
        (false, Some(_)) => {
            errs.push(forbidden(child(path, "restartPolicy"), "may not be set for non-init containers"))
        }
        (true, Some("Always")) => {}
        (true, Some(rp)) => errs.push(not_supported(child(path, "restartPolicy"), &q(rp), &["Always"])),
    }
    if init && !sidecar {
        const NOT_FOR_INIT: &str = "may not be set for init containers without restartPolicy=Always";
        if c.lifecycle.is_some() {
            errs.push(forbidden(child(path, "lifecycle"), NOT_FOR_INIT));
        }
        for (field, probe) in [
            ("livenessProbe", &c.liveness_probe),
            ("readinessProbe", &c.readiness_probe),
            ("startupProbe", &c.startup_probe),
        ] {
            if probe.is_some() {
                errs.push(forbidden(child(path, field), NOT_FOR_INIT));
            }
        }
    } else {
        for (field, probe, must_be_one) in [
            ("livenessProbe", &c.liveness_probe, true),
            ("readinessProbe", &c.readiness_probe, false),
            ("startupProbe", &c.startup_probe, true),
        ] {
            if let Some(probe) = probe {
                let p = child(path, field);
                validate_probe(errs, probe, &p);
                if must_be_one {
                    if let Some(st) = probe.success_threshold.filter(|&v| v != 1 && v != 0) {
                        errs.push(invalid_int(child(&p, "successThreshold"), st.into(), "must be 1"));
                    }
                }
            }
        }
        if let Some(lc) = &c.lifecycle {
            let p = child(path, "lifecycle");
            for (field, handler) in [("postStart", &lc.post_start), ("preStop", &lc.pre_stop)] {
                if let Some(h) = handler {
                    validate_handler(
                        errs,
                        &child(&p, field),
                        &h.exec,
                        &h.http_get,
                        &h.tcp_socket,
                        None,
                        h.sleep.as_ref().map(|sl| sl.seconds),
                    );
                }
            }
        }
    }

    validate_container_ports(errs, sl(&c.ports), &child(path, "ports"));
    validate_env(errs, sl(&c.env), &child(path, "env"));
    validate_env_from(errs, sl(&c.env_from), &child(path, "envFrom"));
    validate_volume_mounts(errs, sl(&c.volume_mounts), volumes, &child(path, "volumeMounts"));
    if let Some(r) = &c.resources {
        validate_resource_requirements(errs, r, &child(path, "resources"));
    }
}

fn validate_container_ports(errs: &mut FieldErrors, ports: &[core::ContainerPort], path: &str) {
    let mut names: HashSet<&str> = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = index(path, i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                invalid_each(errs, &child(&p, "name"), name, msgs);
            } else if !names.insert(name) {
                errs.push(duplicate(child(&p, "name"), &q(name)));
            }
        }
        if port.container_port == 0 {
            errs.push(required(child(&p, "containerPort"), ""));
        } else {
            for m in is_valid_port_num(port.container_port) {
                errs.push(invalid_int(child(&p, "containerPort"), port.container_port.into(), &m));
            }
        }
        if let Some(hp) = port.host_port.filter(|&hp| hp != 0) {
            for m in is_valid_port_num(hp) {
                errs.push(invalid_int(child(&p, "hostPort"), hp.into(), &m));
            }
        }
        if let Some(proto) = given(&port.protocol) {
            if !SUPPORTED_PORT_PROTOCOLS.contains(&proto) {
                errs.push(not_supported(child(&p, "protocol"), &q(proto), SUPPORTED_PORT_PROTOCOLS));
            }
        }
        if let Some(ip) = given(&port.host_ip) {
            invalid_each(errs, &child(&p, "hostIP"), ip, is_valid_ip(ip));
        }
    }
}

/// Upstream's `AccumulateUniqueHostPorts`: `hostIP/protocol/hostPort` unique per list.
fn validate_unique_host_ports(errs: &mut FieldErrors, containers: &[core::Container], path: &str) {
    let mut seen: HashSet<String> = HashSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, port) in sl(&c.ports).iter().enumerate() {
            let Some(hp) = port.host_port.filter(|&hp| hp != 0) else { continue };
            let proto = given(&port.protocol).unwrap_or("TCP");
            let entry = format!("{}/{}/{}", s(&port.host_ip), proto, hp);
            if !seen.insert(entry.clone()) {
                errs.push(duplicate(child(&index(&child(&index(path, ci), "ports"), pi), "hostPort"), &q(&entry)));
            }
        }
    }
}

fn validate_env(errs: &mut FieldErrors, env: &[core::EnvVar], path: &str) {
    for (i, ev) in env.iter().enumerate() {
        let p = index(path, i);
        if ev.name.is_empty() {
            errs.push(required(child(&p, "name"), ""));
        }
        invalid_each(errs, &child(&p, "name"), &ev.name, is_relaxed_env_var_name(&ev.name));
        let Some(from) = &ev.value_from else { continue };
        let fp = child(&p, "valueFrom");
        let mut sources = 0;
        if let Some(fr) = &from.field_ref {
            sources += 1;
            validate_object_field_selector(errs, fr, &child(&fp, "fieldRef"));
        }
        if let Some(rr) = &from.resource_field_ref {
            sources += 1;
            let rp = child(&fp, "resourceFieldRef");
            if rr.resource.is_empty() {
                errs.push(required(child(&rp, "resource"), ""));
            } else if !ENV_RESOURCE_FIELDS.contains(&rr.resource.as_str())
                && !rr.resource.starts_with("limits.hugepages-")
                && !rr.resource.starts_with("requests.hugepages-")
            {
                errs.push(not_supported(child(&rp, "resource"), &q(&rr.resource), ENV_RESOURCE_FIELDS));
            }
        }
        if let Some(r) = &from.config_map_key_ref {
            sources += 1;
            validate_key_selector(errs, &r.name, &r.key, &child(&fp, "configMapKeyRef"));
        }
        if let Some(r) = &from.secret_key_ref {
            sources += 1;
            validate_key_selector(errs, &r.name, &r.key, &child(&fp, "secretKeyRef"));
        }
        if sources == 0 {
            errs.push(invalid_str(
                &fp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !s(&ev.value).is_empty() {
            errs.push(invalid_str(&fp, "", "may not be specified when `value` is not empty"));
        } else if sources > 1 {
            errs.push(invalid_str(&fp, "", "may not have more than one field specified at a time"));
        }
    }
}

fn validate_object_field_selector(errs: &mut FieldErrors, fs: &core::ObjectFieldSelector, path: &str) {
    if fs.field_path.is_empty() {
        errs.push(required(child(path, "fieldPath"), ""));
        return;
    }
    let fp = fs.field_path.as_str();
    // metadata.labels['key'] / metadata.annotations['key']
    if let Some((base, rest)) = fp.split_once('[') {
        let subscript = rest.strip_suffix(']').and_then(|r| r.strip_prefix('\'')).and_then(|r| r.strip_suffix('\''));
        match (base, subscript) {
            ("metadata.annotations", Some(k)) => invalid_each(errs, path, k, is_qualified_name(&k.to_lowercase())),
            ("metadata.labels", Some(k)) => invalid_each(errs, path, k, is_qualified_name(k)),
            (_, Some(_)) => errs.push(invalid_str(path, base, "does not support subscript")),
            (_, None) => errs.push(not_supported(child(path, "fieldPath"), &q(fp), ENV_FIELD_PATHS)),
        }
    } else if !ENV_FIELD_PATHS.contains(&fp) {
        errs.push(not_supported(child(path, "fieldPath"), &q(fp), ENV_FIELD_PATHS));
    }
}

/// `configMapKeyRef` / `secretKeyRef`: name a DNS subdomain, key a config key.
fn validate_key_selector(errs: &mut FieldErrors, name: &str, k: &str, path: &str) {
    invalid_each(errs, &child(path, "name"), name, is_dns1123_subdomain(name));
    if k.is_empty() {
        errs.push(required(child(path, "key"), ""));
    } else {
        invalid_each(errs, &child(path, "key"), k, is_config_map_key(k));
    }
}

fn validate_env_from(errs: &mut FieldErrors, env_from: &[core::EnvFromSource], path: &str) {
    for (i, ef) in env_from.iter().enumerate() {
        let p = index(path, i);
        if let Some(prefix) = given(&ef.prefix) {
            invalid_each(errs, &child(&p, "prefix"), prefix, is_relaxed_env_var_name(prefix));
        }
        let mut sources = 0;
        for (field, name) in [
            ("configMapRef", ef.config_map_ref.as_ref().map(|r| r.name.as_str())),
            ("secretRef", ef.secret_ref.as_ref().map(|r| r.name.as_str())),
        ] {
            let Some(name) = name else { continue };
            sources += 1;
            let np = child(&child(&p, field), "name");
            if name.is_empty() {
                errs.push(required(&np, ""));
            } else {
                invalid_each(errs, &np, name, is_dns1123_subdomain(name));
            }
        }
        if sources == 0 {
            errs.push(invalid_str(&p, "", "must specify one of: `configMapRef` or `secretRef`"));
        } else if sources > 1 {
            errs.push(invalid_str(&p, "", "may not have more than one field specified at a time"));
        }
    }
}

fn validate_probe(errs: &mut FieldErrors, probe: &core::Probe, path: &str) {
    validate_handler(
        errs,
        path,
        &probe.exec,
        &probe.http_get,
        &probe.tcp_socket,
        probe.grpc.as_ref().map(|g| g.port),
        None,
    );
    for (field, v) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        validate_nonnegative(errs, &child(path, field), v.map(i64::from));
    }
    if let Some(t) = probe.termination_grace_period_seconds.filter(|&t| t <= 0) {
        errs.push(invalid_int(child(path, "terminationGracePeriodSeconds"), t, "must be greater than 0"));
    }
}

/// A probe or lifecycle handler: exactly one of exec / httpGet / tcpSocket / grpc / sleep.
fn validate_handler(
    errs: &mut FieldErrors,
    path: &str,
    exec: &Option<core::ExecAction>,
    http_get: &Option<core::HTTPGetAction>,
    tcp_socket: &Option<core::TCPSocketAction>,
    grpc_port: Option<i32>,
    sleep_seconds: Option<i64>,
) {
    let mut handlers = 0;
    let mut one = |errs: &mut FieldErrors, field: &str| -> bool {
        if handlers > 0 {
            errs.push(forbidden(child(path, field), "may not specify more than 1 handler type"));
            false
        } else {
            handlers += 1;
            true
        }
    };
    if let Some(e) = exec {
        if one(errs, "exec") && sl(&e.command).is_empty() {
            errs.push(required(child(&child(path, "exec"), "command"), ""));
        }
    }
    if let Some(h) = http_get {
        if one(errs, "httpGet") {
            let p = child(path, "httpGet");
            validate_port_num_or_name(errs, &h.port, &child(&p, "port"));
            if let Some(scheme) = given(&h.scheme) {
                if scheme != "HTTP" && scheme != "HTTPS" {
                    errs.push(not_supported(child(&p, "scheme"), &q(scheme), &["HTTP", "HTTPS"]));
                }
            }
        }
    }
    if let Some(t) = tcp_socket {
        if one(errs, "tcpSocket") {
            validate_port_num_or_name(errs, &t.port, &child(&child(path, "tcpSocket"), "port"));
        }
    }
    if let Some(port) = grpc_port {
        if one(errs, "grpc") {
            for m in is_valid_port_num(port) {
                errs.push(invalid_int(child(&child(path, "grpc"), "port"), port.into(), &m));
            }
        }
    }
    if let Some(secs) = sleep_seconds {
        if one(errs, "sleep") && secs < 0 {
            errs.push(invalid_int(child(&child(path, "sleep"), "seconds"), secs, IS_NEGATIVE_ERROR_MSG));
        }
    }
    if handlers == 0 {
        errs.push(required(path, "must specify a handler type"));
    }
}

/// Upstream's `ValidatePortNumOrName`: a port number or an IANA service name.
fn validate_port_num_or_name(errs: &mut FieldErrors, port: &IntOrString, path: &str) {
    match port {
        IntOrString::Int(n) => {
            for m in is_valid_port_num(*n) {
                errs.push(invalid_int(path, (*n).into(), &m));
            }
        }
        IntOrString::String(name) => invalid_each(errs, path, name, is_valid_port_name(name)),
    }
}

/// Validates volumes and returns the names of the valid ones (mounts may refer only to
/// those, as upstream).
fn validate_volumes(errs: &mut FieldErrors, volumes: &[core::Volume], path: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, vol) in volumes.iter().enumerate() {
        let p = index(path, i);
        let mut el = Vec::new();
        validate_volume_source(&mut el, vol, &p);
        let name_path = child(&p, "name");
        if vol.name.is_empty() {
            el.push(required(&name_path, ""));
        } else {
            invalid_each(&mut el, &name_path, &vol.name, is_dns1123_label(&vol.name));
        }
        if names.contains(&vol.name) {
            el.push(duplicate(&name_path, &q(&vol.name)));
        }
        if el.is_empty() {
            names.insert(vol.name.clone());
        } else {
            errs.extend(el);
        }
    }
    names
}

fn validate_volume_source(errs: &mut FieldErrors, vol: &core::Volume, path: &str) {
    let value = serde_json::to_value(vol).unwrap_or_default();
    let present: Vec<&str> =
        VOLUME_SOURCES.iter().copied().filter(|k| value.get(k).is_some_and(|v| !v.is_null())).collect();
    // No source at all is defaulted to emptyDir.
    for extra in present.iter().skip(1) {
        errs.push(forbidden(child(path, extra), "may not specify more than 1 volume type"));
    }
    if let Some(hp) = &vol.host_path {
        let p = child(path, "hostPath");
        if hp.path.is_empty() {
            errs.push(required(child(&p, "path"), ""));
        } else {
            validate_path_no_backsteps(errs, &hp.path, &child(&p, "path"));
        }
        if let Some(t) = &hp.type_ {
            if !HOST_PATH_TYPES.contains(&t.as_str()) {
                errs.push(not_supported(child(&p, "type"), &q(t), HOST_PATH_TYPES));
            }
        }
    }
    if let Some(ed) = &vol.empty_dir {
        if let Some(limit) = &ed.size_limit {
            validate_quantity_syntax_nonnegative(errs, limit, &child(&child(path, "emptyDir"), "sizeLimit"));
        }
    }
    if let Some(sec) = &vol.secret {
        let p = child(path, "secret");
        match given(&sec.secret_name) {
            None => errs.push(required(child(&p, "secretName"), "")),
            Some(n) => invalid_each(errs, &child(&p, "secretName"), n, is_dns1123_subdomain(n)),
        }
        validate_mode(errs, sec.default_mode, &child(&p, "defaultMode"));
        validate_items(errs, sl(&sec.items), &child(&p, "items"));
    }
    if let Some(cm) = &vol.config_map {
        let p = child(path, "configMap");
        if cm.name.is_empty() {
            errs.push(required(child(&p, "name"), ""));
        } else {
            invalid_each(errs, &child(&p, "name"), &cm.name, is_dns1123_subdomain(&cm.name));
        }
        validate_mode(errs, cm.default_mode, &child(&p, "defaultMode"));
        validate_items(errs, sl(&cm.items), &child(&p, "items"));
    }
    if let Some(pr) = &vol.projected {
        let p = child(path, "projected");
        validate_mode(errs, pr.default_mode, &child(&p, "defaultMode"));
        for (i, src) in sl(&pr.sources).iter().enumerate() {
            let Some(t) = &src.service_account_token else { continue };
            let tp = child(&index(&child(&p, "sources"), i), "serviceAccountToken");
            // As upstream: a token must live at least 10 minutes and at most 2^32 seconds.
            match t.expiration_seconds {
                Some(s) if s < 600 => errs.push(invalid_int(
                    child(&tp, "expirationSeconds"),
                    s,
                    "may not specify a duration less than 10 minutes",
                )),
                Some(s) if s > 1 << 32 => errs.push(invalid_int(
                    child(&tp, "expirationSeconds"),
                    s,
                    "may not specify a duration larger than 2^32 seconds",
                )),
                _ => {}
            }
            if t.path.is_empty() {
                errs.push(required(child(&tp, "path"), ""));
            }
            validate_local_non_reserved_path(errs, &t.path, &child(&tp, "path"));
        }
    }
    if let Some(pvc) = &vol.persistent_volume_claim {
        if pvc.claim_name.is_empty() {
            errs.push(required(child(&child(path, "persistentVolumeClaim"), "claimName"), ""));
        }
    }
    if let Some(nfs) = &vol.nfs {
        let p = child(path, "nfs");
        if nfs.server.is_empty() {
            errs.push(required(child(&p, "server"), ""));
        }
        if nfs.path.is_empty() {
            errs.push(required(child(&p, "path"), ""));
        } else if !nfs.path.starts_with('/') {
            errs.push(invalid_str(child(&p, "path"), &nfs.path, "must be an absolute path"));
        }
    }
}

fn validate_mode(errs: &mut FieldErrors, mode: Option<i32>, path: &str) {
    if let Some(m) = mode.filter(|m| !(0..=0o777).contains(m)) {
        errs.push(invalid_int(path, m.into(), FILE_MODE_ERROR_MSG));
    }
}

fn validate_items(errs: &mut FieldErrors, items: &[core::KeyToPath], path: &str) {
    for (i, kp) in items.iter().enumerate() {
        let p = index(path, i);
        if kp.key.is_empty() {
            errs.push(required(child(&p, "key"), ""));
        }
        if kp.path.is_empty() {
            errs.push(required(child(&p, "path"), ""));
        }
        validate_local_non_reserved_path(errs, &kp.path, &child(&p, "path"));
        validate_mode(errs, kp.mode, &child(&p, "mode"));
    }
}

fn validate_path_no_backsteps(errs: &mut FieldErrors, target: &str, path: &str) {
    if target.split('/').any(|part| part == "..") {
        errs.push(invalid_str(path, target, "must not contain '..'"));
    }
}

fn validate_local_descending_path(errs: &mut FieldErrors, target: &str, path: &str) {
    if target.starts_with('/') {
        errs.push(invalid_str(path, target, "must be a relative path"));
    }
    validate_path_no_backsteps(errs, target, path);
}

fn validate_local_non_reserved_path(errs: &mut FieldErrors, target: &str, path: &str) {
    validate_local_descending_path(errs, target, path);
    if target.starts_with("..") {
        errs.push(invalid_str(path, target, "must not start with '..'"));
    }
}

fn validate_volume_mounts(errs: &mut FieldErrors, mounts: &[core::VolumeMount], volumes: &HashSet<String>, path: &str) {
    let mut mount_points: HashSet<&str> = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let p = index(path, i);
        if m.name.is_empty() {
            errs.push(required(child(&p, "name"), ""));
        }
        if !volumes.contains(&m.name) {
            errs.push(not_found(child(&p, "name"), &q(&m.name)));
        }
        if m.mount_path.is_empty() {
            errs.push(required(child(&p, "mountPath"), ""));
        }
        if !mount_points.insert(m.mount_path.as_str()) {
            errs.push(invalid_str(child(&p, "mountPath"), &m.mount_path, "must be unique"));
        }
        if let Some(sub) = given(&m.sub_path) {
            validate_local_descending_path(errs, sub, &child(&p, "subPath"));
        }
        if let Some(expr) = given(&m.sub_path_expr) {
            if given(&m.sub_path).is_some() {
                errs.push(invalid_str(
                    child(&p, "subPathExpr"),
                    expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            validate_local_descending_path(errs, expr, &child(&p, "subPathExpr"));
        }
        if let Some(mp) = given(&m.mount_propagation) {
            const MODES: &[&str] = &["Bidirectional", "HostToContainer", "None"];
            if !MODES.contains(&mp) {
                errs.push(not_supported(child(&p, "mountPropagation"), &q(mp), MODES));
            }
        }
    }
}

fn validate_pod_dns_config(errs: &mut FieldErrors, cfg: Option<&core::PodDNSConfig>, policy: Option<&str>, path: &str) {
    if policy == Some("None") {
        match cfg {
            None => {
                errs.push(required(path, "must provide `dnsConfig` when `dnsPolicy` is None"));
                return;
            }
            Some(c) if sl(&c.nameservers).is_empty() => {
                errs.push(required(
                    child(path, "nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ));
                return;
            }
            Some(_) => {}
        }
    }
    let Some(cfg) = cfg else { return };
    let nameservers = sl(&cfg.nameservers);
    if nameservers.len() > MAX_DNS_NAMESERVERS {
        errs.push(invalid(
            child(path, "nameservers"),
            &go_strings(nameservers),
            &format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers"),
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        invalid_each(errs, &index(&child(path, "nameservers"), i), ns, is_valid_ip(ns));
    }
    let searches = sl(&cfg.searches);
    if searches.len() > MAX_DNS_SEARCH_PATHS {
        errs.push(invalid(
            child(path, "searches"),
            &go_strings(searches),
            &format!("must not have more than {MAX_DNS_SEARCH_PATHS} search paths"),
        ));
    }
    if searches.join(" ").len() > MAX_DNS_SEARCH_LIST_CHARS {
        errs.push(invalid(
            child(path, "searches"),
            &go_strings(searches),
            &format!(
                "must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters (including spaces) in the search list"
            ),
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        if search == "." {
            continue;
        }
        let trimmed = search.strip_suffix('.').unwrap_or(search);
        invalid_each(errs, &index(&child(path, "searches"), i), trimmed, is_dns1123_subdomain_with_underscore(trimmed));
    }
    for (i, opt) in sl(&cfg.options).iter().enumerate() {
        if s(&opt.name).is_empty() {
            errs.push(required(index(&child(path, "options"), i), "Option.Name must not be empty"));
        }
    }
}

/// Upstream's `ValidateTolerations`.
fn validate_tolerations(errs: &mut FieldErrors, tolerations: &[core::Toleration], path: &str) {
    for (i, t) in tolerations.iter().enumerate() {
        let p = index(path, i);
        let k = s(&t.key);
        if !k.is_empty() {
            invalid_each(errs, &child(&p, "key"), k, is_qualified_name(k));
        }
        let operator = s(&t.operator);
        if k.is_empty() && operator != "Exists" {
            errs.push(invalid_str(
                child(&p, "operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && s(&t.effect) != "NoExecute" {
            errs.push(invalid_str(
                child(&p, "effect"),
                s(&t.effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "" | "Equal" => invalid_each(errs, &child(&p, "operator"), s(&t.value), is_valid_label_value(s(&t.value))),
            "Exists" => {
                if !s(&t.value).is_empty() {
                    errs.push(invalid(
                        child(&p, "operator"),
                        &json(t),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(not_supported(child(&p, "operator"), &q(other), &["Equal", "Exists"])),
        }
        if let Some(effect) = given(&t.effect) {
            if !TAINT_EFFECTS.contains(&effect) {
                errs.push(not_supported(child(&p, "effect"), &q(effect), TAINT_EFFECTS));
            }
        }
    }
}

// --- resources -------------------------------------------------------------

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || is_hugepages(name)
}

/// Native resources have no domain or a `kubernetes.io/` one; others are extended.
fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_hugepages(name)
}

fn validate_resource_name(errs: &mut FieldErrors, name: &str, path: &str) {
    let msgs = is_qualified_name(name);
    if !msgs.is_empty() {
        invalid_each(errs, path, name, msgs);
        return;
    }
    if !name.contains('/') {
        if !is_standard_container_resource(name) {
            errs.push(invalid_str(path, name, "must be a standard resource for containers"));
        }
    } else if !is_native_resource(name) && !is_qualified_name(&format!("requests.{name}")).is_empty() {
        errs.push(invalid_str(path, name, "doesn't follow extended resource name standard"));
    }
}

fn validate_quantity_syntax_nonnegative(errs: &mut FieldErrors, qty: &Quantity, path: &str) -> Option<ParsedQuantity> {
    match parse_quantity_exact(&qty.0) {
        None => {
            errs.push(invalid_str(path, &qty.0, QUANTITY_FORMAT_ERR_MSG));
            None
        }
        Some(p) => {
            if p.negative {
                errs.push(invalid_str(path, &qty.0, IS_NEGATIVE_ERROR_MSG));
            }
            Some(p)
        }
    }
}

fn validate_resource_quantity(
    errs: &mut FieldErrors,
    name: &str,
    qty: &Quantity,
    path: &str,
) -> Option<ParsedQuantity> {
    let p = validate_quantity_syntax_nonnegative(errs, qty, path)?;
    if !is_native_resource(name) && p.scaled_ceil(-3).is_some_and(|m| m % 1000 != 0) {
        errs.push(invalid_str(path, &qty.0, IS_NOT_INTEGER_ERROR_MSG));
    }
    Some(p)
}

/// Upstream's `ValidateContainerResourceRequirements`: known resource names, valid
/// non-negative quantities, requests ≤ limits (= for non-overcommittable resources).
fn validate_resource_requirements(errs: &mut FieldErrors, r: &core::ResourceRequirements, path: &str) {
    let lim_path = child(path, "limits");
    let req_path = child(path, "requests");
    let mut limits: BTreeMap<&str, Option<ParsedQuantity>> = BTreeMap::new();
    for (name, qty) in r.limits.iter().flatten() {
        let p = key(&lim_path, name);
        validate_resource_name(errs, name, &p);
        limits.insert(name, validate_resource_quantity(errs, name, qty, &p));
    }
    for (name, qty) in r.requests.iter().flatten() {
        let p = key(&req_path, name);
        validate_resource_name(errs, name, &p);
        let request = validate_resource_quantity(errs, name, qty, &p);
        match limits.get(name.as_str()) {
            Some(limit) => {
                let (Some(request), Some(limit)) = (request, *limit) else { continue };
                let limit_str = &r.limits.as_ref().and_then(|l| l.get(name)).map(|l| l.0.clone()).unwrap_or_default();
                let ord = request.cmp_exact(limit);
                if ord != Ordering::Equal && !is_overcommit_allowed(name) {
                    errs.push(invalid_str(&req_path, &qty.0, &format!("must be equal to {name} limit of {limit_str}")));
                } else if ord == Ordering::Greater {
                    errs.push(invalid_str(
                        &req_path,
                        &qty.0,
                        &format!("must be less than or equal to {name} limit of {limit_str}"),
                    ));
                }
            }
            None if !is_overcommit_allowed(name) => {
                errs.push(required(&lim_path, "Limit must be set for non overcommitable resources"));
            }
            None => {}
        }
    }
}

// --- pod update ------------------------------------------------------------

const POD_UPDATE_FORBIDDEN_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Validates a Pod update: metadata immutability, the new pod as on create (except the
/// ephemeral-container rule), and upstream's pod-spec immutability: only
/// `spec.containers[*].image`, `spec.initContainers[*].image`,
/// `spec.activeDeadlineSeconds` (set, or lowered), `spec.tolerations` (additions only),
/// removal of `spec.schedulingGates`, and `spec.terminationGracePeriodSeconds` from
/// negative to 1 may change. Anything else gives `spec: Forbidden: pod updates may not
/// change fields other than ...` followed by a short diff.
pub fn validate_pod_update(new: &core::Pod, old: &core::Pod) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_pod_metadata_and_spec(new));
    let default = core::PodSpec::default();
    let ns = new.spec.as_ref().unwrap_or(&default);
    let os = old.spec.as_ref().unwrap_or(&default);

    for (field, n, o) in [
        ("containers", &ns.containers[..], &os.containers[..]),
        ("initContainers", sl(&ns.init_containers), sl(&os.init_containers)),
    ] {
        let p = child("spec", field);
        if n.len() != o.len() {
            errs.push(forbidden(&p, "pod updates may not add or remove containers"));
            return errs;
        }
        for (i, c) in n.iter().enumerate() {
            let image = s(&c.image);
            if image.is_empty() {
                // Already reported by the spec validation above.
                continue;
            }
            if image.trim() != image {
                errs.push(invalid_str(
                    child(&index(&p, i), "image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }

    match (ns.active_deadline_seconds, os.active_deadline_seconds) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(invalid_int("spec.activeDeadlineSeconds", n, &inclusive_range_error(0, i32::MAX.into())));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(invalid_int("spec.activeDeadlineSeconds", n, "must be less than or equal to previous value"));
            return errs;
        }
        (None, Some(_)) => errs.push(invalid(
            "spec.activeDeadlineSeconds",
            "null",
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }

    // Tolerations: only additions (an existing one may change only its tolerationSeconds).
    let new_tolerations = sl(&ns.tolerations);
    for old_t in sl(&os.tolerations) {
        let found = new_tolerations.iter().any(|nt| {
            let mut o = old_t.clone();
            o.toleration_seconds = nt.toleration_seconds;
            &o == nt
        });
        if !found {
            errs.push(forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }

    // Scheduling gates: only deletions.
    let old_gates: HashSet<&str> = sl(&os.scheduling_gates).iter().map(|g| g.name.as_str()).collect();
    for g in sl(&ns.scheduling_gates) {
        if !old_gates.contains(g.name.as_str()) {
            errs.push(forbidden(
                "spec.schedulingGates",
                &format!("only deletion is allowed, but found new scheduling gate '{}'", g.name),
            ));
        }
    }

    // Everything else must be unchanged: munge the mutable fields and compare.
    let mut munged = ns.clone();
    for (c, o) in munged.containers.iter_mut().zip(&os.containers) {
        c.image.clone_from(&o.image);
    }
    if let Some(init) = munged.init_containers.as_mut() {
        for (c, o) in init.iter_mut().zip(sl(&os.init_containers)) {
            c.image.clone_from(&o.image);
        }
    }
    munged.active_deadline_seconds = os.active_deadline_seconds;
    munged.tolerations.clone_from(&os.tolerations);
    munged.scheduling_gates.clone_from(&os.scheduling_gates);
    if os.termination_grace_period_seconds.is_some_and(|g| g < 0) && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = os.termination_grace_period_seconds;
    }
    let (old_json, new_json) = (normalized_json(os), normalized_json(&munged));
    if old_json != new_json {
        let mut diff = Vec::new();
        json_diff("spec", &old_json, &new_json, &mut diff, 8);
        let mut message = POD_UPDATE_FORBIDDEN_MSG.to_string();
        for line in diff {
            message.push('\n');
            message.push_str(&line);
        }
        errs.push(forbidden("spec", &message));
    }
    errs
}

// ===========================================================================
// Namespaces and Nodes
// ===========================================================================

/// Validates a Namespace on create: name a DNS-1123 label, cluster-scoped;
/// `spec.finalizers` qualified names (unqualified ones must be standard).
pub fn validate_namespace(ns: &core::Namespace) -> FieldErrors {
    let mut errs = validate_object_meta(&ns.metadata, false, is_dns1123_label);
    let finalizers = ns.spec.as_ref().map(|sp| sl(&sp.finalizers)).unwrap_or(&[]);
    for f in finalizers {
        invalid_each(&mut errs, "spec.finalizers", f, is_qualified_name(f));
        if !f.contains('/') && !STANDARD_FINALIZERS.contains(&f.as_str()) {
            errs.push(invalid_str(
                "spec.finalizers",
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

/// Validates a Namespace update: metadata immutability plus the create checks.
pub fn validate_namespace_update(new: &core::Namespace, old: &core::Namespace) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_namespace(new));
    errs
}

fn node_pod_cidrs(node: &core::Node) -> Vec<String> {
    let Some(spec) = &node.spec else { return Vec::new() };
    match (&spec.pod_cidrs, given(&spec.pod_cidr)) {
        (Some(list), _) if !list.is_empty() => list.clone(),
        (_, Some(single)) => vec![single.to_string()],
        _ => Vec::new(),
    }
}

/// Validates a Node on create: name a DNS subdomain, cluster-scoped; taints (key,
/// value, effect, unique per key+effect; reported under `metadata.taints` exactly as
/// upstream does); podCIDRs valid, at most one per IP family.
pub fn validate_node(node: &core::Node) -> FieldErrors {
    let mut errs = validate_object_meta(&node.metadata, false, is_dns1123_subdomain);
    let taints = node.spec.as_ref().map(|sp| sl(&sp.taints)).unwrap_or(&[]);
    let mut unique: HashSet<(&str, &str)> = HashSet::new();
    for (i, t) in taints.iter().enumerate() {
        let p = index("metadata.taints", i);
        invalid_each(&mut errs, &child(&p, "key"), &t.key, is_qualified_name(&t.key));
        let value = s(&t.value);
        let msgs = is_valid_label_value(value);
        if !msgs.is_empty() {
            errs.push(invalid_str(child(&p, "value"), value, &msgs.join(";")));
        }
        if t.effect.is_empty() {
            errs.push(required(child(&p, "effect"), ""));
        } else if !TAINT_EFFECTS.contains(&t.effect.as_str()) {
            errs.push(not_supported(child(&p, "effect"), &q(&t.effect), TAINT_EFFECTS));
        }
        if !unique.insert((t.effect.as_str(), t.key.as_str())) {
            errs.push(FieldError::new(
                FieldErrorType::Duplicate,
                &p,
                format!("Duplicate value: {}: taints must be unique by key and effect pair", json(t)),
            ));
        }
    }
    let cidrs = node_pod_cidrs(node);
    let mut families = Vec::new();
    for (i, c) in cidrs.iter().enumerate() {
        match parse_cidr_sloppy(c) {
            Some((ip, _)) => families.push(unmap(ip).is_ipv4()),
            None => errs.push(invalid_str(index("spec.podCIDRs", i), c, CIDR_ERR_MSG)),
        }
    }
    if cidrs.len() > 1 && (cidrs.len() > 2 || families.len() != 2 || families[0] == families[1]) {
        errs.push(invalid(
            "spec.podCIDRs",
            &go_strings(&cidrs),
            "may specify no more than one CIDR for each IP family",
        ));
    }
    errs
}

/// Validates a Node update: metadata immutability, the create checks, podCIDRs and
/// providerID may only go from unset to set.
pub fn validate_node_update(new: &core::Node, old: &core::Node) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_node(new));
    let (new_cidrs, old_cidrs) = (node_pod_cidrs(new), node_pod_cidrs(old));
    if !old_cidrs.is_empty() && old_cidrs != new_cidrs {
        errs.push(forbidden("spec.podCIDRs", "node updates may not change podCIDR except from \"\" to valid"));
    }
    let provider = |n: &core::Node| n.spec.as_ref().map(|sp| s(&sp.provider_id).to_string()).unwrap_or_default();
    let (new_p, old_p) = (provider(new), provider(old));
    if !old_p.is_empty() && old_p != new_p {
        errs.push(forbidden("spec.providerID", "node updates may not change providerID except from \"\" to valid"));
    }
    errs
}

// ===========================================================================
// Services and Endpoints
// ===========================================================================

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const KUBELET_PORT: i32 = 10250;

fn service_cluster_ips(spec: &core::ServiceSpec) -> Vec<String> {
    match (&spec.cluster_ips, given(&spec.cluster_ip)) {
        (Some(list), _) if !list.is_empty() => list.clone(),
        (_, Some(ip)) => vec![ip.to_string()],
        _ => Vec::new(),
    }
}

fn is_headless(spec: &core::ServiceSpec) -> bool {
    service_cluster_ips(spec).first().is_some_and(|ip| ip == "None")
}

/// Validates a Service on create: name a DNS-1035 label; `spec.type`; ports (required
/// unless headless or ExternalName; numbers, protocols, names unique and required when
/// there are several, targetPort a number or IANA name, no duplicate port/protocol);
/// ExternalName needs `externalName` and no clusterIP; clusterIP(s) `None`, empty or IPs;
/// selector labels; session affinity and traffic policies.
pub fn validate_service(svc: &core::Service) -> FieldErrors {
    let mut errs = validate_object_meta(&svc.metadata, true, is_dns1035_label);
    let default = core::ServiceSpec::default();
    let spec = svc.spec.as_ref().unwrap_or(&default);
    let type_ = given(&spec.type_).unwrap_or("ClusterIP");
    let ports = sl(&spec.ports);
    let headless = is_headless(spec);
    let cluster_ips = service_cluster_ips(spec);

    if ports.is_empty() && !headless && type_ != "ExternalName" {
        errs.push(required("spec.ports", ""));
    }
    match type_ {
        "LoadBalancer" | "NodePort" => {
            if headless {
                errs.push(invalid_str(
                    "spec.clusterIPs[0]",
                    "None",
                    &format!("may not be set to 'None' for {type_} services"),
                ));
            }
            if type_ == "LoadBalancer" {
                for (i, p) in ports.iter().enumerate() {
                    if p.port == KUBELET_PORT {
                        errs.push(invalid_int(
                            index("spec.ports", i),
                            p.port.into(),
                            &format!("may not expose port {KUBELET_PORT} externally since it is used by kubelet"),
                        ));
                    }
                }
            }
        }
        "ExternalName" => {
            if !cluster_ips.is_empty() {
                errs.push(forbidden("spec.clusterIPs", "may not be set for ExternalName services"));
            }
            if !sl(&spec.ip_families).is_empty() {
                errs.push(forbidden("spec.ipFamilies", "may not be set for ExternalName services"));
            }
            if spec.ip_family_policy.is_some() {
                errs.push(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"));
            }
            // The CNAME may have a trailing dot to mark it fully qualified.
            let cname = s(&spec.external_name);
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(required("spec.externalName", ""));
            } else {
                invalid_each(&mut errs, "spec.externalName", cname, is_dns1123_subdomain(cname));
            }
        }
        _ => {}
    }

    let mut names: HashSet<&str> = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = index("spec.ports", i);
        let name = s(&p.name);
        if ports.len() > 1 && name.is_empty() {
            errs.push(required(child(&pp, "name"), ""));
        } else if !name.is_empty() {
            invalid_each(&mut errs, &child(&pp, "name"), name, is_dns1123_label(name));
            if !names.insert(name) {
                errs.push(duplicate(child(&pp, "name"), &q(name)));
            }
        }
        for m in is_valid_port_num(p.port) {
            errs.push(invalid_int(child(&pp, "port"), p.port.into(), &m));
        }
        if let Some(proto) = given(&p.protocol) {
            if !SUPPORTED_PORT_PROTOCOLS.contains(&proto) {
                errs.push(not_supported(child(&pp, "protocol"), &q(proto), SUPPORTED_PORT_PROTOCOLS));
            }
        }
        if let Some(tp) = &p.target_port {
            validate_port_num_or_name(&mut errs, tp, &child(&pp, "targetPort"));
        }
        if let Some(ap) = &p.app_protocol {
            invalid_each(&mut errs, &child(&pp, "appProtocol"), ap, is_qualified_name(ap));
        }
    }

    validate_labels(&mut errs, "spec.selector", spec.selector.as_ref());

    if let Some(sa) = given(&spec.session_affinity) {
        if sa != "ClientIP" && sa != "None" {
            errs.push(not_supported("spec.sessionAffinity", &q(sa), &["ClientIP", "None"]));
        }
    }

    // clusterIP(s): "None", empty (to be allocated) or an IP; the list starts with clusterIP.
    if type_ != "ExternalName" {
        if let (Some(ip), Some(first)) = (given(&spec.cluster_ip), sl(&spec.cluster_ips).first()) {
            if ip != first {
                errs.push(invalid_str("spec.clusterIPs[0]", first, "must match `clusterIP` if specified"));
            }
        }
        for (i, ip) in cluster_ips.iter().enumerate() {
            if i == 0 && ip == "None" {
                continue;
            }
            if ip == "None" {
                errs.push(invalid_str(index("spec.clusterIPs", i), ip, "must be a valid IP address"));
            } else {
                invalid_each(&mut errs, &index("spec.clusterIPs", i), ip, is_valid_ip(ip));
            }
        }
        if cluster_ips.len() > 2 {
            errs.push(invalid("spec.clusterIPs", &go_strings(&cluster_ips), "may only hold up to 2 values"));
        }
    }

    if !SERVICE_TYPES.contains(&type_) {
        errs.push(not_supported("spec.type", &q(type_), SERVICE_TYPES));
    }
    if type_ == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if p.node_port.is_some_and(|np| np != 0) {
                errs.push(forbidden(
                    child(&index("spec.ports", i), "nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }

    // Duplicate nodePorts and ports, by (protocol, number).
    let mut node_ports: HashSet<(&str, i32)> = HashSet::new();
    let mut port_keys: HashSet<(&str, i32)> = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let proto = given(&p.protocol).unwrap_or("TCP");
        if let Some(np) = p.node_port.filter(|&np| np != 0) {
            if !node_ports.insert((proto, np)) {
                errs.push(duplicate(child(&index("spec.ports", i), "nodePort"), &np.to_string()));
            }
        }
        if !port_keys.insert((proto, p.port)) {
            errs.push(duplicate(
                index("spec.ports", i),
                &format!("core.ServicePort{{Protocol:{}, Port:{}}}", q(proto), p.port),
            ));
        }
    }

    for (i, ip) in sl(&spec.external_ips).iter().enumerate() {
        let p = index("spec.externalIPs", i);
        let msgs = is_valid_ip(ip);
        if msgs.is_empty() {
            validate_non_special_ip(&mut errs, &p, ip);
        } else {
            invalid_each(&mut errs, &p, ip, msgs);
        }
    }
    for (field, value) in [
        ("externalTrafficPolicy", &spec.external_traffic_policy),
        ("internalTrafficPolicy", &spec.internal_traffic_policy),
    ] {
        if let Some(v) = given(value) {
            if v != "Cluster" && v != "Local" {
                errs.push(not_supported(child("spec", field), &q(v), &["Cluster", "Local"]));
            }
        }
    }
    if let Some(v) = given(&spec.ip_family_policy) {
        const POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
        if !POLICIES.contains(&v) {
            errs.push(not_supported("spec.ipFamilyPolicy", &q(v), POLICIES));
        }
    }
    for (i, fam) in sl(&spec.ip_families).iter().enumerate() {
        if fam != "IPv4" && fam != "IPv6" {
            errs.push(not_supported(index("spec.ipFamilies", i), &q(fam), &["IPv4", "IPv6"]));
        }
    }
    errs
}

/// Validates a Service update: metadata immutability, the create checks, and an
/// allocated `clusterIP` (and `clusterIPs[0]`) is immutable ("field is immutable"),
/// unless the service is moving to or from ExternalName. As upstream, the caller
/// carries the allocated clusterIP over when the client left it empty.
pub fn validate_service_update(new: &core::Service, old: &core::Service) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let default = core::ServiceSpec::default();
    let ns = new.spec.as_ref().unwrap_or(&default);
    let os = old.spec.as_ref().unwrap_or(&default);
    let external = |sp: &core::ServiceSpec| given(&sp.type_) == Some("ExternalName");
    if !external(ns) && !external(os) {
        let (new_ip, old_ip) = (s(&ns.cluster_ip), s(&os.cluster_ip));
        if !old_ip.is_empty() && new_ip != old_ip {
            errs.push(invalid_str("spec.clusterIP", new_ip, FIELD_IMMUTABLE_ERROR_MSG));
        } else if let (Some(n), Some(o)) = (sl(&ns.cluster_ips).first(), sl(&os.cluster_ips).first()) {
            if n != o {
                errs.push(invalid_str("spec.clusterIPs[0]", n, "may not change once set"));
            }
        }
    }
    errs.extend(validate_service(new));
    errs
}

/// Validates Endpoints on create: name a DNS subdomain; each subset has addresses or
/// notReadyAddresses, valid non-special IPs, hostnames, node names, and ports (names
/// required when several).
pub fn validate_endpoints(ep: &core::Endpoints) -> FieldErrors {
    let mut errs = validate_object_meta(&ep.metadata, true, is_dns1123_subdomain);
    for (i, ss) in sl(&ep.subsets).iter().enumerate() {
        let p = index("subsets", i);
        let (addresses, not_ready) = (sl(&ss.addresses), sl(&ss.not_ready_addresses));
        if addresses.is_empty() && not_ready.is_empty() {
            errs.push(required(&p, "must specify `addresses` or `notReadyAddresses`"));
        }
        for (field, list) in [("addresses", addresses), ("notReadyAddresses", not_ready)] {
            for (j, a) in list.iter().enumerate() {
                let ap = index(&child(&p, field), j);
                let ip_path = child(&ap, "ip");
                invalid_each(&mut errs, &ip_path, &a.ip, is_valid_ip(&a.ip));
                if let Some(h) = given(&a.hostname) {
                    invalid_each(&mut errs, &child(&ap, "hostname"), h, is_dns1123_label(h));
                }
                if let Some(n) = &a.node_name {
                    invalid_each(&mut errs, &child(&ap, "nodeName"), n, is_dns1123_subdomain(n));
                }
                validate_non_special_ip(&mut errs, &ip_path, &a.ip);
            }
        }
        let ports = sl(&ss.ports);
        for (j, port) in ports.iter().enumerate() {
            let pp = index(&child(&p, "ports"), j);
            let name = s(&port.name);
            if ports.len() > 1 && name.is_empty() {
                errs.push(required(child(&pp, "name"), ""));
            } else if !name.is_empty() {
                invalid_each(&mut errs, &child(&pp, "name"), name, is_dns1123_label(name));
            }
            for m in is_valid_port_num(port.port) {
                errs.push(invalid_int(child(&pp, "port"), port.port.into(), &m));
            }
            if let Some(proto) = given(&port.protocol) {
                if !SUPPORTED_PORT_PROTOCOLS.contains(&proto) {
                    errs.push(not_supported(child(&pp, "protocol"), &q(proto), SUPPORTED_PORT_PROTOCOLS));
                }
            }
            if let Some(ap) = &port.app_protocol {
                invalid_each(&mut errs, &child(&pp, "appProtocol"), ap, is_qualified_name(ap));
            }
        }
    }
    errs
}

/// Validates an Endpoints update: metadata immutability plus the create checks.
pub fn validate_endpoints_update(new: &core::Endpoints, old: &core::Endpoints) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_endpoints(new));
    errs
}

// ===========================================================================
// ConfigMaps, Secrets, ServiceAccounts, Events
// ===========================================================================

/// Upstream's limit on the data of a ConfigMap or a Secret (1 MiB).
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// Validates a ConfigMap on create: name a DNS subdomain; keys of `data` and
/// `binaryData` are config keys, not present in both; total size ≤ 1 MiB.
pub fn validate_config_map(cm: &core::ConfigMap) -> FieldErrors {
    let mut errs = validate_object_meta(&cm.metadata, true, is_dns1123_subdomain);
    let mut total = 0usize;
    let binary = cm.binary_data.as_ref();
    for (k, v) in cm.data.iter().flatten() {
        invalid_each(&mut errs, &key("data", k), k, is_config_map_key(k));
        if binary.is_some_and(|b| b.contains_key(k)) {
            errs.push(invalid_str(key("data", k), k, "duplicate of key present in binaryData"));
        }
        total += v.len();
    }
    for (k, v) in binary.into_iter().flatten() {
        invalid_each(&mut errs, &key("binaryData", k), k, is_config_map_key(k));
        total += v.0.len();
    }
    if total > MAX_SECRET_SIZE {
        errs.push(too_long_bytes("", MAX_SECRET_SIZE));
    }
    errs
}

/// Validates a ConfigMap update: metadata immutability, the create checks, and once
/// `immutable: true` is set, neither it nor the data may change.
pub fn validate_config_map_update(new: &core::ConfigMap, old: &core::ConfigMap) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    if old.immutable == Some(true) {
        const MSG: &str = "field is immutable when `immutable` is set";
        if new.immutable != Some(true) {
            errs.push(forbidden("immutable", MSG));
        }
        if normalized_json(&new.data) != normalized_json(&old.data) {
            errs.push(forbidden("data", MSG));
        }
        if normalized_json(&new.binary_data) != normalized_json(&old.binary_data) {
            errs.push(forbidden("binaryData", MSG));
        }
    }
    errs.extend(validate_config_map(new));
    errs
}

/// A Secret's data as upstream sees it after conversion: `stringData` merged over `data`.
fn secret_data(secret: &core::Secret) -> BTreeMap<&str, usize> {
    let mut data: BTreeMap<&str, usize> = secret.data.iter().flatten().map(|(k, v)| (k.as_str(), v.0.len())).collect();
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.as_str(), v.len());
    }
    data
}

/// Validates a Secret on create: name a DNS subdomain; keys (of `data` and
/// `stringData`) are config keys; total size ≤ 1 MiB; the keys each well-known `type`
/// requires (`kubernetes.io/tls`, `kubernetes.io/basic-auth`, ...).
pub fn validate_secret(secret: &core::Secret) -> FieldErrors {
    let mut errs = validate_object_meta(&secret.metadata, true, is_dns1123_subdomain);
    let data = secret_data(secret);
    let mut total = 0usize;
    for (k, len) in &data {
        invalid_each(&mut errs, &key("data", k), k, is_config_map_key(k));
        total += len;
    }
    if total > MAX_SECRET_SIZE {
        errs.push(too_long_bytes("data", MAX_SECRET_SIZE));
    }
    let has = |k: &str| data.contains_key(k);
    let type_ = s(&secret.type_);
    match type_ {
        "kubernetes.io/service-account-token" => {
            let name = secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .map(String::as_str)
                .unwrap_or("");
            if name.is_empty() {
                errs.push(required("metadata.annotations[kubernetes.io/service-account.name]", ""));
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required("data[username]", ""));
            errs.push(required("data[password]", ""));
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").copied().unwrap_or(0) == 0 => {
            errs.push(required("data[ssh-privatekey]", ""));
        }
        _ => {
            let must_have: &[&str] = match type_ {
                "kubernetes.io/dockercfg" => &[".dockercfg"],
                "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
                "kubernetes.io/tls" => &["tls.crt", "tls.key"],
                _ => &[],
            };
            for k in must_have.iter().filter(|k| !has(k)) {
                errs.push(required(key("data", k), ""));
            }
        }
    }
    errs
}

/// Validates a Secret update: metadata immutability, the create checks, `type` is
/// immutable (absent = `Opaque`), and once `immutable: true` is set neither it nor the
/// data may change.
pub fn validate_secret_update(new: &core::Secret, old: &core::Secret) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let type_of = |sec: &core::Secret| given(&sec.type_).unwrap_or("Opaque").to_string();
    let new_type = type_of(new);
    if new_type != type_of(old) {
        errs.push(invalid_str("type", &new_type, FIELD_IMMUTABLE_ERROR_MSG));
    }
    if old.immutable == Some(true) {
        const MSG: &str = "field is immutable when `immutable` is set";
        if new.immutable != Some(true) {
            errs.push(forbidden("immutable", MSG));
        }
        let merged = |sec: &core::Secret| {
            let mut m: BTreeMap<String, Vec<u8>> =
                sec.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
            for (k, v) in sec.string_data.iter().flatten() {
                m.insert(k.clone(), v.clone().into_bytes());
            }
            m
        };
        if merged(new) != merged(old) {
            errs.push(forbidden("data", MSG));
        }
    }
    errs.extend(validate_secret(new));
    errs
}

/// Validates a ServiceAccount on create: name a DNS subdomain, namespaced.
pub fn validate_service_account(sa: &core::ServiceAccount) -> FieldErrors {
    validate_object_meta(&sa.metadata, true, is_dns1123_subdomain)
}

/// Validates a ServiceAccount update: metadata immutability plus the create checks.
pub fn validate_service_account_update(new: &core::ServiceAccount, old: &core::ServiceAccount) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_service_account(new));
    errs
}

/// Validates a core/v1 Event on create: metadata (name a DNS subdomain, namespaced);
/// `involvedObject.namespace` must match the event's namespace (empty allowed for
/// events in `default`); events with `eventTime` need the reporting fields, as upstream.
pub fn validate_event(ev: &core::Event) -> FieldErrors {
    let mut errs = validate_object_meta(&ev.metadata, true, is_dns1123_subdomain);
    let ns = s(&ev.metadata.namespace);
    let involved_ns = s(&ev.involved_object.namespace);
    const MISMATCH: &str = "does not match event.namespace";
    if ev.event_time.is_none() {
        if involved_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                errs.push(invalid_str("involvedObject.namespace", involved_ns, MISMATCH));
            }
        } else if ns != involved_ns {
            errs.push(invalid_str("involvedObject.namespace", involved_ns, MISMATCH));
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(invalid_str("involvedObject.namespace", involved_ns, MISMATCH));
        }
        let component = s(&ev.reporting_component);
        if component.is_empty() {
            errs.push(required("reportingComponent", ""));
        }
        invalid_each(&mut errs, "reportingComponent", component, is_qualified_name(component));
        for (field, value, limit) in [
            ("reportingInstance", s(&ev.reporting_instance), 128),
            ("action", s(&ev.action), 128),
            ("reason", s(&ev.reason), 128),
        ] {
            if value.is_empty() {
                errs.push(required(field, ""));
            }
            if value.len() > limit {
                errs.push(invalid_str(field, "", &format!("can have at most {limit} characters")));
            }
        }
        if s(&ev.message).len() > 1024 {
            errs.push(invalid_str("message", "", "can have at most 1024 characters"));
        }
    }
    errs
}

/// Validates an Event update: metadata immutability plus the create checks.
pub fn validate_event_update(new: &core::Event, old: &core::Event) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_event(new));
    errs
}

// ===========================================================================
// Workloads (k8s.io/kubernetes/pkg/apis/apps/validation, batch/validation)
// ===========================================================================

const SELECTOR_MISMATCH_MSG: &str = "`selector` does not match template `labels`";

fn template_labels(t: &core::PodTemplateSpec) -> Option<&StrMap> {
    t.metadata.as_ref().and_then(|m| m.labels.as_ref())
}

fn template_restart_policy(t: &core::PodTemplateSpec) -> Option<&str> {
    t.spec.as_ref().and_then(|sp| given(&sp.restart_policy))
}

/// Upstream's `ValidatePodTemplateSpecForReplicaSet` (Deployments and ReplicaSets).
fn validate_template_for_replica_set(
    errs: &mut FieldErrors,
    template: &core::PodTemplateSpec,
    selector: &LabelSelector,
    path: &str,
    kind: &str,
) {
    if !selector_is_empty(selector) && !selector_matches(selector, template_labels(template)) {
        errs.push(invalid(
            child(&child(path, "metadata"), "labels"),
            &go_map(template_labels(template)),
            SELECTOR_MISMATCH_MSG,
        ));
    }
    errs.extend(validate_pod_template_spec(template, path));
    let sp = child(path, "spec");
    if let Some(rp) = template_restart_policy(template).filter(|&rp| rp != "Always") {
        errs.push(not_supported(child(&sp, "restartPolicy"), &q(rp), &["Always"]));
    }
    if template.spec.as_ref().is_some_and(|s| s.active_deadline_seconds.is_some()) {
        errs.push(forbidden(
            child(&sp, "activeDeadlineSeconds"),
            &format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

/// Selector checks shared by Deployments and ReplicaSets; returns whether the template
/// should be validated (upstream skips it when the selector does not convert).
fn validate_workload_selector(errs: &mut FieldErrors, selector: &LabelSelector) -> bool {
    validate_label_selector(errs, "spec.selector", selector);
    if selector_is_empty(selector) {
        errs.push(invalid("spec.selector", &json(selector), "empty selector is invalid for deployment"));
    }
    if selector_convertible(selector) {
        true
    } else {
        errs.push(invalid("spec.selector", &json(selector), "invalid label selector"));
        false
    }
}

fn int_or_percent_value(v: &IntOrString) -> (i64, bool) {
    match v {
        IntOrString::Int(i) => (i64::from(*i), false),
        IntOrString::String(st) => match st.strip_suffix('%').and_then(|d| d.parse::<i64>().ok()) {
            Some(p) => (p, true),
            None => (0, true),
        },
    }
}

/// Upstream's `ValidatePositiveIntOrPercent` plus `IsNotMoreThan100Percent` (when asked).
fn validate_int_or_percent(errs: &mut FieldErrors, v: &IntOrString, path: &str, max_100: bool) {
    match v {
        IntOrString::String(st) => {
            for m in is_valid_percent(st) {
                errs.push(invalid(path, &int_or_string_repr(v), &m));
            }
        }
        IntOrString::Int(i) => validate_nonnegative(errs, path, Some(i64::from(*i))),
    }
    let (value, percent) = int_or_percent_value(v);
    if max_100 && percent && value > 100 {
        errs.push(invalid(path, &int_or_string_repr(v), "must not be greater than 100%"));
    }
}

/// Validates a Deployment on create: name a DNS subdomain; replicas ≥ 0; selector
/// valid, non-empty and matching the template labels; the template a valid pod template
/// (at `spec.template`) with restartPolicy Always; strategy `Recreate` or
/// `RollingUpdate` with maxSurge/maxUnavailable valid and not both 0; the other counts
/// non-negative and progressDeadlineSeconds > minReadySeconds.
pub fn validate_deployment(d: &apps::Deployment) -> FieldErrors {
    let mut errs = validate_object_meta(&d.metadata, true, is_dns1123_subdomain);
    let default = apps::DeploymentSpec::default();
    let spec = d.spec.as_ref().unwrap_or(&default);
    validate_nonnegative(&mut errs, "spec.replicas", spec.replicas.map(i64::from));
    if validate_workload_selector(&mut errs, &spec.selector) {
        validate_template_for_replica_set(&mut errs, &spec.template, &spec.selector, "spec.template", "ReplicaSet");
    }
    if let Some(strategy) = &spec.strategy {
        let p = "spec.strategy";
        match given(&strategy.type_).unwrap_or("RollingUpdate") {
            "Recreate" => {
                if strategy.rolling_update.is_some() {
                    errs.push(forbidden(
                        child(p, "rollingUpdate"),
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            "RollingUpdate" => {
                if let Some(ru) = &strategy.rolling_update {
                    let rp = child(p, "rollingUpdate");
                    let default_pct = IntOrString::String("25%".to_string());
                    let max_unavailable = ru.max_unavailable.as_ref().unwrap_or(&default_pct);
                    let max_surge = ru.max_surge.as_ref().unwrap_or(&default_pct);
                    validate_int_or_percent(&mut errs, max_unavailable, &child(&rp, "maxUnavailable"), false);
                    validate_int_or_percent(&mut errs, max_surge, &child(&rp, "maxSurge"), false);
                    if int_or_percent_value(max_unavailable).0 == 0 && int_or_percent_value(max_surge).0 == 0 {
                        errs.push(invalid(
                            child(&rp, "maxUnavailable"),
                            &int_or_string_repr(max_unavailable),
                            "may not be 0 when `maxSurge` is 0",
                        ));
                    }
                    let (v, pct) = int_or_percent_value(max_unavailable);
                    if pct && v > 100 {
                        errs.push(invalid(
                            child(&rp, "maxUnavailable"),
                            &int_or_string_repr(max_unavailable),
                            "must not be greater than 100%",
                        ));
                    }
                }
            }
            other => errs.push(not_supported(p, &q(other), &["Recreate", "RollingUpdate"])),
        }
    }
    validate_nonnegative(&mut errs, "spec.minReadySeconds", spec.min_ready_seconds.map(i64::from));
    validate_nonnegative(&mut errs, "spec.revisionHistoryLimit", spec.revision_history_limit.map(i64::from));
    if let Some(pds) = spec.progress_deadline_seconds {
        validate_nonnegative(&mut errs, "spec.progressDeadlineSeconds", Some(pds.into()));
        if pds <= spec.min_ready_seconds.unwrap_or(0) {
            errs.push(invalid_int("spec.progressDeadlineSeconds", pds.into(), "must be greater than minReadySeconds"));
        }
    }
    errs
}

fn validate_selector_immutable(errs: &mut FieldErrors, new: &LabelSelector, old: &LabelSelector) {
    if !selectors_equal(new, old) {
        errs.push(invalid("spec.selector", &json(new), FIELD_IMMUTABLE_ERROR_MSG));
    }
}

/// Validates a Deployment update: metadata immutability, the create checks, and
/// `spec.selector` is immutable (apps/v1).
pub fn validate_deployment_update(new: &apps::Deployment, old: &apps::Deployment) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_deployment(new));
    if let (Some(n), Some(o)) = (&new.spec, &old.spec) {
        validate_selector_immutable(&mut errs, &n.selector, &o.selector);
    }
    errs
}

/// Validates a ReplicaSet on create: as a Deployment's spec, without the strategy.
pub fn validate_replica_set(rs: &apps::ReplicaSet) -> FieldErrors {
    let mut errs = validate_object_meta(&rs.metadata, true, is_dns1123_subdomain);
    let default = apps::ReplicaSetSpec::default();
    let spec = rs.spec.as_ref().unwrap_or(&default);
    validate_nonnegative(&mut errs, "spec.replicas", spec.replicas.map(i64::from));
    validate_nonnegative(&mut errs, "spec.minReadySeconds", spec.min_ready_seconds.map(i64::from));
    if validate_workload_selector(&mut errs, &spec.selector) {
        let default_template = core::PodTemplateSpec::default();
        let template = spec.template.as_ref().unwrap_or(&default_template);
        validate_template_for_replica_set(&mut errs, template, &spec.selector, "spec.template", "ReplicaSet");
    }
    errs
}

/// Validates a ReplicaSet update: metadata immutability, the create checks, and
/// `spec.selector` is immutable (apps/v1).
pub fn validate_replica_set_update(new: &apps::ReplicaSet, old: &apps::ReplicaSet) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_replica_set(new));
    if let (Some(n), Some(o)) = (&new.spec, &old.spec) {
        validate_selector_immutable(&mut errs, &n.selector, &o.selector);
    }
    errs
}

/// Validates a DaemonSet on create: name a DNS subdomain; selector valid, non-empty,
/// matching the template labels; the template valid with restartPolicy Always and no
/// activeDeadlineSeconds; updateStrategy `RollingUpdate` (exactly one of maxSurge /
/// maxUnavailable non-zero) or `OnDelete`.
pub fn validate_daemon_set(ds: &apps::DaemonSet) -> FieldErrors {
    let mut errs = validate_object_meta(&ds.metadata, true, is_dns1123_subdomain);
    let default = apps::DaemonSetSpec::default();
    let spec = ds.spec.as_ref().unwrap_or(&default);
    let selector = &spec.selector;
    validate_label_selector(&mut errs, "spec.selector", selector);
    if selector_convertible(selector) && !selector_matches(selector, template_labels(&spec.template)) {
        errs.push(invalid(
            "spec.template.metadata.labels",
            &go_map(template_labels(&spec.template)),
            SELECTOR_MISMATCH_MSG,
        ));
    }
    if selector_is_empty(selector) {
        errs.push(invalid("spec.selector", &json(selector), "empty selector is invalid for daemonset"));
    }
    errs.extend(validate_pod_template_spec(&spec.template, "spec.template"));
    if let Some(rp) = template_restart_policy(&spec.template).filter(|&rp| rp != "Always") {
        errs.push(not_supported("spec.template.spec.restartPolicy", &q(rp), &["Always"]));
    }
    if let Some(ads) = spec.template.spec.as_ref().and_then(|s| s.active_deadline_seconds) {
        errs.push(invalid_int(
            "spec.template.spec.activeDeadlineSeconds",
            ads,
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
    validate_nonnegative(&mut errs, "spec.minReadySeconds", spec.min_ready_seconds.map(i64::from));
    validate_nonnegative(&mut errs, "spec.revisionHistoryLimit", spec.revision_history_limit.map(i64::from));
    if let Some(us) = &spec.update_strategy {
        let p = "spec.updateStrategy";
        match given(&us.type_).unwrap_or("RollingUpdate") {
            "OnDelete" => {}
            "RollingUpdate" => {
                if let Some(ru) = &us.rolling_update {
                    let rp = child(p, "rollingUpdate");
                    let max_unavailable = ru.max_unavailable.clone().unwrap_or(IntOrString::Int(1));
                    let max_surge = ru.max_surge.clone().unwrap_or(IntOrString::Int(0));
                    validate_int_or_percent(&mut errs, &max_unavailable, &child(&rp, "maxUnavailable"), true);
                    validate_int_or_percent(&mut errs, &max_surge, &child(&rp, "maxSurge"), true);
                    let has_unavailable = int_or_percent_value(&max_unavailable).0 != 0;
                    let has_surge = int_or_percent_value(&max_surge).0 != 0;
                    if has_unavailable && has_surge {
                        errs.push(invalid(
                            child(&rp, "maxSurge"),
                            &int_or_string_repr(&max_surge),
                            "may not be set when maxUnavailable is non-zero",
                        ));
                    } else if !has_unavailable && !has_surge {
                        errs.push(required(child(&rp, "maxUnavailable"), "cannot be 0 when maxSurge is 0"));
                    }
                }
            }
            other => errs.push(not_supported(p, &q(other), &["RollingUpdate", "OnDelete"])),
        }
    }
    errs
}

/// Validates a DaemonSet update: metadata immutability, the create checks, and
/// `spec.selector` is immutable (apps/v1).
pub fn validate_daemon_set_update(new: &apps::DaemonSet, old: &apps::DaemonSet) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_daemon_set(new));
    if let (Some(n), Some(o)) = (&new.spec, &old.spec) {
        validate_selector_immutable(&mut errs, &n.selector, &o.selector);
    }
    errs
}

/// Validates a Job on create: name a DNS subdomain; parallelism, completions,
/// activeDeadlineSeconds, backoffLimit, ttlSecondsAfterFinished ≥ 0; completionMode;
/// the selector (when given; upstream's strategy generates it otherwise, and
/// `manualSelector: true` requires it) valid and matching the template labels; the
/// template valid with restartPolicy `OnFailure` or `Never`.
pub fn validate_job(job: &batch::Job) -> FieldErrors {
    let mut errs = validate_object_meta(&job.metadata, true, is_dns1123_subdomain);
    let default = batch::JobSpec::default();
    let spec = job.spec.as_ref().unwrap_or(&default);
    for (field, v) in [
        ("parallelism", spec.parallelism.map(i64::from)),
        ("completions", spec.completions.map(i64::from)),
        ("activeDeadlineSeconds", spec.active_deadline_seconds),
        ("backoffLimit", spec.backoff_limit.map(i64::from)),
        ("ttlSecondsAfterFinished", spec.ttl_seconds_after_finished.map(i64::from)),
    ] {
        validate_nonnegative(&mut errs, &child("spec", field), v);
    }
    let indexed = given(&spec.completion_mode) == Some("Indexed");
    if let Some(mode) = given(&spec.completion_mode) {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(not_supported("spec.completionMode", &q(mode), &["NonIndexed", "Indexed"]));
        }
        if indexed && spec.completions.is_none() {
            errs.push(required("spec.completions", "when completion mode is Indexed"));
        }
    }
    if indexed {
        if let Some(c) = spec.completions.filter(|&c| c > 0) {
            let hostname = format!("{}-{}", s(&job.metadata.name), c - 1);
            if !is_dns1123_label(&hostname).is_empty() {
                errs.push(invalid_str(
                    "metadata.name",
                    s(&job.metadata.name),
                    &format!("will not able to create pod with invalid DNS label: {hostname}"),
                ));
            }
        }
    }

    match &spec.selector {
        None if spec.manual_selector == Some(true) => errs.push(required("spec.selector", "")),
        None => {}
        Some(sel) => {
            validate_label_selector(&mut errs, "spec.selector", sel);
            if selector_convertible(sel) && !selector_matches(sel, template_labels(&spec.template)) {
                errs.push(invalid(
                    "spec.template.metadata.labels",
                    &go_map(template_labels(&spec.template)),
                    SELECTOR_MISMATCH_MSG,
                ));
            }
        }
    }

    errs.extend(validate_pod_template_spec(&spec.template, "spec.template"));
    match template_restart_policy(&spec.template) {
        None | Some("Always") => {
            errs.push(required("spec.template.spec.restartPolicy", "valid values: \"OnFailure\", \"Never\""))
        }
        Some("OnFailure") if spec.pod_failure_policy.is_some() => errs.push(invalid_str(
            "spec.template.spec.restartPolicy",
            "OnFailure",
            "only \"Never\" is supported when podFailurePolicy is specified",
        )),
        Some("OnFailure") | Some("Never") => {}
        Some(other) => errs.push(not_supported("spec.template.spec.restartPolicy", &q(other), &["OnFailure", "Never"])),
    }
    errs
}

/// Validates a Job update: metadata immutability, the create checks, and `spec.selector`,
/// `spec.template`, `spec.completions`, `spec.completionMode`, `spec.podFailurePolicy`,
/// `spec.backoffLimitPerIndex`, `spec.managedBy` and `spec.successPolicy` are immutable
/// (a suspended Job that never started may still change its template's scheduling
/// directives: nodeSelector, affinity, tolerations, schedulingGates, labels, annotations).
pub fn validate_job_update(new: &batch::Job, old: &batch::Job) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_job(new));
    let default = batch::JobSpec::default();
    let ns = new.spec.as_ref().unwrap_or(&default);
    let os = old.spec.as_ref().unwrap_or(&default);

    if normalized_json(&ns.selector) != normalized_json(&os.selector) {
        errs.push(invalid("spec.selector", &json(&ns.selector), FIELD_IMMUTABLE_ERROR_MSG));
    }
    if ns.completions != os.completions {
        errs.push(invalid("spec.completions", &json(&ns.completions), FIELD_IMMUTABLE_ERROR_MSG));
    }

    // The template, with the scheduling directives of a never-started suspended Job let through.
    let never_started = old.status.as_ref().is_none_or(|st| st.start_time.is_none());
    let mut old_template = os.template.clone();
    if os.suspend == Some(true) && never_started {
        let new_t = &ns.template;
        let meta = old_template.metadata.get_or_insert_with(Default::default);
        meta.labels = new_t.metadata.as_ref().and_then(|m| m.labels.clone());
        meta.annotations = new_t.metadata.as_ref().and_then(|m| m.annotations.clone());
        if let (Some(o), Some(n)) = (old_template.spec.as_mut(), new_t.spec.as_ref()) {
            o.node_selector.clone_from(&n.node_selector);
            o.affinity.clone_from(&n.affinity);
            o.tolerations.clone_from(&n.tolerations);
            o.scheduling_gates.clone_from(&n.scheduling_gates);
        }
    }
    if normalized_json(&ns.template) != normalized_json(&old_template) {
        errs.push(invalid("spec.template", &json(&ns.template), FIELD_IMMUTABLE_ERROR_MSG));
    }

    for (field, n, o) in [
        ("completionMode", json(&ns.completion_mode), json(&os.completion_mode)),
        (
            "podFailurePolicy",
            json(&normalized_json(&ns.pod_failure_policy)),
            json(&normalized_json(&os.pod_failure_policy)),
        ),
        ("backoffLimitPerIndex", json(&ns.backoff_limit_per_index), json(&os.backoff_limit_per_index)),
        ("managedBy", json(&ns.managed_by), json(&os.managed_by)),
        ("successPolicy", json(&normalized_json(&ns.success_policy)), json(&normalized_json(&os.success_policy))),
    ] {
        if n != o {
            errs.push(invalid(child("spec", field), &n, FIELD_IMMUTABLE_ERROR_MSG));
        }
    }
    errs
}

// ===========================================================================
// Leases (coordination.k8s.io) and EndpointSlices (discovery.k8s.io)
// ===========================================================================

/// Validates a Lease on create: name a DNS subdomain; leaseDurationSeconds > 0;
/// leaseTransitions ≥ 0; preferredHolder only with a strategy.
pub fn validate_lease(lease: &coordination::Lease) -> FieldErrors {
    let mut errs = validate_object_meta(&lease.metadata, true, is_dns1123_subdomain);
    if let Some(spec) = &lease.spec {
        if let Some(d) = spec.lease_duration_seconds.filter(|&d| d <= 0) {
            errs.push(invalid_int("spec.leaseDurationSeconds", d.into(), "must be greater than 0"));
        }
        if let Some(t) = spec.lease_transitions.filter(|&t| t < 0) {
            errs.push(invalid_int("spec.leaseTransitions", t.into(), IS_NEGATIVE_ERROR_MSG));
        }
        if let Some(strategy) = &spec.strategy {
            invalid_each(&mut errs, "spec.strategy", strategy, is_qualified_name(strategy));
        }
        if given(&spec.preferred_holder).is_some() && given(&spec.strategy).is_none() {
            errs.push(forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined"));
        }
    }
    errs
}

/// Validates a Lease update: metadata immutability plus the create checks.
pub fn validate_lease_update(new: &coordination::Lease, old: &coordination::Lease) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_lease(new));
    errs
}

const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
const MAX_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;
const MAX_SLICE_PORTS: usize = 20000;
const MAX_TOPOLOGY_LABELS: usize = 16;

/// Upstream's `IsFullyQualifiedDomainName` (FQDN EndpointSlice addresses).
fn validate_fqdn(errs: &mut FieldErrors, path: &str, name: &str) {
    if name.is_empty() {
        errs.push(required(path, ""));
        return;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let msgs = is_dns1123_subdomain(name);
    if !msgs.is_empty() {
        errs.push(invalid_str(path, name, &msgs.join(",")));
        return;
    }
    if name.split('.').count() < 2 {
        errs.push(invalid_str(path, name, "should be a domain with at least two segments separated by dots"));
        return;
    }
    for label in name.split('.') {
        let msgs = is_dns1123_label(label);
        if !msgs.is_empty() {
            errs.push(invalid_str(path, label, &msgs.join(",")));
            return;
        }
    }
}

/// Validates an EndpointSlice on create: name a DNS subdomain; addressType `IPv4`,
/// `IPv6` or `FQDN`; at most 1000 endpoints, each with 1 to 100 addresses valid for the
/// type (IPs not loopback, link-local or unspecified), node name, hostname, topology;
/// ports with unique DNS-label names, protocols and app protocols.
pub fn validate_endpoint_slice(slice: &discovery::EndpointSlice) -> FieldErrors {
    let mut errs = validate_object_meta(&slice.metadata, true, is_dns1123_subdomain);
    let address_type = slice.address_type.as_str();
    if address_type.is_empty() {
        errs.push(required("addressType", ""));
    } else if !ADDRESS_TYPES.contains(&address_type) {
        errs.push(not_supported("addressType", &q(address_type), ADDRESS_TYPES));
    }

    if slice.endpoints.len() > MAX_ENDPOINTS {
        errs.push(too_many("endpoints", slice.endpoints.len(), MAX_ENDPOINTS));
    } else {
        for (i, ep) in slice.endpoints.iter().enumerate() {
            let p = index("endpoints", i);
            let ap = child(&p, "addresses");
            if ep.addresses.is_empty() {
                errs.push(required(&ap, "must contain at least 1 address"));
            } else if ep.addresses.len() > MAX_ADDRESSES {
                errs.push(too_many(&ap, ep.addresses.len(), MAX_ADDRESSES));
            }
            for (j, addr) in ep.addresses.iter().enumerate() {
                let a = index(&ap, j);
                let ip = parse_ip_sloppy(addr).map(unmap);
                match address_type {
                    "IPv4" if !ip.is_some_and(|ip| ip.is_ipv4()) => {
                        errs.push(invalid_str(&a, addr, "must be a valid IPv4 address"))
                    }
                    "IPv6" if !ip.is_some_and(|ip| ip.is_ipv6()) => {
                        errs.push(invalid_str(&a, addr, "must be a valid IPv6 address"))
                    }
                    "IPv4" | "IPv6" => validate_non_special_ip(&mut errs, &a, addr),
                    "FQDN" => validate_fqdn(&mut errs, &a, addr),
                    _ => {}
                }
            }
            if let Some(n) = &ep.node_name {
                invalid_each(&mut errs, &child(&p, "nodeName"), n, is_dns1123_subdomain(n));
            }
            let tp = child(&p, "deprecatedTopology");
            let topology = ep.deprecated_topology.as_ref();
            if topology.is_some_and(|t| t.len() > MAX_TOPOLOGY_LABELS) {
                errs.push(too_many(&tp, topology.map_or(0, |t| t.len()), MAX_TOPOLOGY_LABELS));
            }
            validate_labels(&mut errs, &tp, topology);
            if let Some(h) = &ep.hostname {
                invalid_each(&mut errs, &child(&p, "hostname"), h, is_dns1123_label(h));
            }
        }
    }

    let ports = sl(&slice.ports);
    if ports.len() > MAX_SLICE_PORTS {
        errs.push(too_many("ports", ports.len(), MAX_SLICE_PORTS));
        return errs;
    }
    let mut names: HashSet<&str> = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = index("ports", i);
        let name = s(&port.name);
        if !name.is_empty() {
            invalid_each(&mut errs, &child(&p, "name"), name, is_dns1123_label(name));
        }
        if !names.insert(name) {
            errs.push(duplicate(child(&p, "name"), &q(name)));
        }
        if let Some(proto) = given(&port.protocol) {
            if !SUPPORTED_PORT_PROTOCOLS.contains(&proto) {
                errs.push(not_supported(child(&p, "protocol"), &q(proto), SUPPORTED_PORT_PROTOCOLS));
            }
        }
        if let Some(ap) = &port.app_protocol {
            invalid_each(&mut errs, &child(&p, "appProtocol"), ap, is_qualified_name(ap));
        }
    }
    errs
}

/// Validates an EndpointSlice update: metadata immutability, the create checks, and
/// `addressType` is immutable.
pub fn validate_endpoint_slice_update(new: &discovery::EndpointSlice, old: &discovery::EndpointSlice) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_endpoint_slice(new));
    if new.address_type != old.address_type {
        errs.push(invalid_str("addressType", &new.address_type, FIELD_IMMUTABLE_ERROR_MSG));
    }
    errs
}

// ===========================================================================
// RBAC (rbac.authorization.k8s.io: pkg/apis/rbac/validation)
// ===========================================================================

/// The API group of Roles, ClusterRoles and their bindings (`rbac.GroupName`).
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Upstream's `path.IsValidPathSegmentName`: a name that can be one segment of a URL path
/// (not `.` or `..`, no `/` or `%`). Names of Roles, ClusterRoles and their bindings (and
/// `roleRef.name`) are checked with it (upstream's `ValidateRBACName`).
pub fn is_valid_path_segment_name(name: &str) -> Vec<String> {
    for illegal in [".", ".."] {
        if name == illegal {
            return vec![format!("may not be '{illegal}'")];
        }
    }
    ["/", "%"].iter().filter(|c| name.contains(**c)).map(|c| format!("may not contain '{c}'")).collect()
}

/// Upstream's `ValidatePolicyRule`: at least one verb; a rule with `nonResourceURLs` is
/// only valid in a ClusterRole (`namespaced` = false) and then names no API groups,
/// resources or resource names; any other rule needs API groups and resources.
fn validate_policy_rule(errs: &mut FieldErrors, rule: &rbac::PolicyRule, namespaced: bool, path: &str) {
    if rule.verbs.is_empty() {
        errs.push(required(child(path, "verbs"), "verbs must contain at least one value"));
    }
    let urls = sl(&rule.non_resource_urls);
    if !urls.is_empty() {
        let p = child(path, "nonResourceURLs");
        if namespaced {
            errs.push(invalid(&p, &go_strings(urls), "namespaced rules cannot apply to non-resource URLs"));
        }
        if !sl(&rule.api_groups).is_empty() || !sl(&rule.resources).is_empty() || !sl(&rule.resource_names).is_empty() {
            errs.push(invalid(
                &p,
                &go_strings(urls),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if sl(&rule.api_groups).is_empty() {
        errs.push(required(child(path, "apiGroups"), "resource rules must supply at least one api group"));
    }
    if sl(&rule.resources).is_empty() {
        errs.push(required(child(path, "resources"), "resource rules must supply at least one resource"));
    }
}

fn validate_policy_rules(errs: &mut FieldErrors, rules: &[rbac::PolicyRule], namespaced: bool) {
    for (i, rule) in rules.iter().enumerate() {
        validate_policy_rule(errs, rule, namespaced, &index("rules", i));
    }
}

/// Upstream's `ValidateRoleBindingSubject`: `kind` is `ServiceAccount` (name a DNS
/// subdomain, no `apiGroup`, and, in a ClusterRoleBinding, a `namespace`), `User` or
/// `Group` (`apiGroup` `rbac.authorization.k8s.io`); every subject has a name.
fn validate_subject(errs: &mut FieldErrors, subject: &rbac::Subject, namespaced: bool, path: &str) {
    let name = subject.name.as_str();
    if name.is_empty() {
        errs.push(required(child(path, "name"), ""));
    }
    let api_group = s(&subject.api_group);
    match subject.kind.as_str() {
        "ServiceAccount" => {
            if !name.is_empty() {
                invalid_each(errs, &child(path, "name"), name, is_dns1123_subdomain(name));
            }
            if !api_group.is_empty() {
                errs.push(not_supported(child(path, "apiGroup"), &q(api_group), &[""]));
            }
            if !namespaced && s(&subject.namespace).is_empty() {
                errs.push(required(child(path, "namespace"), ""));
            }
        }
        "User" | "Group" => {
            if api_group != RBAC_GROUP {
                errs.push(not_supported(child(path, "apiGroup"), &q(api_group), &[RBAC_GROUP]));
            }
        }
        kind => errs.push(not_supported(child(path, "kind"), &q(kind), &["ServiceAccount", "User", "Group"])),
    }
}

/// `roleRef` and `subjects` of a RoleBinding (`namespaced`) or ClusterRoleBinding.
fn validate_binding(errs: &mut FieldErrors, role_ref: &rbac::RoleRef, subjects: &[rbac::Subject], namespaced: bool) {
    if role_ref.api_group != RBAC_GROUP {
        errs.push(not_supported("roleRef.apiGroup", &q(&role_ref.api_group), &[RBAC_GROUP]));
    }
    let kinds: &[&str] = if namespaced { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
    if !kinds.contains(&role_ref.kind.as_str()) {
        errs.push(not_supported("roleRef.kind", &q(&role_ref.kind), kinds));
    }
    if role_ref.name.is_empty() {
        errs.push(required("roleRef.name", ""));
    } else {
        invalid_each(errs, "roleRef.name", &role_ref.name, is_valid_path_segment_name(&role_ref.name));
    }
    for (i, subject) in subjects.iter().enumerate() {
        validate_subject(errs, subject, namespaced, &index("subjects", i));
    }
}

/// Upstream's "cannot change roleRef": a binding's `roleRef` is immutable. The bad value
/// reads as Go's `%#v` of the struct, as upstream prints it.
fn validate_role_ref_unchanged(errs: &mut FieldErrors, new: &rbac::RoleRef, old: &rbac::RoleRef) {
    if new != old {
        let bad =
            format!("rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}", q(&new.api_group), q(&new.kind), q(&new.name));
        errs.push(invalid("roleRef", &bad, "cannot change roleRef"));
    }
}

/// Validates a Role on create: name a path segment, namespaced; every rule with a verb and
/// with API groups and resources (non-resource URLs are for ClusterRoles only).
pub fn validate_role(role: &rbac::Role) -> FieldErrors {
    let mut errs = validate_object_meta(&role.metadata, true, is_valid_path_segment_name);
    validate_policy_rules(&mut errs, sl(&role.rules), true);
    errs
}

/// Validates a Role update: metadata immutability plus the create checks.
pub fn validate_role_update(new: &rbac::Role, old: &rbac::Role) -> FieldErrors {
    let mut errs = validate_role(new);
    errs.extend(validate_object_meta_update(&new.metadata, &old.metadata));
    errs
}

/// Validates a ClusterRole on create: name a path segment, cluster-scoped; the rules as a
/// Role's, except that non-resource URL rules are allowed; an `aggregationRule` has at
/// least one valid `clusterRoleSelectors` entry.
pub fn validate_cluster_role(role: &rbac::ClusterRole) -> FieldErrors {
    let mut errs = validate_object_meta(&role.metadata, false, is_valid_path_segment_name);
    validate_policy_rules(&mut errs, sl(&role.rules), false);
    if let Some(agg) = &role.aggregation_rule {
        let path = "aggregationRule.clusterRoleSelectors";
        let selectors = sl(&agg.cluster_role_selectors);
        if selectors.is_empty() {
            errs.push(required(path, "at least one clusterRoleSelector required if aggregationRule is non-nil"));
        }
        for (i, sel) in selectors.iter().enumerate() {
            let p = index(path, i);
            validate_label_selector(&mut errs, &p, sel);
            if !selector_convertible(sel) {
                // Upstream prints the nil selector LabelSelectorAsSelector returned.
                errs.push(invalid(&p, &q("null"), "invalid label selector."));
            }
        }
    }
    errs
}

/// Validates a ClusterRole update: metadata immutability plus the create checks.
pub fn validate_cluster_role_update(new: &rbac::ClusterRole, old: &rbac::ClusterRole) -> FieldErrors {
    let mut errs = validate_cluster_role(new);
    errs.extend(validate_object_meta_update(&new.metadata, &old.metadata));
    errs
}

/// Validates a RoleBinding on create: name a path segment, namespaced; `roleRef` names a
/// Role or ClusterRole of `rbac.authorization.k8s.io`; valid subjects (a ServiceAccount
/// subject may leave its namespace empty: the binding's namespace).
pub fn validate_role_binding(rb: &rbac::RoleBinding) -> FieldErrors {
    let mut errs = validate_object_meta(&rb.metadata, true, is_valid_path_segment_name);
    validate_binding(&mut errs, &rb.role_ref, sl(&rb.subjects), true);
    errs
}

/// Validates a RoleBinding update: the create checks, metadata immutability, and
/// `roleRef` is immutable ("cannot change roleRef").
pub fn validate_role_binding_update(new: &rbac::RoleBinding, old: &rbac::RoleBinding) -> FieldErrors {
    let mut errs = validate_role_binding(new);
    errs.extend(validate_object_meta_update(&new.metadata, &old.metadata));
    validate_role_ref_unchanged(&mut errs, &new.role_ref, &old.role_ref);
    errs
}

/// Validates a ClusterRoleBinding on create: name a path segment, cluster-scoped;
/// `roleRef` names a ClusterRole; valid subjects (ServiceAccount subjects need a namespace).
pub fn validate_cluster_role_binding(crb: &rbac::ClusterRoleBinding) -> FieldErrors {
    let mut errs = validate_object_meta(&crb.metadata, false, is_valid_path_segment_name);
    validate_binding(&mut errs, &crb.role_ref, sl(&crb.subjects), false);
    errs
}

/// Validates a ClusterRoleBinding update: the create checks, metadata immutability, and
/// `roleRef` is immutable ("cannot change roleRef").
pub fn validate_cluster_role_binding_update(
    new: &rbac::ClusterRoleBinding,
    old: &rbac::ClusterRoleBinding,
) -> FieldErrors {
    let mut errs = validate_cluster_role_binding(new);
    errs.extend(validate_object_meta_update(&new.metadata, &old.metadata));
    validate_role_ref_unchanged(&mut errs, &new.role_ref, &old.role_ref);
    errs
}

const PREEMPTION_POLICIES: &[&str] = &["Never", "PreemptLowerPriority"];

fn validate_preemption_policy(errs: &mut FieldErrors, path: &str, policy: Option<&str>) {
    if let Some(pp) = policy.filter(|p| !p.is_empty()) {
        if !PREEMPTION_POLICIES.contains(&pp) {
            errs.push(not_supported(path, &q(pp), PREEMPTION_POLICIES));
        }
    }
}

/// Upstream's `HighestUserDefinablePriority`: classes users create stay at or below it, so
/// the built-in `system-*` classes always win.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i32 = 1_000_000_000;

/// The built-in PriorityClasses (name, value), as upstream's `SystemPriorityClasses`.
pub const SYSTEM_PRIORITY_CLASSES: &[(&str, i32)] =
    &[("system-node-critical", 2_000_001_000), ("system-cluster-critical", 2_000_000_000)];

/// Validates a PriorityClass on create: a DNS subdomain name, cluster-scoped; `system-`
/// names are reserved for the built-in classes (with their values, not global default);
/// other classes may not exceed [`HIGHEST_USER_DEFINABLE_PRIORITY`].
pub fn validate_priority_class(pc: &scheduling::PriorityClass) -> FieldErrors {
    let mut errs = validate_object_meta(&pc.metadata, false, is_dns1123_subdomain);
    let name = pc.metadata.name.as_deref().unwrap_or_default();
    if name.starts_with("system-") {
        let known = SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == name);
        let why = match known {
            None => Some(format!("{name} is not a known system priority class")),
            Some((_, v)) if *v != pc.value => Some(format!("value of {name} PriorityClass must be {v}")),
            Some(_) if pc.global_default == Some(true) => {
                Some(format!("globalDefault of {name} PriorityClass must be false"))
            }
            Some(_) => None,
        };
        if let Some(why) = why {
            errs.push(forbidden(
                "metadata.name",
                &format!("priority class names with 'system-' prefix are reserved for system use only. error: {why}"),
            ));
        }
    } else if pc.value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errs.push(forbidden(
            "value",
            &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"),
        ));
    }
    validate_preemption_policy(&mut errs, "preemptionPolicy", pc.preemption_policy.as_deref());
    errs
}

/// Validates a PriorityClass update: `value` and `preemptionPolicy` never change (pods were
/// admitted with them), plus metadata immutability.
pub fn validate_priority_class_update(new: &scheduling::PriorityClass, old: &scheduling::PriorityClass) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_priority_class(new));
    if new.value != old.value {
        errs.push(forbidden("value", "may not be changed in an update."));
    }
    if new.preemption_policy != old.preemption_policy {
        let shown = new.preemption_policy.as_deref().unwrap_or("null");
        errs.push(invalid_str("preemptionPolicy", shown, FIELD_IMMUTABLE_ERROR_MSG));
    }
    errs
}

// ===========================================================================
// Tests
// ===========================================================================

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).expect("test object must deserialize")
    }

    /// Panics with the errors unless there are none.
    fn assert_ok(errs: &[FieldError]) {
        assert!(errs.is_empty(), "expected no errors, got: {errs:#?}");
    }

    /// The first error on `field`, or a panic listing all errors.
    fn find<'a>(errs: &'a [FieldError], field: &str) -> &'a FieldError {
        errs.iter().find(|e| e.field == field).unwrap_or_else(|| panic!("no error on {field}; got: {errs:#?}"))
    }

    fn pod_json() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "default", "labels": {"app": "web"},
                         "annotations": {"example.com/owner": "team-a"}},
            "spec": {
                "containers": [{
                    "name": "app", "image": "busybox",
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": "MODE", "value": "prod"},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                  "limits": {"cpu": "0.5", "memory": "128Mi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}}
                }],
                "initContainers": [{"name": "init", "image": "busybox", "command": ["true"]}],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                "terminationGracePeriodSeconds": 30,
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                 "effect": "NoExecute", "tolerationSeconds": 300}]
            }
        })
    }

    fn pod() -> core::Pod {
        obj(pod_json())
    }

    fn with(mut v: Value, path: &[&str], new: Value) -> Value {
        let mut cur = &mut v;
        for (i, p) in path.iter().enumerate() {
            if i == path.len() - 1 {
                match p.parse::<usize>() {
                    Ok(n) => cur[n] = new,
                    Err(_) => cur[*p] = new,
                }
                break;
            }
            cur = match p.parse::<usize>() {
                Ok(n) => &mut cur[n],
                Err(_) => &mut cur[*p],
            };
        }
        v
    }

    // --- primitives ----------------------------------------------------------

    #[test]
    fn dns1123_subdomain_messages_are_upstreams() {
        assert!(is_dns1123_subdomain("example.com").is_empty());
        assert!(is_dns1123_subdomain("a").is_empty());
        let errs = is_dns1123_subdomain("Foo_bar");
        assert_eq!(errs, vec![
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string()
        ]);
        for bad in ["", "-a", "a-", "a..b", ".a", "a."] {
            assert!(!is_dns1123_subdomain(bad).is_empty(), "{bad:?} must be invalid");
        }
        let long = "a".repeat(254);
        assert_eq!(is_dns1123_subdomain(&long), vec!["must be no more than 253 characters".to_string()]);
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns1123_label("my-name").is_empty());
        assert!(is_dns1123_label("123-abc").is_empty());
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots".to_string()]);
        // Upstream's RegexError really prints the double space before "or".
        assert!(is_dns1123_label("My-Name")[0].contains("(e.g. 'my-name',  or '123-abc', regex used"));
        assert_eq!(is_dns1123_label(&"a".repeat(64))[0], "must be no more than 63 characters");
        assert!(is_dns1035_label("abc-123").is_empty());
        assert!(is_dns1035_label("1abc")[0].starts_with("a DNS-1035 label must consist"));
    }

    #[test]
    fn qualified_names_and_label_values() {
        for ok in ["app", "example.com/app", "A.b_c-D", "k8s.io/x"] {
            assert!(is_qualified_name(ok).is_empty(), "{ok}");
        }
        assert_eq!(is_qualified_name("/a"), vec!["prefix part must be non-empty".to_string()]);
        assert!(is_qualified_name("Example.com/a")[0].starts_with("prefix part a lowercase RFC 1123 subdomain"));
        assert!(is_qualified_name("a/b/c")[0].starts_with("a qualified name must consist of"));
        let empty = is_qualified_name("");
        assert_eq!(empty[0], "name part must be non-empty");
        assert_eq!(empty.len(), 2);
        assert_eq!(is_qualified_name(&"a".repeat(64))[0], "name part must be no more than 63 characters");
        assert!(is_qualified_name("-a")[0].starts_with("name part must consist of alphanumeric characters"));

        assert!(is_valid_label_value("").is_empty());
        assert!(is_valid_label_value("my_value.1").is_empty());
        assert!(is_valid_label_value("bad value")[0].starts_with("a valid label must be an empty string"));
    }

    #[test]
    fn ports_ips_and_identifiers() {
        assert!(is_valid_port_num(1).is_empty() && is_valid_port_num(65535).is_empty());
        assert_eq!(is_valid_port_num(0), vec!["must be between 1 and 65535, inclusive".to_string()]);
        assert!(is_valid_port_num(65536).len() == 1);
        assert!(is_valid_port_name("http").is_empty());
        assert!(is_valid_port_name("80").contains(&"must contain at least one letter (a-z)".to_string()));
        assert!(!is_valid_port_name("a-very-long-port-name").is_empty());

        for ok in ["10.9.8.7", "2001:db8::ffff", "::1", "010.001.2.3", "::ffff:1.2.3.4"] {
            assert!(is_valid_ip(ok).is_empty(), "{ok}");
        }
        for bad in ["", "1.2.3", "1.2.3.256", "abc", "1.2.3.4.5", "fe80::1%eth0"] {
            assert_eq!(is_valid_ip(bad), vec![IP_ERR_MSG.to_string()], "{bad}");
        }
        assert!(is_valid_cidr("10.244.0.0/16").is_empty());
        assert!(!is_valid_cidr("10.244.0.0/33").is_empty());

        assert!(is_c_identifier("MY_NAME").is_empty());
        assert!(!is_c_identifier("1abc").is_empty());
        assert!(!is_c_identifier("a-b").is_empty());
        assert!(is_relaxed_env_var_name("my.env-name 1").is_empty());
        assert!(is_relaxed_env_var_name("1abc").is_empty());
        assert_eq!(is_relaxed_env_var_name("A=B"), vec![RELAXED_ENV_VAR_NAME_ERR_MSG.to_string()]);
        assert!(!is_relaxed_env_var_name("tab\there").is_empty());

        assert!(is_config_map_key("key.name").is_empty());
        assert!(is_config_map_key("..a").contains(&"must not start with '..'".to_string()));
        assert!(!is_config_map_key("a/b").is_empty());
        assert!(is_valid_percent("25%").is_empty() && !is_valid_percent("x%").is_empty());
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity_milli("100m"), Some(100));
        assert_eq!(parse_quantity_milli("1"), Some(1000));
        assert_eq!(parse_quantity_milli("0.5"), Some(500));
        assert_eq!(parse_quantity_milli("1.5"), Some(1500));
        assert_eq!(parse_quantity_value("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(parse_quantity_value("1G"), Some(1_000_000_000));
        assert_eq!(parse_quantity_value("1e3"), Some(1000));
        assert_eq!(parse_quantity_value("1.5k"), Some(1500));
        assert_eq!(parse_quantity_value("100m"), Some(1), "Value() rounds up");
        assert_eq!(parse_quantity_milli("1n"), Some(1), "MilliValue() rounds up");
        assert_eq!(parse_quantity_milli("-1"), Some(-1000));
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("2Ki"), Some(2048.0));
        for bad in ["", "abc", "1x", "1KB", "1e", "--1", "1.2.3", "Mi"] {
            assert_eq!(parse_quantity(bad), None, "{bad}");
        }
        assert_eq!(compare_quantities("1", "1000m"), Some(Ordering::Equal));
        assert_eq!(compare_quantities("1Gi", "1G"), Some(Ordering::Greater));
        assert_eq!(compare_quantities("500m", "0.6"), Some(Ordering::Less));
        assert_eq!(compare_quantities("-1", "0"), Some(Ordering::Less));
        // Found by fuzzing: zero with a huge exponent is zero, not a saturated maximum or NaN.
        assert_eq!(parse_quantity_milli("0e123456789"), Some(0));
        assert_eq!(parse_quantity_value("00000000000e123456789"), Some(0));
        assert_eq!(parse_quantity("0e999999999"), Some(0.0));
    }

    // --- metadata ------------------------------------------------------------

    #[test]
    fn object_meta_name_rules() {
        let meta: ObjectMeta = obj(json!({"namespace": "default"}));
        let errs = validate_object_meta(&meta, true, is_dns1123_subdomain);
        let e = find(&errs, "metadata.name");
        assert_eq!(e.kind, FieldErrorType::Required);
        assert_eq!(e.message, "Required value: name or generateName is required");

        let meta: ObjectMeta = obj(json!({"name": "Foo", "namespace": "default"}));
        let errs = validate_object_meta(&meta, true, is_dns1123_subdomain);
        let e = find(&errs, "metadata.name");
        assert_eq!(e.kind, FieldErrorType::Invalid);
        assert!(e.message.starts_with("Invalid value: \"Foo\": a lowercase RFC 1123 subdomain"));
        assert_eq!(e.to_string(), format!("metadata.name: {}", e.message));

        // generateName may end with a dash.
        let meta: ObjectMeta = obj(json!({"generateName": "web-", "name": "web-x7k2p", "namespace": "default"}));
        assert_ok(&validate_object_meta(&meta, true, is_dns1123_subdomain));

        let meta: ObjectMeta = obj(json!({"name": "n"}));
        assert_eq!(
            find(&validate_object_meta(&meta, true, is_dns1123_label), "metadata.namespace").kind,
            FieldErrorType::Required
        );
        let meta: ObjectMeta = obj(json!({"name": "n", "namespace": "Bad"}));
        assert!(!validate_object_meta(&meta, true, is_dns1123_label).is_empty());
        let meta: ObjectMeta = obj(json!({"name": "n", "namespace": "default"}));
        assert_eq!(
            find(&validate_object_meta(&meta, false, is_dns1123_label), "metadata.namespace").kind,
            FieldErrorType::Forbidden
        );
    }

    #[test]
    fn object_meta_labels_annotations_owners_finalizers() {
        let meta: ObjectMeta = obj(json!({
            "name": "n", "namespace": "default",
            "labels": {"bad key!": "v", "ok": "bad value"},
            "annotations": {"Example.com/Key": "fine", "a/b/c": "x"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs1", "uid": "u1", "controller": true},
                {"apiVersion": "", "kind": "", "name": "", "uid": "", "controller": true}
            ],
            "finalizers": ["example.com/cleanup", "kubernetes", "custom"]
        }));
        let errs = validate_object_meta(&meta, true, is_dns1123_subdomain);
        assert_eq!(errs.iter().filter(|e| e.field == "metadata.labels").count(), 2);
        assert_eq!(errs.iter().filter(|e| e.field == "metadata.annotations").count(), 1, "{errs:#?}");
        assert!(find(&errs, "metadata.ownerReferences.apiVersion").message.ends_with("version must not be empty"));
        assert!(find(&errs, "metadata.ownerReferences.uid").message.ends_with("must not be empty"));
        assert!(errs.iter().any(|e| e.field == "metadata.ownerReferences"
            && e.message.contains("Only one reference can have Controller set to true")));
        assert!(find(&errs, "metadata.finalizers[2]").message.contains("neither a standard finalizer name"));

        let big: StrMap = [("k".to_string(), "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B))].into();
        let meta = ObjectMeta { name: Some("n".into()), annotations: Some(big), ..Default::default() };
        let errs = validate_object_meta(&meta, false, is_dns1123_subdomain);
        assert_eq!(find(&errs, "metadata.annotations").kind, FieldErrorType::TooLong);
    }

    #[test]
    fn object_meta_update_immutability() {
        let old: ObjectMeta = obj(json!({"name": "a", "namespace": "ns", "uid": "u1",
                                        "creationTimestamp": "2024-01-01T00:00:00Z", "resourceVersion": "5"}));
        assert_ok(&validate_object_meta_update(&old.clone(), &old));
        let mut new = old.clone();
        new.name = Some("b".into());
        new.namespace = Some("other".into());
        new.uid = Some("u2".into());
        new.creation_timestamp = None;
        let errs = validate_object_meta_update(&new, &old);
        for f in ["metadata.name", "metadata.namespace", "metadata.uid", "metadata.creationTimestamp"] {
            let e = find(&errs, f);
            assert_eq!(e.kind, FieldErrorType::Invalid);
            assert!(e.message.ends_with("field is immutable"), "{e}");
        }
        assert_eq!(find(&errs, "metadata.name").message, "Invalid value: \"b\": field is immutable");

        let mut deleting = old.clone();
        deleting.deletion_timestamp = deleting.creation_timestamp.clone();
        let mut new = deleting.clone();
        new.finalizers = Some(vec!["example.com/x".into()]);
        assert_eq!(
            find(&validate_object_meta_update(&new, &deleting), "metadata.finalizers").kind,
            FieldErrorType::Forbidden
        );
    }

    // --- pods ----------------------------------------------------------------

    #[test]
    fn valid_pod_has_no_errors() {
        assert_ok(&validate_pod(&pod()));
        let minimal: core::Pod = obj(json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}));
        assert_ok(&validate_pod(&minimal));
    }

    #[test]
    fn pod_requires_containers() {
        let p: core::Pod = obj(json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": []}}));
        let errs = validate_pod(&p);
        assert_eq!(find(&errs, "spec.containers").message, "Required value");
        let p: core::Pod = obj(json!({"metadata": {"name": "p", "namespace": "default"}}));
        assert_eq!(find(&validate_pod(&p), "spec.containers").kind, FieldErrorType::Required);
    }

    #[test]
    fn pod_container_rules() {
        let v = pod_json();
        let v = with(v, &["spec", "containers", "0", "name"], json!("App_1"));
        let v = with(v, &["spec", "initContainers", "0", "name"], json!("App_1"));
        let v = with(v, &["spec", "containers", "0", "image"], json!(""));
        let errs = validate_pod(&obj(v));
        assert!(find(&errs, "spec.containers[0].name").message.contains("RFC 1123 label"));
        assert_eq!(find(&errs, "spec.containers[0].image").kind, FieldErrorType::Required);
        assert_eq!(find(&errs, "spec.initContainers[0].name").kind, FieldErrorType::Invalid);
        assert!(errs.iter().any(|e| e.field == "spec.initContainers[0].name" && e.kind == FieldErrorType::Duplicate));

        let v = with(
            pod_json(),
            &["spec", "containers", "0", "ports"],
            json!([
                {"name": "http", "containerPort": 0},
                {"name": "http", "containerPort": 70000, "hostPort": 80, "protocol": "ICMP"},
                {"name": "80", "containerPort": 81, "hostPort": 81},
                {"containerPort": 82, "hostPort": 81}
            ]),
        );
        let errs = validate_pod(&obj(v));
        assert_eq!(find(&errs, "spec.containers[0].ports[0].containerPort").kind, FieldErrorType::Required);
        assert_eq!(find(&errs, "spec.containers[0].ports[1].name").kind, FieldErrorType::Duplicate);
        assert_eq!(
            find(&errs, "spec.containers[0].ports[1].containerPort").message,
            "Invalid value: 70000: must be between 1 and 65535, inclusive"
        );
        assert_eq!(
            find(&errs, "spec.containers[0].ports[1].protocol").message,
            "Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\""
        );
        assert!(find(&errs, "spec.containers[0].ports[2].name").message.contains("at least one letter"));
        assert_eq!(find(&errs, "spec.containers[0].ports[3].hostPort").message, "Duplicate value: \"/TCP/81\"");
    }

    #[test]
    fn pod_env_volumes_and_mounts() {
        let v = with(
            pod_json(),
            &["spec", "containers", "0", "env"],
            json!([
                {"name": "A=B", "value": "x"},
                {"name": "", "value": "x"},
                {"name": "ok", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}},
                {"name": "ok2", "value": "v", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
            ]),
        );
        let v = with(
            v,
            &["spec", "volumes"],
            json!([
                {"name": "data", "emptyDir": {}, "hostPath": {"path": "/x"}},
                {"name": "Data2", "configMap": {"name": "cm"}},
                {"name": "cm", "configMap": {"name": "cm", "items": [{"key": "k", "path": "../x"}]}}
            ]),
        );
        let errs = validate_pod(&obj(v));
        assert!(find(&errs, "spec.containers[0].env[0].name").message.contains("other than '='"));
        assert_eq!(find(&errs, "spec.containers[0].env[1].name").kind, FieldErrorType::Required);
        assert_eq!(
            find(&errs, "spec.containers[0].env[2].valueFrom.fieldRef.fieldPath").kind,
            FieldErrorType::NotSupported
        );
        assert!(find(&errs, "spec.containers[0].env[3].valueFrom")
            .message
            .contains("may not be specified when `value` is not empty"));
        assert_eq!(
            find(&errs, "spec.volumes[0].emptyDir").message,
            "Forbidden: may not specify more than 1 volume type"
        );
        assert!(find(&errs, "spec.volumes[1].name").message.contains("RFC 1123 label"));
        assert!(find(&errs, "spec.volumes[2].configMap.items[0].path").message.contains("must not contain '..'"));
        // volume "data" is invalid, so the mount refers to nothing valid.
        assert_eq!(find(&errs, "spec.containers[0].volumeMounts[0].name").message, "Not found: \"data\"");

        let v = with(
            pod_json(),
            &["spec", "containers", "0", "volumeMounts"],
            json!([{"name": "nope", "mountPath": "/x"}]),
        );
        assert_eq!(
            find(&validate_pod(&obj(v)), "spec.containers[0].volumeMounts[0].name").message,
            "Not found: \"nope\""
        );
    }

    #[test]
    fn pod_resources_requests_must_not_exceed_limits() {
        let v = with(
            pod_json(),
            &["spec", "containers", "0", "resources"],
            json!({
                "requests": {"cpu": "2", "memory": "1Gi", "bogus": "1"},
                "limits": {"cpu": "1", "memory": "1024Mi", "example.com/gpu": "1"}
            }),
        );
        let errs = validate_pod(&obj(v));
        assert_eq!(
            find(&errs, "spec.containers[0].resources.requests").message,
            "Invalid value: \"2\": must be less than or equal to cpu limit of 1"
        );
        assert_eq!(errs.iter().filter(|e| e.field == "spec.containers[0].resources.requests").count(), 1, "{errs:#?}");
        assert!(find(&errs, "spec.containers[0].resources.requests[bogus]")
            .message
            .contains("must be a standard resource for containers"));

        let v = with(
            pod_json(),
            &["spec", "containers", "0", "resources"],
            json!({"limits": {"cpu": "lots", "memory": "-1"}}),
        );
        let errs = validate_pod(&obj(v));
        assert!(find(&errs, "spec.containers[0].resources.limits[cpu]").message.contains("quantities must match"));
        assert!(find(&errs, "spec.containers[0].resources.limits[memory]").message.ends_with(IS_NEGATIVE_ERROR_MSG));
    }

    #[test]
    fn pod_spec_level_rules() {
        let v = pod_json();
        let v = with(v, &["spec", "restartPolicy"], json!("Sometimes"));
        let v = with(v, &["spec", "dnsPolicy"], json!("Bogus"));
        let v = with(v, &["spec", "terminationGracePeriodSeconds"], json!(-1));
        let v = with(v, &["spec", "nodeName"], json!("Node_1"));
        let v = with(v, &["spec", "activeDeadlineSeconds"], json!(0));
        let v = with(v, &["spec", "tolerations"], json!([{"operator": "Equal", "value": "x"}]));
        let errs = validate_pod(&obj(v));
        assert_eq!(
            find(&errs, "spec.restartPolicy").message,
            "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        assert_eq!(find(&errs, "spec.dnsPolicy").kind, FieldErrorType::NotSupported);
        assert_eq!(
            find(&errs, "spec.terminationGracePeriodSeconds").message,
            "Invalid value: -1: must be greater than or equal to 0"
        );
        assert!(find(&errs, "spec.nodeName").message.contains("RFC 1123 subdomain"));
        assert!(find(&errs, "spec.activeDeadlineSeconds").message.contains("must be between 1 and 2147483647"));
        assert!(find(&errs, "spec.tolerations[0].operator")
            .message
            .contains("operator must be Exists when `key` is empty"));

        let v = with(pod_json(), &["spec", "dnsPolicy"], json!("None"));
        assert_eq!(find(&validate_pod(&obj(v)), "spec.dnsConfig").kind, FieldErrorType::Required);
        let v = with(pod_json(), &["spec", "hostNetwork"], json!(true));
        let v = with(v, &["spec", "containers", "0", "ports", "0", "hostPort"], json!(9090));
        assert!(find(&validate_pod(&obj(v)), "spec.containers[0].ports[0].containerPort")
            .message
            .contains("must match `hostPort`"));
    }

    #[test]
    fn pod_update_allows_image_and_rejects_other_changes() {
        let old = pod();
        assert_ok(&validate_pod_update(&old, &old));

        let mut new = old.clone();
        new.spec.as_mut().unwrap().containers[0].image = Some("busybox:1.36".into());
        new.spec.as_mut().unwrap().active_deadline_seconds = Some(100);
        new.spec.as_mut().unwrap().tolerations.as_mut().unwrap().push(obj(json!({"key": "k", "operator": "Exists"})));
        new.metadata.labels.as_mut().unwrap().insert("tier".into(), "front".into());
        assert_ok(&validate_pod_update(&new, &old));

        let mut new = old.clone();
        new.spec.as_mut().unwrap().node_name = Some("n2".into());
        let errs = validate_pod_update(&new, &old);
        let e = find(&errs, "spec");
        assert_eq!(e.kind, FieldErrorType::Forbidden);
        assert!(e
            .message
            .starts_with("Forbidden: pod updates may not change fields other than `spec.containers[*].image`"));
        assert!(e.message.contains("spec.nodeName"), "{}", e.message);

        let mut new = old.clone();
        new.spec.as_mut().unwrap().containers.push(obj(json!({"name": "extra", "image": "x"})));
        assert_eq!(
            find(&validate_pod_update(&new, &old), "spec.containers").message,
            "Forbidden: pod updates may not add or remove containers"
        );

        let mut new = old.clone();
        new.spec.as_mut().unwrap().tolerations = None;
        assert!(find(&validate_pod_update(&new, &old), "spec.tolerations")
            .message
            .contains("existing toleration can not be modified"));
    }

    // --- namespaces, nodes -----------------------------------------------------

    #[test]
    fn namespace_validation() {
        let ns: core::Namespace = obj(json!({"metadata": {"name": "team-a"}, "spec": {"finalizers": ["kubernetes"]}}));
        assert_ok(&validate_namespace(&ns));
        assert_ok(&validate_namespace_update(&ns, &ns));
        let ns: core::Namespace = obj(json!({"metadata": {"name": "team.a"}}));
        assert_eq!(
            find(&validate_namespace(&ns), "metadata.name").message,
            "Invalid value: \"team.a\": must not contain dots"
        );
        let ns: core::Namespace = obj(json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["custom"]}}));
        assert!(find(&validate_namespace(&ns), "spec.finalizers").message.contains("neither a standard finalizer"));
    }

    #[test]
    fn node_validation() {
        let node: core::Node = obj(json!({"metadata": {"name": "node-1.example.com"},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"],
                     "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}));
        assert_ok(&validate_node(&node));
        assert_ok(&validate_node_update(&node, &node));

        let bad: core::Node = obj(json!({"metadata": {"name": "node-1"},
            "spec": {"podCIDRs": ["10.244.1.0/33"],
                     "taints": [{"key": "a", "effect": "Sometimes"}, {"key": "b", "effect": "NoSchedule"},
                                {"key": "b", "effect": "NoSchedule"}]}}));
        let errs = validate_node(&bad);
        assert_eq!(find(&errs, "metadata.taints[0].effect").kind, FieldErrorType::NotSupported);
        assert_eq!(find(&errs, "metadata.taints[2]").kind, FieldErrorType::Duplicate);
        assert!(find(&errs, "spec.podCIDRs[0]").message.contains("must be a valid CIDR value"));

        let mut moved = node.clone();
        moved.spec.as_mut().unwrap().pod_cidrs = Some(vec!["10.244.2.0/24".into()]);
        moved.spec.as_mut().unwrap().pod_cidr = Some("10.244.2.0/24".into());
        assert_eq!(find(&validate_node_update(&moved, &node), "spec.podCIDRs").kind, FieldErrorType::Forbidden);
    }

    // --- services, endpoints ---------------------------------------------------

    fn service_json() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"},
               "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
                        "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                                  {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}]}})
    }

    #[test]
    fn service_validation() {
        let svc: core::Service = obj(service_json());
        assert_ok(&validate_service(&svc));
        let headless: core::Service = obj(json!({"metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None", "selector": {"app": "db"}}}));
        assert_ok(&validate_service(&headless));
        let ext: core::Service = obj(json!({"metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.com."}}));
        assert_ok(&validate_service(&ext));

        let bad: core::Service = obj(json!({"metadata": {"name": "1web", "namespace": "default"},
            "spec": {"type": "Magic", "selector": {"app": "bad value"},
                     "ports": [{"port": 0, "targetPort": 70000}, {"port": 80, "protocol": "ICMP", "targetPort": "x_y"}]}}));
        let errs = validate_service(&bad);
        assert!(find(&errs, "metadata.name").message.contains("DNS-1035 label"));
        assert_eq!(find(&errs, "spec.ports[0].name").kind, FieldErrorType::Required);
        assert_eq!(
            find(&errs, "spec.ports[0].port").message,
            "Invalid value: 0: must be between 1 and 65535, inclusive"
        );
        assert!(find(&errs, "spec.ports[0].targetPort").message.contains("must be between 1 and 65535"));
        assert_eq!(find(&errs, "spec.ports[1].protocol").kind, FieldErrorType::NotSupported);
        assert!(find(&errs, "spec.ports[1].targetPort").message.contains("alpha-numeric"));
        assert_eq!(find(&errs, "spec.type").kind, FieldErrorType::NotSupported);
        assert_eq!(find(&errs, "spec.selector").kind, FieldErrorType::Invalid);

        let no_ports: core::Service = obj(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {}}));
        assert_eq!(find(&validate_service(&no_ports), "spec.ports").kind, FieldErrorType::Required);
        let ext: core::Service =
            obj(json!({"metadata": {"name": "ext", "namespace": "default"}, "spec": {"type": "ExternalName"}}));
        assert_eq!(find(&validate_service(&ext), "spec.externalName").kind, FieldErrorType::Required);
    }

    #[test]
    fn service_update_cluster_ip_is_immutable() {
        let old: core::Service = obj(service_json());
        assert_ok(&validate_service_update(&old, &old));
        let new: core::Service = obj(with(service_json(), &["spec", "clusterIP"], json!("10.96.0.11")));
        assert_eq!(
            find(&validate_service_update(&new, &old), "spec.clusterIP").message,
            "Invalid value: \"10.96.0.11\": field is immutable"
        );
    }

    #[test]
    fn endpoints_validation() {
        let ep: core::Endpoints = obj(json!({"metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.244.1.5", "nodeName": "n1"}],
                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}));
        assert_ok(&validate_endpoints(&ep));
        assert_ok(&validate_endpoints_update(&ep, &ep));
        let bad: core::Endpoints = obj(json!({"metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}, {"ip": "nope"}],
                         "ports": [{"port": 1}, {"name": "b", "port": 0}]}, {}]}));
        let errs = validate_endpoints(&bad);
        assert!(find(&errs, "subsets[0].addresses[0].ip").message.contains("loopback"));
        assert!(find(&errs, "subsets[0].addresses[1].ip").message.contains("must be a valid IP address"));
        assert_eq!(find(&errs, "subsets[0].ports[0].name").kind, FieldErrorType::Required);
        assert_eq!(find(&errs, "subsets[0].ports[1].port").kind, FieldErrorType::Invalid);
        assert_eq!(
            find(&errs, "subsets[1]").message,
            "Required value: must specify `addresses` or `notReadyAddresses`"
        );
    }

    // --- configmaps, secrets, service accounts, events ---------------------------

    #[test]
    fn config_map_validation() {
        let cm: core::ConfigMap = obj(json!({"metadata": {"name": "cfg", "namespace": "default"},
            "data": {"app.properties": "a=b", "KEY_1": "v"}, "binaryData": {"blob.bin": "AAEC"}}));
        assert_ok(&validate_config_map(&cm));
        let bad: core::ConfigMap = obj(json!({"metadata": {"name": "cfg", "namespace": "default"},
            "data": {"a/b": "x", "dup": "x"}, "binaryData": {"dup": "AA=="}}));
        let errs = validate_config_map(&bad);
        assert!(find(&errs, "data[a/b]")
            .message
            .contains("a valid config key must consist of alphanumeric characters"));
        assert!(find(&errs, "data[dup]").message.ends_with("duplicate of key present in binaryData"));
        let big: core::ConfigMap = obj(json!({"metadata": {"name": "cfg", "namespace": "default"},
            "data": {"a": "x".repeat(MAX_SECRET_SIZE), "b": "y"}}));
        let errs = validate_config_map(&big);
        assert_eq!(find(&errs, "").message, "Too long: may not be more than 1048576 bytes");

        let mut locked = cm.clone();
        locked.immutable = Some(true);
        let mut changed = locked.clone();
        changed.data.as_mut().unwrap().insert("new".into(), "v".into());
        assert_eq!(find(&validate_config_map_update(&changed, &locked), "data").kind, FieldErrorType::Forbidden);
        assert_ok(&validate_config_map_update(&locked, &locked));
    }

    #[test]
    fn secret_validation() {
        let sec: core::Secret = obj(json!({"metadata": {"name": "tls", "namespace": "default"},
            "type": "kubernetes.io/tls", "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}}));
        assert_ok(&validate_secret(&sec));
        let opaque: core::Secret = obj(json!({"metadata": {"name": "s", "namespace": "default"},
            "stringData": {"password": "hunter2"}}));
        assert_ok(&validate_secret(&opaque));

        let bad: core::Secret = obj(json!({"metadata": {"name": "tls", "namespace": "default"},
            "type": "kubernetes.io/tls", "data": {"bad key": "AA=="}}));
        let errs = validate_secret(&bad);
        assert_eq!(find(&errs, "data[tls.crt]").kind, FieldErrorType::Required);
        assert_eq!(find(&errs, "data[tls.key]").kind, FieldErrorType::Required);
        assert_eq!(find(&errs, "data[bad key]").kind, FieldErrorType::Invalid);

        let mut retyped = opaque.clone();
        retyped.type_ = Some("kubernetes.io/basic-auth".into());
        let errs = validate_secret_update(&retyped, &opaque);
        assert_eq!(find(&errs, "type").message, "Invalid value: \"kubernetes.io/basic-auth\": field is immutable");
        assert_ok(&validate_secret_update(&opaque, &opaque));
    }

    #[test]
    fn service_account_validation() {
        let sa: core::ServiceAccount = obj(json!({"metadata": {"name": "builder", "namespace": "ci"}}));
        assert_ok(&validate_service_account(&sa));
        assert_ok(&validate_service_account_update(&sa, &sa));
        let bad: core::ServiceAccount = obj(json!({"metadata": {"name": "Builder"}}));
        let errs = validate_service_account(&bad);
        assert_eq!(find(&errs, "metadata.name").kind, FieldErrorType::Invalid);
        assert_eq!(find(&errs, "metadata.namespace").kind, FieldErrorType::Required);
    }

    #[test]
    fn event_validation() {
        let ev: core::Event = obj(json!({"metadata": {"name": "web-0.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default"},
            "reason": "Scheduled", "message": "ok", "type": "Normal"}));
        assert_ok(&validate_event(&ev));
        let node_ev: core::Event = obj(json!({"metadata": {"name": "n1.17a", "namespace": "default"},
            "involvedObject": {"kind": "Node", "name": "n1"}}));
        assert_ok(&validate_event(&node_ev));
        let bad: core::Event = obj(json!({"metadata": {"name": "web-0.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "other"}}));
        assert_eq!(
            find(&validate_event(&bad), "involvedObject.namespace").message,
            "Invalid value: \"other\": does not match event.namespace"
        );
        assert_ok(&validate_event_update(&ev, &ev));
    }

    // --- workloads -----------------------------------------------------------

    fn deployment_json() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"},
               "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
                        "template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                                     "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})
    }

    #[test]
    fn deployment_validation() {
        let d: apps::Deployment = obj(deployment_json());
        assert_ok(&validate_deployment(&d));

        let v = with(deployment_json(), &["spec", "selector"], json!({"matchLabels": {"app": "other"}}));
        let errs = validate_deployment(&obj(v));
        let e = find(&errs, "spec.template.metadata.labels");
        assert_eq!(
            e.message,
            "Invalid value: map[string]string{\"app\":\"web\", \"tier\":\"front\"}: `selector` does not match template `labels`"
        );

        let v = with(deployment_json(), &["spec", "selector"], json!({}));
        assert!(find(&validate_deployment(&obj(v)), "spec.selector")
            .message
            .ends_with("empty selector is invalid for deployment"));

        let v = with(deployment_json(), &["spec", "replicas"], json!(-1));
        let v = with(v, &["spec", "strategy", "rollingUpdate"], json!({"maxSurge": 0, "maxUnavailable": 0}));
        let v = with(v, &["spec", "template", "spec", "restartPolicy"], json!("Never"));
        let v = with(v, &["spec", "template", "spec", "containers", "0", "name"], json!("Web"));
        let errs = validate_deployment(&obj(v));
        assert_eq!(find(&errs, "spec.replicas").message, "Invalid value: -1: must be greater than or equal to 0");
        assert_eq!(
            find(&errs, "spec.strategy.rollingUpdate.maxUnavailable").message,
            "Invalid value: 0: may not be 0 when `maxSurge` is 0"
        );
        assert_eq!(
            find(&errs, "spec.template.spec.restartPolicy").message,
            "Unsupported value: \"Never\": supported values: \"Always\""
        );
        assert!(find(&errs, "spec.template.spec.containers[0].name").message.contains("RFC 1123 label"));

        let v = with(deployment_json(), &["spec", "strategy"], json!({"type": "BlueGreen"}));
        assert_eq!(find(&validate_deployment(&obj(v)), "spec.strategy").kind, FieldErrorType::NotSupported);
    }

    #[test]
    fn deployment_update_selector_is_immutable() {
        let old: apps::Deployment = obj(deployment_json());
        let mut scaled = old.clone();
        scaled.spec.as_mut().unwrap().replicas = Some(5);
        assert_ok(&validate_deployment_update(&scaled, &old));
        let v = with(deployment_json(), &["spec", "selector"], json!({"matchLabels": {"app": "web", "tier": "front"}}));
        let errs = validate_deployment_update(&obj(v), &old);
        assert!(find(&errs, "spec.selector").message.ends_with("field is immutable"));
    }

    #[test]
    fn replica_set_validation() {
        let rs_json = json!({"metadata": {"name": "web-abc", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        let rs: apps::ReplicaSet = obj(rs_json.clone());
        assert_ok(&validate_replica_set(&rs));
        assert_ok(&validate_replica_set_update(&rs, &rs));
        let bad: apps::ReplicaSet =
            obj(with(rs_json.clone(), &["spec", "template", "metadata", "labels"], json!({"app": "db"})));
        assert!(find(&validate_replica_set(&bad), "spec.template.metadata.labels").message.contains("does not match"));
        let bad_op: apps::ReplicaSet = obj(with(
            rs_json,
            &["spec", "selector"],
            json!({"matchExpressions": [{"key": "app", "operator": "Near"}]}),
        ));
        let errs = validate_replica_set(&bad_op);
        assert!(find(&errs, "spec.selector.matchExpressions[0].operator")
            .message
            .contains("not a valid selector operator"));
        assert!(errs.iter().any(|e| e.field == "spec.selector" && e.message.ends_with("invalid label selector")));
    }

    #[test]
    fn daemon_set_validation() {
        let ds_json = json!({"metadata": {"name": "agent", "namespace": "kube-system"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}}}});
        let ds: apps::DaemonSet = obj(ds_json.clone());
        assert_ok(&validate_daemon_set(&ds));
        let bad = with(ds_json.clone(), &["spec", "template", "metadata", "labels"], json!({"app": "x"}));
        let bad = with(bad, &["spec", "updateStrategy", "rollingUpdate"], json!({"maxUnavailable": 0, "maxSurge": 0}));
        let errs = validate_daemon_set(&obj(bad));
        assert!(find(&errs, "spec.template.metadata.labels")
            .message
            .contains("`selector` does not match template `labels`"));
        assert_eq!(
            find(&errs, "spec.updateStrategy.rollingUpdate.maxUnavailable").message,
            "Required value: cannot be 0 when maxSurge is 0"
        );
        let moved: apps::DaemonSet =
            obj(with(ds_json, &["spec", "selector"], json!({"matchLabels": {"app": "agent", "x": "y"}})));
        assert!(find(&validate_daemon_set_update(&moved, &ds), "spec.selector")
            .message
            .ends_with("field is immutable"));
    }

    fn job_json() -> Value {
        json!({"metadata": {"name": "pi", "namespace": "default"},
               "spec": {"backoffLimit": 4, "completions": 1, "parallelism": 1,
                        "template": {"spec": {"restartPolicy": "Never",
                                              "containers": [{"name": "pi", "image": "perl"}]}}}})
    }

    #[test]
    fn job_validation() {
        let job: batch::Job = obj(job_json());
        assert_ok(&validate_job(&job));
        let with_selector = with(job_json(), &["spec", "selector"], json!({"matchLabels": {"job": "pi"}}));
        let with_selector = with(with_selector, &["spec", "template", "metadata"], json!({"labels": {"job": "pi"}}));
        assert_ok(&validate_job(&obj(with_selector)));

        let v = with(job_json(), &["spec", "template", "spec", "restartPolicy"], json!("Always"));
        let v = with(v, &["spec", "parallelism"], json!(-1));
        let v = with(v, &["spec", "backoffLimit"], json!(-2));
        let errs = validate_job(&obj(v));
        assert_eq!(
            find(&errs, "spec.template.spec.restartPolicy").message,
            "Required value: valid values: \"OnFailure\", \"Never\""
        );
        assert_eq!(find(&errs, "spec.parallelism").kind, FieldErrorType::Invalid);
        assert_eq!(find(&errs, "spec.backoffLimit").message, "Invalid value: -2: must be greater than or equal to 0");

        let v = with(job_json(), &["spec", "manualSelector"], json!(true));
        assert_eq!(find(&validate_job(&obj(v)), "spec.selector").kind, FieldErrorType::Required);
    }

    #[test]
    fn job_update_template_and_selector_are_immutable() {
        let old: batch::Job = obj(with(job_json(), &["spec", "selector"], json!({"matchLabels": {"job": "pi"}})));
        let old = {
            let mut o = old;
            o.spec.as_mut().unwrap().template.metadata = Some(obj(json!({"labels": {"job": "pi"}})));
            o
        };
        assert_ok(&validate_job_update(&old, &old));
        let mut new = old.clone();
        new.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image = Some("perl:5".into());
        new.spec.as_mut().unwrap().selector = Some(obj(json!({"matchLabels": {"job": "pi", "x": "y"}})));
        let errs = validate_job_update(&new, &old);
        assert!(find(&errs, "spec.template").message.ends_with("field is immutable"));
        assert!(find(&errs, "spec.selector").message.ends_with("field is immutable"));

        // A suspended Job that never started may change its template's scheduling directives.
        let mut suspended = old.clone();
        suspended.spec.as_mut().unwrap().suspend = Some(true);
        let mut resumed = suspended.clone();
        resumed.spec.as_mut().unwrap().template.spec.as_mut().unwrap().node_selector =
            Some([("disk".to_string(), "ssd".to_string())].into());
        assert_ok(&validate_job_update(&resumed, &suspended));
    }

    // --- leases, endpoint slices ---------------------------------------------

    #[test]
    fn lease_validation() {
        let lease: coordination::Lease = obj(json!({"metadata": {"name": "node-1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40, "leaseTransitions": 0}}));
        assert_ok(&validate_lease(&lease));
        assert_ok(&validate_lease_update(&lease, &lease));
        let bad: coordination::Lease = obj(json!({"metadata": {"name": "node-1", "namespace": "kube-node-lease"},
            "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1, "preferredHolder": "x"}}));
        let errs = validate_lease(&bad);
        assert_eq!(find(&errs, "spec.leaseDurationSeconds").message, "Invalid value: 0: must be greater than 0");
        assert_eq!(find(&errs, "spec.leaseTransitions").kind, FieldErrorType::Invalid);
        assert_eq!(find(&errs, "spec.preferredHolder").kind, FieldErrorType::Forbidden);
    }

    #[test]
    fn endpoint_slice_validation() {
        let slice_json = json!({"metadata": {"name": "web-abc12", "namespace": "default",
                                             "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true}, "nodeName": "n1"}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]});
        let slice: discovery::EndpointSlice = obj(slice_json.clone());
        assert_ok(&validate_endpoint_slice(&slice));
        assert_ok(&validate_endpoint_slice_update(&slice, &slice));

        let bad = with(
            slice_json.clone(),
            &["endpoints"],
            json!([
                {"addresses": []},
                {"addresses": ["2001:db8::1", "127.0.0.1"]},
                {"addresses": (0..101).map(|i| format!("10.0.0.{}", i % 250 + 1)).collect::<Vec<_>>()}
            ]),
        );
        let bad = with(bad, &["ports"], json!([{"name": "http", "protocol": "ICMP"}, {"name": "http"}]));
        let errs = validate_endpoint_slice(&obj(bad));
        assert_eq!(find(&errs, "endpoints[0].addresses").message, "Required value: must contain at least 1 address");
        assert!(find(&errs, "endpoints[1].addresses[0]").message.ends_with("must be a valid IPv4 address"));
        assert!(find(&errs, "endpoints[1].addresses[1]").message.contains("loopback"));
        assert_eq!(find(&errs, "endpoints[2].addresses").message, "Too many: 101: must have at most 100 items");
        assert_eq!(find(&errs, "ports[0].protocol").kind, FieldErrorType::NotSupported);
        assert_eq!(find(&errs, "ports[1].name").kind, FieldErrorType::Duplicate);

        let bad_type: discovery::EndpointSlice = obj(with(slice_json.clone(), &["addressType"], json!("IPX")));
        assert_eq!(
            find(&validate_endpoint_slice(&bad_type), "addressType").message,
            "Unsupported value: \"IPX\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""
        );
        let fqdn: discovery::EndpointSlice = obj(with(
            with(slice_json.clone(), &["addressType"], json!("FQDN")),
            &["endpoints", "0", "addresses"],
            json!(["db.example.com"]),
        ));
        assert_ok(&validate_endpoint_slice(&fqdn));
        let v6: discovery::EndpointSlice = obj(with(slice_json, &["addressType"], json!("IPv6")));
        assert!(find(&validate_endpoint_slice_update(&v6, &slice), "addressType")
            .message
            .ends_with("field is immutable"));
    }

    // --- rbac ----------------------------------------------------------------

    #[test]
    fn rbac_names_are_path_segments() {
        assert!(is_valid_path_segment_name("system:controller:job-controller").is_empty());
        assert!(is_valid_path_segment_name("Admin_Role").is_empty());
        assert_eq!(is_valid_path_segment_name("."), vec!["may not be '.'"]);
        assert_eq!(is_valid_path_segment_name(".."), vec!["may not be '..'"]);
        assert_eq!(is_valid_path_segment_name("a/b%c"), vec!["may not contain '/'", "may not contain '%'"]);
        let role: rbac::Role = obj(json!({"metadata": {"name": "a/b", "namespace": "default"}}));
        assert_eq!(find(&validate_role(&role), "metadata.name").message, "Invalid value: \"a/b\": may not contain '/'");
        let unnamed: rbac::ClusterRole = obj(json!({"metadata": {}}));
        assert_eq!(find(&validate_cluster_role(&unnamed), "metadata.name").kind, FieldErrorType::Required);
        let no_ns: rbac::Role = obj(json!({"metadata": {"name": "r"}}));
        assert_eq!(find(&validate_role(&no_ns), "metadata.namespace").kind, FieldErrorType::Required);
        let with_ns: rbac::ClusterRoleBinding = obj(json!({"metadata": {"name": "b", "namespace": "default"},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "view"}}));
        assert_eq!(
            find(&validate_cluster_role_binding(&with_ns), "metadata.namespace").kind,
            FieldErrorType::Forbidden
        );
    }

    #[test]
    fn role_rules_need_verbs_groups_and_resources() {
        let good: rbac::Role = obj(json!({"metadata": {"name": "pod-reader", "namespace": "default"},
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
                      {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"], "verbs": ["*"]}]}));
        assert_ok(&validate_role(&good));
        assert_ok(&validate_role_update(&good, &good));
        let no_rules: rbac::Role = obj(json!({"metadata": {"name": "empty", "namespace": "default"}}));
        assert_ok(&validate_role(&no_rules));

        let bad: rbac::Role = obj(json!({"metadata": {"name": "r", "namespace": "default"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": []}, {"verbs": ["get"]}]}));
        let errs = validate_role(&bad);
        let e = find(&errs, "rules[0].verbs");
        assert_eq!(
            (e.kind, e.message.as_str()),
            (FieldErrorType::Required, "Required value: verbs must contain at least one value")
        );
        assert_eq!(
            find(&errs, "rules[1].apiGroups").message,
            "Required value: resource rules must supply at least one api group"
        );
        assert_eq!(
            find(&errs, "rules[1].resources").message,
            "Required value: resource rules must supply at least one resource"
        );
        assert_eq!(errs.len(), 3, "{errs:#?}");
    }

    #[test]
    fn non_resource_urls_only_in_cluster_roles() {
        let urls = json!([{"nonResourceURLs": ["/healthz", "/version"], "verbs": ["get"]}]);
        let role: rbac::Role = obj(json!({"metadata": {"name": "r", "namespace": "default"}, "rules": urls}));
        let errs = validate_role(&role);
        assert_eq!(
            find(&errs, "rules[0].nonResourceURLs").message,
            "Invalid value: []string{\"/healthz\", \"/version\"}: namespaced rules cannot apply to non-resource URLs"
        );
        assert_eq!(errs.len(), 1, "no apiGroups/resources required for a URL rule: {errs:#?}");

        let cr: rbac::ClusterRole = obj(json!({"metadata": {"name": "health"}, "rules": urls}));
        assert_ok(&validate_cluster_role(&cr));
        assert_ok(&validate_cluster_role_update(&cr, &cr));
        let mixed: rbac::ClusterRole = obj(json!({"metadata": {"name": "mixed"},
            "rules": [{"nonResourceURLs": ["/metrics"], "resources": ["pods"], "verbs": ["get"]}]}));
        assert_eq!(
            find(&validate_cluster_role(&mixed), "rules[0].nonResourceURLs").message,
            "Invalid value: []string{\"/metrics\"}: rules cannot apply to both regular resources and non-resource URLs"
        );
        let verbless: rbac::ClusterRole =
            obj(json!({"metadata": {"name": "v"}, "rules": [{"nonResourceURLs": ["/metrics"], "verbs": []}]}));
        assert_eq!(find(&validate_cluster_role(&verbless), "rules[0].verbs").kind, FieldErrorType::Required);
    }

    #[test]
    fn cluster_role_aggregation_rule() {
        let agg: rbac::ClusterRole = obj(json!({"metadata": {"name": "monitoring"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]}}));
        assert_ok(&validate_cluster_role(&agg));
        let empty: rbac::ClusterRole = obj(json!({"metadata": {"name": "m"}, "aggregationRule": {}}));
        assert_eq!(
            find(&validate_cluster_role(&empty), "aggregationRule.clusterRoleSelectors").message,
            "Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"
        );
        let bad: rbac::ClusterRole = obj(json!({"metadata": {"name": "m"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchExpressions": [{"key": "a", "operator": "In"}]}]}}));
        let errs = validate_cluster_role(&bad);
        assert_eq!(
            find(&errs, "aggregationRule.clusterRoleSelectors[0].matchExpressions[0].values").kind,
            FieldErrorType::Required
        );
        assert_eq!(
            find(&errs, "aggregationRule.clusterRoleSelectors[0]").message,
            "Invalid value: \"null\": invalid label selector."
        );
    }

    fn role_binding_json() -> Value {
        json!({"metadata": {"name": "read-pods", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [
            {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "jane"},
            {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:authenticated"},
            {"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"},
            {"kind": "ServiceAccount", "name": "builder"}
        ]})
    }

    #[test]
    fn role_binding_role_ref() {
        let rb: rbac::RoleBinding = obj(role_binding_json());
        assert_ok(&validate_role_binding(&rb));
        assert_ok(&validate_role_binding_update(&rb, &rb));
        let to_cluster_role: rbac::RoleBinding =
            obj(with(role_binding_json(), &["roleRef", "kind"], json!("ClusterRole")));
        assert_ok(&validate_role_binding(&to_cluster_role));

        let bad: rbac::RoleBinding = obj(with(
            role_binding_json(),
            &["roleRef"],
            json!({"apiGroup": "rbac.example.com", "kind": "Widget", "name": ""}),
        ));
        let errs = validate_role_binding(&bad);
        assert_eq!(
            find(&errs, "roleRef.apiGroup").message,
            "Unsupported value: \"rbac.example.com\": supported values: \"rbac.authorization.k8s.io\""
        );
        assert_eq!(
            find(&errs, "roleRef.kind").message,
            "Unsupported value: \"Widget\": supported values: \"Role\", \"ClusterRole\""
        );
        assert_eq!(find(&errs, "roleRef.name").kind, FieldErrorType::Required);
        let dotdot: rbac::RoleBinding = obj(with(role_binding_json(), &["roleRef", "name"], json!("..")));
        assert_eq!(
            find(&validate_role_binding(&dotdot), "roleRef.name").message,
            "Invalid value: \"..\": may not be '..'"
        );

        // roleRef is immutable; other changes are fine.
        let mut more = role_binding_json();
        more["subjects"].as_array_mut().unwrap().push(json!({"kind": "User", "apiGroup": RBAC_GROUP, "name": "bob"}));
        assert_ok(&validate_role_binding_update(&obj(more), &rb));
        let errs = validate_role_binding_update(&to_cluster_role, &rb);
        let e = find(&errs, "roleRef");
        assert_eq!(e.kind, FieldErrorType::Invalid);
        assert_eq!(
            e.message,
            "Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"pod-reader\"}: cannot change roleRef"
        );
    }

    #[test]
    fn binding_subjects() {
        let subjects =
            |subjects: Value| -> rbac::RoleBinding { obj(with(role_binding_json(), &["subjects"], subjects)) };
        let errs = validate_role_binding(&subjects(json!([
            {"kind": "Robot", "name": "r2"},
            {"kind": "User", "name": "jane"},
            {"kind": "Group", "apiGroup": "example.com", "name": "devs"},
            {"kind": "User", "apiGroup": RBAC_GROUP, "name": ""},
            {"kind": "ServiceAccount", "name": "Not_A_DNS_Name"},
            {"kind": "ServiceAccount", "apiGroup": RBAC_GROUP, "name": "sa"}
        ])));
        assert_eq!(
            find(&errs, "subjects[0].kind").message,
            "Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\""
        );
        assert_eq!(
            find(&errs, "subjects[1].apiGroup").message,
            "Unsupported value: \"\": supported values: \"rbac.authorization.k8s.io\""
        );
        assert_eq!(find(&errs, "subjects[2].apiGroup").kind, FieldErrorType::NotSupported);
        assert_eq!(find(&errs, "subjects[3].name").message, "Required value");
        assert!(find(&errs, "subjects[4].name").message.contains("RFC 1123 subdomain"));
        assert_eq!(
            find(&errs, "subjects[5].apiGroup").message,
            "Unsupported value: \"rbac.authorization.k8s.io\": supported values: \"\""
        );
        assert_eq!(errs.len(), 6, "{errs:#?}");
    }

    #[test]
    fn cluster_role_binding_rules() {
        let crb_json = json!({"metadata": {"name": "admins"},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "Group", "apiGroup": RBAC_GROUP, "name": "system:masters"},
                         {"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}]});
        let crb: rbac::ClusterRoleBinding = obj(crb_json.clone());
        assert_ok(&validate_cluster_role_binding(&crb));
        assert_ok(&validate_cluster_role_binding_update(&crb, &crb));

        let to_role: rbac::ClusterRoleBinding = obj(with(crb_json.clone(), &["roleRef", "kind"], json!("Role")));
        let errs = validate_cluster_role_binding(&to_role);
        assert_eq!(
            find(&errs, "roleRef.kind").message,
            "Unsupported value: \"Role\": supported values: \"ClusterRole\""
        );
        // A ServiceAccount subject of a ClusterRoleBinding must say its namespace.
        let no_ns: rbac::ClusterRoleBinding =
            obj(with(crb_json.clone(), &["subjects", "1"], json!({"kind": "ServiceAccount", "name": "default"})));
        assert_eq!(find(&validate_cluster_role_binding(&no_ns), "subjects[1].namespace").message, "Required value");

        let renamed: rbac::ClusterRoleBinding = obj(with(crb_json, &["roleRef", "name"], json!("view")));
        assert_eq!(
            find(&validate_cluster_role_binding_update(&renamed, &crb), "roleRef").message,
            "Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"view\"}: cannot change roleRef"
        );
    }

    #[test]
    fn field_error_reasons_serialize_as_upstream() {
        let e = required("spec.containers", "");
        assert_eq!(serde_json::to_value(e.kind).unwrap(), json!("FieldValueRequired"));
        assert_eq!(e.to_string(), "spec.containers: Required value");
    }

    fn priority_class(name: &str, value: i32) -> scheduling::PriorityClass {
        scheduling::PriorityClass {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            value,
            ..Default::default()
        }
    }

    #[test]
    fn priority_classes_follow_upstream_rules() {
        assert!(validate_priority_class(&priority_class("high", 1000)).is_empty());
        assert!(validate_priority_class(&priority_class("system-node-critical", 2_000_001_000)).is_empty());
        let msgs = |errs: FieldErrors| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>();
        assert_eq!(
            msgs(validate_priority_class(&priority_class("huge", 1_000_000_001))),
            ["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
        );
        assert_eq!(
            msgs(validate_priority_class(&priority_class("system-mine", 5))),
            ["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use \
              only. error: system-mine is not a known system priority class"]
        );
        assert_eq!(validate_priority_class(&priority_class("system-cluster-critical", 7)).len(), 1);
        let mut never = priority_class("low", -5);
        never.preemption_policy = Some("Sometimes".into());
        assert_eq!(
            msgs(validate_priority_class(&never)),
            ["preemptionPolicy: Unsupported value: \"Sometimes\": supported values: \"Never\", \"PreemptLowerPriority\""]
        );
        let old = priority_class("high", 1000);
        let mut new = old.clone();
        new.description = Some("changed".into());
        assert!(validate_priority_class_update(&new, &old).is_empty());
        new.value = 1001;
        new.preemption_policy = Some("Never".into());
        assert_eq!(
            msgs(validate_priority_class_update(&new, &old)),
            [
                "value: Forbidden: may not be changed in an update.",
                "preemptionPolicy: Invalid value: \"Never\": field is immutable"
            ]
        );
    }
}
