//! The CLI: its commands, and what it does with bad input (one line, non-zero exit, no panic,
//! nothing already written lost).

use crate::{key_file, text, unity};
use unity_commands::testing::TestDb;

const PASSWORD: &str = "correct horse battery staple\n";

async fn events(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&db.pool).await.unwrap()
}

#[tokio::test]
async fn bad_input_gets_one_clear_line_and_a_non_zero_exit_and_loses_nothing() {
    let db = TestDb::new().await;
    let key = key_file();
    let created = unity(
        &db,
        &key,
        &["admin", "create-user", "--username", "ada", "--role", "admin", "--password-stdin"],
        &[],
        PASSWORD,
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let before = events(&db).await;

    let garbage_key = key.with_file_name("garbage.key");
    std::fs::write(&garbage_key, "not a key").unwrap();
    // (arguments, extra environment, what stderr must say)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["audit", "verify"],
            vec![("DATABASE_URL", "postgres://unity:pw@127.0.0.1:notaport/x".into())],
            "DATABASE_URL",
        ),
        (
            vec!["audit", "verify"],
            vec![("DATABASE_URL", "mysql://unity@127.0.0.1/x".into())],
            "must start with postgres://",
        ),
        (
            vec!["audit", "verify"],
            vec![("DATABASE_URL", "postgres://unity:unity@127.0.0.1:1/unity".into())],
            "cannot connect to PostgreSQL",
        ),
        (vec!["serve"], vec![("NATS_URL", "localhost:4222 oops".into())], "NATS_URL"),
        (
            vec!["admin", "create-user", "--username", "bob"],
            vec![("UNITY_MASTER_KEY_FILE", garbage_key.display().to_string())],
            "expected 64 hexadecimal characters",
        ),
        (
            vec!["admin", "create-user", "--username", "bob"],
            vec![("UNITY_MASTER_KEY_FILE", key.with_file_name("lost.key").display().to_string())],
            "is missing",
        ),
        (vec!["admin", "create-user", "--username", "bob", "--role", "root"], vec![], "unknown role"),
        (vec!["admin", "create-user", "--username", "ada"], vec![], "already taken"),
        (vec!["admin", "create-user", "--username", "bob", "--password-stdin"], vec![], "at least 12 characters"),
        (vec!["replay", "--projection", "nope"], vec![], "no projection is called 'nope'"),
        (vec!["projections", "skip", "nope"], vec![], "no projection is called 'nope'"),
        (
            vec!["replay", "--as-of", "soon", "--stream", "user-0193a1b2-0000-7000-8000-000000000000"],
            vec![],
            "is not a time",
        ),
        (vec!["replay", "--as-of", "2020-01-01", "--stream", "not-a-stream"], vec![], "not a stream id"),
        (vec!["bench", "append", "--events", "0"], vec![], "at least 1"),
    ];
    for (args, env, expect) in cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = unity(&db, &key, &args, &env, "short\n");
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(expect), "{args:?}: expected '{expect}' in: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: one line, got: {stderr}");
        assert!(!stderr.contains(":pw@"), "{args:?} leaked a password: {stderr}");
    }
    assert_eq!(events(&db).await, before, "nothing already written was lost or added");
    let verify = unity(&db, &key, &["audit", "verify"], &[], "");
    assert!(verify.status.success(), "{}", text(&verify.stdout));
}

#[tokio::test]
async fn a_tampered_log_fails_verify_naming_the_stream_and_version() {
    let db = TestDb::new().await;
    let key = key_file();
    for name in ["ada", "bob"] {
        let out = unity(&db, &key, &["admin", "create-user", "--username", name, "--password-stdin"], &[], PASSWORD);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // A seal stops below transactions still open in the cluster (other tests'), so try again
    // until one is made rather than assume the first attempt sees everything.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = text(&unity(&db, &key, &["audit", "seal"], &[], "").stdout);
        assert!(out.contains("Seal #") || out.contains("Nothing changed"), "{out}");
        let sealed: i64 =
            sqlx::query_scalar("SELECT count(DISTINCT h->>'stream_id') FROM seals, jsonb_array_elements(heads) h")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if sealed == 4 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the seals never covered the four streams");
    }
    let ok = unity(&db, &key, &["audit", "verify"], &[], "");
    assert!(ok.status.success() && text(&ok.stdout).starts_with("OK: 4 events in 4 streams"), "{}", text(&ok.stdout));

    let stream: String = sqlx::query_scalar(
        "SELECT stream_id FROM events WHERE event_type = 'UserCreated' ORDER BY global_position LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let mut su = db.superuser().await;
    sqlx::query("SET session_replication_role = replica").execute(&mut su).await.unwrap();
    sqlx::query(
        "UPDATE events SET payload = jsonb_set(payload::jsonb, '{role}', '\"ADMIN\"')::json WHERE stream_id = $1",
    )
    .bind(&stream)
    .execute(&mut su)
    .await
    .unwrap();
    let broken = unity(&db, &key, &["audit", "verify"], &[], "");
    assert_eq!(broken.status.code(), Some(2));
    assert!(text(&broken.stdout).contains(&format!("BROKEN: {stream} version 1")), "{}", text(&broken.stdout));
    assert!(text(&broken.stderr).contains(&stream));
}

#[tokio::test]
async fn the_audit_log_and_a_past_state_can_be_read_from_the_cli() {
    let db = TestDb::new().await;
    let key = key_file();
    let out = unity(
        &db,
        &key,
        &["admin", "create-user", "--username", "ada", "--role", "viewer", "--password-stdin"],
        &[],
        PASSWORD,
    );
    assert!(out.status.success());
    let user_stream: String = sqlx::query_scalar("SELECT stream_id FROM events WHERE event_type = 'UserCreated'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let between = chrono::Utc::now();
    let user_id: uuid::Uuid = user_stream.trim_start_matches("user-").parse().unwrap();
    let store = db.store();
    let identity = unity_commands::identity::IdentityCommands::new(
        store.clone(),
        unity_commands::vault::Vault::open(
            unity_commands::vault::MasterKey::load(&key).unwrap().unwrap(),
            store.clone(),
        )
        .await
        .unwrap(),
    );
    let ops = unity_commands::metadata(unity_domain::Actor::system("ops"), "test");
    identity.change_role(user_id, unity_domain::identity::Role::Admin, &ops).await.unwrap();

    let then = unity(&db, &key, &["replay", "--as-of", &between.to_rfc3339(), "--stream", &user_stream], &[], "");
    assert!(text(&then.stdout).contains("role: Viewer"), "{}", text(&then.stdout));
    let now =
        unity(&db, &key, &["replay", "--as-of", &chrono::Utc::now().to_rfc3339(), "--stream", &user_stream], &[], "");
    assert!(text(&now.stdout).contains("role: Admin"), "{}", text(&now.stdout));

    let log = unity(&db, &key, &["audit", "log", "--json", "--stream", &user_stream], &[], "");
    let entries: Vec<serde_json::Value> = text(&log.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        entries.iter().map(|e| e["event_type"].as_str().unwrap()).collect::<Vec<_>>(),
        ["UserCreated", "UserRoleChanged"]
    );
    assert_eq!(entries[1]["actor_name"], "ops");
    let by_type = unity(&db, &key, &["audit", "log", "--type", "UsernameReserved"], &[], "");
    assert_eq!(text(&by_type.stdout).lines().count(), 1);
}
