//! The one error type of the owner's commands, and its one map to an exit code.
//!
//! Every layer's error (owner, tokens, pull, store) is turned into an [`AppError`] here, so a
//! command fails the same way whether it ran in the CLI's process or in the daemon: the
//! kind and the message cross the admin socket as data, not as text to re-parse.

use serde::{Deserialize, Serialize};

use crate::owner::OwnerError;
use crate::provision::ProvisionError;
use crate::reconcile::SyncError;
use crate::store::StoreError;
use crate::tokens::TokenError;
use crate::webhooks::WebhookError;

/// Why a command failed. The message is for the owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum AppError {
    /// The input is not valid (a bad email, an empty label): exit 2.
    #[error("{0}")]
    Usage(String),
    /// The configuration is missing or wrong: exit 2.
    #[error("{0}")]
    Config(String),
    /// What the command names does not exist (a member, a token, a held run): exit 1.
    #[error("{0}")]
    NotFound(String),
    /// The command clashes with the current state (a user name taken, a run in progress):
    /// exit 1.
    #[error("{0}")]
    Conflict(String),
    /// Anything else that went wrong (the store, the daemon, output): exit 1.
    #[error("{0}")]
    Failed(String),
}

impl AppError {
    /// The process exit code, as docs/admin/cli.md documents: 1 failure, 2 usage or config error.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Usage(_) | AppError::Config(_) => 2,
            AppError::NotFound(_) | AppError::Conflict(_) | AppError::Failed(_) => 1,
        }
    }

    /// A failure with this message.
    pub fn failed(e: impl std::fmt::Display) -> Self {
        AppError::Failed(e.to_string())
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::Failed(e.to_string())
    }
}

impl From<ProvisionError> for AppError {
    fn from(e: ProvisionError) -> Self {
        let message = e.to_string();
        match e {
            ProvisionError::UserNameTaken { .. }
            | ProvisionError::ExternalIdTaken { .. }
            | ProvisionError::VersionMismatch { .. }
            | ProvisionError::Forbidden { .. } => AppError::Conflict(message),
            ProvisionError::NotFound(_) => AppError::NotFound(message),
            ProvisionError::Store(_) => AppError::Failed(message),
        }
    }
}

impl From<OwnerError> for AppError {
    fn from(e: OwnerError) -> Self {
        match e {
            OwnerError::NotFound(_) => AppError::NotFound(e.to_string()),
            OwnerError::Invalid(m) => AppError::Usage(m),
            OwnerError::Provision(p) => p.into(),
            OwnerError::Store(s) => s.into(),
        }
    }
}

impl From<TokenError> for AppError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid(m) => AppError::Usage(m),
            TokenError::NotFound(_) => AppError::NotFound(e.to_string()),
            TokenError::Random(_) => AppError::Failed(e.to_string()),
            TokenError::Store(s) => s.into(),
        }
    }
}

impl From<WebhookError> for AppError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(m) => AppError::Usage(m),
            WebhookError::NotFound(_) => AppError::NotFound(e.to_string()),
            WebhookError::Conflict(m) => AppError::Conflict(m),
            WebhookError::Failed(m) => AppError::Failed(m),
            WebhookError::Store(s) => s.into(),
        }
    }
}

impl From<SyncError> for AppError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Busy => AppError::Conflict(e.to_string()),
            SyncError::UnknownRun(_) => AppError::NotFound(e.to_string()),
            SyncError::Invalid(m) => AppError::Usage(m),
            SyncError::Store(s) => s.into(),
        }
    }
}

impl From<crate::access::AccessError> for AppError {
    fn from(e: crate::access::AccessError) -> Self {
        use crate::access::AccessError;
        match e {
            AccessError::NotOwner(_) | AccessError::BadLink => AppError::NotFound(e.to_string()),
            AccessError::Off => AppError::Config(e.to_string()),
            AccessError::Random(_) => AppError::Failed(e.to_string()),
            AccessError::Store(s) => s.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_and_config_exit_2_everything_else_1() {
        assert_eq!(AppError::Usage("x".into()).exit_code(), 2);
        assert_eq!(AppError::Config("x".into()).exit_code(), 2);
        assert_eq!(AppError::NotFound("x".into()).exit_code(), 1);
        assert_eq!(AppError::Conflict("x".into()).exit_code(), 1);
        assert_eq!(AppError::Failed("x".into()).exit_code(), 1);
    }

    #[test]
    fn the_kind_and_message_travel_as_data() {
        let e = AppError::Usage("\"x\" is not an email address: it has no '@'".into());
        let wire = serde_json::to_string(&e).unwrap();
        assert_eq!(
            wire,
            r#"{"kind":"usage","message":"\"x\" is not an email address: it has no '@'"}"#
        );
        assert_eq!(serde_json::from_str::<AppError>(&wire).unwrap(), e);
    }

    /// Only a record the store cannot read says that the store may be damaged; a failed
    /// write or an internal failure is a plain failure (exit 1) that says what it is.
    #[test]
    fn store_failures_exit_1_and_only_a_bad_record_says_damaged() {
        let io: AppError = StoreError::Io("flush failed: EIO".into()).into();
        let internal: AppError =
            SyncError::Store(StoreError::Internal("the member load task failed".into())).into();
        let corrupt: AppError = StoreError::Corrupt("member record: bad tag".into()).into();
        for e in [&io, &internal, &corrupt] {
            assert!(matches!(e, AppError::Failed(_)), "{e:?}");
            assert_eq!(e.exit_code(), 1);
        }
        assert!(io.to_string().contains("could not write to disk"), "{io}");
        assert!(
            internal.to_string().starts_with("internal error"),
            "{internal}"
        );
        assert!(!io.to_string().contains("damaged") && !internal.to_string().contains("damaged"));
        assert!(corrupt.to_string().contains("may be damaged"), "{corrupt}");
    }

    #[test]
    fn a_bad_email_from_any_layer_is_a_usage_error() {
        let owner: AppError = OwnerError::Invalid("bad".into()).into();
        let sync: AppError = SyncError::Invalid("bad".into()).into();
        assert_eq!(owner.exit_code(), 2);
        assert_eq!(sync.exit_code(), 2);
        assert_eq!(AppError::from(SyncError::Busy).exit_code(), 1);
    }
}
