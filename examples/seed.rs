//! Seeds a store with synthetic members through `provision::apply_batch`, for the SCIM
//! load bench: `cargo run --release --example seed -- STORE_DIR COUNT`.

use std::path::PathBuf;
use std::process::ExitCode;

use retrac_sync::member::{Actor, Change, DirectoryAttrs, ManagedBy, UserName};
use retrac_sync::provision;
use retrac_sync::store::Store;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(count)) = (args.next(), args.next()) else {
        eprintln!("usage: seed STORE_DIR COUNT");
        return ExitCode::from(2);
    };
    let Ok(count) = count.parse::<usize>() else {
        eprintln!("COUNT must be a number");
        return ExitCode::from(2);
    };
    match seed(PathBuf::from(dir), count) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn seed(dir: PathBuf, count: usize) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(&dir)?;
    let actor = Actor::Scim("seed".into());
    let started = std::time::Instant::now();
    let mut created = 0;
    for chunk_start in (0..count).step_by(1000) {
        let changes: Vec<Change> = (chunk_start..(chunk_start + 1000).min(count))
            .map(|n| {
                let user = UserName::parse(&format!("user{n:06}@example.com"))?;
                let mut attrs = DirectoryAttrs::new(
                    user,
                    Some(&format!("Given{n}")),
                    Some(&format!("Family{n}")),
                );
                attrs.external_id = Some(format!("ext-{n}"));
                Ok(Change::Create {
                    attrs,
                    managed_by: ManagedBy::Google,
                })
            })
            .collect::<Result<_, retrac_sync::member::InvalidUserName>>()?;
        for r in provision::apply_batch(&store, &changes, &actor, chrono::Utc::now())? {
            if r.is_ok() {
                created += 1;
            }
        }
    }
    store.flush_blocking()?;
    eprintln!(
        "seeded {created} members in {:.1}s ({} in the store)",
        started.elapsed().as_secs_f64(),
        store.member_count()
    );
    Ok(())
}
