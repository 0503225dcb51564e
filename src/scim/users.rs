//! The `/Users` handlers: list and search (filter, sort, paging, attributes), read, create,
//! replace, patch and delete. Every write goes through [`provision::apply`] and is made
//! durable (group commit) before the answer.
//!
//! The work whose cost grows with the directory or the request (a filtered scan, a sort, a
//! PATCH, rendering a page) runs on the blocking pool, at most one such task per core at a
//! time ([`off_workers`]), so the async workers stay free for health checks and lookups.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Map, Value};

use crate::member::{Actor, Change, ManagedBy, Member, MemberId};
use crate::provision::{Outcome, ProvisionError};
use crate::scim::error::{scim_json, ScimError};
use crate::scim::filter::{self, AttrPath, Filter, IndexKey, SortKey};
use crate::scim::resource::{self, etag};
use crate::scim::schema::{Limits, LIST_SCHEMA};
use crate::scim::{patch, read_json, AuthLabel, ScimState};

/// How many times a PATCH re-reads and retries when another write slipped in between.
const PATCH_RETRIES: usize = 5;

/// Paging, sorting, filtering and projection of one list or search.
#[derive(Debug, Default)]
pub struct ListQuery {
    /// The filter, if any.
    pub filter: Option<Filter>,
    /// 1-based.
    pub start_index: usize,
    /// Page size (capped at [`Limits::max_results`] when the list runs).
    pub count: usize,
    /// Sort key.
    pub sort_by: Option<AttrPath>,
    /// `sortOrder=descending`.
    pub descending: bool,
    /// Projection.
    pub projection: Projection,
}

/// `attributes` / `excludedAttributes`.
#[derive(Debug, Default, Clone)]
pub struct Projection {
    /// Return only these (plus `id` and `schemas`).
    pub attributes: Vec<AttrPath>,
    /// Do not return these.
    pub excluded: Vec<AttrPath>,
}

fn parse_paths(raw: &str, what: &str) -> Result<Vec<AttrPath>, ScimError> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            AttrPath::parse(s)
                .map_err(|e| ScimError::invalid_value(format!("{what}: {}", e.detail)))
        })
        .collect()
}

/// The most distinct paths one `attributes` or `excludedAttributes` may name.
pub const MAX_PROJECTION_PATHS: usize = 100;

/// Deduplicates `paths` (attribute names are case-insensitive) and refuses more than
/// [`MAX_PROJECTION_PATHS`]: a projection is applied to every resource of an answer, so its
/// length multiplies the cost of a whole listing.
fn bounded_paths(paths: Vec<AttrPath>, what: &str) -> Result<Vec<AttrPath>, ScimError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for p in paths {
        if seen.insert(p.to_string().to_lowercase()) {
            if out.len() == MAX_PROJECTION_PATHS {
                return Err(ScimError::bad_request(
                    crate::scim::error::ScimType::TooMany,
                    format!("{what} names more than {MAX_PROJECTION_PATHS} distinct attributes"),
                ));
            }
            out.push(p);
        }
    }
    Ok(out)
}

fn parse_int(raw: &str, what: &str) -> Result<i64, ScimError> {
    raw.trim()
        .parse::<i64>()
        .map_err(|_| ScimError::invalid_value(format!("{what} must be an integer, not {raw:?}")))
}

impl Projection {
    /// From the query string of a GET.
    pub fn from_query(query: Option<&str>) -> Result<Projection, ScimError> {
        let mut p = Projection::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if k.eq_ignore_ascii_case("attributes") {
                p.attributes.extend(parse_paths(&v, "attributes")?);
            } else if k.eq_ignore_ascii_case("excludedAttributes") {
                p.excluded.extend(parse_paths(&v, "excludedAttributes")?);
            }
        }
        p.attributes = bounded_paths(p.attributes, "attributes")?;
        p.excluded = bounded_paths(p.excluded, "excludedAttributes")?;
        Ok(p)
    }

    /// Applies the projection to one resource.
    pub fn apply(&self, resource: Value) -> Value {
        let Value::Object(mut obj) = resource else {
            return resource;
        };
        if !self.attributes.is_empty() {
            let mut out = Map::new();
            for always in ["schemas", "id"] {
                if let Some(v) = obj.get(always) {
                    out.insert(always.into(), v.clone());
                }
            }
            for p in &self.attributes {
                copy_path(&obj, &mut out, p);
            }
            obj = out;
        }
        for p in &self.excluded {
            if p.in_core()
                && (p.name.eq_ignore_ascii_case("id") || p.name.eq_ignore_ascii_case("schemas"))
            {
                continue;
            }
            remove_path(&mut obj, p);
        }
        Value::Object(obj)
    }
}

