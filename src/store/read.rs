//! The read side of [`Store`]: a member by id, user name, external id or Google id, the
//! listings (the snapshot, the mirror's entries, the SCIM order, the console's pages), the
//! counts, the audit and its retention, and the consistency check. Most answer from the
//! mirror; [`Store::find`] and [`Store::members`] read the records until a lazily opened
//! store has built it (`scan.rs`).

use std::sync::Arc;

use super::{
    audit, decode_member, decode_u32, mirror, scan, AuditEntry, AuditPrune, AuditQuery,
    BrowseQuery, MemberEntry, MemberPage, Mirror, Store, StoreError, AUDIT_PRUNE_BUDGET,
    AUDIT_PRUNE_KEYS, BROWSE_BUDGET, META_SCHEMA_VERSION, SCHEMA_VERSION,
};
use crate::member::{normalize_email_cow, Member, MemberId};

impl Store {
    /// The schema version recorded in the store.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        match self.inner.meta.get(META_SCHEMA_VERSION)? {
            Some(v) => decode_u32(&v),
            None => Ok(SCHEMA_VERSION),
        }
    }

    /// A member by id.
    pub fn get(&self, id: MemberId) -> Result<Option<Member>, StoreError> {
        let entry = self.mirror().get(id);
        entry.map(|e| self.materialize(&e)).transpose()
    }

    /// The id of the member with this user name (case-insensitive), from the index.
    pub fn id_by_user_name(&self, user_name: &str) -> Result<Option<MemberId>, StoreError> {
        Ok(self.mirror().id_by_name(&normalize_email_cow(user_name)))
    }

    /// The member with this user name (case-insensitive), as a shared handle.
    pub fn shared_by_user_name(&self, user_name: &str) -> Option<Arc<Member>> {
        self.get_by_user_name(user_name)
            .ok()
            .flatten()
            .map(Arc::new)
    }

    /// The member with this SCIM `externalId` (exact), as a shared handle.
    pub fn shared_by_external_id(&self, external_id: &str) -> Option<Arc<Member>> {
        self.get_by_external_id(external_id)
            .ok()
            .flatten()
            .map(Arc::new)
    }

    /// The member linked to this Google user id, as a shared handle.
    pub fn shared_by_google_id(&self, google_id: &str) -> Option<Arc<Member>> {
        self.get_by_google_id(google_id)
            .ok()
            .flatten()
            .map(Arc::new)
    }

    /// The member linked to this Google user id.
    pub fn get_by_google_id(&self, google_id: &str) -> Result<Option<Member>, StoreError> {
        let entry = self.mirror().by_google_id(google_id);
        entry.map(|e| self.materialize(&e)).transpose()
    }

    /// The member with this user name (case-insensitive).
    pub fn get_by_user_name(&self, user_name: &str) -> Result<Option<Member>, StoreError> {
        let key = normalize_email_cow(user_name);
        let entry = self.mirror().by_name(&key);
        entry.map(|e| self.materialize(&e)).transpose()
    }

    /// The member with this SCIM `externalId` (exact).
    pub fn get_by_external_id(&self, external_id: &str) -> Result<Option<Member>, StoreError> {
        let entry = self.mirror().by_external_id(external_id);
        entry.map(|e| self.materialize(&e)).transpose()
    }

    /// Resolves what an owner typed: a member id, or an email (case-insensitive). Before a
    /// lazily opened store has built its mirror, from the records ([`scan::find`]).
    pub fn find(&self, id_or_email: &str) -> Result<Option<Member>, StoreError> {
        if !self.mirror_built() {
            return scan::find(&self.inner.members, id_or_email);
        }
        if let Some(id) = MemberId::parse(id_or_email) {
            if let Some(m) = self.get(id)? {
                return Ok(Some(m));
            }
        }
        self.get_by_user_name(id_or_email)
    }

    /// How many member records the store holds (active or not).
    pub fn member_count(&self) -> usize {
        self.mirror().len()
    }

    /// How many members are (active, inactive).
    pub fn member_counts(&self) -> (usize, usize) {
        self.mirror().counts()
    }

    /// How many members SCIM lists (every member but the SCIM-deleted ones and the owner's
    /// invites no identity provider has claimed: [`Member::visible_to_scim`]).
    pub fn scim_listing_len(&self) -> usize {
        self.mirror().scim_len()
    }

    /// The ids of the members SCIM lists at 0-based positions `start..start+count` of the
    /// order by normalised user name (descending: from the end). Costs O(start / 512), not
    /// O(start).
    pub fn scim_listing_page(&self, start: usize, count: usize, descending: bool) -> Vec<MemberId> {
        self.mirror().scim_page(start, count, descending)
    }

    /// A snapshot of every member, ordered by normalised user name, each one built from the
    /// compact mirror: at 1,000,000 members this costs about a gigabyte. A listing that can
    /// stream uses [`Store::members`]. A member that cannot be read fails the snapshot: the
    /// pull plans from it, and would take a member left out for one it has never seen.
    pub fn snapshot(&self) -> Result<Vec<Arc<Member>>, StoreError> {
        self.members().map(|m| m.map(Arc::new)).collect()
    }

    /// Every member as the in-memory mirror keeps it, in no order: what the pull plans from
    /// ([`crate::member::MemberLike`]). The entries are shared with the mirror, 8 bytes a
    /// member: nothing is decoded or copied, and nothing can fail to be read.
    pub(crate) fn entries(&self) -> Vec<Arc<MemberEntry>> {
        self.mirror().all()
    }

    /// The mirror's entry of the member with this user name (case-insensitive).
    pub(crate) fn entry_by_user_name(&self, user_name: &str) -> Option<Arc<MemberEntry>> {
        self.mirror().by_name(&normalize_email_cow(user_name))
    }

    /// The mirror's entry of the member linked to this Google user.
    pub(crate) fn entry_by_google_id(&self, google_id: &str) -> Option<Arc<MemberEntry>> {
        self.mirror().by_google_id(google_id)
    }

    /// Every member, ordered by normalised user name, from a snapshot taken now. The
    /// snapshot shares the mirror's entries (8 bytes a member); each member is built as the
    /// iterator reaches it. Before a lazily opened store has built its mirror, the records
    /// are streamed in that order instead ([`scan::members_by_name`]).
    pub fn members(&self) -> Box<dyn Iterator<Item = Result<Member, StoreError>> + Send> {
        if !self.mirror_built() {
            return match scan::members_by_name(self.clone()) {
                Ok(members) => Box::new(members),
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
        }
        let mut entries = self.mirror().all();
        mirror::sort_by_name(&mut entries);
        let store = self.clone();
        Box::new(entries.into_iter().map(move |e| store.materialize(&e)))
    }

    /// A page of members in user-name order, from the mirror (the console's listing): see
    /// [`BrowseQuery`]. A page costs the members it walks, not the store's size.
    pub fn browse(&self, q: &BrowseQuery) -> Result<MemberPage, StoreError> {
        let needle = q.search.trim().to_lowercase();
        let page = self
            .mirror()
            .browse(q.after.as_deref(), q.limit.max(1), BROWSE_BUDGET, |e| {
                q.active.is_none_or(|a| e.active() == a) && e.mentions(&needle)
            });
        let next = match (page.more, page.resume) {
            (false, _) => None,
            (true, Some(resume)) => Some(resume),
            (true, None) => page.entries.last().map(|e| e.name_key().to_string()),
        };
        let members = page
            .entries
            .iter()
            .map(|e| self.materialize(e))
            .collect::<Result<_, _>>()?;
        Ok(MemberPage { members, next })
    }

    /// Every member in id order, decoded from the records on disk (not the mirror).
    pub fn members_by_id(&self) -> impl Iterator<Item = Result<Member, StoreError>> + '_ {
        self.inner.members.iter().map(|kv| {
            let (_, v) = kv?;
            decode_member(&v)
        })
    }

    /// Audit entries matching `query`, oldest first.
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        audit::query(&self.inner.audit, query)
    }

    /// Checks that the in-memory members and indexes agree with the records on disk;
    /// returns the problems found.
    pub fn check_consistency(&self) -> Result<Vec<String>, StoreError> {
        let fresh = match Mirror::build(self.members_by_id()) {
            Ok(m) => m,
            Err(e @ StoreError::Collision { .. }) => return Ok(vec![e.to_string()]),
            Err(e) => return Err(e),
        };
        Ok(self.mirror().differences(&fresh))
    }

    /// The time of the oldest audit entry the store still holds (`None`: no entry).
    pub fn oldest_audit_entry(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        audit::oldest(&self.inner.audit)
    }

    /// Removes the audit entries older than `retention_days` before `now` (`0` keeps every
    /// entry), oldest first, in small batches: each takes the writer lock for at most
    /// [`AUDIT_PRUNE_KEYS`] keys or [`AUDIT_PRUNE_BUDGET`], whichever comes first, and lets
    /// writers in between. Blocking: run it on a blocking thread.
    pub fn prune_audit(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        retention_days: u32,
    ) -> Result<AuditPrune, StoreError> {
        let mut report = AuditPrune::default();
        if retention_days == 0 {
            return Ok(report);
        }
        let cutoff = now - chrono::Duration::days(i64::from(retention_days));
        // A failed flush makes the store read-only: remove nothing more.
        while self.flush_failure().is_none() {
            let started = std::time::Instant::now();
            let removed = {
                let _writer = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
                audit::prune_some(
                    &self.inner.audit,
                    cutoff,
                    AUDIT_PRUNE_KEYS,
                    AUDIT_PRUNE_BUDGET,
                )?
            };
            report.longest_hold = report.longest_hold.max(started.elapsed());
            if removed == 0 {
                break;
            }
            report.removed_keys += removed;
            report.batches += 1;
            // Let the writers that queued on the lock go first.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        report.oldest_left = self.oldest_audit_entry()?;
        Ok(report)
    }
}
