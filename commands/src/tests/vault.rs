//! The vault: envelope encryption, what reaches the log, shredding, and the master key file.

use std::os::unix::fs::PermissionsExt;

use unity_domain::{identity::Role, Actor, EventMetadata, SecretRef};

use crate::{
    identity::IdentityCommands,
    integrity::{seal, verify},
    testing::TestDb,
    vault::{MasterKey, Vault, VaultError},
};

const PASSWORD: &str = "correct horse battery staple";

fn key_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("unity-test-{}/master.key", uuid::Uuid::now_v7().simple()))
}

fn admin() -> EventMetadata {
    crate::metadata(Actor::system("test"), "test")
}

async fn vault(db: &TestDb) -> Vault {
    Vault::open(MasterKey::load_or_create(&key_path()).unwrap(), db.store()).await.unwrap()
}

/// Every event, as PostgreSQL would hand it to anyone reading the table.
async fn log_text(db: &TestDb) -> String {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT payload::text || metadata::text FROM events").fetch_all(&db.pool).await.unwrap();
    rows.join("\n")
}

#[tokio::test]
async fn a_missing_master_key_file_is_created_private_and_reused() {
    let path = key_path();
    let first = MasterKey::load_or_create(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let db = TestDb::new().await;
    let sealed = Vault::open(first, db.store()).await.unwrap().seal(b"s3cret").await.unwrap();
    let again = Vault::open(MasterKey::load_or_create(&path).unwrap(), db.store()).await.unwrap();
    assert_eq!(again.decrypt(&sealed).await.unwrap(), b"s3cret");
}

#[tokio::test]
async fn a_malformed_or_different_master_key_is_refused_clearly() {
    let path = key_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "not a key\n").unwrap();
    let err = MasterKey::load_or_create(&path).err().expect("refused");
    assert!(err.to_string().contains("expected 64 hexadecimal characters"), "{err}");

    let db = TestDb::new().await;
    vault(&db).await.seal(b"x").await.unwrap();
    let other = Vault::open(MasterKey::load_or_create(&key_path()).unwrap(), db.store()).await;
    assert!(matches!(other, Err(VaultError::WrongMasterKey)));
}

#[tokio::test]
async fn the_log_holds_ciphertext_never_plaintext_nor_password_hashes() {
    let db = TestDb::new().await;
    let identity = IdentityCommands::new(db.store(), vault(&db).await);
    identity.create_user("ada", PASSWORD, Role::Admin, &admin()).await.unwrap();
    let log = log_text(&db).await;
    assert!(log.contains("\"ciphertext\""), "the sealed hash is in the log");
    assert!(!log.contains(PASSWORD), "the password is not");
    assert!(!log.contains("argon2"), "nor its hash");
}

#[tokio::test]
async fn a_reveal_is_recorded_with_who_and_why() {
    let db = TestDb::new().await;
    let vault = vault(&db).await;
    let secret = vault.seal(b"token-123").await.unwrap();
    let who = crate::metadata(Actor::user(uuid::Uuid::now_v7(), "ada"), "test");
    assert_eq!(vault.reveal(&secret, "shown to an operator", &who).await.unwrap(), b"token-123");
    let (event_type, actor): (String, String) =
        sqlx::query_as("SELECT event_type, metadata->'actor'->>'name' FROM events WHERE stream_id = $1")
            .bind(format!("secret-{}", secret.secret_id))
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((event_type.as_str(), actor.as_str()), ("SecretRevealed", "ada"));
    assert!(!log_text(&db).await.contains("token-123"));
}

#[tokio::test]
async fn a_shredded_secret_is_gone_for_good_and_the_log_still_verifies() {
    let db = TestDb::new().await;
    let vault = vault(&db).await;
    let identity = IdentityCommands::new(db.store(), vault.clone());
    let (user_id, _) = identity.create_user("ada", PASSWORD, Role::Viewer, &admin()).await.unwrap();
    let created = &db.store().read_stream(&format!("user-{user_id}"), None).await.unwrap()[0];
    let old: SecretRef = serde_json::from_value(created.payload["password_hash"].clone()).unwrap();
    assert!(identity.verify_password(&old, PASSWORD).await.unwrap());
    assert!(!identity.verify_password(&old, "wrong password here").await.unwrap());

    // Changing the password shreds the old hash.
    identity.change_password(user_id, "another long passphrase", &admin()).await.unwrap();
    assert!(matches!(vault.decrypt(&old).await, Err(VaultError::Shredded(_))));
    let ciphertext_still_there: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE payload->'password_hash'->>'ciphertext' = $1")
            .bind(&old.ciphertext)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(ciphertext_still_there, 1);
    let shredded: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'SecretShredded'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(shredded, 1);
    seal(&db.pool).await.unwrap();
    let report = verify(&db.pool, |_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.breaks);
}

#[tokio::test]
async fn password_policy_and_username_rules_are_enforced_before_anything_is_written() {
    let db = TestDb::new().await;
    let identity = IdentityCommands::new(db.store(), vault(&db).await);
    assert!(identity.create_user("ada", "short", Role::Viewer, &admin()).await.is_err());
    assert!(identity.create_user("not valid!", PASSWORD, Role::Viewer, &admin()).await.is_err());
    identity.create_user("Ada", PASSWORD, Role::Viewer, &admin()).await.unwrap();
    let taken = identity.create_user("ada", PASSWORD, Role::Viewer, &admin()).await.expect_err("taken");
    assert!(taken.to_string().contains("already taken"), "{taken}");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'UserCreated'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(users, 1);
}
