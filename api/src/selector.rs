//! Label and field selectors, as upstream `k8s.io/apimachinery/pkg/labels` and
//! `k8s.io/apimachinery/pkg/fields`.
//!
//! - [`LabelSelector`]: `app=web,tier!=db,env in (a,b),!legacy`, parsed with
//!   [`LabelSelector::parse`] (the `?labelSelector=` query parameter, `kubectl -l`) or
//!   converted from a `metav1.LabelSelector` with [`LabelSelector::from_meta`] (what a
//!   Deployment, ReplicaSet, Service, ... carries). Its [`Display`](fmt::Display) form is
//!   upstream's canonical string (requirements sorted by key), e.g. what goes into
//!   `Scale.status.selector`.
//! - [`FieldSelector`]: `spec.nodeName=n1,status.phase!=Running`, with upstream's
//!   escaping (`\,` `\=` `\\`) in values.
//!
//! Both are pure data: parse once, match many times. An empty selector matches
//! everything.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

/// Why a selector could not be parsed or built. Every message names the offending
/// selector, key or value and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector string is malformed. `reason` reads like upstream's
    /// (`unable to parse requirement: found 'x', expected: '('`).
    #[error("invalid label selector {selector:?}: {reason}")]
    LabelSyntax { selector: String, reason: String },
    /// A label key is not a qualified name (`[prefix/]name`).
    #[error("invalid label key {key:?}: {reason}")]
    InvalidLabelKey { key: String, reason: String },
    /// A label value is not a valid label value.
    #[error("invalid label value {value:?} for key {key:?}: {reason}")]
    InvalidLabelValue { key: String, value: String, reason: String },
    /// The operator and the number (or form) of values do not fit together.
    #[error("invalid values {values:?} for key {key:?} with operator '{operator}': {reason}")]
    InvalidValues { key: String, operator: Operator, values: Vec<String>, reason: String },
    /// A `matchExpressions[].operator` that is not one of `In`, `NotIn`, `Exists`,
    /// `DoesNotExist`.
    #[error(
        "{operator:?} is not a valid label selector operator (key {key:?}): \
         use In, NotIn, Exists or DoesNotExist"
    )]
    InvalidOperator { key: String, operator: String },
    /// A field selector string is malformed.
    #[error("invalid field selector {selector:?}: {reason}")]
    FieldSyntax { selector: String, reason: String },
}

// ---------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------

/// The operator of one label [`Requirement`], as upstream's `selection.Operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value` (same meaning as [`Operator::Equals`], kept for printing)
    DoubleEquals,
    /// `key!=value`: true when the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`: true when the label is absent or has none of the values.
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>3` (integer comparison; upstream's `gt`, not allowed in `matchExpressions`)
    GreaterThan,
    /// `key<3` (integer comparison; upstream's `lt`, not allowed in `matchExpressions`)
    LessThan,
}

impl Operator {
    /// Upstream's `selection.Operator` string (`=`, `==`, `!=`, `in`, `notin`, `exists`,
    /// `!`, `gt`, `lt`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One requirement of a label selector: `key`, `operator` and the `values` (sorted,
/// without duplicates; empty for [`Operator::Exists`] and [`Operator::DoesNotExist`],
/// exactly one for the equality and comparison operators).
///
/// Build it with [`Requirement::new`], which validates like upstream's
/// `labels.NewRequirement`; the fields are public for reading and pattern matching.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    /// A validated requirement: `key` must be a qualified name (`[prefix/]name`), every
    /// value a valid label value, and the values must fit the operator (one for
    /// `=`/`==`/`!=`, at least one for `in`/`notin`, none for exists/does-not-exist, one
    /// integer for `>`/`<`).
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, SelectorError> {
        let key = key.into();
        let mut values: Vec<String> = values.into_iter().map(Into::into).collect();
        validate_label_key(&key).map_err(|reason| SelectorError::InvalidLabelKey { key: key.clone(), reason })?;
        let count_problem = match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty".to_string())
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
                Some("exact-match compatibility requires one single value".to_string())
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist".to_string())
            }
            Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required".to_string())
            }
            Operator::GreaterThan | Operator::LessThan if values[0].parse::<i64>().is_err() => {
                Some("for 'Gt', 'Lt' operators, the value must be an integer".to_string())
            }
            _ => None,
        };
        if let Some(reason) = count_problem {
            return Err(SelectorError::InvalidValues { key, operator, values, reason });
        }
        for value in &values {
            validate_label_value(value).map_err(|reason| SelectorError::InvalidLabelValue {
                key: key.clone(),
                value: value.clone(),
                reason,
            })?;
        }
        values.sort();
        values.dedup();
        Ok(Requirement { key, operator, values })
    }

    /// Whether `labels` satisfy this requirement (upstream's `Requirement.Matches`).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_value(labels.get(&self.key).map(String::as_str))
    }

    /// Whether a label whose value is `value` (`None`: the label is absent) satisfies
    /// this requirement.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => value.is_some_and(has),
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(has),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), [wanted]) = (value, self.values.as_slice()) else {
                    return false;
                };
                let (Ok(actual), Ok(wanted)) = (actual.parse::<i64>(), wanted.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > wanted
                } else {
                    actual < wanted
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    /// Upstream's `Requirement.String()`: `!key`, `key`, `key=v`, `key==v`, `key!=v`,
    /// `key in (a,b)`, `key notin (a,b)`, `key>3`, `key<3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Exists => return f.write_str(&self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
        };
        let values = self.values.join(",");
        match self.operator {
            Operator::In | Operator::NotIn => write!(f, "{}{op}({values})", self.key),
            _ => write!(f, "{}{op}{values}", self.key),
        }
    }
}

