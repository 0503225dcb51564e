//! The upgrade of a store of an older schema to [`SCHEMA_VERSION`], run by
//! `Store::open` before anything else reads the records.

use super::{
    audit, codec, decode_member, Mirror, StoreError, META_SCHEMA_VERSION, SCHEMA_2_INDEX_TREES,
    SCHEMA_VERSION,
};
use crate::member::Member;

/// Records converted and written per sled batch during the upgrade.
const UPGRADE_BATCH: usize = 10_000;

/// Brings a store of an older schema up to [`SCHEMA_VERSION`] and returns its mirror.
///
/// Every record is converted in memory and the mirror built from the result first: if two
/// members now collide (user names fold further than they used to), the open fails naming
/// them and nothing is written. Then the converted records are written, the old trees
/// dropped, and the version set last. Each step can be run again: a record already in the
/// current format is read as it is, dropping a dropped tree does nothing, and a format-1
/// record converts the same way each time (the audit it is decided by does not change).
///
/// A format-1 record's one `external_id` becomes `google_id` when the last audit entry that
/// set it was the pull's, and stays `external_id` otherwise (SCIM's, or no entry that says).
/// Keeping it as SCIM's is the safe side: the pull then finds the member by user name and
/// links it again (a `link`, grants kept), where a wrong Google id would look like another
/// identity.
pub(super) fn upgrade(
    db: &sled::Db,
    meta: &sled::Tree,
    members: &sled::Tree,
    found: u32,
) -> Result<Mirror, StoreError> {
    let needs_conversion = members
        .iter()
        .values()
        .any(|v| v.as_ref().map(|v| !codec::is_current(v)).unwrap_or(true));
    let set_by_pull = if needs_conversion {
        let audit = db.open_tree("audit")?;
        audit::external_id_setters(&audit)?
    } else {
        Default::default()
    };
    let mut old_format = Vec::new();
    // A format-1 record as format 2 has it (the same each time it is asked).
    let convert = |v: &[u8]| -> Result<Member, StoreError> {
        let mut m = codec::decode_v1(v)?;
        if set_by_pull.get(&m.id) == Some(&true) {
            m.dir.google_id = m.dir.external_id.take();
        }
        Ok(m)
    };
    let converted = members.iter().map(|kv| {
        let (_, v) = kv?;
        if codec::is_current(&v) {
            return decode_member(&v);
        }
        let m = convert(&v)?;
        old_format.push(m.id);
        Ok(m)
    });
    let mirror = Mirror::build(converted)?;
    // From here on the store is written. The records are converted again rather than taken
    // from the mirror, which does not keep the SCIM extra attributes.
    for ids in old_format.chunks(UPGRADE_BATCH) {
        let mut batch = sled::Batch::default();
        for id in ids {
            if let Some(v) = members.get(id.as_bytes())? {
                if !codec::is_current(&v) {
                    batch.insert(&id.as_bytes()[..], codec::encode(&convert(&v)?)?);
                }
            }
        }
        members.apply_batch(batch)?;
    }
    if !old_format.is_empty() {
        let google = old_format
            .iter()
            .filter(|id| mirror.get(**id).is_some_and(|e| e.google_id().is_some()))
            .count();
        tracing::info!(
            records = old_format.len(),
            google_ids = google,
            "converted the member records to format 2 (Google id apart from externalId)"
        );
    }
    if found < 2 {
        // Version 1 kept a per-member index of the audit; the audit is now scanned
        // instead. Its single-entry records are read as they are.
        if db.drop_tree("audit_by_member")? {
            tracing::info!(
                tree = "audit_by_member",
                "dropped a tree of an older schema"
            );
        }
    }
    for tree in SCHEMA_2_INDEX_TREES {
        if db.drop_tree(tree)? {
            tracing::info!(
                tree,
                "dropped an index tree of an older schema (the indexes live in memory now)"
            );
        }
    }
    meta.insert(META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())?;
    db.flush()?;
    tracing::info!(
        from = found,
        to = SCHEMA_VERSION,
        "upgraded the store's schema"
    );
    Ok(mirror)
}

#[cfg(test)]
mod tests;
