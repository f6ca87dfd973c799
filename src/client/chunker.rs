//! A deterministic content-defined chunker for dynamic archives (gear hash). Not PBS's buzhash:
//! the server never sees how boundaries were chosen, only that the same content gives the
//! same chunks, which is all incremental tests and the load tester need.

/// Boundaries are cut where the top bits of the gear hash are zero, between `avg / 4` and
/// `avg * 4` bytes apart, like the real client's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunker {
    min: usize,
    max: usize,
    bits: u32,
}

impl Chunker {
    /// `avg` is rounded down to a power of two (at least 64 bytes).
    pub fn new(avg: usize) -> Self {
        let avg = avg.max(64);
        let bits = usize::BITS - 1 - avg.leading_zeros();
        let avg = 1usize << bits;
        Chunker { min: avg / 4, max: avg * 4, bits }
    }

    /// End offsets of the chunks of `data` (the last one is `data.len()`; none for empty data).
    pub fn cut_points(&self, data: &[u8]) -> Vec<usize> {
        let gear = gear_table();
        let mut ends = Vec::new();
        let mut start = 0usize;
        while start < data.len() {
            let limit = (start + self.max).min(data.len());
            let mut end = limit;
            let mut hash = 0u64;
            let mut i = start;
            while i < limit {
                hash = (hash << 1).wrapping_add(gear[data[i] as usize]);
                i += 1;
                if i - start >= self.min && hash >> (64 - self.bits) == 0 {
                    end = i;
                    break;
                }
            }
            ends.push(end);
            start = end;
        }
        ends
    }
}

fn gear_table() -> [u64; 256] {
    // splitmix64 from a fixed seed: any well-mixed table works, it only has to be constant.
    let mut table = [0u64; 256];
    let mut state = 0x6368_756e_6b79_6172u64;
    for slot in table.iter_mut() {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        *slot = z ^ (z >> 31);
    }
    table
}
