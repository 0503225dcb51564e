//! The fetch stage: reading Google (users pages read ahead, scope groups, one user).

use super::*;

/// The desired state read from Google, already scoped: pages are reduced to what the plan
/// needs as they arrive, so a large directory is never held twice.
pub(super) struct Fetched {
    pub(super) desired: Vec<Desired>,
    pub(super) unusable_ids: HashSet<String>,
    /// Ids of the users listed that are not desired (out of scope, unusable): with the
    /// desired users' own, every id listed.
    pub(super) other_ids: HashSet<String>,
    /// Whether the listing was every user of the customer: only then does an id missing
    /// from it mean that Google does not have that user. A `[scope].query` narrows the
    /// listing, and a one-user run reads one address.
    pub(super) complete: bool,
    pub(super) problems: Vec<String>,
    /// The scope groups' members, to judge a user read again by users.get.
    pub(super) groups: GroupMembership,
    /// With `[google].domains` empty: the domains of the primary addresses and aliases of
    /// every user listed, the only ones a `work` address is kept in.
    pub(super) listing_domains: HashSet<String>,
}

impl Fetched {
    pub(super) fn new(
        groups: (GroupMembership, Vec<String>),
        complete: bool,
        capacity: usize,
    ) -> Fetched {
        Fetched {
            desired: Vec::with_capacity(capacity),
            unusable_ids: HashSet::new(),
            other_ids: HashSet::new(),
            complete,
            problems: groups.1,
            groups: groups.0,
            listing_domains: HashSet::new(),
        }
    }

    /// Takes one user Google listed: desired when in scope and usable; otherwise only its
    /// id is kept.
    pub(super) fn add(&mut self, u: GoogleUser, rules: &ScopeRules) {
        if rules.domains.is_empty() {
            let aliases = u.aliases.iter().flat_map(|a| a.0.iter());
            for a in
                std::iter::once(u.primary_email.as_str()).chain(aliases.map(|e| e.address.as_str()))
            {
                if let Some((_, d)) = a.trim().rsplit_once('@') {
                    if !self.listing_domains.contains(d) {
                        self.listing_domains.insert(d.to_lowercase());
                    }
                }
            }
        }
        if !rules.in_scope(&u, &self.groups) {
            self.other_ids.insert(u.id);
            return;
        }
        match Desired::from_google_owned(u, &rules.domains) {
            Ok(d) => self.desired.push(d),
            Err((id, e)) => {
                self.other_ids.insert(id.clone());
                self.unusable_ids.insert(id);
                self.problems.push(e)
            }
        }
    }

    /// With `[google].domains` empty, keeps a desired user's `work` addresses only in the
    /// domains of the listing (`listing_domains`, with `known`): Google does not verify a
    /// `work` address, so `ada@partner.net` can be typed there. The primary addresses and
    /// aliases are in those domains by construction, so only typed addresses go.
    pub(super) fn keep_listed_domains(&mut self, known: &HashSet<String>) {
        let domains = &self.listing_domains;
        for d in &mut self.desired {
            let mut first = true;
            d.attrs.emails.retain(|e| {
                let keep = first
                    || e.value.rsplit_once('@').is_some_and(|(_, dom)| {
                        let dom = dom.to_lowercase();
                        domains.contains(&dom) || known.contains(&dom)
                    });
                first = false;
                keep
            });
        }
    }
}

