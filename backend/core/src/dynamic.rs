//! Dynamic configuration: settings an operator changes in discovery, applied without a
//! restart. With etcd they are the keys under `{discovery.prefix}/config/`, named like the
//! config file's keys:
//!
//! ```sh
//! etcdctl put /ringchat/config/logic.large_group_threshold 200
//! etcdctl put /ringchat/config/logic.user_sends_per_sec 20
//! ```
//!
//! Each service follows the keys it knows ([`Reconfigure`]); a value that does not parse
//! or is out of range is refused with a warning and the setting keeps its value; a key
//! nobody knows is logged once. Deleting a key keeps the last value (restart to go back
//! to the file's).

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ports::Discovery;
use crate::shutdown::ShutdownSignal;

/// Something that takes dynamic settings.
pub trait Reconfigure: Send + Sync {
    /// Applies `key = value`: `Ok(true)` if applied, `Ok(false)` if the key is not this
    /// one's, an error if the value is refused.
    fn reconfigure(&self, key: &str, value: &str) -> Result<bool>;
}

/// Parses a dynamic value as a number in `range`.
pub fn number<T>(key: &str, value: &str, range: std::ops::RangeInclusive<T>) -> Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let v: T = value
        .trim()
        .parse()
        .map_err(|_| Error::invalid(format!("{key} = {value:?}: not a number")))?;
    if !range.contains(&v) {
        return Err(Error::invalid(format!(
            "{key} = {v}: must be within {}..={}",
            range.start(),
            range.end()
        )));
    }
    Ok(v)
}

/// Applies the changed values of `all` (against `applied`) to `targets`; returns how many
/// were applied.
pub fn apply(
    all: &HashMap<String, String>,
    applied: &mut HashMap<String, String>,
    targets: &[Arc<dyn Reconfigure>],
) -> usize {
    let mut n = 0;
    let mut keys: Vec<&String> = all.keys().collect();
    keys.sort();
    for key in keys {
        let value = &all[key];
        if applied.get(key) == Some(value) {
            continue;
        }
        applied.insert(key.clone(), value.clone());
        let mut taken = false;
        for t in targets {
            match t.reconfigure(key, value) {
                Ok(true) => taken = true,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(key, value, error = %e, "dynamic setting refused");
                    taken = true;
                }
            }
        }
        if taken {
            n += 1;
            tracing::info!(key, value, "dynamic setting applied");
        } else {
            tracing::debug!(key, "dynamic setting not used by this service");
        }
    }
    n
}

/// Follows discovery's config values until `shutdown`, applying changes to `targets`
/// (current values first). Returns at once when discovery cannot follow changes.
pub async fn follow(
    discovery: Arc<dyn Discovery>,
    targets: Vec<Arc<dyn Reconfigure>>,
    mut shutdown: ShutdownSignal,
) {
    let Some(mut rx) = discovery.config_updates() else {
        return;
    };
    let mut applied = HashMap::new();
    loop {
        let all = rx.borrow_and_update().clone();
        apply(&all, &mut applied, &targets);
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Threshold(Mutex<u32>);

    impl Reconfigure for Threshold {
        fn reconfigure(&self, key: &str, value: &str) -> Result<bool> {
            if key != "logic.large_group_threshold" {
                return Ok(false);
            }
            *self.0.lock().unwrap() = number(key, value, 1..=1_000_000)?;
            Ok(true)
        }
    }

    #[test]
    fn changed_values_are_applied_and_bad_ones_refused() {
        let t = Arc::new(Threshold::default());
        let targets: Vec<Arc<dyn Reconfigure>> = vec![t.clone()];
        let mut applied = HashMap::new();
        let mut all =
            HashMap::from([("logic.large_group_threshold".to_string(), "42".to_string())]);
        assert_eq!(apply(&all, &mut applied, &targets), 1);
        assert_eq!(*t.0.lock().unwrap(), 42);
        // unchanged: nothing applied again
        assert_eq!(apply(&all, &mut applied, &targets), 0);
        // refused: the value stays
        all.insert("logic.large_group_threshold".into(), "0".into());
        apply(&all, &mut applied, &targets);
        assert_eq!(*t.0.lock().unwrap(), 42);
        all.insert("logic.large_group_threshold".into(), "many".into());
        apply(&all, &mut applied, &targets);
        assert_eq!(*t.0.lock().unwrap(), 42);
        // unknown keys are nobody's
        all.insert("nobody.knows".into(), "1".into());
        assert_eq!(apply(&all, &mut applied, &targets), 0);
    }
}
