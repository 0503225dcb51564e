//! The SCIM filter language (RFC 7644 §3.4.2.2): a parser with the RFC's precedence
//! (`not` binds tighter than `and`, which binds tighter than `or`), a printer whose output
//! parses back to the same tree, and an evaluator over a resource's JSON.
//!
//! Attribute names and operators are case-insensitive. String comparisons follow the
//! attribute's `caseExact` (only `id`, `externalId` and `meta.version` are case-exact here);
//! booleans, numbers and the `meta` datetimes compare as typed values.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The URN of the core User schema; a path may carry it as a prefix.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// Most comparisons (`attr op value` and `attr pr`) in one filter or PATCH path.
pub const MAX_COMPARISONS: usize = 64;

/// Deepest nesting accepted: each pair of parentheses (a `not` included) and each value
/// filter `attr[...]` is one level.
pub const MAX_NESTING: usize = 32;

/// Longest filter or PATCH path accepted, in characters.
pub const MAX_FILTER_CHARS: usize = 4096;

// `and` and `or` chains are flat nodes (`And(Vec)`, `Or(Vec)`), built in a loop, so the tree
// is only as deep as the nesting: parsing, evaluating, printing and dropping a filter recurse
// at most about 2 * MAX_NESTING frames deep, whatever the filter's length (a 12,000-term
// `and` chain once built a 12,000-deep tree and overflowed a worker's stack; see
// docs/decisions/0001-scim-input-limits.md).

/// Why a filter or path was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct FilterError {
    /// What is wrong, for the client.
    pub detail: String,
    /// Whether a size limit was passed (SCIM answers `invalidFilter` for those, also in a
    /// PATCH path), rather than the text being malformed.
    pub limit: bool,
}

fn err<T>(msg: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError {
        detail: msg.into(),
        limit: false,
    })
}

fn limit_err<T>(msg: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError {
        detail: msg.into(),
        limit: true,
    })
}

/// Refuses a text longer than [`MAX_FILTER_CHARS`] before any work is done on it.
fn check_length(input: &str, what: &str) -> Result<(), FilterError> {
    if input.len() > MAX_FILTER_CHARS {
        let chars = input.chars().count();
        if chars > MAX_FILTER_CHARS {
            return limit_err(format!(
                "the {what} is {chars} characters long; at most {MAX_FILTER_CHARS} are accepted"
            ));
        }
    }
    Ok(())
}

/// An attribute path: an optional schema URN, an attribute and an optional sub-attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN prefix as written, without the trailing ':'.
    pub urn: Option<String>,
    /// The attribute name as written.
    pub name: String,
    /// The sub-attribute name as written.
    pub sub: Option<String>,
}

impl AttrPath {
    /// Parses `[urn:...:]attr[.sub]`.
    pub fn parse(s: &str) -> Result<AttrPath, FilterError> {
        let s = s.trim();
        let (urn, rest) = if has_urn_prefix(s) {
            match s.rfind(':') {
                Some(i) => (Some(s[..i].to_string()), &s[i + 1..]),
                None => (None, s),
            }
        } else {
            (None, s)
        };
        let (name, sub) = match rest.split_once('.') {
            Some((n, sub)) => (n, Some(sub)),
            None => (rest, None),
        };
        check_name(name, s)?;
        if let Some(sub) = sub {
            check_name(sub, s)?;
        }
        Ok(AttrPath {
            urn,
            name: name.to_string(),
            sub: sub.map(str::to_string),
        })
    }

    /// Whether the path names `name` (and `sub`), ignoring case and the core schema URN.
    pub fn is(&self, name: &str, sub: Option<&str>) -> bool {
        self.in_core()
            && self.name.eq_ignore_ascii_case(name)
            && match (&self.sub, sub) {
                (None, None) => true,
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => false,
            }
    }

