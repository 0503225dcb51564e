//! Evaluating a parsed filter against a resource, and the order of `sortBy`.

use super::*;

/// Whether `resource` (a JSON object, or one value of a multi-valued attribute inside a
/// value filter) matches `filter`.
pub fn matches(filter: &Filter, ctx: &Value) -> bool {
    match filter {
        Filter::Or(terms) => terms.iter().any(|t| matches(t, ctx)),
        Filter::And(terms) => terms.iter().all(|t| matches(t, ctx)),
        Filter::Not(a) => !matches(a, ctx),
        Filter::Present(p) => p.values(ctx).iter().any(|v| match v {
            Value::String(s) => !s.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        }),
        Filter::Compare(p, op, value) => {
            let values = p.values(ctx);
            match op {
                CompareOp::Ne => !values.iter().any(|v| compare(p, CompareOp::Eq, v, value)),
                _ => {
                    if values.is_empty() {
                        *op == CompareOp::Eq && *value == CompValue::Null
                    } else {
                        values.iter().any(|v| compare(p, *op, v, value))
                    }
                }
            }
        }
        Filter::ValuePath(p, inner) => {
            let base = AttrPath {
                urn: p.urn.clone(),
                name: p.name.clone(),
                sub: None,
            };
            base.values(ctx).iter().any(|v| matches(inner, v))
        }
    }
}

fn compare(path: &AttrPath, op: CompareOp, actual: &Value, wanted: &CompValue) -> bool {
    match (actual, wanted) {
        (Value::String(a), CompValue::Str(w)) => {
            if path.is_datetime() {
                if let (Some(a), Some(w)) = (parse_time(a), parse_time(w)) {
                    return ordered(op, a.cmp(&w));
                }
            }
            let (a, w) = if path.case_exact() {
                (a.clone(), w.clone())
            } else {
                (
                    crate::member::caseless_key(a).into_owned(),
                    crate::member::caseless_key(w).into_owned(),
                )
            };
            match op {
                CompareOp::Co => a.contains(&w),
                CompareOp::Sw => a.starts_with(&w),
                CompareOp::Ew => a.ends_with(&w),
                _ => ordered(op, a.cmp(&w)),
            }
        }
        (Value::Bool(a), CompValue::Bool(w)) => match op {
            CompareOp::Eq => a == w,
            CompareOp::Ne => a != w,
            _ => false,
        },
        (Value::Number(a), CompValue::Num(w)) => match (a.as_f64(), w.as_f64()) {
            (Some(a), Some(w)) => a.partial_cmp(&w).is_some_and(|o| ordered(op, o)),
            _ => false,
        },
        // Some clients send booleans as strings ("True"); compare them as booleans.
        (Value::String(a), CompValue::Bool(w)) => {
            let a = a.eq_ignore_ascii_case("true");
            match op {
                CompareOp::Eq => a == *w,
                CompareOp::Ne => a != *w,
                _ => false,
            }
        }
        (Value::Null, CompValue::Null) => op == CompareOp::Eq,
        _ => false,
    }
}

fn ordered(op: CompareOp, o: Ordering) -> bool {
    match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::Ne => o != Ordering::Equal,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Ge => o != Ordering::Less,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Le => o != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Where a value falls in a `sortBy` order. RFC 7644 §3.4.2.3 leaves values of mixed types
/// open; here types rank first (null < boolean < number < string < complex), then values
/// compare within their type: numbers by value (integers and decimals exactly), strings
/// without case unless the attribute is case-exact, complex values by their JSON text. This
/// is a total order, so a sort over any mix of values cannot panic (Rust's sort may panic on an order that is
/// not total; docs/decisions/0001-scim-input-limits.md).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortKey {
    /// `null`
    Null,
    /// `false` < `true`
    Bool(bool),
    /// A number.
    Number(SortNumber),
    /// A string (lower-cased unless case-exact).
    String(String),
    /// An object or array, as its JSON text.
    Complex(String),
}

impl SortKey {
    /// The key of one value.
    pub fn from_value(v: &Value, case_exact: bool) -> SortKey {
        match v {
            Value::Null => SortKey::Null,
            Value::Bool(b) => SortKey::Bool(*b),
            Value::Number(n) => SortKey::Number(SortNumber(n.clone())),
            Value::String(s) if case_exact => SortKey::String(s.clone()),
            Value::String(s) => SortKey::String(s.to_lowercase()),
            other => SortKey::Complex(other.to_string()),
        }
    }

    /// What a resource sorts by: the first value `by` selects, if any.
    pub fn of(resource: &Value, by: &AttrPath) -> Option<SortKey> {
        by.values(resource)
            .first()
            .map(|v| SortKey::from_value(v, by.case_exact()))
    }
}

/// A JSON number ordered by its value: integers exactly (as i128), decimals as f64, and an
/// integer against a decimal without the rounding that would make the order intransitive.
#[derive(Clone, Debug)]
pub struct SortNumber(pub serde_json::Number);

impl SortNumber {
    fn int(&self) -> Option<i128> {
        self.0
            .as_i64()
            .map(i128::from)
            .or_else(|| self.0.as_u64().map(i128::from))
    }

    fn float(&self) -> f64 {
        // JSON numbers are finite; serde_json holds no NaN.
        self.0.as_f64().unwrap_or(0.0)
    }
}

/// An integer against a finite f64, exactly: rounding `i` to f64 is monotonic, so a strict
/// difference after rounding is the true one; on a tie `f` is integral and within ±2^64,
/// so it converts to i128 exactly.
fn int_against_float(i: i128, f: f64) -> Ordering {
    match (i as f64).partial_cmp(&f) {
        Some(Ordering::Equal) => i.cmp(&(f as i128)),
        Some(o) => o,
        None => Ordering::Equal,
    }
}

impl Ord for SortNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.int(), other.int()) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(a), None) => int_against_float(a, other.float()),
            (None, Some(b)) => int_against_float(b, self.float()).reverse(),
            (None, None) => self
                .float()
                .partial_cmp(&other.float())
                .unwrap_or(Ordering::Equal),
        }
    }
}

impl PartialOrd for SortNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for SortNumber {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for SortNumber {}

/// The `sortBy` order of two values (see [`SortKey`]), strings compared without case.
pub fn sort_order(a: &Value, b: &Value) -> Ordering {
    SortKey::from_value(a, false).cmp(&SortKey::from_value(b, false))
}
