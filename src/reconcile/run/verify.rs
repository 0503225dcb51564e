//! The verify stage: asking Google (users.get, members.hasMember, the query) before a member is
//! deactivated, within a cap and a deadline.

use super::*;

/// What checking the listing's deactivations against users.get left.
#[derive(Default)]
pub(super) struct Verification {
    /// Deactivations past the cap, not checked: held as for the guard.
    pub(super) unchecked: Vec<PlannedChange>,
}

/// Absence from one listing is not proof that a user is gone: Google's search index can lag
/// (<https://developers.google.com/workspace/admin/directory/v1/guides/search-users>), a
/// listing can miss a user that moves while it is paged, and a group listing can miss
/// members (GAM-team/GAM#1210). Each deactivation of a member with a Google id that the
/// listing did not return is checked with users.get on that id:
/// - 404, or 412 `conditionNotMet` (deleted, still restorable for 20 days): the user is
///   gone, the deactivation stands;
/// - 403 (a key outside the customer, or a deleted user): gone if the customer's deleted
///   users (`showDeleted=true`, read once a run, only when needed) list the id; otherwise it
///   cannot be checked;
/// - found: judged from that answer (suspended, archived, out of scope by org unit, exclude,
///   domain or guest; out of scope only by group: members.hasMember for each scope group,
///   which covers nested membership; `[scope].query`: its clauses users.get's answer decides
///   are judged here, Google's search for that one address decides the rest); found and in
///   scope: no change, counted `verified_present`;
/// - cannot be checked (an error after its retries, hasMember's 400 for a membership nested
///   across domains, a 400 from the narrowed search): that deactivation only is dropped and
///   reported; the next run takes it up.
///
/// At most `cap` users are checked (`None` = all); the rest come back unchecked.
pub(super) async fn verify_absent<D: Directory>(
    client: &D,
    ctx: &SyncContext,
    groups: &GroupMembership,
    plan: &mut Plan,
    cap: Option<usize>,
    book: &mut RunBook,
) -> Result<Verification, StoreError> {
    let mut out = Verification::default();
    let mut checked = 0usize;
    let mut deleted: Option<HashSet<String>> = None;
    let mut kept = Vec::with_capacity(plan.changes.len());
    for change in std::mem::take(&mut plan.changes) {
        let Change::Deactivate { id, .. } = &change.change else {
            kept.push(change);
            continue;
        };
        let google_id = ctx.store.get(*id)?.and_then(|m| m.dir.google_id);
        let Some(google_id) = google_id else {
            // Never linked to a Google user: nothing to ask Google about.
            kept.push(change);
            continue;
        };
        if cap.is_some_and(|c| checked >= c) {
            out.unchecked.push(change);
            continue;
        }
        checked += 1;
        match still_present(client, ctx, groups, &google_id, &mut deleted).await {
            Ok(Presence::Gone) => kept.push(change),
            Ok(Presence::Present) => {
                book.counts.verified_present += 1;
                plan.active_after += 1;
                tracing::info!(user = %change.user_name, google_id = %google_id,
                    "missing from the listing but Google finds it in scope: left active");
            }
            Ok(Presence::CannotCheck(why)) => book.problem(format!(
                "{}: cannot check with Google that the user is gone ({why}); not deactivated, the next run takes it up",
                change.user_name,
            )),
            Err(e) => book.problem(format!(
                "{}: cannot check with Google that the user is gone ({}); not deactivated, the next run takes it up",
                change.user_name,
                directory::diagnose(&e)
            )),
        }
    }
    plan.changes = kept;
    Ok(out)
}

/// What Google says of a user missing from the listing.
pub(super) enum Presence {
    /// Active and in scope: left as it is.
    Present,
    /// Deleted, suspended, archived or out of scope: the deactivation stands.
    Gone,
    /// Google cannot tell (why): the deactivation is skipped and reported.
    CannotCheck(String),
}