    /// Whether the path is in the core User schema (no URN, or the core one).
    pub fn in_core(&self) -> bool {
        self.urn
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case(USER_SCHEMA))
    }

    /// The values this path selects in `ctx` (arrays are flattened).
    pub fn values<'a>(&self, ctx: &'a Value) -> Vec<&'a Value> {
        let base = match &self.urn {
            Some(u) if !u.eq_ignore_ascii_case(USER_SCHEMA) => match get_ci(ctx, u) {
                Some(ext) => ext,
                None => return Vec::new(),
            },
            _ => ctx,
        };
        let mut out = Vec::new();
        let Some(v) = get_ci(base, &self.name) else {
            return out;
        };
        match &self.sub {
            None => flatten(v, &mut out),
            Some(sub) => match v {
                Value::Array(items) => {
                    for item in items {
                        if let Some(x) = get_ci(item, sub) {
                            flatten(x, &mut out);
                        }
                    }
                }
                other => {
                    if let Some(x) = get_ci(other, sub) {
                        flatten(x, &mut out);
                    }
                }
            },
        }
        out
    }

    fn case_exact(&self) -> bool {
        (self.sub.is_none() && (self.is("id", None) || self.is("externalId", None)))
            || self.is("meta", Some("version"))
            || self.sub.as_deref() == Some("$ref")
    }

    fn is_datetime(&self) -> bool {
        self.is("meta", Some("created")) || self.is("meta", Some("lastModified"))
    }
}

/// Whether `s` starts with `urn:` in any case (and has more after it).
pub fn has_urn_prefix(s: &str) -> bool {
    s.len() > 4 && s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => out.extend(items.iter().filter(|x| !x.is_null())),
        Value::Null => {}
        other => out.push(other),
    }
}

/// A key of a JSON object, looked up case-insensitively (SCIM attribute names are).
pub fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn check_name(name: &str, whole: &str) -> Result<(), FilterError> {
    let mut chars = name.chars();
    let ok = name == "$ref"
        || matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        err(format!("{whole:?} is not a valid attribute path"))
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.urn {
            write!(f, "{u}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// equal
    Eq,
    /// not equal
    Ne,
    /// contains
    Co,
    /// starts with
    Sw,
    /// ends with
    Ew,
    /// greater than
    Gt,
    /// greater than or equal
    Ge,
    /// less than
    Lt,
    /// less than or equal
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<CompareOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }
}

/// A literal on the right of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum CompValue {
    /// A JSON string.
    Str(String),
    /// A JSON number.
    Num(serde_json::Number),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Str(s) => {
                let quoted = serde_json::to_string(s).map_err(|_| fmt::Error)?;
                f.write_str(&quoted)
            }
            CompValue::Num(n) => write!(f, "{n}"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Null => f.write_str("null"),
        }
    }
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// `a or b or ...`: two or more terms, none of them an `Or` (see [`Filter::or`]).
    Or(Vec<Filter>),
    /// `a and b and ...`: two or more terms, none of them an `And` (see [`Filter::and`]).
    And(Vec<Filter>),
    /// `not (a)`
    Not(Box<Filter>),
    /// `attr pr`
    Present(AttrPath),
    /// `attr op value`
    Compare(AttrPath, CompareOp, CompValue),
    /// `attr[filter]`: some value of the multi-valued (or complex) attribute matches.
    ValuePath(AttrPath, Box<Filter>),
}

impl Filter {
    /// `a and b and ...`, with the terms of `And` terms spliced in (the parser's shape).
    /// One term is that term.
    pub fn and(terms: Vec<Filter>) -> Filter {
        Self::flat(terms, true)
    }

    /// `a or b or ...`, with the terms of `Or` terms spliced in. One term is that term.
    pub fn or(terms: Vec<Filter>) -> Filter {
        Self::flat(terms, false)
    }

