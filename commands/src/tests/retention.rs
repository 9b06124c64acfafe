//! Retention: recorded removal of expired buckets, the one privileged path, verify after a
//! removal, archives, and the migration of databases from the log's older shapes.

use std::io::{BufRead, Write};

use chrono::NaiveDate;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use unity_domain::{
    retention::{removal_stream, BucketContents, RetentionClass, RetentionEvent},
    Actor, EventMetadata, StreamId,
};
use uuid::{NoContext, Timestamp, Uuid};

use super::store::{append, awkward_payload, event, seal_all, seeded, tamper};
use crate::{
    integrity::verify,
    retention::{self, buckets, describe, verify_archive, RetentionPolicy},
    store::{EventStore, ExpectedVersion, NewEvent, StreamAppend},
    testing::{test_database_url, url_for_database, TestDb},
};

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, m, d).unwrap()
}

const TODAY: (u32, u32) = (12, 2);

/// A samples stream of `on`, the `n`th of that day (its UUIDv7 time names the bucket).
fn samples_on(on: NaiveDate, n: u64) -> StreamId {
    let secs = on.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp() as u64 + n * 60;
    StreamId::new("host_samples", Uuid::new_v7(Timestamp::from_unix(NoContext, secs, 0)))
}

fn meta() -> EventMetadata {
    crate::metadata(Actor::system("retention"), "test")
}

async fn collect(store: &EventStore, stream: &StreamId, samples: usize) {
    let events = (0..samples).map(|i| event("SamplesCollected", awkward_payload(i))).collect();
    store.append(append(stream, ExpectedVersion::NoStream, events)).await.unwrap();
}