fn find_key(obj: &Map<String, Value>, name: &str) -> Option<String> {
    obj.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// The object a path's attribute lives in (the resource, or its extension object).
fn scope<'a>(
    obj: &'a Map<String, Value>,
    p: &AttrPath,
) -> Option<(&'a Map<String, Value>, Option<String>)> {
    if p.in_core() {
        return Some((obj, None));
    }
    let urn = p.urn.as_deref()?;
    let key = find_key(obj, urn)?;
    obj.get(&key)?.as_object().map(|o| (o, Some(key)))
}

fn copy_path(src: &Map<String, Value>, out: &mut Map<String, Value>, p: &AttrPath) {
    // `attributes=urn:...:User` (a whole extension) keeps the extension.
    if p.sub.is_none() {
        let whole = format!("{}:{}", p.urn.clone().unwrap_or_default(), p.name);
        if let Some(k) = find_key(src, &whole) {
            if let Some(v) = src.get(&k) {
                out.insert(k, v.clone());
            }
            return;
        }
    }
    let Some((from, ext)) = scope(src, p) else {
        return;
    };
    let Some(key) = find_key(from, &p.name) else {
        return;
    };
    let Some(value) = from.get(&key) else { return };
    let picked = match &p.sub {
        None => value.clone(),
        Some(sub) => match value {
            Value::Object(o) => match find_key(o, sub) {
                Some(sk) => json!({ sk.clone(): o[&sk].clone() }),
                None => return,
            },
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .filter_map(|i| {
                        let o = i.as_object()?;
                        let sk = find_key(o, sub)?;
                        Some(json!({ sk.clone(): o[&sk].clone() }))
                    })
                    .collect(),
            ),
            _ => return,
        },
    };
    let target = match ext {
        None => out,
        Some(ext) => match out
            .entry(ext)
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
        {
            Some(o) => o,
            None => return,
        },
    };
    match (target.get_mut(&key), picked) {
        (Some(Value::Object(have)), Value::Object(more)) => have.extend(more),
        (Some(Value::Array(have)), Value::Array(more)) if have.len() == more.len() => {
            for (h, m) in have.iter_mut().zip(more) {
                if let (Some(h), Value::Object(m)) = (h.as_object_mut(), m) {
                    h.extend(m);
                }
            }
        }
        (_, picked) => {
            target.insert(key, picked);
        }
    }
}

fn remove_path(obj: &mut Map<String, Value>, p: &AttrPath) {
    if p.sub.is_none() {
        let whole = format!("{}:{}", p.urn.clone().unwrap_or_default(), p.name);
        if let Some(k) = find_key(obj, &whole) {
            obj.remove(&k);
            return;
        }
    }
    let target = if p.in_core() {
        Some(obj)
    } else {
        match p.urn.as_deref().and_then(|u| find_key(obj, u)) {
            Some(k) => obj.get_mut(&k).and_then(Value::as_object_mut),
            None => None,
        }
    };
    let Some(target) = target else { return };
    let Some(key) = find_key(target, &p.name) else {
        return;
    };
    match &p.sub {
        None => {
            target.remove(&key);
        }
        Some(sub) => match target.get_mut(&key) {
            Some(Value::Object(o)) => {
                if let Some(sk) = find_key(o, sub) {
                    o.remove(&sk);
                }
            }
            Some(Value::Array(items)) => {
                for i in items.iter_mut().filter_map(Value::as_object_mut) {
                    if let Some(sk) = find_key(i, sub) {
                        i.remove(&sk);
                    }
                }
            }
            _ => {}
        },
    }
}

impl ListQuery {
    fn defaults() -> ListQuery {
        ListQuery {
            start_index: 1,
            count: 100,
            ..ListQuery::default()
        }
    }

    fn set_start(&mut self, v: i64) {
        // RFC 7644 §3.4.2.4: a value below 1 is taken as 1.
        self.start_index = v.max(1) as usize;
    }

    fn set_count(&mut self, v: i64) {
        // A negative count is taken as 0; above maxResults it is capped by `list`.
        self.count = usize::try_from(v.max(0)).unwrap_or(usize::MAX);
    }

