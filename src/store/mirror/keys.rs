//! The open's pieces of the mirror: an entry with its hashes, made on the reading thread,
//! and the identity indexes a collision is looked for in.

use super::*;

/// An entry made on the open's reading thread, with the hashes of its id and of its
/// [`KEYS`], so that the thread that fills the tables only probes them.
pub(super) struct Hashed {
    pub(super) entry: Arc<Entry>,
    pub(super) id: u64,
    pub(super) keys: [Option<u64>; 3],
}

impl Hashed {
    pub(super) fn new(entry: Entry, hasher: &DefaultHashBuilder) -> Hashed {
        Hashed {
            id: hasher.hash_one(entry.id),
            keys: KEYS.map(|k| Key::of(k, &entry).map(|v| hasher.hash_one(v))),
            entry: Arc::new(entry),
        }
    }
}

/// The identity indexes, in the order a collision is looked for.
pub(super) const KEYS: [Key; 3] = [Key::Name, Key::External, Key::Google];

/// Which identity index.
#[derive(Clone, Copy)]
pub(super) enum Key {
    Name,
    External,
    Google,
}

impl Key {
    pub(super) fn of(self, e: &Entry) -> Option<&str> {
        match self {
            Key::Name => Some(e.name_key()),
            Key::External => e.external_id(),
            Key::Google => e.google_id(),
        }
    }

    pub(super) fn what(self) -> &'static str {
        match self {
            Key::Name => "user name",
            Key::External => "external id",
            Key::Google => "Google id",
        }
    }
}

/// Two records claim one key: the store cannot be served.
pub(super) fn collision(
    what: &'static str,
    key: &str,
    first: &Entry,
    second: &Entry,
) -> StoreError {
    StoreError::Collision {
        what,
        key: key.to_string(),
        first: format!("{} ({})", first.id, first.user_name()),
        second: format!("{} ({})", second.id, second.user_name()),
    }
}