/// A label selector: the AND of its [`Requirement`]s, kept sorted by key as upstream.
///
/// An empty selector (no requirements; `""` parsed, or a `metav1.LabelSelector` with
/// neither `matchLabels` nor `matchExpressions`) matches everything. Upstream's
/// `metav1.LabelSelectorAsSelector` turns a *nil* selector into one that matches
/// nothing; this type has no such value, so callers holding an
/// `Option<metav1.LabelSelector>` must treat `None` as "matches nothing" themselves
/// (e.g. a Service without a selector selects no Pods), and use [`is_empty`] to spot
/// the selects-everything case where that matters (a ReplicaSet with an empty selector
/// is invalid, for example).
///
/// [`is_empty`]: LabelSelector::is_empty
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses upstream's label selector syntax: comma-separated requirements, each one
    /// of `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>1`, `k<1`.
    /// Whitespace around tokens is ignored. `""` is the empty selector (matches
    /// everything).
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let requirements = LabelParser::new(s).parse()?;
        Ok(Self::from_requirements(requirements))
    }

    /// Converts a `metav1.LabelSelector` (`matchLabels` + `matchExpressions` with `In`,
    /// `NotIn`, `Exists`, `DoesNotExist`) as upstream's `LabelSelectorAsSelector`. See the
    /// type docs for nil versus empty.
    pub fn from_meta(selector: &meta::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::new(key.clone(), Operator::Equals, [value.clone()])?);
        }
        for expr in selector.match_expressions.iter().flatten() {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::InvalidOperator { key: expr.key.clone(), operator: other.to_string() })
                }
            };
            let values = expr.values.clone().unwrap_or_default();
            requirements.push(Requirement::new(expr.key.clone(), operator, values)?);
        }
        Ok(Self::from_requirements(requirements))
    }

    /// The selector `k1=v1,k2=v2,...` matching exactly the objects that carry all these
    /// labels (upstream's `SelectorFromSet`). Keys and values are not validated.
    pub fn from_set(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement { key: k.clone(), operator: Operator::Equals, values: vec![v.clone()] })
            .collect();
        Self::from_requirements(requirements)
    }

    /// A selector from already-built requirements (sorted by key here).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements }
    }

    /// This selector with one more requirement (upstream's `Selector.Add`).
    pub fn with_requirement(mut self, requirement: Requirement) -> Self {
        let at = self.requirements.partition_point(|r| r.key <= requirement.key);
        self.requirements.insert(at, requirement);
        self
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when there are no requirements, i.e. the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// [`matches`](Self::matches) for `metadata.labels` as k8s-openapi holds it: `None`
    /// is the same as no labels.
    pub fn matches_opt(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        match labels {
            Some(labels) => self.matches(labels),
            None => self.requirements.iter().all(|r| r.matches_value(None)),
        }
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical string: requirements sorted by key, joined by `,` (`""` when empty).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A token of the label selector syntax (upstream's lexer in `labels/selector.go`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Identifier(String),
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    OpenParen,
    CloseParen,
    Comma,
    End,
}

impl Token {
    /// How the token is named in an error message.
    fn describe(&self) -> String {
        let lit = match self {
            Token::Identifier(s) => s.as_str(),
            Token::Bang => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
            Token::OpenParen => "(",
            Token::CloseParen => ")",
            Token::Comma => ",",
            Token::End => return "end of string".to_string(),
        };
        format!("'{lit}'")
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | '>' | '<' | '(' | ')' | ',')
}

/// Splits a label selector into tokens. Identifiers run until whitespace or one of
/// `! = > < ( ) ,`; `in` and `notin` stay identifiers (the parser decides whether they are
/// operators, so `a=in` is the value "in").
fn lex(s: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let next = chars.peek().copied();
            let token = match (c, next) {
                ('=', Some('=')) => {
                    chars.next();
                    Token::DoubleEquals
                }
                ('!', Some('=')) => {
                    chars.next();
                    Token::NotEquals
                }
                ('!', _) => Token::Bang,
                ('=', _) => Token::Equals,
                ('>', _) => Token::GreaterThan,
                ('<', _) => Token::LessThan,
                ('(', _) => Token::OpenParen,
                (')', _) => Token::CloseParen,
                _ => Token::Comma,
            };
            tokens.push(token);
            continue;
        }
        let mut ident = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || is_special(c) {
                break;
            }
            ident.push(c);
            chars.next();
        }
        tokens.push(Token::Identifier(ident));
    }
    tokens.push(Token::End);
    tokens
}

