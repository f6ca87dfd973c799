//! The client's content-defined chunker on test data: limits, determinism, and that an
//! insertion only moves the boundaries near it. (Here rather than beside the chunker because
//! the test data comes from the `testing` harness, which the client itself may not use.)

use chunkyard::client::chunker::Chunker;
use chunkyard::testing::noise;

#[test]
fn limits_and_determinism() {
    let c = Chunker::new(4096);
    let data = noise(200_000, 7);
    let ends = c.cut_points(&data);
    assert_eq!(*ends.last().unwrap(), data.len());
    let mut start = 0;
    for (i, &e) in ends.iter().enumerate() {
        assert!(e - start <= 16384);
        assert!(e - start >= 1024 || i == ends.len() - 1);
        start = e;
    }
    assert!(ends.len() > 10 && ends.len() < 200, "{} chunks", ends.len());
    assert_eq!(ends, c.cut_points(&data));
    assert!(c.cut_points(&[]).is_empty());
}

#[test]
fn an_insertion_only_changes_nearby_chunks() {
    let c = Chunker::new(4096);
    let data = noise(200_000, 9);
    let mut edited = data[..1000].to_vec();
    edited.extend_from_slice(b"inserted");
    edited.extend_from_slice(&data[1000..]);
    let a: Vec<usize> = c.cut_points(&data).into_iter().skip(3).collect();
    let b: Vec<usize> = c.cut_points(&edited).into_iter().map(|e| e - 8).collect();
    let shared = a.iter().filter(|e| b.contains(e)).count();
    assert!(shared + 3 >= a.len() - 1, "{shared} of {} boundaries kept", a.len());
}
