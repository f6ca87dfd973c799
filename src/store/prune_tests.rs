//! The T10 table of formats.md 11, partial snapshots, protection, keep-all.

use super::*;
use crate::format::{BackupType, SnapshotRef};
use crate::store::backup::tests::snap;
use chrono::Utc;

fn info(time: &str, finished: bool, protected: bool) -> SnapshotInfo {
    let t = BackupTime::parse_dir_name(time).unwrap();
    SnapshotInfo { snapshot: SnapshotRef { group: snap(BackupType::Host, "h", 1).group, time: t }, finished, protected }
}

fn run(list: &[SnapshotInfo], opts: &KeepOptions) -> Vec<(String, PruneMark)> {
    compute_prune(list, opts, &Utc)
        .into_iter()
        .map(|(s, m)| (s.snapshot.time.dir_name()[5..13].to_string(), m))
        .collect()
}

fn t10() -> Vec<SnapshotInfo> {
    [
        "2024-01-01T10:00:00Z",
        "2024-01-09T10:00:00Z",
        "2024-01-02T10:00:00Z",
        "2024-01-08T10:00:00Z",
        "2024-01-01T12:00:00Z",
        "2024-01-07T10:00:00Z",
        "2024-01-09T18:00:00Z",
    ]
    .iter()
    .map(|t| info(t, true, false))
    .collect()
}

#[test]
fn t10_table() {
    use PruneMark::*;
    let opts = KeepOptions { keep_last: Some(1), keep_daily: Some(2), keep_weekly: Some(2), ..Default::default() };
    assert_eq!(
        run(&t10(), &opts),
        [
            ("01-09T18".to_string(), Keep),
            ("01-09T10".to_string(), Remove),
            ("01-08T10".to_string(), Keep),
            ("01-07T10".to_string(), Keep),
            ("01-02T10".to_string(), Remove),
            ("01-01T12".to_string(), Remove),
            ("01-01T10".to_string(), Remove),
        ]
    );
}

#[test]
fn nothing_set_keeps_all() {
    let zero = KeepOptions { keep_last: Some(0), ..Default::default() };
    for opts in [KeepOptions::default(), zero] {
        assert!(run(&t10(), &opts).iter().all(|(_, m)| *m == PruneMark::Keep));
    }
}

#[test]
fn partial_and_protected() {
    use PruneMark::*;
    let list = [
        info("2024-01-05T00:00:00Z", false, false),
        info("2024-01-04T00:00:00Z", true, false),
        info("2024-01-03T00:00:00Z", false, false),
        info("2024-01-02T00:00:00Z", true, true),
        info("2024-01-01T00:00:00Z", true, false),
    ];
    let opts = KeepOptions { keep_last: Some(1), ..Default::default() };
    let got: Vec<PruneMark> = run(&list, &opts).into_iter().map(|(_, m)| m).collect();
    assert_eq!(got, [KeepPartial, Keep, Remove, Protected, Remove]);
    // Only the newest may be a kept partial.
    let got: Vec<PruneMark> = run(&list[1..], &opts).into_iter().map(|(_, m)| m).collect();
    assert_eq!(got, [Keep, Remove, Protected, Remove]);
}

#[test]
fn weekly_uses_iso_weeks_and_monthly_yearly() {
    use PruneMark::*;
    // 2023-01-01 is a Sunday in ISO week 2022/52.
    let list = [
        info("2023-01-02T00:00:00Z", true, false),
        info("2023-01-01T00:00:00Z", true, false),
        info("2022-12-31T00:00:00Z", true, false),
    ];
    let weekly = KeepOptions { keep_weekly: Some(5), ..Default::default() };
    assert_eq!(run(&list, &weekly).into_iter().map(|(_, m)| m).collect::<Vec<_>>(), [Keep, Keep, Remove]);
    let yearly = KeepOptions { keep_yearly: Some(5), ..Default::default() };
    assert_eq!(run(&list, &yearly).into_iter().map(|(_, m)| m).collect::<Vec<_>>(), [Keep, Remove, Keep]);
    let monthly = KeepOptions { keep_monthly: Some(1), ..Default::default() };
    assert_eq!(run(&list, &monthly).into_iter().map(|(_, m)| m).collect::<Vec<_>>(), [Keep, Remove, Remove]);
}

#[test]
fn prune_group_removes_on_disk() {
    use crate::store::backup::tests::test_store;
    let (_dir, ds) = test_store();
    let root = Namespace::root();
    for t in [1_700_000_000, 1_700_000_100, 1_700_000_200] {
        crate::store::backup::tests::finished(&ds, &snap(BackupType::Host, "h", t), None);
    }
    let group = snap(BackupType::Host, "h", 1).group;
    let opts = KeepOptions { keep_last: Some(1), ..Default::default() };
    let dry = ds.prune_group(&root, &group, &opts, true).unwrap();
    assert_eq!(dry.iter().filter(|(_, m)| m.keep()).count(), 1);
    assert_eq!(ds.snapshots(&root, &group).unwrap().len(), 3);
    ds.prune_group(&root, &group, &opts, false).unwrap();
    let left = ds.snapshots(&root, &group).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].snapshot.time.epoch(), 1_700_000_200);
}