    fn flat(terms: Vec<Filter>, and: bool) -> Filter {
        let mut out = Vec::with_capacity(terms.len());
        for t in terms {
            match t {
                Filter::And(inner) if and => out.extend(inner),
                Filter::Or(inner) if !and => out.extend(inner),
                other => out.push(other),
            }
        }
        if out.len() == 1 {
            if let Some(only) = out.pop() {
                return only;
            }
        }
        if and {
            Filter::And(out)
        } else {
            Filter::Or(out)
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parentheses do not create nodes. A term of an `and` that is an `or` needs them;
        // an `and` inside an `or` does not (precedence), and is printed without, so the
        // text is never nested deeper than the one parsed. Same-kind terms never meet
        // (the nodes are flat), but are parenthesised if a caller built them.
        fn term(f: &mut fmt::Formatter<'_>, c: &Filter, in_and: bool) -> fmt::Result {
            match c {
                Filter::Or(_) | Filter::And(_) if in_and => write!(f, "({c})"),
                Filter::Or(_) => write!(f, "({c})"),
                other => write!(f, "{other}"),
            }
        }
        match self {
            Filter::Or(terms) | Filter::And(terms) => {
                let in_and = matches!(self, Filter::And(_));
                for (i, t) in terms.iter().enumerate() {
                    if i > 0 {
                        f.write_str(if in_and { " and " } else { " or " })?;
                    }
                    term(f, t, in_and)?;
                }
                Ok(())
            }
            Filter::Not(a) => write!(f, "not ({a})"),
            Filter::Present(p) => write!(f, "{p} pr"),
            Filter::Compare(p, op, v) => write!(f, "{p} {} {v}", op.as_str()),
            Filter::ValuePath(p, inner) => write!(f, "{p}[{inner}]"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Str(String),
    Word(String),
}

fn tokenize(input: &str) -> Result<Vec<Token>, FilterError> {
    let mut out = Vec::new();
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push(Token::Open);
                i += 1
            }
            b')' => {
                out.push(Token::Close);
                i += 1
            }
            b'[' => {
                out.push(Token::OpenBracket);
                i += 1
            }
            b']' => {
                out.push(Token::CloseBracket);
                i += 1
            }
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return err("a string in the filter is not closed with '\"'"),
                        Some(b'\\') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                let raw = input.get(start..i).unwrap_or_default();
                let s: String = match serde_json::from_str(raw) {
                    Ok(s) => s,
                    Err(e) => return err(format!("bad string {raw} in the filter: {e}")),
                };
                out.push(Token::Str(s));
            }
            _ => {
                let start = i;
                while i < bytes.len()
                    && !matches!(
                        bytes[i],
                        b' ' | b'\t' | b'\n' | b'\r' | b'(' | b')' | b'[' | b']' | b'"'
                    )
                {
                    i += 1;
                }
                out.push(Token::Word(
                    input.get(start..i).unwrap_or_default().to_string(),
                ));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    comparisons: usize,
}

impl Parser {
    fn new(tokens: Vec<Token>, depth: usize) -> Parser {
        Parser {
            tokens,
            pos: 0,
            depth,
            comparisons: 0,
        }
    }
}

/// Parses a filter.
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    check_length(input, "filter")?;
    if input.trim().is_empty() {
        return err("the filter is empty");
    }
    let mut p = Parser::new(tokenize(input)?, 0);
    let f = p.or(false)?;
    match p.peek() {
        None => Ok(f),
        Some(t) => err(format!(
            "unexpected {} after a complete filter",
            describe(Some(t))
        )),
    }
}

fn describe(t: Option<&Token>) -> String {
    match t {
        None => "end of filter".into(),
        Some(Token::Open) => "'('".into(),
        Some(Token::Close) => "')'".into(),
        Some(Token::OpenBracket) => "'['".into(),
        Some(Token::CloseBracket) => "']'".into(),
        Some(Token::Str(s)) => format!("string {s:?}"),
        Some(Token::Word(w)) => format!("{w:?}"),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return limit_err(format!(
                "the filter nests deeper than {MAX_NESTING} levels (parentheses, not and value filters)"
            ));
        }
        Ok(())
    }

    /// Counts one comparison against [`MAX_COMPARISONS`].
    fn count(&mut self) -> Result<(), FilterError> {
        self.comparisons += 1;
        if self.comparisons > MAX_COMPARISONS {
            return limit_err(format!(
                "the filter has more than {MAX_COMPARISONS} comparisons"
            ));
        }
        Ok(())
    }

    // The chains are read in a loop into one flat node: no recursion per term.
    fn or(&mut self, inner: bool) -> Result<Filter, FilterError> {
        let mut terms = vec![self.and(inner)?];
        while self.peek_word("or") {
            self.pos += 1;
            terms.push(self.and(inner)?);
        }
        Ok(Filter::or(terms))
    }

    fn and(&mut self, inner: bool) -> Result<Filter, FilterError> {
        let mut terms = vec![self.unary(inner)?];
        while self.peek_word("and") {
            self.pos += 1;
            terms.push(self.unary(inner)?);
        }
        Ok(Filter::and(terms))
    }

    fn unary(&mut self, inner: bool) -> Result<Filter, FilterError> {
        if self.peek_word("not") {
            self.pos += 1;
            if self.peek() != Some(&Token::Open) {
                return err("'not' must be followed by '('");
            }
            return Ok(Filter::Not(Box::new(self.group(inner)?)));
        }
        if self.peek() == Some(&Token::Open) {
            return self.group(inner);
        }
        self.attr_exp(inner)
    }

    fn group(&mut self, inner: bool) -> Result<Filter, FilterError> {
        self.enter()?;
        self.pos += 1; // '('
        let f = self.or(inner)?;
        match self.next() {
            Some(Token::Close) => {}
            t => return err(format!("expected ')' but found {}", describe(t.as_ref()))),
        }
        self.depth -= 1;
        Ok(f)
    }

    fn attr_exp(&mut self, inner: bool) -> Result<Filter, FilterError> {
        let path = match self.next() {
            Some(Token::Word(w)) => AttrPath::parse(&w)?,
            t => {
                return err(format!(
                    "expected an attribute name but found {}",
                    describe(t.as_ref())
                ))
            }
        };
        if self.peek() == Some(&Token::OpenBracket) {
            if inner {
                return err("a value filter '[...]' cannot nest inside another");
            }
            if path.sub.is_some() {
                return err(format!(
                    "{path}[...]: a value filter applies to an attribute, not a sub-attribute"
                ));
            }
            self.enter()?;
            self.pos += 1;
            let f = self.or(true)?;
            match self.next() {
                Some(Token::CloseBracket) => {}
                t => return err(format!("expected ']' but found {}", describe(t.as_ref()))),
            }
            self.depth -= 1;
            // `emails[type eq "work"].value eq "x"` (sent by real clients, not in the RFC's
            // ABNF) means: some email has type work and value x.
            if let Some(Token::Word(w)) = self.peek() {
                if let Some(sub) = w.strip_prefix('.') {
                    let sub = AttrPath::parse(sub)?;
                    if sub.urn.is_some() || sub.sub.is_some() {
                        return err(format!("{w:?} is not a sub-attribute"));
                    }
                    self.pos += 1;
                    let tail = self.comparison(sub)?;
                    return Ok(Filter::ValuePath(
                        path,
                        Box::new(Filter::and(vec![f, tail])),
                    ));
                }
            }
            return Ok(Filter::ValuePath(path, Box::new(f)));
        }
        self.comparison(path)
    }

    fn comparison(&mut self, path: AttrPath) -> Result<Filter, FilterError> {
        self.count()?;
        let op = match self.next() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("pr") => {
                return Ok(Filter::Present(path))
            }
            Some(Token::Word(w)) => match CompareOp::parse(&w) {
                Some(op) => op,
                None => {
                    return err(format!(
                        "{w:?} is not an operator (eq ne co sw ew gt ge lt le pr)"
                    ))
                }
            },
            t => {
                return err(format!(
                    "expected an operator after {path} but found {}",
                    describe(t.as_ref())
                ))
            }
        };
        let value = match self.next() {
            Some(Token::Str(s)) => CompValue::Str(s),
            Some(Token::Word(w)) => match w.as_str() {
                "true" => CompValue::Bool(true),
                "false" => CompValue::Bool(false),
                "null" => CompValue::Null,
                _ => match parse_number(&w) {
                    Some(n) => CompValue::Num(n),
                    None => {
                        return err(format!(
                        "{w:?} is not a value: use a quoted string, a number, true, false or null"
                    ))
                    }
                },
            },
            t => {
                return err(format!(
                    "expected a value after {path} {} but found {}",
                    op.as_str(),
                    describe(t.as_ref())
                ))
            }
        };
        if matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
            && !matches!(value, CompValue::Str(_))
        {
            return err(format!("{} needs a string value", op.as_str()));
        }
        if matches!(
            op,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        ) && matches!(value, CompValue::Bool(_) | CompValue::Null)
        {
            return err(format!("{} cannot compare booleans or null", op.as_str()));
        }
        Ok(Filter::Compare(path, op, value))
    }
}

