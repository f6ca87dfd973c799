//! Any string through every validated name (the only way a wire or disk string becomes part of
//! a path): no panic; what is accepted prints back to the same text, parses again to the same
//! value, and as a path is plain components only (never `/`, `.`, `..`, NUL or empty).
#![no_main]

use std::path::{Component, Path};
use std::str::FromStr;

use chunkyard::format::{
    ArchiveName, Authid, BackupId, BackupTime, BackupType, DatastoreName, Digest, GroupRef, Namespace, SnapshotRef,
};
use libfuzzer_sys::fuzz_target;

/// One path component that stays where it is joined.
fn component(s: &str) {
    assert!(!s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0']), "{s:?}");
    let mut parts = Path::new(s).components();
    assert!(matches!(parts.next(), Some(Component::Normal(_))) && parts.next().is_none(), "{s:?}");
}

fn round_trip<T: FromStr + ToString + PartialEq + std::fmt::Debug>(s: &str) -> Option<T>
where
    T::Err: std::fmt::Debug,
{
    let v = T::from_str(s).ok()?;
    assert_eq!(v.to_string(), s);
    assert_eq!(T::from_str(&v.to_string()).unwrap(), v);
    Some(v)
}

fn dir_name(s: &str) {
    if let Ok(t) = BackupTime::parse_dir_name(s) {
        assert_eq!(t.dir_name(), s, "two directory names for one backup time");
    }
}

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes double as an epoch, so a corpus of directory names reaches both paths.
    let mut head = [0u8; 8];
    head[..data.len().min(8)].copy_from_slice(&data[..data.len().min(8)]);
    let epoch = i64::from_le_bytes(head);
    let s = match std::str::from_utf8(data) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&data[..e.valid_up_to()]).unwrap(),
    };
    let ty = round_trip::<BackupType>(s);
    let id = round_trip::<BackupId>(s);
    if let Some(id) = &id {
        component(id.as_str());
    }
    if let Some(store) = round_trip::<DatastoreName>(s) {
        component(store.as_str());
    }
    if let Some(archive) = round_trip::<ArchiveName>(s) {
        component(archive.as_str());
        assert!(archive.as_str().len() > archive.kind().extension().len());
    }
    if let Some(d) = round_trip::<Digest>(s) {
        assert_eq!(d.prefix_dir(), s[..4]);
    }
    if let Some(a) = round_trip::<Authid>(s) {
        assert!(!a.user().contains(['/', ':', '!']));
        assert!(a.token_name().is_none_or(|t| !t.contains(['/', ':', '!'])));
        assert!(a.matches_owner(&a) && a.user_id().matches_owner(&a));
    }
    if let Some(ns) = round_trip::<Namespace>(s) {
        assert!(ns.depth() <= chunkyard::format::names::MAX_NAMESPACE_DEPTH);
        ns.components().iter().for_each(|c| component(c));
        let rel = ns.rel_path();
        assert_eq!(rel.components().count(), 2 * ns.depth());
        assert!(rel.components().all(|c| matches!(c, Component::Normal(_))));
        assert_eq!(ns.parent().map(|p| p.depth() + 1).unwrap_or(0), ns.depth());
        if let Ok(child) = ns.child("x") {
            assert_eq!(child.parent(), Some(ns));
        }
    }
    // Random text rarely matches the directory-name shape, so the digits of the input also
    // fill its template: every field reaches every two-digit value.
    let digits: Vec<char> = s.chars().filter(char::is_ascii_digit).take(14).collect();
    if digits.len() == 14 {
        let d = |r: std::ops::Range<usize>| digits[r].iter().collect::<String>();
        let dir = format!("{}-{}-{}T{}:{}:{}Z", d(0..4), d(4..6), d(6..8), d(8..10), d(10..12), d(12..14));
        dir_name(&dir);
    }
    dir_name(s);
    if let Ok(t) = BackupTime::from_epoch(epoch) {
        let dir = t.dir_name();
        assert_eq!(BackupTime::parse_dir_name(&dir), Ok(t), "{dir}");
        component(&dir);
        if let (Some(ty), Some(id)) = (ty, id) {
            let snap = SnapshotRef { group: GroupRef { ty, id }, time: t };
            assert_eq!(snap.rel_path().components().count(), 3);
            assert_eq!(snap.to_string(), format!("{}/{}", snap.group, dir));
        }
    }
});
