//! The io_uring batch writer on a real directory (skipped, loudly, where the kernel refuses
//! io_uring: the fallback path is then the one in use and is tested through the ChunkWriter).

use super::*;

fn writer() -> Option<UringWriter> {
    match UringWriter::new(8) {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("io_uring unavailable here ({e}); skipping");
            None
        }
    }
}

#[test]
fn batch_writes_files_durably_and_renames_them() {
    let Some(mut w) = writer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("abcd");
    std::fs::create_dir(&sub).unwrap();
    // More items than ring entries, to exercise slicing; one large buffer.
    let datas: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1000 + i as usize * 7]).chain([vec![7u8; 5 << 20]]).collect();
    let paths: Vec<_> =
        (0..datas.len()).map(|i| (sub.join(format!("f{i}.tmp_x")), sub.join(format!("f{i}")))).collect();
    let items: Vec<_> =
        paths.iter().zip(&datas).map(|((tmp, dest), data)| WriteItem { tmp, dest, dir: &sub, data }).collect();
    let results = w.write_batch(&items, true);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    for ((tmp, dest), data) in paths.iter().zip(&datas) {
        assert_eq!(&std::fs::read(dest).unwrap(), data);
        assert!(!tmp.exists());
    }
}

#[test]
fn a_failing_item_fails_alone_and_leaves_no_file() {
    let Some(mut w) = writer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok_tmp, ok_dest) = (d.join("a.tmp"), d.join("a"));
    // The tmp name is taken: O_EXCL refuses it, and the stranger's file is left alone.
    let (busy_tmp, busy_dest) = (d.join("b.tmp"), d.join("b"));
    std::fs::write(&busy_tmp, b"someone else's").unwrap();
    // The destination directory does not exist: open fails.
    let (bad_tmp, bad_dest) = (d.join("missing/c.tmp"), d.join("missing/c"));
    let items = [
        WriteItem { tmp: &ok_tmp, dest: &ok_dest, dir: d, data: b"one" },
        WriteItem { tmp: &busy_tmp, dest: &busy_dest, dir: d, data: b"two" },
        WriteItem { tmp: &bad_tmp, dest: &bad_dest, dir: d, data: b"three" },
    ];
    let r = w.write_batch(&items, true);
    assert!(r[0].is_ok());
    assert_eq!(r[1].as_ref().unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(r[2].as_ref().unwrap_err().kind(), std::io::ErrorKind::NotFound);
    assert_eq!(std::fs::read(&ok_dest).unwrap(), b"one");
    assert_eq!(std::fs::read(&busy_tmp).unwrap(), b"someone else's");
    assert!(!busy_dest.exists() && !ok_tmp.exists());
}