/// A JSON number: integers exactly, others through std's correctly rounded f64 parser
/// (so a printed filter parses back to the same value).
fn parse_number(w: &str) -> Option<serde_json::Number> {
    if !w.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return None;
    }
    // Check the JSON number grammar first (std also takes "inf", "1.", ...).
    serde_json::from_str::<serde_json::Number>(w).ok()?;
    if let Ok(i) = w.parse::<i64>() {
        return Some(i.into());
    }
    if let Ok(u) = w.parse::<u64>() {
        return Some(u.into());
    }
    w.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
}

/// A PATCH path: `attrPath`, or `attrPath[valFilter]` with an optional `.subAttr`.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchPath {
    /// The attribute (with its sub-attribute when there is no filter).
    pub attr: AttrPath,
    /// The value filter.
    pub filter: Option<Filter>,
    /// The sub-attribute after the filter.
    pub sub_after_filter: Option<String>,
}

/// Parses a PATCH `path` (RFC 7644 §3.5.2).
pub fn parse_patch_path(input: &str) -> Result<PatchPath, FilterError> {
    check_length(input, "PATCH path")?;
    let input = input.trim();
    match input.find('[') {
        None => Ok(PatchPath {
            attr: AttrPath::parse(input)?,
            filter: None,
            sub_after_filter: None,
        }),
        Some(open) => {
            let close = match input.rfind(']') {
                Some(c) if c > open => c,
                _ => return err(format!("{input:?}: '[' is not closed with ']'")),
            };
            let attr = AttrPath::parse(&input[..open])?;
            if attr.sub.is_some() {
                return err(format!("{input:?}: a value filter applies to an attribute"));
            }
            // The brackets are the first level of nesting.
            let mut p = Parser::new(tokenize(&input[open + 1..close])?, 1);
            let filter = p.or(true)?;
            if p.peek().is_some() {
                return err(format!("{input:?}: unexpected text in the value filter"));
            }
            let rest = &input[close + 1..];
            let sub_after_filter = if rest.is_empty() {
                None
            } else {
                match rest.strip_prefix('.') {
                    Some(s) => {
                        check_name(s, input)?;
                        Some(s.to_string())
                    }
                    None => return err(format!("{input:?}: unexpected text after ']'")),
                }
            };
            Ok(PatchPath {
                attr,
                filter: Some(filter),
                sub_after_filter,
            })
        }
    }
}

/// The exact-match lookup a filter allows through an index, when it has one: a top-level
/// `userName eq`, `externalId eq` or `id eq`, alone or as a term of an `and`.
pub fn index_lookup(filter: &Filter) -> Option<(IndexKey, &str)> {
    match filter {
        Filter::Compare(p, CompareOp::Eq, CompValue::Str(v)) => {
            if p.is("userName", None) {
                Some((IndexKey::UserName, v))
            } else if p.is("externalId", None) {
                Some((IndexKey::ExternalId, v))
            } else if p.is("id", None) {
                Some((IndexKey::Id, v))
            } else {
                None
            }
        }
        Filter::And(terms) => terms.iter().find_map(index_lookup),
        _ => None,
    }
}

/// Which index a filter can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexKey {
    /// `userName` (case-insensitive).
    UserName,
    /// `externalId` (exact).
    ExternalId,
    /// `id`.
    Id,
}

mod eval;
pub use eval::{matches, sort_order, SortKey, SortNumber};

#[cfg(test)]
mod tests;
