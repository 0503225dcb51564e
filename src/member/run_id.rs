//! A pull run's id ([`RunId`]), which the audit log names as the actor of the run's writes
//! (`Actor::Pull`).

use serde::{Deserialize, Serialize};

/// A recorded run's id: its UTC start time and a sequence number,
/// `20261101T020000Z-000042`, so that ids sort in time order. A dry run is not recorded
/// and has none.
///
/// It reads and writes as the plain string; reading one checks its shape, so a run id that
/// came from a person or over the admin socket is one the store could have made.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    /// Checks the shape of a run id (start time, `-`, six digits), with a message that
    /// says what one looks like.
    pub fn parse(s: &str) -> Result<RunId, String> {
        let bad = || {
            format!(
                "{s:?} is not a run id such as 20261101T020000Z-000042 (see `retrac-sync sync status`)"
            )
        };
        let (time, seq) = s.split_once('-').ok_or_else(bad)?;
        let time_ok =
            chrono::NaiveDateTime::parse_from_str(time, RUN_ID_TIME).is_ok() && time.len() == 16;
        let seq_ok = seq.len() == 6 && seq.bytes().all(|b| b.is_ascii_digit());
        if time_ok && seq_ok {
            Ok(RunId(s.to_string()))
        } else {
            Err(bad())
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The time part of a run id.
pub(crate) const RUN_ID_TIME: &str = "%Y%m%dT%H%M%SZ";

impl TryFrom<String> for RunId {
    type Error = String;
    fn try_from(s: String) -> Result<RunId, String> {
        RunId::parse(&s)
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.0
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so that a table's width applies.
        f.pad(&self.0)
    }
}

/// An audit entry's run id, written as the plain string. It is read back as it was
/// written, whatever its shape: an entry stays readable even if it names a run in a shape
/// the store no longer makes.
pub(super) mod as_recorded {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::RunId;

    pub fn serialize<S: Serializer>(id: &RunId, s: S) -> Result<S::Ok, S::Error> {
        id.0.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RunId, D::Error> {
        Ok(RunId(String::deserialize(d)?))
    }
}
