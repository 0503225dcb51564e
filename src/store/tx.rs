//! [`MemberTx`]: the member trees inside one transaction of [`super::Store::transact`], the only
//! way `provision` reads and writes members, their audit entries and their events.

use std::cell::RefCell;

use sled::transaction::TransactionalTree;

use super::mirror::{Mirror, Overlay};
use super::{audit, codec, decode_member, events, AuditEntry, StoreError, AUDIT_CHUNK};
use crate::member::{normalize_email, Member, MemberId};

/// The member trees inside one transaction.
pub(crate) struct MemberTx<'a> {
    pub(super) members: &'a TransactionalTree,
    pub(super) audit: &'a TransactionalTree,
    /// This transaction's events, written in groups when it ends.
    pub(super) pending: &'a events::Pending,
    /// The committed state (the writer lock keeps it still during the transaction).
    pub(super) mirror: &'a Mirror,
    /// This transaction's own writes, read before the mirror.
    pub(super) overlay: &'a RefCell<Overlay>,
    /// This transaction's audit entries, written in groups when it ends.
    pub(super) pending_audit: &'a RefCell<Vec<AuditEntry>>,
}

impl MemberTx<'_> {
    /// A member by id, as this transaction sees it.
    pub(crate) fn get(&self, id: MemberId) -> Result<Option<Member>, StoreError> {
        if let Some(m) = self.overlay.borrow().members.get(&id) {
            return Ok(Some(m.clone()));
        }
        match self.mirror.get(id) {
            // The extra attributes are only in the record; the write keeps them.
            Some(e) if e.has_extra() => match self.members.get(id.as_bytes())? {
                Some(v) => decode_member(&v).map(Some),
                None => e.to_member().map(Some),
            },
            Some(e) => e.to_member().map(Some),
            None => Ok(None),
        }
    }

    /// The id holding this user name, as this transaction sees it.
    pub(crate) fn id_by_user_name(&self, user_name: &str) -> Result<Option<MemberId>, StoreError> {
        let key = normalize_email(user_name);
        if let Some(v) = self.overlay.borrow().names.get(&key) {
            return Ok(*v);
        }
        Ok(self.mirror.id_by_name(&key))
    }

    /// The id holding this SCIM `externalId`, as this transaction sees it.
    pub(crate) fn id_by_external_id(&self, ext: &str) -> Result<Option<MemberId>, StoreError> {
        if let Some(v) = self.overlay.borrow().externals.get(ext) {
            return Ok(*v);
        }
        Ok(self.mirror.id_by_external_id(ext))
    }

    /// The id linked to this Google id, as this transaction sees it.
    pub(crate) fn id_by_google_id(&self, g: &str) -> Result<Option<MemberId>, StoreError> {
        if let Some(v) = self.overlay.borrow().googles.get(g) {
            return Ok(*v);
        }
        Ok(self.mirror.id_by_google_id(g))
    }

    /// Writes `new` (one key), moving its in-memory index entries away from `old`'s when
    /// the transaction commits; returns the record written. Private: every member write
    /// goes through [`MemberTx::put_with_event`], so none lacks its event.
    fn put(&self, old: Option<&Member>, new: &Member) -> Result<Vec<u8>, StoreError> {
        let new_name = new.dir.user_name.normalized();
        let mut overlay = self.overlay.borrow_mut();
        if let Some(old) = old {
            let old_key = old.dir.user_name.normalized();
            if old_key != new_name {
                overlay.names.insert(old_key, None);
            }
            if let Some(e) = old
                .dir
                .external_id
                .as_ref()
                .filter(|e| new.dir.external_id.as_ref() != Some(*e))
            {
                overlay.externals.insert(e.clone(), None);
            }
            if let Some(g) = old
                .dir
                .google_id
                .as_ref()
                .filter(|g| new.dir.google_id.as_ref() != Some(*g))
            {
                overlay.googles.insert(g.clone(), None);
            }
        }
        overlay.names.insert(new_name, Some(new.id));
        if let Some(e) = &new.dir.external_id {
            overlay.externals.insert(e.clone(), Some(new.id));
        }
        if let Some(g) = &new.dir.google_id {
            overlay.googles.insert(g.clone(), Some(new.id));
        }
        let bytes = codec::encode(new)?;
        self.members.insert(new.id.as_bytes(), bytes.as_slice())?;
        overlay.members.insert(new.id, new.clone());
        Ok(bytes)
    }

    /// [`MemberTx::put`], and appends the member's event to the outbox with the record
    /// just written (encoded once), numbered after the transaction's previous events.
    pub(crate) fn put_with_event(
        &self,
        old: Option<&Member>,
        new: &Member,
        event: &events::NewEvent<'_>,
    ) -> Result<(), StoreError> {
        let bytes = self.put(old, new)?;
        self.pending.push(event, Some(bytes));
        Ok(())
    }

    /// Appends an audit entry (its `seq` is assigned here). It is written with the
    /// transaction's other entries when the transaction ends.
    pub(crate) fn append_audit(&self, mut entry: AuditEntry) -> Result<(), StoreError> {
        entry.seq = self.audit.generate_id()?;
        self.pending_audit.borrow_mut().push(entry);
        Ok(())
    }

    /// Writes the pending audit entries, [`AUDIT_CHUNK`] to a key, each group under the
    /// time and sequence of its first entry.
    pub(super) fn write_audit(&self) -> Result<(), StoreError> {
        let pending = self.pending_audit.borrow();
        for group in pending.chunks(AUDIT_CHUNK) {
            let Some(first) = group.first() else { continue };
            let key = audit::key(first.time, first.seq);
            self.audit.insert(&key[..], audit::encode_group(group)?)?;
        }
        Ok(())
    }
}
