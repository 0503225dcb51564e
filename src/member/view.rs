//! [`MemberView`]: the member as the CLI shows it, the admin socket sends it and an event
//! carries it, with its documented JSON.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DirectoryAttrs, Field, ManagedBy, Role};

/// A member as the CLI shows it and the admin socket sends it: the member without its kept
/// SCIM attributes (`dir.scim_extra` is always empty here) or its SCIM-deleted mark.
///
/// Its JSON is a documented format with exactly these keys: `id`, each [`Field`] by its
/// name, `locations`, `role`, `managedBy`, `created`, `lastModified`, `version`. It is
/// written and read by hand over [`Field::ALL`] rather than derived, so that the attributes
/// are not listed a third time; an unknown key is refused, as `deny_unknown_fields` did.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberView {
    /// The member's id, hyphenated.
    pub id: String,
    /// The directory-owned attributes.
    pub dir: DirectoryAttrs,
    /// Owner-assigned locations.
    pub locations: Vec<String>,
    /// Owner-assigned role.
    pub role: Role,
    /// Whether the directory manages it, or it is an owner's invite.
    pub managed_by: ManagedBy,
    /// When the record was created.
    pub created: DateTime<Utc>,
    /// When it last changed.
    pub last_modified: DateTime<Utc>,
    /// Grows by one on each write (the SCIM ETag).
    pub version: u64,
    /// Deleted by a SCIM client and hidden from SCIM and the pull until an owner restores
    /// it (written `"scimDeleted": true`, and only then).
    pub scim_deleted: bool,
}

impl Serialize for MemberView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(Field::ALL.len() + 7))?;
        map.serialize_entry("id", &self.id)?;
        for f in Field::ALL {
            map.serialize_entry(f.name(), &f.value(&self.dir))?;
        }
        map.serialize_entry("locations", &self.locations)?;
        map.serialize_entry("role", &self.role)?;
        map.serialize_entry("managedBy", &self.managed_by)?;
        map.serialize_entry("created", &self.created)?;
        map.serialize_entry("lastModified", &self.last_modified)?;
        map.serialize_entry("version", &self.version)?;
        if self.scim_deleted {
            map.serialize_entry("scimDeleted", &true)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for MemberView {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        use serde_json::Value;
        let mut obj = serde_json::Map::<String, Value>::deserialize(d)?;
        let mut take = |key: &str| obj.remove(key).unwrap_or(Value::Null);
        let field = |key: &str, e: serde_json::Error| D::Error::custom(format!("{key}: {e}"));
        let user_name = take(Field::UserName.name());
        let user_name = serde_json::from_value(user_name).map_err(|e| field("userName", e))?;
        let mut dir = DirectoryAttrs::new(user_name, None, None);
        for f in Field::ALL.into_iter().filter(|f| *f != Field::UserName) {
            f.read(&mut dir, take(f.name()))
                .map_err(|e| field(f.name(), e))?;
        }
        macro_rules! read {
            ($key:literal) => {
                serde_json::from_value(take($key)).map_err(|e| field($key, e))?
            };
        }
        let view = MemberView {
            id: read!("id"),
            dir,
            locations: read!("locations"),
            role: read!("role"),
            managed_by: read!("managedBy"),
            created: read!("created"),
            last_modified: read!("lastModified"),
            version: read!("version"),
            scim_deleted: match take("scimDeleted") {
                Value::Null => false,
                v => serde_json::from_value(v).map_err(|e| field("scimDeleted", e))?,
            },
        };
        match obj.keys().next() {
            Some(unknown) => Err(D::Error::unknown_field(unknown, &[])),
            None => Ok(view),
        }
    }
}
