//! Checkpoint storage in an S3-compatible object store (a local moto server, see
//! `common::s3`), through the public API of `brisk::runtime::checkpoint::storage`.
#![cfg(feature = "s3")]

mod common;

use brisk::SnapshotLocation;
use brisk::runtime::checkpoint::storage::{
    CheckpointMetadata, CheckpointStorage, SHARED_DIR, TaskStateHandle, encode_task_state, shared_file_checksums,
    write_atomically,
};
use brisk::runtime::checkpoint::{CheckpointId, SnapshotKind, TaskStateFile};
use common::s3::S3TestServer;

/// Writes checkpoint `id` of one task (file `task`, referring to `shared`) and completes it,
/// as a task (uploading its own files) and the job master (the metadata) do.
fn write_checkpoint_with(storage: &CheckpointStorage, id: CheckpointId, task: &str, shared: Vec<String>) {
    let (dir, name) = (storage.checkpoint_dir(id), CheckpointStorage::checkpoint_name(id));
    write_atomically(&dir.join(task), &encode_task_state(&TaskStateFile::default()).unwrap()).unwrap();
    let files = shared_file_checksums(&storage.local_dir(SHARED_DIR), &shared).unwrap();
    storage.upload_task_files(&name, Some(task), &files).unwrap();
    let metadata = CheckpointMetadata {
        id,
        kind: SnapshotKind::Checkpoint,
        timestamp: 0,
        job_name: "t".into(),
        max_parallelism: vec![],
        tasks: vec![TaskStateHandle {
            subtask: 0,
            parallelism: 1,
            operator_ids: vec![],
            file: Some(task.into()),
            size: 1,
            shared,
        }],
        enumerators: vec![],
    };
    storage.publish(&name, &metadata, &files).unwrap();
}

/// The rules of checkpoint storage in an S3-compatible object store: completed checkpoints
/// are found by their metadata, a corrupt or missing object falls back to the previous
/// checkpoint, shared files are kept while referenced, and pruning deletes objects.
#[test]
fn object_store_checkpoints_fall_back_share_files_and_are_pruned() {
    let server = S3TestServer::start("brisk").unwrap();
    let url = format!("s3://brisk/storage-{}", std::process::id());
    let storage = server.open_storage(SnapshotLocation::ObjectStore(url.clone())).unwrap();
    // The local staging directory the storage writes into and downloads to, fresh.
    let local = storage.location().local_dir();
    let _ = std::fs::remove_dir_all(&local);
    let remote = server.open(&url).unwrap();
    let shared = storage.local_dir(SHARED_DIR);
    std::fs::create_dir_all(&shared).unwrap();
    for id in 1..=3 {
        // Checkpoint 1 refers to `a`, 2 and 3 to `b`.
        let file = if id == 1 { "a" } else { "b" };
        std::fs::write(shared.join(file), file).unwrap();
        write_checkpoint_with(&storage, id, &format!("task-{id}"), vec![file.into()]);
    }
    remote.write("chk-4/task-4", b"no metadata yet".to_vec()).unwrap();
    assert_eq!(storage.completed_ids().unwrap(), vec![3, 2, 1]);
    assert_eq!(remote.list("shared").unwrap().files.len(), 2, "each shared file uploaded once");
    // Break checkpoint 3 in the store; the local staging copy must not hide it.
    let mut bytes = remote.read("chk-3/task-3").unwrap().unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    remote.write("chk-3/task-3", bytes).unwrap();
    assert_eq!(storage.latest_valid().unwrap().map(|c| c.metadata.id), Some(2), "a corrupt object makes 3 unusable");
    remote.delete("chk-2/task-2").unwrap();
    assert_eq!(storage.latest_valid().unwrap().map(|c| c.metadata.id), Some(1), "a missing object makes 2 unusable");
    // Choosing 1 verified the objects and downloaded only the metadata; the task that reads
    // its state downloads its file (keeping no staging copy) and the shared files it restores,
    // into an empty staging directory.
    std::fs::remove_dir_all(&local).unwrap();
    let restored = storage.latest_valid().unwrap().unwrap();
    assert_eq!(restored.metadata.id, 1);
    assert!(!shared.join("a").exists() && !storage.checkpoint_dir(1).join("task-1").exists());
    assert!(restored.task_state(0).unwrap().is_some());
    assert!(!storage.checkpoint_dir(1).join("task-1").exists(), "read once, kept in memory");
    restored.fetch_shared(&restored.metadata.tasks[0].shared).unwrap();
    assert_eq!(std::fs::read(shared.join("a")).unwrap(), b"a");
    // Workers elsewhere are sent this location to open it themselves.
    assert_eq!(restored.location().to_string(), format!("{url}/chk-1"));
    // A damaged staging copy is downloaded again (its checksum is in the metadata)...
    std::fs::write(shared.join("a"), "x").unwrap();
    let restored = storage.latest_valid().unwrap().unwrap();
    assert_eq!(restored.metadata.id, 1);
    restored.fetch_shared(&restored.metadata.tasks[0].shared).unwrap();
    assert_eq!(std::fs::read(shared.join("a")).unwrap(), b"a");
    // ... a damaged object is no checkpoint, and with none left that is an error naming it.
    remote.write("shared/a", b"x".to_vec()).unwrap();
    std::fs::write(shared.join("a"), "x").unwrap();
    let err = storage.latest_valid().unwrap_err().to_string();
    assert!(err.contains(&format!("'{url}/shared/a' is corrupt: checksum mismatch")), "{err}");
    assert!(err.contains(&format!("{url}/chk-3/task-3")), "every checkpoint's reason: {err}");
    remote.write("shared/a", b"a".to_vec()).unwrap();
    storage.prune(1);
    assert_eq!(storage.completed_ids().unwrap(), vec![3]);
    assert_eq!(remote.list("shared").unwrap().files, vec!["b".to_string()], "only `a` was unreferenced");
    assert!(remote.exists("chk-4/task-4").unwrap(), "a newer checkpoint in progress is kept");
    storage.delete_all();
    assert_eq!(remote.list("").unwrap().dirs, Vec::<String>::new(), "in-progress ones too");
}