    fn set_filter(&mut self, raw: &str) -> Result<(), ScimError> {
        self.filter = Some(
            filter::parse(raw)
                .map_err(|e| ScimError::invalid_filter(format!("filter: {}", e.detail)))?,
        );
        Ok(())
    }

    fn set_sort_by(&mut self, raw: &str) -> Result<(), ScimError> {
        self.sort_by = Some(
            AttrPath::parse(raw)
                .map_err(|e| ScimError::invalid_value(format!("sortBy: {}", e.detail)))?,
        );
        Ok(())
    }

    fn set_sort_order(&mut self, raw: &str) -> Result<(), ScimError> {
        self.descending = match raw.to_ascii_lowercase().as_str() {
            "ascending" => false,
            "descending" => true,
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "sortOrder must be ascending or descending, not {raw:?}"
                )))
            }
        };
        Ok(())
    }

    /// From a GET query string.
    pub fn from_query(query: Option<&str>) -> Result<ListQuery, ScimError> {
        let mut q = ListQuery::defaults();
        q.projection = Projection::from_query(query)?;
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match k.to_ascii_lowercase().as_str() {
                "filter" => q.set_filter(&v)?,
                "startindex" => q.set_start(parse_int(&v, "startIndex")?),
                "count" => q.set_count(parse_int(&v, "count")?),
                "sortby" => q.set_sort_by(&v)?,
                "sortorder" => q.set_sort_order(&v)?,
                _ => {}
            }
        }
        Ok(q)
    }

    /// From a `.search` body (RFC 7644 §3.4.3).
    pub fn from_search(body: &Value) -> Result<ListQuery, ScimError> {
        let Value::Object(obj) = body else {
            return Err(ScimError::invalid_syntax(
                "a SearchRequest must be a JSON object",
            ));
        };
        let mut q = ListQuery::defaults();
        for (k, v) in obj {
            let int = |v: &Value, what: &str| -> Result<i64, ScimError> {
                match v {
                    Value::Number(n) => n.as_i64().ok_or_else(|| {
                        ScimError::invalid_value(format!("{what} must be an integer, not {n}"))
                    }),
                    Value::String(s) => parse_int(s, what),
                    other => Err(ScimError::invalid_value(format!(
                        "{what} must be an integer, not {other}"
                    ))),
                }
            };
            let string = |v: &Value, what: &str| -> Result<String, ScimError> {
                match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(ScimError::invalid_value(format!(
                        "{what} must be a string, not {other}"
                    ))),
                }
            };
            let paths = |v: &Value, what: &str| -> Result<Vec<AttrPath>, ScimError> {
                match v {
                    Value::String(s) => parse_paths(s, what),
                    Value::Array(items) => {
                        let mut out = Vec::new();
                        for i in items {
                            match i {
                                Value::String(s) => out.extend(parse_paths(s, what)?),
                                other => {
                                    return Err(ScimError::invalid_value(format!(
                                        "{what} must hold strings, not {other}"
                                    )))
                                }
                            }
                        }
                        Ok(out)
                    }
                    other => Err(ScimError::invalid_value(format!(
                        "{what} must be an array of strings, not {other}"
                    ))),
                }
            };
            if v.is_null() {
                continue;
            }
            match k.to_ascii_lowercase().as_str() {
                "filter" => q.set_filter(&string(v, "filter")?)?,
                "startindex" => q.set_start(int(v, "startIndex")?),
                "count" => q.set_count(int(v, "count")?),
                "sortby" => q.set_sort_by(&string(v, "sortBy")?)?,
                "sortorder" => q.set_sort_order(&string(v, "sortOrder")?)?,
                "attributes" => {
                    q.projection.attributes = bounded_paths(paths(v, "attributes")?, "attributes")?
                }
                "excludedattributes" => {
                    q.projection.excluded =
                        bounded_paths(paths(v, "excludedAttributes")?, "excludedAttributes")?
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

/// Runs a list or search: the ListResponse body, at most `limits.max_results` resources.
/// Blocking work: call it through [`off_workers`].
pub fn list(
    state: &ScimState,
    base: &str,
    q: &ListQuery,
    limits: &Limits,
) -> Result<Value, ScimError> {
    let store = state.store();
    let count = q.count.min(limits.max_results);
    let sort_by_user_name = q.sort_by.as_ref().is_none_or(|p| p.is("userName", None));
    let (total, page): (usize, Vec<Value>) = match &q.filter {
        None if sort_by_user_name => {
            // The paging path: positions straight from the in-memory order.
            let total = state.store().scim_listing_len();
            let ids = state
                .store()
                .scim_listing_page(q.start_index - 1, count, q.descending);
            let mut page = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(m) = store.get(id)?.filter(Member::visible_to_scim) {
                    page.push(resource::to_json(&m, &location(base, &m)));
                }
            }
            (total, page)
        }
        _ => {
            // Only the sort key and the id of each match are kept, so a broad filter over
            // 100,000 members does not hold 100,000 documents; the page is built after.
            let default_sort = AttrPath {
                urn: None,
                name: "userName".into(),
                sub: None,
            };
            let sort_by = q.sort_by.as_ref().unwrap_or(&default_sort);
            let matching = |m: &Member| -> Option<Value> {
                if !m.visible_to_scim() {
                    return None;
                }
                let json = resource::to_json(m, &location(base, m));
                q.filter
                    .as_ref()
                    .is_none_or(|f| filter::matches(f, &json))
                    .then_some(json)
            };
            if let Some((key, value)) = q.filter.as_ref().and_then(filter::index_lookup) {
                // An identity filter names at most one member: its document, built for the
                // filter's test, is the page's (the GET the identity providers send most).
                let mut hits: Vec<(Option<SortKey>, Value)> = indexed(state, key, value)?
                    .iter()
                    .filter_map(matching)
                    .map(|json| (SortKey::of(&json, sort_by), json))
                    .collect();
                sort(&mut hits, q.descending);
                let total = hits.len();
                let page = hits.into_iter().skip(q.start_index - 1).take(count);
                (total, page.map(|(_, json)| json).collect())
            } else {
                let mut hits: Vec<(Option<SortKey>, MemberId)> = Vec::new();
                for m in store.members_by_id() {
                    let m = m?;
                    if let Some(json) = matching(&m) {
                        hits.push((SortKey::of(&json, sort_by), m.id));
                    }
                }
                sort(&mut hits, q.descending);
                let total = hits.len();
                let mut page = Vec::new();
                for (_, id) in hits.into_iter().skip(q.start_index - 1).take(count) {
                    if let Some(m) = store.get(id)?.filter(Member::visible_to_scim) {
                        page.push(resource::to_json(&m, &location(base, &m)));
                    }
                }
                (total, page)
            }
        }
    };
    let resources: Vec<Value> = page.into_iter().map(|r| q.projection.apply(r)).collect();
    Ok(json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": q.start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    }))
}

/// The at most one member an exact identity filter names, through the store's indexes.
fn indexed(state: &ScimState, key: IndexKey, value: &str) -> Result<Vec<Member>, ScimError> {
    let store = state.store();
    let found = match key {
        IndexKey::UserName => store.get_by_user_name(value)?,
        IndexKey::ExternalId => store.get_by_external_id(value)?,
        IndexKey::Id => match MemberId::parse(value) {
            Some(id) => store.get(id)?,
            None => None,
        },
    };
    Ok(found.into_iter().collect())
}

fn sort<T>(hits: &mut [(Option<SortKey>, T)], descending: bool) {
    // `SortKey` is a total order (types first, then values), so the sort cannot panic on
    // mixed types. Resources without the attribute sort last either way (RFC 7644 §3.4.2.3).
    hits.sort_by(|(ka, _), (kb, _)| match (ka, kb) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(a), Some(b)) if descending => b.cmp(a),
        (Some(a), Some(b)) => a.cmp(b),
    });
}

/// Runs work whose cost grows with the directory or the request on the blocking pool, at
/// most one task per core at a time, so that it never holds an async worker: a health check
/// or an indexed lookup is answered while scans run. A task keeps its permit until it ends,
/// even when the client has gone (the 30 s request timeout cannot stop a blocking task).
pub async fn off_workers<T, F>(work: F) -> Result<T, ScimError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ScimError> + Send + 'static,
{
    static PERMITS: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> =
        std::sync::OnceLock::new();
    let permits = PERMITS
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            std::sync::Arc::new(tokio::sync::Semaphore::new(cores))
        })
        .clone();
    let permit = permits.acquire_owned().await.map_err(ScimError::internal)?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(ScimError::internal)?
}

