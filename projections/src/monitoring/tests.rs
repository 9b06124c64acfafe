//! The monitoring read models follow the log: status, facts and the latest sample per server,
//! disks with their latest reading, pools, the change history, and the raw series read back
//! from the samples streams.

use chrono::{Duration, TimeZone, Utc};
use unity_commands::{monitoring::MonitoringCommands, testing::TestDb};
use unity_domain::{
    monitoring::{
        DeviceKind, Failure, HostFacts, HostSample, MonitoringCommand, Pool, PoolKind, StorageDevice, Verdict,
    },
    Actor,
};
use uuid::Uuid;

use super::{monitored_devices, monitored_pools, monitored_server, monitoring_changes, samples};
use crate::tests::{caught_up, engine};

fn disk(temperature: i64, verdict: Verdict) -> StorageDevice {
    StorageDevice {
        name: "/dev/sda".into(),
        device_type: "sat".into(),
        kind: DeviceKind::Ata,
        model: "WDC WD140EDFZ".into(),
        serial: "9RK1".into(),
        firmware: "81.00A81".into(),
        capacity_bytes: Some(14_000_519_643_136),
        temperature_c: Some(temperature),
        power_on_hours: Some(1730),
        wear_percent: None,
        self_assessment_passed: Some(true),
        exit_status: 0,
        verdict,
        reasons: vec![],
        attributes: vec![],
    }
}

#[tokio::test]
async fn the_monitoring_read_models_follow_polls_smart_rounds_and_failures() {
    let db = TestDb::new().await;
    let store = db.store();
    let commands = MonitoringCommands::new(store.clone());
    let meta = unity_commands::metadata(Actor::system("collector"), "test");
    let server = Uuid::now_v7();
    let start = Utc.with_ymd_and_hms(2026, 12, 3, 23, 58, 0).unwrap();
    let facts = HostFacts {
        hostname: "nas".into(),
        os: "Debian GNU/Linux 12".into(),
        cpus: 4,
        boot_id: "b1".into(),
        ..HostFacts::default()
    };
    let tank = Pool {
        kind: PoolKind::Zfs,
        name: "tank".into(),
        state: "DEGRADED".into(),
        size_bytes: Some(100),
        allocated_bytes: Some(50),
        free_bytes: Some(50),
        scan: None,
        members: vec![],
        volumes: vec![],
        data_errors: 0,
        verdict: Verdict::Failed,
        reasons: vec!["the pool is DEGRADED".into()],
    };
    // Four polls a minute apart, across midnight: two daily samples streams.
    for minute in 0..4 {
        let at = start + Duration::minutes(minute);
        let sample =
            HostSample { uptime_secs: 1000 + minute as u64 * 60, load: [minute as u32, 0, 0], ..HostSample::default() };
        let observe =
            MonitoringCommand::Observe { at, facts: facts.clone(), pools: vec![tank.clone()], arrays: vec![] };
        commands.record_poll(server, at, sample, observe, &meta).await.unwrap();
    }
    let smart_at = start + Duration::minutes(5);
    commands.record_devices(server, smart_at, vec![disk(31, Verdict::Passed)], vec![], &meta).await.unwrap();
    commands
        .record_devices(server, smart_at + Duration::hours(1), vec![disk(44, Verdict::Passed)], vec![], &meta)
        .await
        .unwrap();
    let fail =
        MonitoringCommand::Fail { at: smart_at, failure: Failure::Unreachable, error: "connection refused".into() };
    commands.command(server, fail, &meta).await.unwrap();

    let engine = engine(&store);
    engine.prepare().await.unwrap();
    caught_up(&engine, &store).await;
    let pool = store.pool();
    let state = monitored_server(pool, server).await.unwrap().expect("the server is monitored");
    assert_eq!((state.status.as_str(), state.last_error.as_deref()), ("UNREACHABLE", Some("connection refused")));
    assert_eq!(
        state.last_sample_at,
        Some(start + Duration::minutes(3)),
        "the latest sample, not the first of the batch"
    );
    assert_eq!(state.last_sample.unwrap()["load"][0], 3);
    assert_eq!(state.facts.unwrap()["hostname"], "nas");

    let devices = monitored_devices(pool, server).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(
        (devices[0].verdict.as_str(), devices[0].device["temperature_c"].as_i64()),
        ("passed", Some(44)),
        "the latest reading"
    );
    let pools = monitored_pools(pool, server).await.unwrap();
    assert_eq!((pools[0].name.as_str(), pools[0].verdict.as_str()), ("tank", "failed"));

    let changes = monitoring_changes(pool, server, 10).await.unwrap();
    let kinds: Vec<&str> = changes.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["UNREACHABLE", "DEVICE_DISCOVERED", "POOL", "FACTS"],
        "facts and the pool once, not on every poll"
    );

    let series = samples(pool, server, start + Duration::minutes(1), start + Duration::minutes(3)).await.unwrap();
    let loads: Vec<u32> = series.iter().map(|(_, s)| s.load[0]).collect();
    assert_eq!(loads, [1, 2, 3], "in order, across the two days' streams, within the range");
}