/// Recursive-descent parser following upstream's `labels.Parser` step by step, so the
/// same strings are accepted and rejected.
struct LabelParser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

impl<'a> LabelParser<'a> {
    fn new(input: &'a str) -> Self {
        LabelParser { input, tokens: lex(input), pos: 0 }
    }

    fn peek(&self) -> &Token {
        // The token list always ends with `End`, and `next` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        token
    }

    fn syntax(&self, reason: String) -> SelectorError {
        SelectorError::LabelSyntax { selector: self.input.to_string(), reason }
    }

    fn parse(mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            match self.peek() {
                Token::Identifier(_) | Token::Bang => {
                    let requirement = self
                        .requirement()
                        .map_err(|reason| self.syntax(format!("unable to parse requirement: {reason}")))?;
                    requirements.push(requirement);
                    match self.next() {
                        Token::End => return Ok(requirements),
                        Token::Comma => match self.peek() {
                            Token::Identifier(_) | Token::Bang => {}
                            t => {
                                let reason = format!("found {}, expected: identifier after ','", t.describe());
                                return Err(self.syntax(reason));
                            }
                        },
                        t => {
                            let reason = format!("found {}, expected: ',' or end of string", t.describe());
                            return Err(self.syntax(reason));
                        }
                    }
                }
                Token::End => return Ok(requirements),
                t => {
                    let reason = format!("found {}, expected: !, identifier, or end of string", t.describe());
                    return Err(self.syntax(reason));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let mut token = self.next();
        let negated = token == Token::Bang;
        if negated {
            token = self.next();
        }
        let Token::Identifier(key) = token else {
            return Err(format!("found {}, expected: identifier", token.describe()));
        };
        validate_label_key(&key).map_err(|reason| format!("invalid label key {key:?}: {reason}"))?;
        let unary = matches!(self.peek(), Token::End | Token::Comma);
        if negated || unary {
            // `!key` followed by anything but `,`/end is reported by the caller.
            let op = if negated { Operator::DoesNotExist } else { Operator::Exists };
            return Requirement::new(key, op, Vec::<String>::new()).map_err(|e| e.to_string());
        }
        let operator = match self.next() {
            Token::Identifier(s) if s == "in" => Operator::In,
            Token::Identifier(s) if s == "notin" => Operator::NotIn,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            t => {
                return Err(format!(
                    "found {} after key {key:?}, expected one of: =, ==, !=, in, notin, >, <",
                    t.describe()
                ))
            }
        };
        let values = match operator {
            Operator::In | Operator::NotIn => self.set_values()?,
            _ => vec![self.exact_value()?],
        };
        Requirement::new(key, operator, values).map_err(|e| e.to_string())
    }

    /// `(a,b,c)`; as upstream, `()` and empty slots (`(a,)`, `(,a)`) mean the value "".
    fn set_values(&mut self) -> Result<Vec<String>, String> {
        let t = self.next();
        if t != Token::OpenParen {
            return Err(format!("found {}, expected: '('", t.describe()));
        }
        match self.peek() {
            Token::CloseParen => {
                self.next();
                Ok(vec![String::new()])
            }
            Token::Identifier(_) | Token::Comma => {
                let values = self.identifier_list()?;
                match self.next() {
                    Token::CloseParen => Ok(values),
                    t => Err(format!("found {}, expected: ')'", t.describe())),
                }
            }
            t => Err(format!("found {}, expected: ',', ')' or identifier", t.describe())),
        }
    }

    fn identifier_list(&mut self) -> Result<Vec<String>, String> {
        let mut values = Vec::new();
        loop {
            match self.next() {
                Token::Identifier(v) => {
                    values.push(v);
                    match self.peek() {
                        Token::Comma => continue,
                        Token::CloseParen => return Ok(values),
                        t => return Err(format!("found {}, expected: ',' or ')'", t.describe())),
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.push(String::new()); // "(,"
                    }
                    match self.peek() {
                        Token::CloseParen => {
                            values.push(String::new()); // ",)"
                            return Ok(values);
                        }
                        Token::Comma => {
                            self.next();
                            values.push(String::new()); // ",,"
                        }
                        _ => {}
                    }
                }
                t => return Err(format!("found {}, expected: ',', or identifier", t.describe())),
            }
        }
    }

    /// The single value after `=`, `==`, `!=`, `>`, `<`; nothing (`a=`) is the value "".
    fn exact_value(&mut self) -> Result<String, String> {
        if matches!(self.peek(), Token::End | Token::Comma) {
            return Ok(String::new());
        }
        match self.next() {
            Token::Identifier(v) => Ok(v),
            t => Err(format!("found {}, expected: identifier", t.describe())),
        }
    }
}

// --- upstream's k8s.io/apimachinery/pkg/util/validation, the parts selectors need ------

const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
const LABEL_VALUE_MAX_LENGTH: usize = 63;
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, the shape of label names and values.
fn is_label_token(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`
fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let bytes = label.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-'),
            _ => false,
        }
    })
}

/// Upstream's `IsQualifiedName`: `name` or `prefix/name`, where the prefix is a DNS
/// subdomain (`app.kubernetes.io/name`).
fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        None => (None, key),
        Some((prefix, name)) if !name.contains('/') => (Some(prefix), name),
        Some(_) => {
            return Err("a qualified name must be 'name' or 'prefix/name' with at most one '/' \
                        (e.g. 'MyName' or 'example.com/MyName')"
                .to_string())
        }
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err("prefix part must be non-empty".to_string());
        }
        if prefix.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
            return Err(format!("prefix part must be no more than {DNS1123_SUBDOMAIN_MAX_LENGTH} characters"));
        }
        if !is_dns1123_subdomain(prefix) {
            return Err("prefix part a lowercase RFC 1123 subdomain must consist of lower case \
                        alphanumeric characters, '-' or '.', and must start and end with an \
                        alphanumeric character (e.g. 'example.com')"
                .to_string());
        }
    }
    if name.is_empty() {
        return Err("name part must be non-empty".to_string());
    }
    if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        return Err(format!("name part must be no more than {QUALIFIED_NAME_MAX_LENGTH} characters"));
    }
    if !is_label_token(name) {
        return Err("name part must consist of alphanumeric characters, '-', '_' or '.', and \
                    must start and end with an alphanumeric character (e.g. 'MyName', \
                    'my.name' or '123-abc')"
            .to_string());
    }
    Ok(())
}

/// Upstream's `IsValidLabelValue`: empty, or at most 63 of `[-A-Za-z0-9_.]` starting and
/// ending with an alphanumeric.
fn validate_label_value(value: &str) -> Result<(), String> {
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        return Err(format!("must be no more than {LABEL_VALUE_MAX_LENGTH} characters"));
    }
    if !value.is_empty() && !is_label_token(value) {
        return Err("a valid label must be an empty string or consist of alphanumeric \
                    characters, '-', '_' or '.', and must start and end with an alphanumeric \
                    character (e.g. 'MyValue', 'my_value' or '12345')"
            .to_string());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------

/// The operator of a [`FieldRequirement`]. `==` parses as [`FieldOperator::Equals`], as
/// upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldOperator {
    /// `field=value` or `field==value`
    Equals,
    /// `field!=value`
    NotEquals,
}

/// One term of a field selector: `field` compared with `value` (already unescaped).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

impl FieldRequirement {
    /// Whether a field whose value is `actual` satisfies this term (a missing field
    /// compares as "").
    pub fn matches_value(&self, actual: &str) -> bool {
        match self.operator {
            FieldOperator::Equals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            // A field name ending in `!` (parsed from `a! =v`, whitespace being trimmed)
            // keeps a space, or `a!=v` would read back as `a != v`.
            FieldOperator::Equals if self.field.ends_with('!') => " =",
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_field_value(&self.value))
    }
}

/// A field selector: the AND of its terms `field=value`, `field==value`, `field!=value`.
///
/// Values may contain `,`, `=` and `\` escaped as `\,`, `\=` and `\\` (upstream's
/// `fields.EscapeValue`). Which fields exist is up to the resource (the apiserver checks
/// them); here a field is just a name. Deviation from upstream: whitespace around field
/// names and values is ignored (`status.phase = Running`), upstream keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses `f=v,f==v,f!=v` with upstream's escaping. `""` is the empty selector.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let syntax = |reason: String| SelectorError::FieldSyntax { selector: s.to_string(), reason };
        let mut requirements = Vec::new();
        for term in split_field_terms(s) {
            if term.trim().is_empty() {
                continue;
            }
            let Some((field, operator, raw_value)) = split_field_term(term) else {
                return Err(syntax(format!(
                    "can't understand {term:?}: expected <field>=<value>, <field>==<value> or \
                     <field>!=<value>"
                )));
            };
            let field = field.trim();
            if field.is_empty() {
                return Err(syntax(format!("{term:?} has no field name before the operator")));
            }
            let value =
                unescape_field_value(raw_value.trim()).map_err(|reason| syntax(format!("in {term:?}: {reason}")))?;
            requirements.push(FieldRequirement { field: field.to_string(), operator, value });
        }
        requirements.sort_by(|a, b| (&a.field, a.operator, &a.value).cmp(&(&b.field, b.operator, &b.value)));
        Ok(FieldSelector { requirements })
    }

    /// The terms, sorted by field.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// True when there are no terms, i.e. the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object matches, given a getter for its field values (`None`: the field
    /// is missing, which compares as "").
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| r.matches_value(&get(&r.field).unwrap_or_default()))
    }

    /// The value `field` must equal, if the selector has a `field=value` term: the fast
    /// path for `metadata.name=x` (a single get instead of a list) or `spec.nodeName=n1`.
    pub fn exact_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    /// The canonical string: terms sorted, `=` for equality, values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Splits on commas not escaped by a backslash (the backslashes stay in the terms).
fn split_field_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at the first operator (`!=`, `==`, `=`, tried in that order at each
/// position); field names cannot contain escapes.
fn split_field_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        if let Some(value) = rest.strip_prefix("!=") {
            return Some((&term[..i], FieldOperator::NotEquals, value));
        }
        if let Some(value) = rest.strip_prefix("==") {
            return Some((&term[..i], FieldOperator::Equals, value));
        }
        if let Some(value) = rest.strip_prefix('=') {
            return Some((&term[..i], FieldOperator::Equals, value));
        }
    }
    None
}

/// Upstream's `fields.UnescapeValue`.
fn unescape_field_value(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => return Err(format!("invalid escape sequence '\\{c}' (only \\\\, \\, and \\= are allowed)")),
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' | '=' => return Err(format!("unescaped character '{c}' in value (write it as '\\{c}')")),
            _ => out.push(c),
        }
    }
    if escaped {
        return Err("value ends with a single '\\' (write a backslash as '\\\\')".to_string());
    }
    Ok(out)
}

/// Upstream's `fields.EscapeValue`: the inverse of [`unescape_field_value`].
pub fn escape_field_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    // --- label selector parsing -------------------------------------------------------

    #[test]
    fn parses_every_operator() {
        let s = sel("a=1,b==2,c!=3,d in (x,y),e notin (z),f,!g,h>4,i<5");
        let ops: Vec<_> = s.requirements().iter().map(|r| (r.key.as_str(), r.operator)).collect();
        assert_eq!(
            ops,
            vec![
                ("a", Operator::Equals),
                ("b", Operator::DoubleEquals),
                ("c", Operator::NotEquals),
                ("d", Operator::In),
                ("e", Operator::NotIn),
                ("f", Operator::Exists),
                ("g", Operator::DoesNotExist),
                ("h", Operator::GreaterThan),
                ("i", Operator::LessThan),
            ]
        );
        assert_eq!(s.requirements()[3].values, vec!["x", "y"]);
        assert_eq!(s.requirements()[6].values, Vec::<String>::new());
    }

    #[test]
    fn empty_and_blank_selectors_match_everything() {
        for s in ["", "   ", "\t"] {
            let s = sel(s);
            assert!(s.is_empty());
            assert!(s.matches(&labels(&[])));
            assert!(s.matches(&labels(&[("a", "b")])));
            assert!(s.matches_opt(None));
            assert_eq!(s.to_string(), "");
        }
        assert!(LabelSelector::everything().is_empty());
    }

    #[test]
    fn whitespace_is_tolerated() {
        let s = sel("  app = web ,  tier in ( a , b ) , ! legacy , env  ");
        assert_eq!(s.to_string(), "app=web,env,!legacy,tier in (a,b)");
        let s = sel("app==web,tier!=db");
        assert_eq!(s.to_string(), "app==web,tier!=db");
    }

    #[test]
    fn prefixed_keys() {
        let s = sel("app.kubernetes.io/name=web,example.com/tier notin (db)");
        assert_eq!(s.requirements()[0].key, "app.kubernetes.io/name");
        assert!(s.matches(&labels(&[("app.kubernetes.io/name", "web")])));
        assert!(!s.matches(&labels(&[("app.kubernetes.io/name", "db")])));
    }

    #[test]
    fn canonical_string_sorts_by_key_and_values() {
        assert_eq!(sel("z=1,a=2").to_string(), "a=2,z=1");
        assert_eq!(sel("env in (prod,dev,prod)").to_string(), "env in (dev,prod)");
        assert_eq!(sel("x notin (b, a)").to_string(), "x notin (a,b)");
        assert_eq!(sel("a>10").to_string(), "a>10");
        assert_eq!(sel("app=x").to_string(), "app=x");
        // Round trip.
        let s = sel("!a,b,c in (1,2),d!=4,e=,f==g");
        assert_eq!(sel(&s.to_string()), s);
    }

    #[test]
    fn empty_values() {
        // `a=` is the value "", as upstream; `()` and empty slots too.
        let s = sel("a=");
        assert_eq!(s.requirements()[0].values, vec![""]);
        assert!(s.matches(&labels(&[("a", "")])));
        assert!(!s.matches(&labels(&[])));
        assert_eq!(sel("a in ()").requirements()[0].values, vec![""]);
        assert_eq!(sel("a in (x,)").requirements()[0].values, vec!["", "x"]);
        assert_eq!(sel("a in (,x)").requirements()[0].values, vec!["", "x"]);
        assert_eq!(sel("a in (x,,y)").requirements()[0].values, vec!["", "x", "y"]);
        assert_eq!(sel("a=,b=c").to_string(), "a=,b=c");
    }

    #[test]
    fn in_and_notin_are_values_after_an_operator() {
        let s = sel("a=in,b in (notin,in)");
        assert_eq!(s.requirements()[0].values, vec!["in"]);
        assert_eq!(s.requirements()[1].values, vec!["in", "notin"]);
        // And a key may be called "in".
        assert_eq!(sel("in").requirements()[0].operator, Operator::Exists);
    }

    #[test]
    fn syntax_errors_say_what_was_expected() {
        let cases = [
            ("a in x", "found 'x', expected: '('"),
            ("a in (x", "found end of string, expected: ',' or ')'"),
            ("a in (x y)", "found 'y', expected: ',' or ')'"),
            ("a b", "found 'b' after key \"a\", expected one of"),
            ("a=b c", "found 'c', expected: ',' or end of string"),
            ("a=b,", "found end of string, expected: identifier after ','"),
            ("a=b,,c", "found ',', expected: identifier after ','"),
            (",a", "found ',', expected: !, identifier, or end of string"),
            ("!a=b", "found '=', expected: ',' or end of string"),
            ("a=(b)", "found '(', expected: identifier"),
            ("!", "found end of string, expected: identifier"),
            ("a in", "found end of string, expected: '('"),
        ];
        for (input, want) in cases {
            let err = LabelSelector::parse(input).expect_err(input).to_string();
            assert!(err.contains(want), "{input:?}: {err:?} should contain {want:?}");
            assert!(err.contains(&format!("{input:?}")), "{err:?} should quote the selector");
        }
        let err = LabelSelector::parse("a in x").unwrap_err().to_string();
        assert!(err.contains("unable to parse requirement:"), "{err}");
    }

    #[test]
    fn invalid_keys_and_values_are_rejected() {
        let cases = [
            ("-a=b", "name part must consist of alphanumeric"),
            ("a-=b", "name part must consist of alphanumeric"),
            ("Example.com/a=b", "prefix part a lowercase RFC 1123 subdomain"),
            ("/a=b", "prefix part must be non-empty"),
            ("a/=b", "name part must be non-empty"),
            ("a/b/c=d", "at most one '/'"),
            ("a=-b", "a valid label must be an empty string"),
            ("a in (ok,b_)", "a valid label must be an empty string"),
            ("a>b", "the value must be an integer"),
            ("a<", "the value must be an integer"),
        ];
        for (input, want) in cases {
            let err = LabelSelector::parse(input).expect_err(input).to_string();
            assert!(err.contains("unable to parse requirement"), "{input:?}: {err}");
            assert!(err.contains(want), "{input:?}: {err:?} should contain {want:?}");
        }
        let long = "a".repeat(64);
        let err = LabelSelector::parse(&format!("{long}=b")).unwrap_err().to_string();
        assert!(err.contains("no more than 63 characters"), "{err}");
        let err = LabelSelector::parse(&format!("a={long}")).unwrap_err().to_string();
        assert!(err.contains("no more than 63 characters"), "{err}");
        // Upper case names, dots, underscores and digits are fine.
        sel("My_App.v2=Some.Value_1,123=456");
    }

    // --- label selector matching ------------------------------------------------------

    #[test]
    fn matching_follows_upstream_semantics() {
        let l = labels(&[("app", "web"), ("tier", "frontend"), ("replicas", "3")]);
        let yes = [
            "app=web",
            "app==web",
            "app!=db",
            "missing!=x",
            "app in (web,db)",
            "app notin (db)",
            "missing notin (x)",
            "app",
            "!missing",
            "replicas>2",
            "replicas<4",
            "app=web,tier=frontend",
        ];
        for s in yes {
            assert!(sel(s).matches(&l), "{s} should match");
        }
        let no = [
            "app=db",
            "app!=web",
            "missing=x",
            "missing in (x)",
            "app notin (web)",
            "missing",
            "!app",
            "replicas>3",
            "replicas<3",
            "app>1",
            "missing>1",
            "app=web,tier=backend",
        ];
        for s in no {
            assert!(!sel(s).matches(&l), "{s} should not match");
        }
    }

    #[test]
    fn matches_opt_treats_none_as_no_labels() {
        assert!(sel("!a").matches_opt(None));
        assert!(sel("a!=b").matches_opt(None));
        assert!(!sel("a").matches_opt(None));
        assert!(!sel("a=b").matches_opt(None));
        let l = labels(&[("a", "b")]);
        assert!(sel("a=b").matches_opt(Some(&l)));
    }

    // --- metav1.LabelSelector ---------------------------------------------------------

    fn expr(key: &str, op: &str, values: &[&str]) -> meta::LabelSelectorRequirement {
        meta::LabelSelectorRequirement {
            key: key.to_string(),
            operator: op.to_string(),
            values: if values.is_empty() { None } else { Some(values.iter().map(|v| v.to_string()).collect()) },
        }
    }

    #[test]
    fn from_meta_converts_labels_and_expressions() {
        let m = meta::LabelSelector {
            match_labels: Some(labels(&[("app", "web"), ("a", "1")])),
            match_expressions: Some(vec![
                expr("env", "In", &["prod", "dev"]),
                expr("tier", "NotIn", &["db"]),
                expr("track", "Exists", &[]),
                expr("legacy", "DoesNotExist", &[]),
            ]),
        };
        let s = LabelSelector::from_meta(&m).unwrap();
        assert_eq!(s.to_string(), "a=1,app=web,env in (dev,prod),!legacy,tier notin (db),track");
        let mut l = labels(&[("app", "web"), ("a", "1"), ("env", "prod"), ("track", "x")]);
        assert!(s.matches(&l));
        l.insert("legacy".into(), "y".into());
        assert!(!s.matches(&l));
    }

    #[test]
    fn from_meta_scale_selector_string() {
        let m = meta::LabelSelector { match_labels: Some(labels(&[("app", "x")])), match_expressions: None };
        assert_eq!(LabelSelector::from_meta(&m).unwrap().to_string(), "app=x");
    }

    #[test]
    fn from_meta_empty_matches_everything() {
        let s = LabelSelector::from_meta(&meta::LabelSelector::default()).unwrap();
        assert!(s.is_empty());
        assert!(s.matches(&labels(&[("any", "thing")])));
        let s = LabelSelector::from_meta(&meta::LabelSelector {
            match_labels: Some(BTreeMap::new()),
            match_expressions: Some(vec![]),
        })
        .unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn from_meta_rejects_bad_input() {
        let bad_op =
            meta::LabelSelector { match_expressions: Some(vec![expr("a", "Equals", &["b"])]), ..Default::default() };
        let err = LabelSelector::from_meta(&bad_op).unwrap_err();
        assert_eq!(err, SelectorError::InvalidOperator { key: "a".into(), operator: "Equals".into() });
        assert!(err.to_string().contains("use In, NotIn, Exists or DoesNotExist"));

        let no_values =
            meta::LabelSelector { match_expressions: Some(vec![expr("a", "In", &[])]), ..Default::default() };
        let err = LabelSelector::from_meta(&no_values).unwrap_err().to_string();
        assert!(err.contains("values set can't be empty"), "{err}");

        let values_on_exists =
            meta::LabelSelector { match_expressions: Some(vec![expr("a", "Exists", &["b"])]), ..Default::default() };
        let err = LabelSelector::from_meta(&values_on_exists).unwrap_err().to_string();
        assert!(err.contains("values set must be empty"), "{err}");

        let bad_key = meta::LabelSelector { match_labels: Some(labels(&[("bad key", "v")])), ..Default::default() };
        assert!(matches!(LabelSelector::from_meta(&bad_key), Err(SelectorError::InvalidLabelKey { .. })));

        let bad_value = meta::LabelSelector { match_labels: Some(labels(&[("k", "bad value")])), ..Default::default() };
        let err = LabelSelector::from_meta(&bad_value).unwrap_err();
        assert!(matches!(err, SelectorError::InvalidLabelValue { .. }), "{err:?}");
    }

    #[test]
    fn from_set_and_with_requirement() {
        let s = LabelSelector::from_set(&labels(&[("b", "2"), ("a", "1")]));
        assert_eq!(s.to_string(), "a=1,b=2");
        let s = s.with_requirement(Requirement::new("pod-template-hash", Operator::Equals, ["abc"]).unwrap());
        assert_eq!(s.to_string(), "a=1,b=2,pod-template-hash=abc");
        let s = s.with_requirement(Requirement::new("a0", Operator::Exists, Vec::<String>::new()).unwrap());
        assert_eq!(s.to_string(), "a=1,a0,b=2,pod-template-hash=abc");
        assert!(LabelSelector::from_set(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn requirement_new_validates_value_counts() {
        assert!(Requirement::new("a", Operator::Equals, ["x", "y"]).is_err());
        assert!(Requirement::new("a", Operator::NotEquals, Vec::<String>::new()).is_err());
        assert!(Requirement::new("a", Operator::GreaterThan, ["1", "2"]).is_err());
        let r = Requirement::new("a", Operator::In, ["y", "x", "y"]).unwrap();
        assert_eq!(r.values, vec!["x", "y"]);
        assert_eq!(r.to_string(), "a in (x,y)");
        assert_eq!(Operator::NotIn.to_string(), "notin");
    }

    #[test]
    fn from_str_works() {
        let s: LabelSelector = "a=b".parse().unwrap();
        assert_eq!(s, sel("a=b"));
        let f: FieldSelector = "a=b".parse().unwrap();
        assert_eq!(f.exact_value("a"), Some("b"));
    }

    // --- field selectors --------------------------------------------------------------

    fn fields(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |f: &str| map.get(f).cloned()
    }

    fn fsel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn field_selector_parses_and_matches() {
        let s = fsel("spec.nodeName=n1,status.phase!=Running,metadata.namespace==default");
        assert_eq!(s.requirements().len(), 3);
        assert_eq!(s.to_string(), "metadata.namespace=default,spec.nodeName=n1,status.phase!=Running");
        let pod = fields(&[("spec.nodeName", "n1"), ("status.phase", "Pending"), ("metadata.namespace", "default")]);
        assert!(s.matches(&pod));
        let running =
            fields(&[("spec.nodeName", "n1"), ("status.phase", "Running"), ("metadata.namespace", "default")]);
        assert!(!s.matches(&running));
    }

    #[test]
    fn field_selector_missing_field_is_empty_string() {
        // The scheduler's classic: unscheduled pods.
        let s = fsel("spec.nodeName=");
        assert!(s.matches(fields(&[])));
        assert!(!s.matches(fields(&[("spec.nodeName", "n1")])));
        let s = fsel("spec.nodeName!=");
        assert!(!s.matches(fields(&[])));
        assert!(s.matches(fields(&[("spec.nodeName", "n1")])));
    }

    #[test]
    fn field_selector_empty_matches_everything() {
        for s in ["", " ", ",", " , "] {
            let s = fsel(s);
            assert!(s.is_empty());
            assert!(s.matches(fields(&[("a", "b")])));
            assert_eq!(s.to_string(), "");
        }
        assert!(FieldSelector::everything().is_empty());
    }

    #[test]
    fn field_selector_escaping() {
        let s = fsel(r"metadata.name=a\,b\=c\\d,spec.x!=y");
        assert_eq!(s.exact_value("metadata.name"), Some(r"a,b=c\d"));
        assert!(s.matches(fields(&[("metadata.name", r"a,b=c\d")])));
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d,spec.x!=y");
        assert_eq!(fsel(&s.to_string()), s);
        assert_eq!(escape_field_value(r"x=y,z\"), r"x\=y\,z\\");
    }

    #[test]
    fn field_selector_whitespace_around_names_and_values() {
        let s = fsel(" status.phase = Running , spec.nodeName!=n1 ");
        assert_eq!(s.exact_value("status.phase"), Some("Running"));
        assert_eq!(s.to_string(), "spec.nodeName!=n1,status.phase=Running");
        // Found by fuzzing: a name ending in `!` keeps its space, or the canonical string
        // would read back as `!=`.
        let s = fsel("a! =b");
        assert_eq!(s.to_string(), "a! =b");
        assert_eq!(fsel(&s.to_string()), s);
    }

    #[test]
    fn field_selector_exact_value() {
        let s = fsel("metadata.name=x,metadata.namespace!=y");
        assert_eq!(s.exact_value("metadata.name"), Some("x"));
        assert_eq!(s.exact_value("metadata.namespace"), None);
        assert_eq!(s.exact_value("spec.nodeName"), None);
        assert_eq!(fsel("metadata.name==x").exact_value("metadata.name"), Some("x"));
    }

    #[test]
    fn field_selector_operator_split_is_leftmost() {
        // The first operator splits; the rest must be escaped.
        let s = fsel(r"a==b\=c");
        assert_eq!(s.requirements()[0].value, "b=c");
        assert_eq!(s.requirements()[0].operator, FieldOperator::Equals);
        let s = fsel("a!=b");
        assert_eq!(s.requirements()[0].operator, FieldOperator::NotEquals);
        assert_eq!(s.requirements()[0].value, "b");
    }

    #[test]
    fn field_selector_errors() {
        let cases = [
            ("spec.nodeName", "can't understand \"spec.nodeName\""),
            ("a=b,c", "can't understand \"c\""),
            ("=x", "has no field name"),
            ("a=b=c", "unescaped character '='"),
            (r"a=b\x", r"invalid escape sequence '\x'"),
            (r"a=b\", "ends with a single"),
        ];
        for (input, want) in cases {
            let err = FieldSelector::parse(input).expect_err(input);
            assert!(matches!(err, SelectorError::FieldSyntax { .. }));
            let err = err.to_string();
            assert!(err.contains(want), "{input:?}: {err:?} should contain {want:?}");
            assert!(err.contains("invalid field selector"), "{err}");
        }
    }
}
