//! Fuzzes the lease store's on-disk parsers (src/lease/store): WAL record frames, the
//! snapshot header, and the Kea lease6 CSV importer. Beyond "never panics": a frame that
//! decodes re-encodes to exactly the bytes it was decoded from (so replay can never apply
//! a lease that differs from what was written).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem::lease::store::{kea, record, snapshot};

fuzz_target!(|data: &[u8]| {
    // A WAL tail: decode frames until the first error, as replay does.
    let mut pos = 0;
    while let Ok((rec, used)) = record::decode(&data[pos..]) {
        let mut again = Vec::new();
        record::encode(&rec, &mut again);
        assert_eq!(&again[..], &data[pos..pos + used]);
        pos += used;
    }
    let _ = snapshot::Header::decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kea::read(text.as_bytes(), &|_, id| id, &mut |_| {});
    }
});