/// The limits the daemon set on the app, else the defaults.
fn limits_of(ext: Option<Extension<Limits>>) -> Limits {
    ext.map(|Extension(l)| l).unwrap_or_default()
}

/// The absolute URL of a member.
pub fn location(base: &str, m: &Member) -> String {
    format!("{base}/Users/{}", m.id)
}

/// A member as the response body (projected), with its ETag and Location.
fn member_response(
    state: &ScimState,
    headers: &HeaderMap,
    m: &Member,
    projection: &Projection,
    status: StatusCode,
) -> Response {
    let base = state.base_url(headers);
    let body = projection.apply(resource::to_json(m, &location(&base, m)));
    with_headers(status, &body, m, &base)
}

fn with_headers(status: StatusCode, body: &Value, m: &Member, base: &str) -> Response {
    let mut resp = scim_json(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag(m.version)) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&location(base, m)) {
        h.insert(header::LOCATION, v);
    }
    resp
}

/// The versions an `If-Match` / `If-None-Match` header lists; `None` for `*`.
pub fn etag_versions(headers: &HeaderMap, name: header::HeaderName) -> Option<Option<Vec<u64>>> {
    let raw = headers.get(name)?.to_str().ok()?;
    if raw.trim() == "*" {
        return Some(None);
    }
    Some(Some(
        raw.split(',')
            .filter_map(|t| {
                let t = t.trim().trim_start_matches("W/").trim_matches('"');
                t.parse().ok()
            })
            .collect(),
    ))
}

