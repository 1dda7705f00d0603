//! Content hashes (a leaf: needs nothing else of the runner). A plugin is
//! known by the SHA-256 of its bytes everywhere: the compile cache,
//! `plugins.NAME.sha256` in `runner.toml`, and the queue that hands it to
//! workers.

use sha2::{Digest, Sha256};

/// The lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_as_sha256sum_prints() {
        assert_eq!(
            super::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