/// Whether the Google user `google_id` exists, is active and is in scope, from users.get
/// (and, when needed, the deleted users, members.hasMember and the narrowed search).
/// `deleted` holds the customer's deleted users once a 403 made the run read them.
pub(super) async fn still_present<D: Directory>(
    client: &D,
    ctx: &SyncContext,
    groups: &GroupMembership,
    google_id: &str,
    deleted: &mut Option<HashSet<String>>,
) -> Result<Presence, DirectoryError> {
    let user = match client.get_user(google_id).await {
        Ok(Some(user)) => user,
        Ok(None) => return Ok(Presence::Gone),
        Err(e @ DirectoryError::NotInCustomer { .. }) => {
            // Google answers 403 for a key outside the customer; GAM treats it as "does not
            // exist". Only a user listed among the deleted ones is known to be gone.
            if deleted.is_none() {
                let ids = client.deleted_user_ids(&ctx.config.google.customer).await?;
                *deleted = Some(ids);
            }
            if deleted.as_ref().is_some_and(|d| d.contains(google_id)) {
                return Ok(Presence::Gone);
            }
            return Ok(Presence::CannotCheck(directory::diagnose(&e)));
        }
        Err(e) => return Err(e),
    };
    if !user.is_active() {
        return Ok(Presence::Gone);
    }
    if !ctx.rules.in_scope(&user, groups) {
        // Out of scope only because no group listing named it: ask Google about each scope
        // group (hasMember covers nested membership).
        if !(ctx.rules.uses_groups() && ctx.rules.in_scope_if_member(&user)) {
            return Ok(Presence::Gone);
        }
        let mut unknown = None;
        let mut member = false;
        for g in &ctx.rules.groups {
            match client.has_member(g, &user.id).await? {
                Some(true) => {
                    member = true;
                    break;
                }
                Some(false) => {}
                None => unknown = Some(g),
            }
        }
        if !member {
            return Ok(match unknown {
                None => Presence::Gone,
                Some(g) => Presence::CannotCheck(format!(
                    "members.hasMember cannot tell whether {} is in {g}: Google answers 400 Invalid input for a membership nested across domains",
                    user.primary_email
                )),
            });
        }
    }
    match &ctx.query {
        None => Ok(Presence::Present),
        Some(q) => match matches_query(client, ctx, q, &user).await {
            Err(e @ DirectoryError::SearchRefused { .. }) => {
                Ok(Presence::CannotCheck(directory::diagnose(&e)))
            }
            other => other,
        },
    }
}

/// Whether `[scope].query` matches one user: the clauses users.get's answer decides are
/// judged from it; for the rest, Google's search is asked with them narrowed to the user's
/// exact address (escaped). A 400 from that search means it cannot be checked
/// ([`DirectoryError::SearchRefused`]).
pub(super) async fn matches_query<D: Directory>(
    client: &D,
    ctx: &SyncContext,
    query: &Query,
    user: &GoogleUser,
) -> Result<Presence, DirectoryError> {
    if !query.local_match(user) {
        return Ok(Presence::Gone);
    }
    let Some(narrowed) = query.narrowed(&user.primary_email) else {
        return Ok(Presence::Present);
    };
    let target = UserListTarget::Customer(ctx.config.google.customer.clone());
    match client.list_users_page(&target, Some(&narrowed), None).await {
        Ok(page) if page.users.iter().any(|u| u.id == user.id) => Ok(Presence::Present),
        Ok(_) => Ok(Presence::Gone),
        Err(e @ DirectoryError::Api { status: 400, .. }) => Err(DirectoryError::SearchRefused {
            detail: directory::diagnose(&e),
        }),
        Err(e) => Err(e),
    }
}

/// Runs `f` (reading Google) until the run's deadline.
pub(super) async fn before_deadline<T>(
    ctx: &SyncContext,
    deadline: Instant,
    f: impl std::future::Future<Output = Result<T, DirectoryError>>,
) -> Result<T, String> {
    match tokio::time::timeout_at(deadline.into(), f).await {
        Ok(r) => r.map_err(|e| directory::diagnose(&e)),
        Err(_) => Err(format!(
            "the run read Google for longer than [sync].run_timeout = {} s",
            ctx.run_timeout.as_secs_f64()
        )),
    }
}