/// Reads the members of the scope groups and of every group nested in them, from direct
/// listings: Google's derived listing (`includeDerivedMembership`) has returned too few
/// members (GAM-team/GAM#1210, GAMADV-XTD3#82; awslabs/ssosync expands nested groups itself
/// since its PRs #95 and #188). Each group is read once, cycles are ignored, and past
/// `[scope].max_nested_groups` nested groups the read fails (before any write). A scope
/// group Google does not know fails the read; a nested group that cannot be read (outside
/// the customer) is reported, and its members are judged by members.hasMember before any of
/// them is deactivated.
pub async fn read_groups<D: Directory>(
    client: &D,
    rules: &ScopeRules,
    progress: Option<&ProgressFn>,
    p: &mut Progress,
) -> Result<(GroupMembership, Vec<String>), DirectoryError> {
    let mut groups = GroupMembership::default();
    let mut problems = Vec::new();
    let mut seen: HashSet<String> = rules.groups.iter().map(|g| g.to_lowercase()).collect();
    let mut queue: std::collections::VecDeque<(String, Option<String>)> =
        rules.groups.iter().map(|g| (g.clone(), None)).collect();
    while let Some((g, parent)) = queue.pop_front() {
        let mut token: Option<String> = None;
        loop {
            // A scope group Google does not know is an error, not an empty group: an empty
            // group would deactivate its members.
            let page = match client.list_members_page(&g, token.as_deref()).await {
                Ok(page) => page,
                Err(e @ DirectoryError::GroupNotFound { .. }) => match &parent {
                    None => return Err(e),
                    Some(parent) => {
                        problems.push(format!(
                            "the group {g}, nested in {parent}, cannot be read ({}); its members are not in scope through it, and none of them is deactivated without members.hasMember",
                            directory::diagnose(&e)
                        ));
                        break;
                    }
                },
                Err(e) => return Err(e),
            };
            for nested in groups.add(&page.members) {
                if !seen.insert(nested.to_lowercase()) {
                    continue;
                }
                if groups.nested_groups >= rules.max_nested_groups {
                    return Err(DirectoryError::TooManyNestedGroups {
                        limit: rules.max_nested_groups,
                        last: nested,
                    });
                }
                groups.nested_groups += 1;
                queue.push_back((nested, Some(g.clone())));
            }
            p.group_pages += 1;
            if let Some(f) = progress {
                f(*p);
            }
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
    }
    Ok((groups, problems))
}

pub(super) async fn fetch_groups<D: Directory>(
    client: &D,
    ctx: &SyncContext,
    progress: Option<&ProgressFn>,
    p: &mut Progress,
) -> Result<(GroupMembership, Vec<String>), DirectoryError> {
    read_groups(client, &ctx.rules, progress, p).await
}

/// Reads the scope groups, then every users page, scoping each page as it arrives.
pub(super) async fn fetch<D: Directory + 'static>(
    client: &Arc<D>,
    ctx: &SyncContext,
    progress: Option<&ProgressFn>,
) -> Result<Fetched, DirectoryError> {
    let mut p = Progress::default();
    // Groups first: with them known, each users page is scoped as soon as it arrives.
    let groups = fetch_groups(client.as_ref(), ctx, progress, &mut p).await?;
    // About one desired user per member on most runs: grown once, not by doubling.
    let mut out = Fetched::new(groups, ctx.rules.query.is_none(), ctx.store.member_count());
    users_pages(client, ctx, |page| {
        p.pages += 1;
        p.users += page.users.len();
        for u in page.users {
            out.add(u, &ctx.rules);
        }
        if let Some(f) = progress {
            f(p);
        }
    })
    .await?;
    if ctx.rules.domains.is_empty() {
        out.keep_listed_domains(&HashSet::new());
        // Kept for the one-user runs, whose listing is one user.
        *ctx.listing_domains
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = out.listing_domains.clone();
    }
    Ok(out)
}

/// A spawned request, cancelled when dropped (a run that fails stops reading ahead).
pub(super) struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads every users.list page of the run's listing in order and hands each, decoded, to
/// `on_page`. The next page is asked for as soon as this page's token is known, so Google
/// serves page N+1 while page N is decoded and handled. Any page that fails fails the whole
/// listing; the page read ahead is then cancelled.
pub(super) async fn users_pages<D: Directory + 'static>(
    client: &Arc<D>,
    ctx: &SyncContext,
    mut on_page: impl FnMut(UsersPage),
) -> Result<(), DirectoryError> {
    let target = Arc::new(UserListTarget::Customer(ctx.config.google.customer.clone()));
    let query: Option<Arc<str>> = ctx.rules.query.as_deref().map(Arc::from);
    let ask = |token: Option<String>| {
        let (client, target, query) = (client.clone(), target.clone(), query.clone());
        AbortOnDrop(tokio::spawn(async move {
            client
                .list_users_page_raw(&target, query.as_deref(), token.as_deref())
                .await
        }))
    };
    let mut next = Some(ask(None));
    while let Some(mut request) = next.take() {
        let raw = (&mut request.0)
            .await
            .map_err(|e| DirectoryError::BadResponse {
                endpoint: "users.list",
                detail: format!("the request task failed: {e}"),
            })??;
        next = raw.next_page_token.clone().map(|t| ask(Some(t)));
        on_page(raw.decode()?);
    }
    Ok(())
}
