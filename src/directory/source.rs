//! The seam between the pull and Google: [`Directory`], the Directory API calls the pull
//! makes. [`DirectoryClient`] answers them over HTTP; `directory::memory` (with the
//! `test-support` feature, or in the crate's unit tests) answers them from memory, so a
//! rule of the pull can be tested without HTTP.
//!
//! The methods return futures that are `Send`: the pull reads ahead on spawned tasks and
//! runs on the daemon's multi-threaded runtime. The trait is used as a generic bound
//! (`D: Directory`), never as `dyn Directory`.

use std::collections::HashSet;
use std::future::Future;

use super::client::{DirectoryClient, RawUsersPage, UserListTarget};
use super::model::{GoogleUser, MembersPage, UsersPage};
use super::DirectoryError;

/// The Directory API calls the pull makes, with the answers and errors of
/// [`DirectoryClient`]'s methods of the same names (see them for what each answer means).
pub trait Directory: Send + Sync {
    /// How many requests (retries included) this directory has answered; a run reports the
    /// difference.
    fn requests(&self) -> u64;

    /// One users.list page, not decoded yet (the pull decodes a page while the next one is
    /// read).
    fn list_users_page_raw(
        &self,
        target: &UserListTarget,
        query: Option<&str>,
        page_token: Option<&str>,
    ) -> impl Future<Output = Result<RawUsersPage, DirectoryError>> + Send;

    /// One users.list page, decoded.
    fn list_users_page(
        &self,
        target: &UserListTarget,
        query: Option<&str>,
        page_token: Option<&str>,
    ) -> impl Future<Output = Result<UsersPage, DirectoryError>> + Send {
        async move {
            self.list_users_page_raw(target, query, page_token)
                .await?
                .decode()
        }
    }

    /// users.get: one user by primary email or id; `None` when it is gone (404, 412
    /// `conditionNotMet`); a 403 is [`DirectoryError::NotInCustomer`].
    fn get_user(
        &self,
        user_key: &str,
    ) -> impl Future<Output = Result<Option<GoogleUser>, DirectoryError>> + Send;

    /// members.hasMember, nested membership included; `None` when Google cannot tell.
    fn has_member(
        &self,
        group: &str,
        member_key: &str,
    ) -> impl Future<Output = Result<Option<bool>, DirectoryError>> + Send;

    /// One page of a group's direct members; a group Google does not know is
    /// [`DirectoryError::GroupNotFound`].
    fn list_members_page(
        &self,
        group: &str,
        page_token: Option<&str>,
    ) -> impl Future<Output = Result<MembersPage, DirectoryError>> + Send;

    /// The ids of the customer's deleted users that can still be restored, every page.
    fn deleted_user_ids(
        &self,
        customer: &str,
    ) -> impl Future<Output = Result<HashSet<String>, DirectoryError>> + Send;
}

impl Directory for DirectoryClient {
    fn requests(&self) -> u64 {
        DirectoryClient::requests(self)
    }

    async fn list_users_page_raw(
        &self,
        target: &UserListTarget,
        query: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<RawUsersPage, DirectoryError> {
        DirectoryClient::list_users_page_raw(self, target, query, page_token).await
    }

    async fn list_users_page(
        &self,
        target: &UserListTarget,
        query: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<UsersPage, DirectoryError> {
        DirectoryClient::list_users_page(self, target, query, page_token).await
    }

    async fn get_user(&self, user_key: &str) -> Result<Option<GoogleUser>, DirectoryError> {
        DirectoryClient::get_user(self, user_key).await
    }

    async fn has_member(
        &self,
        group: &str,
        member_key: &str,
    ) -> Result<Option<bool>, DirectoryError> {
        DirectoryClient::has_member(self, group, member_key).await
    }

    async fn list_members_page(
        &self,
        group: &str,
        page_token: Option<&str>,
    ) -> Result<MembersPage, DirectoryError> {
        DirectoryClient::list_members_page(self, group, page_token).await
    }

    async fn deleted_user_ids(&self, customer: &str) -> Result<HashSet<String>, DirectoryError> {
        DirectoryClient::deleted_user_ids(self, customer).await
    }
}
