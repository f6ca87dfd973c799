//! Prune selection (formats.md 8): which snapshots of a group the keep options keep, and the
//! removal that follows.
//!
//! Periods are computed in a caller-chosen time zone: PBS uses the server's local zone, so the
//! API passes `chrono::Local`, and tests pass UTC to be reproducible (pitfall 9).

use std::collections::{HashMap, HashSet};

use chrono::TimeZone;
use serde::{Deserialize, Serialize};

use crate::format::{BackupTime, GroupRef, Namespace};
use crate::store::list::SnapshotInfo;
use crate::store::{Datastore, Result};

/// The keep options; each must be >= 1 if set (the API's schema checks that).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct KeepOptions {
    pub keep_last: Option<u64>,
    pub keep_hourly: Option<u64>,
    pub keep_daily: Option<u64>,
    pub keep_weekly: Option<u64>,
    pub keep_monthly: Option<u64>,
    pub keep_yearly: Option<u64>,
}

impl KeepOptions {
    /// False when no option is set or they sum to 0: then prune keeps everything.
    pub fn keeps_something(&self) -> bool {
        [self.keep_last, self.keep_hourly, self.keep_daily, self.keep_weekly, self.keep_monthly, self.keep_yearly]
            .iter()
            .map(|o| o.unwrap_or(0))
            .sum::<u64>()
            > 0
    }
}

/// What prune decided for one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneMark {
    Keep,
    /// The newest snapshot, unfinished, newer than every finished one.
    KeepPartial,
    Protected,
    Remove,
}

impl PruneMark {
    pub fn keep(self) -> bool {
        self != PruneMark::Remove
    }
}

/// Marks `candidates` not yet marked, newest first, keeping the newest of up to `n` periods
/// not already covered by a kept snapshot.
fn select(
    list: &[SnapshotInfo],
    marks: &mut HashMap<BackupTime, PruneMark>,
    n: u64,
    period: impl Fn(&SnapshotInfo) -> String,
) {
    let covered: HashSet<String> =
        list.iter().filter(|s| marks.get(&s.snapshot.time) == Some(&PruneMark::Keep)).map(&period).collect();
    let mut taken: HashSet<String> = HashSet::new();
    for s in list {
        if marks.contains_key(&s.snapshot.time) {
            continue;
        }
        if s.protected {
            marks.insert(s.snapshot.time, PruneMark::Protected);
            continue;
        }
        let p = period(s);
        if covered.contains(&p) {
            continue;
        }
        if taken.contains(&p) {
            marks.insert(s.snapshot.time, PruneMark::Remove);
        } else {
            if taken.len() as u64 >= n {
                break;
            }
            taken.insert(p);
            marks.insert(s.snapshot.time, PruneMark::Keep);
        }
    }
}

/// Decides every snapshot of one group. `snapshots` in any order; the result is newest first.
pub fn compute_prune<Tz: TimeZone>(
    snapshots: &[SnapshotInfo],
    opts: &KeepOptions,
    tz: &Tz,
) -> Vec<(SnapshotInfo, PruneMark)>
where
    Tz::Offset: std::fmt::Display,
{
    let mut list = snapshots.to_vec();
    list.sort_by_key(|s| std::cmp::Reverse(s.snapshot.time));
    if !opts.keeps_something() {
        return list.into_iter().map(|s| (s, PruneMark::Keep)).collect();
    }
    let mut marks = HashMap::new();
    let mut partial_allowed = true;
    for s in &list {
        if !s.finished {
            let mark = if partial_allowed { PruneMark::KeepPartial } else { PruneMark::Remove };
            marks.insert(s.snapshot.time, mark);
        }
        partial_allowed = false;
    }
    let fmt = |f: &'static str| {
        move |s: &SnapshotInfo| {
            let t = tz.timestamp_opt(s.snapshot.time.epoch(), 0).single().expect("backup time in range");
            t.format(f).to_string()
        }
    };
    if let Some(n) = opts.keep_last {
        select(&list, &mut marks, n, |s| s.snapshot.time.dir_name());
    }
    for (opt, f) in [
        (opts.keep_hourly, "%Y/%m/%d/%H"),
        (opts.keep_daily, "%Y/%m/%d"),
        (opts.keep_weekly, "%G/%V"),
        (opts.keep_monthly, "%Y/%m"),
        (opts.keep_yearly, "%Y"),
    ] {
        if let Some(n) = opt {
            select(&list, &mut marks, n, fmt(f));
        }
    }
    list.into_iter()
        .map(|s| {
            let mark = if s.protected {
                PruneMark::Protected
            } else {
                marks.get(&s.snapshot.time).copied().unwrap_or(PruneMark::Remove)
            };
            (s, mark)
        })
        .collect()
}

impl Datastore {
    /// Prunes one group with the server's local time zone: computes the marks and, unless
    /// `dry_run`, forgets the `Remove` ones oldest first. Returns the marks, newest first.
    pub fn prune_group(
        &self,
        ns: &Namespace,
        group: &GroupRef,
        opts: &KeepOptions,
        dry_run: bool,
    ) -> Result<Vec<(SnapshotInfo, PruneMark)>> {
        let marks = compute_prune(&self.snapshots(ns, group)?, opts, &chrono::Local);
        if !dry_run {
            for (info, _) in marks.iter().rev().filter(|(_, m)| *m == PruneMark::Remove) {
                self.remove_snapshot(ns, &info.snapshot)?;
            }
        }
        Ok(marks)
    }
}

#[cfg(test)]
#[path = "prune_tests.rs"]
mod tests;
