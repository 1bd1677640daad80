//! The vendored engine decompresses repository files (snapshots, index files, locks) with
//! one reused zstd context per thread: every file must come back exactly as written, one
//! after another on the same thread, whatever its size and compression ratio.

use rustic_backend::BackendOptions;
use rustic_core::{ConfigOptions, Credentials, KeyOptions, Repository, RepositoryOptions};

#[test]
fn files_decoded_one_after_another_with_one_context_come_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let backends = BackendOptions::default()
        .repository(dir.path().join("repo").to_str().unwrap())
        .to_backends()
        .unwrap();
    let repo = Repository::new(&RepositoryOptions::default(), &backends)
        .unwrap()
        .init(
            &Credentials::password("pw"),
            &KeyOptions::default(),
            &ConfigOptions::default(),
        )
        .unwrap();
    let cipher = repo.file_cipher();
    let json: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("{{\"id\":{i},\"tags\":[\"lifeboat\"]}},").into_bytes())
        .collect();
    let files: Vec<Vec<u8>> = vec![
        b"{}".to_vec(),
        json.clone(),
        vec![0; 8 << 20], // far more than 4x its compressed size
        lifeboat_testkit::PseudoRandom::new(7).bytes(300_000),
        json[..1000].to_vec(),
        Vec::new(),
    ];
    for round in 0..3 {
        for (i, file) in files.iter().enumerate() {
            let sealed = cipher.encrypt(file).unwrap();
            let opened = cipher.decrypt(&sealed).unwrap();
            assert!(opened == *file, "file {i} differs in round {round}");
        }
    }
}