async fn count(store: &EventStore, stream: &StreamId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id = $1")
        .bind(stream.to_string())
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn remove_bucket_by(store: &EventStore, record: Uuid) -> Result<i64, String> {
    sqlx::query_scalar("SELECT unity_remove_bucket($1)")
        .bind(record)
        .fetch_one(store.pool())
        .await
        .map_err(|e| e.to_string())
}

async fn record(store: &EventStore, stream: StreamId, contents: BucketContents) -> Uuid {
    let event = NewEvent::from_domain(&RetentionEvent::BucketRemovalRecorded(contents), &meta());
    let id = event.event_id;
    store
        .append(vec![StreamAppend { stream_id: stream, expected: ExpectedVersion::Any, events: vec![event] }])
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn an_expired_bucket_is_recorded_then_removed_and_the_log_still_verifies() {
    let db = TestDb::new().await;
    let (store, permanent) = seeded(&db).await;
    let old: Vec<StreamId> = (0..3).map(|n| samples_on(day(10, 1), n)).collect();
    let recent = samples_on(day(11, 30), 0);
    for s in old.iter().chain([&recent]) {
        collect(&store, s, 5).await;
    }
    seal_all(&store).await;
    assert_eq!(
        buckets(store.pool()).await.unwrap(),
        vec![(RetentionClass::Samples, day(10, 1)), (RetentionClass::Samples, day(11, 30))]
    );
    let expected = describe(store.pool(), RetentionClass::Samples, day(10, 1)).await.unwrap();

    let removed = retention::run(&store, &RetentionPolicy::default(), day(TODAY.0, TODAY.1), &meta()).await.unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!((removed[0].bucket, removed[0].events, removed[0].streams), (day(10, 1), 15, 3));
    assert_eq!(buckets(store.pool()).await.unwrap(), vec![(RetentionClass::Samples, day(11, 30))]);
    for s in &old {
        assert_eq!(count(&store, s).await, 0, "{s} removed");
    }
    assert_eq!(count(&store, &recent).await, 5, "a bucket still kept stays");
    for s in &permanent {
        assert_eq!(count(&store, s).await, 4, "permanent events stay");
    }

    // Recorded first, with what went: every stream's last version and hash, and the digest.
    let history =
        store.read_stream(&removal_stream(RetentionClass::Samples, day(10, 1)).to_string(), None).await.unwrap();
    let decoded: Vec<RetentionEvent> = history.iter().map(|e| e.decode().unwrap()).collect();
    assert_eq!(decoded[0], RetentionEvent::BucketRemovalRecorded(expected.clone()));
    assert_eq!(expected.streams.len(), 3);
    assert!(expected.streams.iter().all(|s| s.version == 5 && s.hash.len() == 64));
    assert!(
        matches!(&decoded[1], RetentionEvent::BucketRemoved { record, events: 15, archive: None } if *record == history[0].event_id)
    );

    let report = verify(store.pool(), |_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.breaks);
    assert_eq!(report.removals.len(), 1);
    assert_eq!((report.removals[0].bucket, report.removals[0].events), (day(10, 1), 15));
    assert!(report.removals[0].removed_at.is_some());
    // 12 permanent + 5 kept samples + the 2 retention events.
    assert_eq!(report.events_checked, 19);

    assert!(retention::run(&store, &RetentionPolicy::default(), day(TODAY.0, TODAY.1), &meta())
        .await
        .unwrap()
        .is_empty());
    // The removed bucket is closed: nothing can be written into it again.
    let late = samples_on(day(10, 1), 7);
    let err = store
        .append(append(&late, ExpectedVersion::NoStream, vec![event("SamplesCollected", json!({}))]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("removed by retention"), "{err}");
}

#[tokio::test]
async fn the_one_removal_path_refuses_the_unrecorded_the_permanent_and_the_changed() {
    let db = TestDb::new().await;
    let store = db.store();
    let s = samples_on(day(10, 1), 0);
    collect(&store, &s, 3).await;
    // A bucket's partition is as append-only as the rest of the log.
    for statement in [
        "DELETE FROM event_log_samples_20261001",
        "TRUNCATE event_log_samples_20261001",
        "UPDATE event_log_samples SET payload = '{}'",
    ] {
        let err = sqlx::query(statement).execute(store.pool()).await.unwrap_err();
        assert!(err.to_string().contains("permission denied"), "{statement}: {err}");
    }
    let mut su = db.superuser().await;
    for statement in ["DELETE FROM event_log_samples_20261001", "TRUNCATE event_log_samples_20261001"] {
        let err = sqlx::query(statement).execute(&mut su).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{statement}: {err}");
    }

    let err = remove_bucket_by(&store, Uuid::now_v7()).await.unwrap_err();
    assert!(err.contains("no removal is recorded"), "{err}");
    // Any other event is no record either.
    let other = store.read_stream(&s.to_string(), None).await.unwrap()[0].event_id;
    assert!(remove_bucket_by(&store, other).await.unwrap_err().contains("no removal is recorded"));

    let mut forged = describe(store.pool(), RetentionClass::Samples, day(10, 1)).await.unwrap();
    forged.class = "permanent".into();
    let forged_record = record(&store, StreamId::new("retention", Uuid::now_v7()), forged).await;
    let err = remove_bucket_by(&store, forged_record).await.unwrap_err();
    assert!(err.contains("never expire"), "{err}");

    // Recorded, then an event arrives: the record no longer describes the bucket.
    let contents = describe(store.pool(), RetentionClass::Samples, day(10, 1)).await.unwrap();
    let stale = record(&store, removal_stream(RetentionClass::Samples, day(10, 1)), contents).await;
    store
        .append(append(&s, ExpectedVersion::Exactly(3), vec![event("SamplesCollected", json!({"late": true}))]))
        .await
        .unwrap();
    let err = remove_bucket_by(&store, stale).await.unwrap_err();
    assert!(err.contains("no longer matches its removal record"), "{err}");
    assert_eq!(count(&store, &s).await, 4, "nothing removed");

    // A run records the bucket anew and removes it by the new record.
    let removed = retention::run(&store, &RetentionPolicy::default(), day(TODAY.0, TODAY.1), &meta()).await.unwrap();
    assert_eq!(removed.iter().map(|r| r.events).collect::<Vec<_>>(), vec![4]);
    assert_ne!(removed[0].record, stale);
    assert_eq!(count(&store, &s).await, 0);
    seal_all(&store).await;
    let report = verify(store.pool(), |_| {}).await.unwrap();
    // The forged record is named; the honest removal is not a break.
    assert_eq!(report.breaks.len(), 1, "{:?}", report.breaks);
    assert!(report.breaks[0].reason.contains("never expires"), "{:?}", report.breaks);
    assert_eq!(report.removals.iter().map(|r| r.events).collect::<Vec<_>>(), vec![4]);
}

#[tokio::test]
async fn after_a_removal_verify_still_names_every_kind_of_tampering() {
    let db = TestDb::new().await;
    let (store, permanent) = seeded(&db).await;
    let whole = StreamId::new("thing", Uuid::now_v7());
    store
        .append(append(
            &whole,
            ExpectedVersion::NoStream,
            (0..2).map(|i| event("ThingChanged", awkward_payload(i))).collect(),
        ))
        .await
        .unwrap();
    let old = samples_on(day(10, 1), 0);
    let kept = samples_on(day(11, 30), 0);
    collect(&store, &old, 3).await;
    collect(&store, &kept, 3).await;
    seal_all(&store).await;
    retention::run(&store, &RetentionPolicy::default(), day(TODAY.0, TODAY.1), &meta()).await.unwrap();
    seal_all(&store).await;

    tamper(
        &db,
        "UPDATE events SET payload = jsonb_set(payload::jsonb, '{zeta}', '99')::json WHERE stream_id = $1 AND stream_version = 2",
        &permanent[0],
    )
    .await;
    tamper(&db, "DELETE FROM events WHERE stream_id = $1 AND stream_version = 3", &permanent[1]).await;
    tamper(&db, "DELETE FROM events WHERE stream_id = $1 AND stream_version >= 3", &permanent[2]).await;
    tamper(&db, "DELETE FROM events WHERE stream_id = $1", &whole).await;
    tamper(&db, "DELETE FROM events WHERE stream_id = $1", &kept).await;
    // Hiding a deletion behind a forged record: it names a permanent stream as a sample.
    let forger = StreamId::new("thing", Uuid::now_v7());
    store.append(append(&forger, ExpectedVersion::NoStream, vec![event("ThingChanged", json!({}))])).await.unwrap();
    seal_all(&store).await;
    let mut forged = describe(store.pool(), RetentionClass::Samples, day(11, 30)).await.unwrap();
    forged.streams = vec![unity_domain::retention::RemovedStream {
        stream_id: forger.to_string(),
        version: 1,
        hash: hex::encode([0u8; 32]),
    }];
    record(&store, removal_stream(RetentionClass::Samples, day(11, 30)), forged).await;
    tamper(&db, "DELETE FROM events WHERE stream_id = $1", &forger).await;

    let report = verify(store.pool(), |_| {}).await.unwrap();
    let found = |stream: &StreamId, version: i64, reason: &str| {
        report
            .breaks
            .iter()
            .any(|b| b.stream_id == stream.to_string() && b.version == version && b.reason.contains(reason))
    };
    assert!(found(&permanent[0], 2, "altered"), "{:?}", report.breaks);
    assert!(found(&permanent[1], 3, "missing"), "{:?}", report.breaks);
    assert!(found(&permanent[2], 3, "recorded version 4"), "{:?}", report.breaks);
    assert!(found(&whole, 1, "whole stream is missing"), "{:?}", report.breaks);
    assert!(found(&kept, 1, "whole stream is missing"), "{:?}", report.breaks);
    assert!(found(&forger, 1, "whole stream is missing"), "{:?}", report.breaks);
    assert!(report.breaks.iter().any(|b| b.reason.contains(&format!("names {forger}, which is not in bucket"))));
    assert!(!report.breaks.iter().any(|b| b.stream_id == old.to_string()), "the recorded removal is no break");
    assert_eq!(report.breaks.len(), 7, "{:?}", report.breaks);
}

fn read_lines(path: &std::path::Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap();
    std::io::BufReader::new(flate2::read::GzDecoder::new(file)).lines().map(Result::unwrap).collect()
}

fn write_lines(path: &std::path::Path, lines: &[String]) {
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    for line in lines {
        writeln!(gz, "{line}").unwrap();
    }
    gz.finish().unwrap();
}

#[tokio::test]
async fn an_archive_holds_what_was_removed_and_verifies_offline() {
    let db = TestDb::new().await;
    let store = db.store();
    let streams = [samples_on(day(10, 1), 0), samples_on(day(10, 1), 1)];
    for s in &streams {
        collect(&store, s, 4).await;
    }
    let dir = std::env::temp_dir().join(format!("unity-archive-{}", Uuid::now_v7().simple()));
    let policy = RetentionPolicy { archive_dir: Some(dir.clone()), ..RetentionPolicy::default() };
    let removed = retention::run(&store, &policy, day(TODAY.0, TODAY.1), &meta()).await.unwrap();
    let path = removed[0].archive.clone().expect("archived");
    assert!(path.starts_with(&dir) && path.to_string_lossy().ends_with(".jsonl.gz"), "{path:?}");

    let report = verify_archive(&path).unwrap();
    assert!(report.ok(), "{:?}", report.breaks);
    assert_eq!((report.events_checked, report.streams_checked), (8, 2));
    assert_eq!(report.bucket, Some(day(10, 1)));
    // The archive's record is the log's, hash and all.
    let record =
        &store.read_stream(&removal_stream(RetentionClass::Samples, day(10, 1)).to_string(), None).await.unwrap()[0];
    assert_eq!((report.record, report.record_hash.clone()), (Some(record.event_id), hex::encode(&record.hash)));

    // A changed event, a dropped event and a changed record are each named.
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 9, "the record, then every event");
    let changed_path = dir.join("changed.jsonl.gz");
    let mut changed = lines.clone();
    changed[3] = changed[3].replacen("\"zeta\":", "\"zeta\":7", 1);
    write_lines(&changed_path, &changed);
    let report = verify_archive(&changed_path).unwrap();
    assert!(report.breaks.iter().any(|b| b.reason.contains("altered")), "{:?}", report.breaks);

    let mut dropped = lines.clone();
    dropped.remove(8);
    write_lines(&changed_path, &dropped);
    let report = verify_archive(&changed_path).unwrap();
    assert!(report.breaks.iter().any(|b| b.reason.contains("holds 7 events")), "{:?}", report.breaks);

    let mut forged = lines.clone();
    forged[0] = forged[0].replacen("\"events\":8", "\"events\":7", 1);
    assert_ne!(forged[0], lines[0]);
    write_lines(&changed_path, &forged);
    let report = verify_archive(&changed_path).unwrap();
    assert!(report.breaks.iter().any(|b| b.reason.contains("removal record was altered")), "{:?}", report.breaks);

    std::fs::write(&changed_path, b"not gzip").unwrap();
    assert!(verify_archive(&changed_path).unwrap_err().contains("not a Unity retention archive"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_database_from_before_partitioning_migrates_with_every_event_intact() {
    // The events of an honest log, written by today's store…
    let db = TestDb::new().await;
    let (store, _) = seeded(&db).await;
    // …copied into a database at the migrations before partitioning, seals and all.
    migrated_copy(&store, 20261202000001, (12, 3)).await.close().await;
}

#[tokio::test]
async fn a_partitioned_log_with_buckets_and_removals_takes_the_lean_shape_intact() {
    let db = TestDb::new().await;
    let (store, _) = seeded(&db).await;
    // Two buckets of samples (streams of two days), one of them removed by retention first.
    for (on, n) in [(day(10, 1), 0), (day(10, 1), 1), (day(10, 2), 0)] {
        collect(&store, &samples_on(on, n), 3).await;
    }
    let policy = RetentionPolicy { samples_days: 60, ..Default::default() };
    let removed = retention::run(&store, &policy, day(12, 1), &meta()).await.unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    seal_all(&store).await;
    // Copied into a database at the partitioned shape, its bucket made there as it would have been.
    let pool = migrated_copy(&store, 20261208000001, (17, 5)).await;
    assert_eq!(buckets(&pool).await.unwrap(), [(RetentionClass::Samples, day(10, 2))]);
    let report = verify(&pool, |_| {}).await.unwrap();
    assert_eq!(report.removals.len(), 1, "the removal is still on the record");
    // The removed bucket stays closed in the new shape.
    let migrated_store = EventStore::new(pool.clone(), crate::wakeup::Wakeup::default());
    let err = migrated_store
        .append(append(
            &samples_on(day(10, 1), 7),
            ExpectedVersion::NoStream,
            vec![event("SamplesCollected", json!({}))],
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("removed by retention"), "{err}");
    pool.close().await;
}

/// Copies `store`'s log and seals into a new database migrated up to (not including)
/// `before_version`, as that shape stored them; then migrates it to today's shape and checks that
/// every event kept its id, position, transaction, version and hash, that verify passes with
/// `(events, streams)` checked, and that new events continue the positions.
async fn migrated_copy(store: &EventStore, before_version: i64, checked: (u64, u64)) -> sqlx::PgPool {
    const ROWS: &str =
        "SELECT global_position, transaction_id, event_id, stream_version, hash FROM events ORDER BY global_position";
    let rows: Vec<(i64, i64, Uuid, i64, Vec<u8>)> = sqlx::query_as(ROWS).fetch_all(store.pool()).await.unwrap();
    let name = format!("unity_test_old_{}", Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&test_database_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    let url = url_for_database(&test_database_url(), &name);
    let mut old = PgConnection::connect(&url).await.unwrap();
    let before = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            crate::MIGRATOR.iter().filter(|m| m.version < before_version).cloned().collect(),
        ),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    before.run(&mut old).await.unwrap();
    // Every row as the older shapes held it: with its previous hash, and (partitioned) its class
    // and bucket, whose partitions are made first.
    let dump: String = sqlx::query_scalar(
        "SELECT json_agg(e ORDER BY global_position)::text FROM (SELECT global_position, transaction_id, event_id, \
         stream_id, stream_type, stream_version, event_type, schema_version, payload, metadata, recorded_at, \
         coalesce(lag(hash) OVER (PARTITION BY stream_id ORDER BY stream_version), decode(repeat('00', 32), 'hex')) \
             AS prev_hash, hash, retention_class, bucket FROM events) e",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    if before_version > 20261202000001 {
        let buckets: Vec<(i16, NaiveDate)> =
            sqlx::query_as("SELECT DISTINCT retention_class, bucket FROM events WHERE retention_class <> 0")
                .fetch_all(store.pool())
                .await
                .unwrap();
        for (class, bucket) in buckets {
            sqlx::query("SELECT unity_events_bucket($1, $2, 'retention-00000000-0000-0000-0000-000000000000')")
                .bind(class)
                .bind(bucket)
                .execute(&mut old)
                .await
                .unwrap();
        }
    }
    sqlx::query(
        "INSERT INTO events OVERRIDING SYSTEM VALUE SELECT * FROM json_populate_recordset(NULL::events, $1::json)",
    )
    .bind(&dump)
    .execute(&mut old)
    .await
    .unwrap();
    let seals: String =
        sqlx::query_scalar("SELECT json_agg(s)::text FROM seals s").fetch_one(store.pool()).await.unwrap();
    sqlx::query("INSERT INTO seals SELECT * FROM json_populate_recordset(NULL::seals, $1::json)")
        .bind(&seals)
        .execute(&mut old)
        .await
        .unwrap();

    crate::MIGRATOR.run(&mut old).await.unwrap();
    old.close().await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let migrated: Vec<(i64, i64, Uuid, i64, Vec<u8>)> = sqlx::query_as(ROWS).fetch_all(&pool).await.unwrap();
    assert_eq!(migrated, rows, "ids, positions, transactions, versions and hashes kept");
    let report = verify(&pool, |_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.breaks);
    assert_eq!((report.events_checked, report.streams_checked), checked);
    assert!(report.seals_checked > 0);
    // New events continue the positions.
    let migrated_store = EventStore::new(pool.clone(), crate::wakeup::Wakeup::default());
    let s = StreamId::new("thing", Uuid::now_v7());
    let appended = migrated_store
        .append(append(&s, ExpectedVersion::NoStream, vec![event("ThingMade", json!({}))]))
        .await
        .unwrap();
    assert!(appended.last.global_position > rows.last().unwrap().0);
    pool
}