/// The version `If-Match` requires, checked against what is stored now.
fn if_match(headers: &HeaderMap, m: &Member) -> Result<Option<u64>, ScimError> {
    match etag_versions(headers, header::IF_MATCH) {
        None | Some(None) => Ok(None),
        Some(Some(vs)) if vs.contains(&m.version) => Ok(Some(m.version)),
        Some(Some(_)) => Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "If-Match does not match the current version {}",
                etag(m.version)
            ),
        )),
    }
}

fn parse_id(raw: &str) -> Result<MemberId, ScimError> {
    MemberId::parse(raw).ok_or_else(|| ScimError::not_found(format!("User {raw}")))
}

/// The member SCIM may see: SCIM-deleted ones and unclaimed manual invites are 404.
fn visible(state: &ScimState, id: MemberId) -> Result<Member, ScimError> {
    match state.store().get(id)? {
        Some(m) if m.visible_to_scim() => Ok(m),
        _ => Err(ScimError::not_found(format!("User {id}"))),
    }
}

/// Runs a list, rendering included: off the async workers, unless an index answers it (at
/// most one member: a `userName eq` lookup must not queue behind scans for a permit).
async fn list_response(
    state: ScimState,
    headers: &HeaderMap,
    q: ListQuery,
    limits: Limits,
) -> Result<Response, ScimError> {
    let base = state.base_url(headers);
    if q.filter.as_ref().and_then(filter::index_lookup).is_some() {
        return Ok(scim_json(&list(&state, &base, &q, &limits)?));
    }
    off_workers(move || Ok(scim_json(&list(&state, &base, &q, &limits)?))).await
}

