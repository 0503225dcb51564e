//! The apply stage: the plan's changes through `provision::apply_batch`, in batches, and their
//! tally.

use super::*;

/// Applies changes in atomic batches, counting each outcome. Stops between batches when a
/// shutdown asks; returns the error that stopped it. Every write carries the run's time.
pub(super) async fn apply(
    ctx: &SyncContext,
    book: &mut RunBook,
    run_id: &RunId,
    changes: Vec<PlannedChange>,
) -> Result<(), String> {
    #[cfg(feature = "test-support")]
    if let Some(hook) = &ctx.before_apply {
        hook(&ctx.store);
    }
    let actor = Actor::Pull(run_id.clone());
    let now = book.started;
    let mut batches = 0usize;
    // Each change is moved once, into its batch. (Splitting the rest off the front of a
    // `Vec` moved every change left at each batch: at 1,000,000 creates, a thousand copies
    // of half a million changes, most of a cold sync's time.)
    let mut rest = changes.into_iter().peekable();
    while rest.peek().is_some() {
        if ctx.stop.load(Ordering::SeqCst) {
            return Err(format!(
                "stopped by shutdown after {batches} batches; the next run takes up the rest"
            ));
        }
        // The changes go to the store; what the tally needs of each stays here.
        let (labels, just): (Vec<(Action, String)>, Vec<Change>) = rest
            .by_ref()
            .take(ctx.batch_size)
            .map(|p| ((p.action, p.user_name), p.change))
            .unzip();
        let store = ctx.store.clone();
        let actor = actor.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let results = provision::apply_batch(&store, &just, &actor, now)?;
            Ok::<_, crate::store::StoreError>(
                results
                    .into_iter()
                    .map(|r| r.map(|o| Applied::of(&o)))
                    .collect::<Vec<_>>(),
            )
        })
        .await;
        let results = joined
            .map_err(|e| format!("apply task failed: {e}"))?
            .map_err(|e| format!("the store failed: {e}"))?;
        batches += 1;
        for ((action, user_name), result) in labels.iter().zip(results) {
            tally(book, *action, user_name, result);
        }
    }
    ctx.store.flush().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// What the tally needs of an [`Outcome`], taken on the thread that applied the batch: the
/// members an outcome holds are freed there, on the thread that made them.
#[derive(Clone, Copy)]
pub(super) enum Applied {
    Unchanged,
    Created,
    Changed { identity_changed: bool },
}

impl Applied {
    pub(super) fn of(o: &Outcome) -> Applied {
        match o {
            Outcome::Unchanged(_) => Applied::Unchanged,
            Outcome::Created(_) => Applied::Created,
            Outcome::Updated { .. } => Applied::Changed {
                identity_changed: o.identity_changed(),
            },
        }
    }
}

pub(super) fn tally(
    book: &mut RunBook,
    action: Action,
    user_name: &str,
    result: Result<Applied, ProvisionError>,
) {
    let c = &mut book.counts;
    match result {
        Ok(Applied::Unchanged) => c.unchanged += 1,
        Ok(outcome) => {
            let counted = match (action, outcome) {
                (Action::Create, Applied::Created) => {
                    c.created += 1;
                    "create"
                }
                // A create that met an unlinked member with the name linked it instead.
                (Action::Create, _) | (Action::Link, _) => {
                    c.linked += 1;
                    "link"
                }
                (Action::Update, _) => {
                    c.updated += 1;
                    "update"
                }
                (Action::Deactivate, _) => {
                    c.deactivated += 1;
                    "deactivate"
                }
            };
            if let Applied::Changed {
                identity_changed: true,
            } = outcome
            {
                c.identity_changed += 1;
            }
            // What the pull writes is drift the push did not deliver.
            metrics::counter!("retrac_sync_drift_corrected_total", "kind" => counted).increment(1);
        }
        // Changed by SCIM since the plan (or SCIM-deleted): the next run takes it up.
        Err(ProvisionError::VersionMismatch { .. }) | Err(ProvisionError::NotFound(_)) => {
            c.skipped += 1
        }
        Err(e) => book.problem(format!("{user_name} ({}): {e}", action.as_str())),
    }
}
