//! The chunk writer on a real datastore, through io_uring and through the plain-I/O fallback:
//! same files, same dedup answers.

use super::*;
use crate::config::PipelineConfig;
use crate::format::DatastoreName;
use crate::format::blob;
use crate::store::DatastoreOptions;

/// A datastore opened as the server opens it with `cfg`.
fn store(dir: &std::path::Path, cfg: &PipelineConfig) -> Arc<Datastore> {
    // An empty `.chunks` opens fine; prefix directories are made on first use.
    std::fs::create_dir_all(dir.join(".chunks")).unwrap();
    let options = DatastoreOptions::from_config(cfg);
    Arc::new(Datastore::open_with(DatastoreName::parse("store").unwrap(), dir, &options).unwrap())
}

async fn exercise(io_uring: bool) -> WriteMethod {
    let dir = tempfile::tempdir().unwrap();
    let cfg = PipelineConfig { io_uring, uring_depth: 8, ..PipelineConfig::default() };
    let ds = store(dir.path(), &cfg);
    let handle = ChunkWriter::spawn(&cfg);
    let chunks: Vec<(Digest, Bytes)> = (0..40u32)
        .map(|i| {
            let data: Vec<u8> = (0..10_000u32).map(|j| (i * 31 + j) as u8).collect();
            (Digest::of(&data), Bytes::from(blob::encode(&data, true).unwrap()))
        })
        .collect();
    // Concurrent stores, so the io_uring writer sees real batches; every chunk twice.
    let store_all = || {
        let jobs = chunks.iter().map(|(d, raw)| {
            let (handle, ds) = (handle.clone(), ds.clone());
            let (d, raw) = (*d, raw.clone());
            async move { handle.store(StoreChunk { store: ds, digest: d, blob: raw }).await.unwrap() }
        });
        futures_util::future::join_all(jobs)
    };
    let first = store_all().await;
    let again = store_all().await;
    assert!(first.iter().all(|s| s.new), "{first:?}");
    assert!(again.iter().all(|s| !s.new), "{again:?}");
    for (d, raw) in &chunks {
        assert_eq!(&ds.chunks().read(d).unwrap(), raw);
    }
    let leftovers: Vec<_> =
        walk(dir.path()).into_iter().filter(|p| p.file_name().unwrap().to_string_lossy().contains("tmp")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    ds.chunks().write_method()
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() { out.extend(walk(&e.path())) } else { out.push(e.path()) }
    }
    out
}

#[tokio::test]
async fn io_uring_path_writes_and_dedups() {
    let method = exercise(true).await;
    // Where the kernel refuses io_uring the writer must have said so and fallen back.
    if method == WriteMethod::Fallback {
        eprintln!("io_uring unavailable on this machine: the writer fell back (tested by the fallback test)");
    }
}

#[tokio::test]
async fn fallback_path_writes_and_dedups() {
    assert_eq!(exercise(false).await, WriteMethod::Fallback);
}

#[test]
fn io_uring_is_used_where_the_kernel_offers_it() {
    let available = crate::store::io::uring::UringWriter::new(4).is_ok();
    let dir = tempfile::tempdir().unwrap();
    let ds = store(dir.path(), &PipelineConfig::default());
    assert_eq!(ds.chunks().write_method() == WriteMethod::IoUring, available);
}