/// `GET /Users`
pub async fn get_list(
    State(state): State<ScimState>,
    limits: Option<Extension<Limits>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ScimError> {
    let q = ListQuery::from_query(query.as_deref())?;
    list_response(state, &headers, q, limits_of(limits)).await
}

/// `POST /Users/.search` and `POST /.search`
pub async fn search(
    State(state): State<ScimState>,
    limits: Option<Extension<Limits>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ScimError> {
    let (body, _permit) = read_json(&state, &headers, body).await?;
    let q = ListQuery::from_search(&body)?;
    drop(body);
    list_response(state, &headers, q, limits_of(limits)).await
}

/// `GET /Users/{id}`
pub async fn get_one(
    State(state): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ScimError> {
    let projection = Projection::from_query(query.as_deref())?;
    let m = visible(&state, parse_id(&id)?)?;
    if let Some(wanted) = etag_versions(&headers, header::IF_NONE_MATCH) {
        if wanted.is_none_or(|vs| vs.contains(&m.version)) {
            let mut resp = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(v) = HeaderValue::from_str(&etag(m.version)) {
                resp.headers_mut().insert(header::ETAG, v);
            }
            return Ok(resp);
        }
    }
    Ok(member_response(
        &state,
        &headers,
        &m,
        &projection,
        StatusCode::OK,
    ))
}

/// `POST /Users`
pub async fn create(
    State(state): State<ScimState>,
    Extension(AuthLabel(label)): Extension<AuthLabel>,
    limits: Option<Extension<Limits>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ScimError> {
    let projection = Projection::from_query(query.as_deref())?;
    let (body, permit) = read_json(&state, &headers, body).await?;
    let parsed = resource::from_json_with(body, None, &limits_of(limits))?;
    drop(permit);
    state.check_domain(&label, None, &parsed.attrs.user_name)?;
    let change = Change::Create {
        attrs: parsed.attrs,
        managed_by: ManagedBy::Google,
    };
    let outcome = state.apply(change, &Actor::Scim(label)).await?;
    let m = outcome.member().clone();
    // Durable before the answer leaves: the router's one durability point (`scim::router`).
    Ok(member_response(
        &state,
        &headers,
        &m,
        &projection,
        StatusCode::CREATED,
    ))
}

/// `id` is read-only: a body may only restate it.
fn check_id(body_id: Option<&Value>, id: MemberId) -> Result<(), ScimError> {
    if let Some(sent) = body_id {
        if sent.as_str() != Some(id.to_string().as_str()) {
            return Err(ScimError::mutability("id is read-only and cannot change"));
        }
    }
    Ok(())
}

/// `PUT /Users/{id}`
pub async fn replace(
    State(state): State<ScimState>,
    Extension(AuthLabel(label)): Extension<AuthLabel>,
    limits: Option<Extension<Limits>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ScimError> {
    let projection = Projection::from_query(query.as_deref())?;
    let id = parse_id(&id)?;
    let (body, _permit) = read_json(&state, &headers, body).await?;
    let m = visible(&state, id)?;
    let expected = if_match(&headers, &m)?;
    check_id(filter::get_ci(&body, "id"), m.id)?;
    // An absent `active` keeps the member as it is: a PUT that forgot it must neither
    // reactivate nor deactivate anyone.
    let parsed = resource::from_json_with(body, Some(m.dir.active), &limits_of(limits))?;
    state.check_domain(&label, Some(&m.dir.user_name), &parsed.attrs.user_name)?;
    let change = Change::Update {
        id,
        expected_version: expected,
        attrs: parsed.attrs,
    };
    let outcome = state.apply(change, &Actor::Scim(label)).await?;
    finish_update(&state, &headers, outcome, &projection).await
}

async fn finish_update(
    state: &ScimState,
    headers: &HeaderMap,
    outcome: Outcome,
    projection: &Projection,
) -> Result<Response, ScimError> {
    let m = outcome.member().clone();
    Ok(member_response(
        state,
        headers,
        &m,
        projection,
        StatusCode::OK,
    ))
}

/// `PATCH /Users/{id}`
pub async fn modify(
    State(state): State<ScimState>,
    Extension(AuthLabel(label)): Extension<AuthLabel>,
    limits: Option<Extension<Limits>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ScimError> {
    let projection = Projection::from_query(query.as_deref())?;
    let id = parse_id(&id)?;
    let (body, _permit) = read_json(&state, &headers, body).await?;
    let body = std::sync::Arc::new(body);
    let limits = limits_of(limits);
    let actor = Actor::Scim(label.clone());
    let base = state.base_url(&headers);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let m = visible(&state, id)?;
        let pinned = if_match(&headers, &m)?;
        let (body, loc, active) = (body.clone(), location(&base, &m), m.dir.active);
        let doc = resource::to_json(&m, &loc);
        let parsed = off_workers(move || {
            let mut doc = doc;
            patch::apply_with(&mut doc, &body, &limits)?;
            check_id(filter::get_ci(&doc, "id"), id)?;
            resource::from_json_with(doc, Some(active), &limits)
        })
        .await?;
        state.check_domain(&label, Some(&m.dir.user_name), &parsed.attrs.user_name)?;
        let change = Change::Update {
            id,
            expected_version: Some(m.version),
            attrs: parsed.attrs,
        };
        match state.apply(change, &actor).await {
            Ok(outcome) => return finish_update(&state, &headers, outcome, &projection).await,
            // Another write slipped in between the read and this one: PATCH is relative,
            // so re-read and apply again, unless the client pinned a version.
            Err(ProvisionError::VersionMismatch { .. })
                if pinned.is_none() && attempt < PATCH_RETRIES =>
            {
                continue
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `DELETE /Users/{id}`
pub async fn delete(
    State(state): State<ScimState>,
    Extension(AuthLabel(label)): Extension<AuthLabel>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let id = parse_id(&id)?;
    let m = visible(&state, id)?;
    let expected = if_match(&headers, &m)?;
    let change = Change::ScimDelete {
        id,
        expected_version: expected,
    };
    state.apply(change, &Actor::Scim(label)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
