use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use uuid::Uuid;

use super::*;
use crate::{decider::spec::given, retention::RetentionClass, Decider, DomainEvent, Refuse};

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 10, minute, 0).unwrap()
}

fn facts(boot: &str) -> HostFacts {
    HostFacts {
        hostname: "nas".into(),
        os: "Debian 12".into(),
        kernel: "Linux 6.1".into(),
        cpus: 4,
        boot_id: boot.into(),
        ..HostFacts::default()
    }
}

fn pool(state: &str, verdict: Verdict, allocated: u64, progress: Option<u16>) -> Pool {
    Pool {
        kind: PoolKind::Zfs,
        name: "tank".into(),
        state: state.into(),
        size_bytes: Some(1000),
        allocated_bytes: Some(allocated),
        free_bytes: Some(1000 - allocated),
        scan: Some(Scan { kind: "scrub".into(), running: progress.is_some(), progress, errors: 0 }),
        members: vec![],
        volumes: vec![],
        data_errors: 0,
        verdict,
        reasons: vec![],
    }
}

fn observe(minute: u32, boot: &str, pools: Vec<Pool>) -> MonitoringCommand {
    MonitoringCommand::Observe { at: at(minute), facts: facts(boot), pools, arrays: vec![] }
}

#[test]
fn a_poll_records_only_what_changed() {
    let first = observe(0, "b1", vec![pool("ONLINE", Verdict::Passed, 100, None)]);
    let MonitoringCommand::Observe { pools, .. } = &first else { unreachable!() };
    let recorded = vec![
        MonitoringEvent::HostFactsChanged { at: at(0), facts: facts("b1") },
        MonitoringEvent::PoolChanged { at: at(0), pool: pools[0].clone() },
    ];
    given::<Monitoring>(&[]).when(first.clone()).then(&recorded);
    // The next poll: more space used, a scrub further along — the samples carry those, not events.
    let scrubbing = vec![
        recorded[0].clone(),
        MonitoringEvent::PoolChanged { at: at(0), pool: pool("ONLINE", Verdict::Passed, 100, Some(1000)) },
    ];
    given::<Monitoring>(&scrubbing)
        .when(observe(1, "b1", vec![pool("ONLINE", Verdict::Passed, 300, Some(5000))]))
        .then(&[]);
    given::<Monitoring>(&recorded).when(observe(1, "b1", vec![pool("ONLINE", Verdict::Passed, 300, None)])).then(&[]);
    // A degraded pool and a reboot are news, once.
    let degraded = pool("DEGRADED", Verdict::Failed, 300, None);
    given::<Monitoring>(&recorded).when(observe(2, "b2", vec![degraded.clone()])).then(&[
        MonitoringEvent::HostFactsChanged { at: at(2), facts: facts("b2") },
        MonitoringEvent::PoolChanged { at: at(2), pool: degraded },
    ]);
    // A pool gone from the output is recorded as removed.
    given::<Monitoring>(&recorded).when(observe(3, "b1", vec![])).then(&[MonitoringEvent::PoolRemoved {
        at: at(3),
        kind: PoolKind::Zfs,
        name: "tank".into(),
    }]);
}

#[test]
fn a_failure_is_recorded_once_per_streak_and_the_recovery_once() {
    let fail = |minute| MonitoringCommand::Fail {
        at: at(minute),
        failure: Failure::Unreachable,
        error: "connection refused".into(),
    };
    let failed = MonitoringEvent::CollectionFailed {
        at: at(0),
        failure: Failure::Unreachable,
        error: "connection refused".into(),
    };
    given::<Monitoring>(&[]).when(fail(0)).then(&[failed.clone()]);
    given::<Monitoring>(&[failed.clone()]).when(fail(1)).then(&[]);
    // Reachable again but its output unreadable: a different failure, recorded.
    let garbage =
        MonitoringCommand::Fail { at: at(2), failure: Failure::Collection, error: "/proc/stat: no cpu line".into() };
    given::<Monitoring>(&[failed.clone()]).when(garbage).then(&[MonitoringEvent::CollectionFailed {
        at: at(2),
        failure: Failure::Collection,
        error: "/proc/stat: no cpu line".into(),
    }]);
    let history = [MonitoringEvent::HostFactsChanged { at: at(0), facts: facts("b1") }, failed];
    given::<Monitoring>(&history)
        .when(observe(5, "b1", vec![]))
        .then(&[MonitoringEvent::CollectionRecovered { at: at(5) }]);
}

fn disk(serial: &str, verdict: Verdict, crc: i64) -> StorageDevice {
    StorageDevice {
        name: "/dev/sda".into(),
        device_type: "sat".into(),
        kind: DeviceKind::Ata,
        model: "WDC".into(),
        serial: serial.into(),
        firmware: "1".into(),
        capacity_bytes: None,
        temperature_c: Some(30),
        power_on_hours: Some(10),
        wear_percent: None,
        self_assessment_passed: Some(true),
        exit_status: 0,
        verdict,
        reasons: vec![],
        attributes: vec![SmartAttribute {
            id: "199".into(),
            name: "UDMA_CRC_Error_Count".into(),
            value: Some(200),
            worst: Some(200),
            threshold: Some(0),
            raw: crc,
            verdict: Verdict::Passed,
            note: None,
        }],
    }
}

#[test]
fn disks_are_discovered_with_their_baselines_and_change_only_by_verdict() {
    let seen = MonitoringEvent::DeviceDiscovered {
        at: at(0),
        device: disk("S1", Verdict::Passed, 108),
        first_seen: BTreeMap::from([("199".into(), 108)]),
    };
    let read = |minute, devices: Vec<StorageDevice>, asleep: Vec<String>| MonitoringCommand::ObserveDevices {
        at: at(minute),
        devices,
        asleep,
    };
    given::<Monitoring>(&[]).when(read(0, vec![disk("S1", Verdict::Passed, 108)], vec![])).then(&[seen.clone()]);
    // Warmer, older, same verdict: nothing to record.
    let mut warmer = disk("S1", Verdict::Passed, 108);
    warmer.temperature_c = Some(45);
    given::<Monitoring>(&[seen.clone()]).when(read(59, vec![warmer], vec![])).then(&[]);
    given::<Monitoring>(&[seen.clone()]).when(read(59, vec![disk("S1", Verdict::Warning, 109)], vec![])).then(&[
        MonitoringEvent::DeviceVerdictChanged {
            at: at(59),
            serial: "S1".into(),
            verdict: Verdict::Warning,
            reasons: vec![],
        },
    ]);
    // Asleep is not gone; missing from the scan is.
    given::<Monitoring>(&[seen.clone()]).when(read(59, vec![], vec!["S1".into()])).then(&[]);
    given::<Monitoring>(&[seen.clone()])
        .when(read(59, vec![], vec![]))
        .then(&[MonitoringEvent::DeviceRemoved { at: at(59), serial: "S1".into() }]);
}

#[test]
fn overrides_name_a_known_attribute_and_accept_its_current_value() {
    let seen = MonitoringEvent::DeviceDiscovered {
        at: at(0),
        device: disk("S1", Verdict::Warning, 109),
        first_seen: BTreeMap::new(),
    };
    let accept = |current| MonitoringCommand::OverrideAttribute {
        serial: "S1".into(),
        attribute_id: "199".into(),
        action: OverrideAction::AcceptCurrent,
        current_value: current,
    };
    let accepted = MonitoringEvent::SmartAttributeOverridden {
        serial: "S1".into(),
        attribute_id: "199".into(),
        action: OverrideAction::AcceptCurrent,
        value: Some(109),
    };
    given::<Monitoring>(&[seen.clone()]).when(accept(Some(109))).then(&[accepted.clone()]);
    given::<Monitoring>(&[seen.clone(), accepted.clone()]).when(accept(Some(109))).then(&[]);
    let state = Monitoring::fold(&[seen.clone(), accepted]);
    assert_eq!(state.devices["S1"].accepted["199"], 109);
    given::<Monitoring>(&[seen.clone()])
        .when(accept(None))
        .then_error(MonitoringError::UnknownAttribute { serial: "S1".into(), attribute_id: "199".into() });
    let unknown = MonitoringCommand::OverrideAttribute {
        serial: "S9".into(),
        attribute_id: "5".into(),
        action: OverrideAction::Ignore,
        current_value: Some(0),
    };
    let error = Monitoring::decide(&unknown, &Monitoring::fold(&[seen])).unwrap_err();
    assert_eq!(error.refusal(), crate::Refusal::NotFound);
}

#[test]
fn configuration_is_validated_and_recorded_only_when_it_changes() {
    let config = MonitoringConfig { enabled: true, ..MonitoringConfig::default() };
    given::<Monitoring>(&[])
        .when(MonitoringCommand::Configure(config.clone()))
        .then(&[MonitoringEvent::MonitoringConfigured { config: config.clone() }]);
    given::<Monitoring>(&[MonitoringEvent::MonitoringConfigured { config: config.clone() }])
        .when(MonitoringCommand::Configure(config.clone()))
        .then(&[]);
    given::<Monitoring>(&[])
        .when(MonitoringCommand::Configure(MonitoringConfig { interval_secs: 5, ..config.clone() }))
        .then_error(MonitoringError::IntervalTooShort);
    given::<Monitoring>(&[])
        .when(MonitoringCommand::Configure(MonitoringConfig { smart_interval_secs: 30, ..config }))
        .then_error(MonitoringError::SmartIntervalOutOfRange);
}

#[test]
fn a_servers_samples_of_one_day_are_one_stream_in_that_days_bucket() {
    let server = Uuid::now_v7();
    let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
    let stream = samples_stream(server, day);
    assert_eq!(stream, samples_stream(server, day), "every collector names the same stream");
    assert_ne!(stream, samples_stream(server, day.succ_opt().unwrap()));
    assert_ne!(stream, samples_stream(Uuid::now_v7(), day));
    assert_eq!(stream.stream_type(), HostSamplesEvent::STREAM_TYPE);
    assert_eq!(RetentionClass::of(stream.stream_type()), RetentionClass::Samples);
    assert_eq!(RetentionClass::Samples.bucket_of(&stream).unwrap(), Some(day));
    assert_eq!(stream.id().get_version_num(), 7);
}

#[test]
fn a_sample_is_stored_as_arrays_and_reads_back_the_same() {
    let sample = HostSample {
        uptime_secs: 46901,
        cpu: Some(CpuShares {
            user: 833,
            nice: 0,
            system: 120,
            iowait: 40,
            irq: 1,
            softirq: 6,
            steal: 0,
            guest: 0,
            idle: 9000,
        }),
        memory: Memory {
            total: 4096 << 20,
            used: 1024 << 20,
            available: 3072 << 20,
            cached: 512 << 20,
            swap_total: 0,
            swap_used: 0,
        },
        load: [12, 5, 1],
        filesystems: vec![FilesystemUsage {
            mount: "/".into(),
            size: 20508240 * 1024,
            used: 5748028 * 1024,
            available: 13695408 * 1024,
            inodes: Some(1310720),
            inodes_used: Some(200000),
            ..FilesystemUsage::default()
        }],
        interfaces: vec![
            InterfaceRates {
                name: "eth0".into(),
                rx_bytes: Some(500_000),
                tx_bytes: Some(250_000),
                rx_packets: Some(400),
                tx_packets: Some(300),
                errors: Some(0),
                drops: None,
            },
            InterfaceRates { name: "lo".into(), ..InterfaceRates::default() },
        ],
    };
    let json = serde_json::to_value(&sample).unwrap();
    assert_eq!(json["cpu"], serde_json::json!([833, 0, 120, 40, 1, 6, 0, 0, 9000]));
    assert_eq!(json["mem"][0], 4096 * 1024, "KiB");
    assert_eq!(json["fs"][0], serde_json::json!(["/", 20508240, 5748028, 13695408, 1310720, 200000]));
    assert_eq!(json["net"][1], serde_json::json!(["lo"]), "no rates: the name alone");
    assert_eq!(serde_json::from_value::<HostSample>(json.clone()).unwrap(), sample);
    assert!(json.to_string().len() < 260, "{} bytes: {json}", json.to_string().len());
}

/// A poll with `busy` hundredths of a percent of busy CPU (none: no CPU shares yet), `used` MiB
/// of memory, load `load` and `rx` bytes/s on eth0 (none: no rates yet).
fn poll(busy: Option<u16>, used: u64, load: u32, fs_used: u64, rx: Option<u64>) -> HostSample {
    HostSample {
        uptime_secs: 1000 + used,
        cpu: busy.map(|b| CpuShares { user: b, idle: 10_000 - b, ..CpuShares::default() }),
        memory: Memory { total: 4096 << 20, used: used << 20, available: (4096 - used) << 20, ..Memory::default() },
        load: [load, load / 2, load / 4],
        filesystems: vec![FilesystemUsage {
            mount: "/".into(),
            size: 100 << 30,
            used: fs_used << 30,
            available: (95 - fs_used) << 30,
            inodes_used: Some(fs_used * 10),
            ..FilesystemUsage::default()
        }],
        interfaces: vec![InterfaceRates {
            name: "eth0".into(),
            rx_bytes: rx,
            tx_bytes: rx.map(|r| r / 2),
            errors: rx.map(|_| 1),
            ..InterfaceRates::default()
        }],
    }
}

#[test]
fn an_hour_rolls_up_into_minimum_mean_and_maximum() {
    let polls = [
        poll(None, 1000, 100, 40, None),
        poll(Some(2000), 1500, 300, 41, Some(1000)),
        poll(Some(4000), 1100, 200, 42, Some(3000)),
    ];
    let summary = HourSummary::of(&polls).unwrap();
    assert_eq!(summary.polls, 3);
    assert_eq!(summary.cpu_busy, Some([2000, 3000, 4000]), "only polls with CPU shares count");
    assert_eq!(summary.cpu.unwrap().user, 3000);
    assert_eq!(summary.memory_used, [1000 << 20, 1200 << 20, 1500 << 20]);
    assert_eq!(summary.load1, [100, 200, 300]);
    assert_eq!(summary.load5, 100);
    assert_eq!(summary.filesystems[0].used, [40 << 30, 41 << 30, 42 << 30]);
    assert_eq!(summary.filesystems[0].inodes_used, Some(420));
    assert_eq!(summary.interfaces[0].rx_bytes, [2000, 3000], "mean and peak of the polls with rates");
    assert_eq!(summary.interfaces[0].tx_bytes, [1000, 1500]);
    assert_eq!(HourSummary::of(&[]), None);

    // The hour's means, as one sample for a chart, and the payload reads back the same.
    let mean = summary.mean_sample();
    assert_eq!((mean.memory.used, mean.load[0], mean.filesystems[0].used), (1200 << 20, 200, 41 << 30));
    assert_eq!(mean.interfaces[0].rx_bytes, Some(2000));
    let event = HostSummariesEvent::HourSummarized { server_id: Uuid::now_v7(), hour: at(0), summary };
    let (event_type, payload) = event.to_parts();
    assert_eq!(HostSummariesEvent::from_parts(event_type, payload).unwrap(), event);
}

#[test]
fn a_servers_summaries_of_one_month_are_one_stream_in_that_months_bucket() {
    let server = Uuid::now_v7();
    let (first, late) = (NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(), NaiveDate::from_ymd_opt(2026, 12, 31).unwrap());
    let stream = summaries_stream(server, late);
    assert_eq!(stream, summaries_stream(server, first), "one stream for the whole month");
    assert_ne!(stream, summaries_stream(server, NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()));
    assert_ne!(stream, samples_stream(server, first), "not the samples stream of the month's first day");
    assert_eq!(RetentionClass::of(stream.stream_type()), RetentionClass::Summaries);
    assert_eq!(RetentionClass::Summaries.bucket_of(&stream).unwrap(), Some(first));
}

#[test]
fn a_check_is_validated_made_once_and_deleted_once() {
    let definition = |name: &str, command: &str, interval_secs: u32, target: CheckTarget| CheckDefinition {
        check_id: Uuid::from_u128(7),
        name: name.into(),
        target,
        command: command.into(),
        interval_secs,
    };
    let ok = definition(" disk ", " check_disk -w 10% ", 60, CheckTarget::Tag("web".into()));
    let created = CheckEvent::CheckCreated(definition("disk", "check_disk -w 10%", 60, CheckTarget::Tag("web".into())));
    given::<Check>(&[]).when(CheckCommand::Create(ok.clone())).then(&[created.clone()]);
    given::<Check>(&[created.clone()]).when(CheckCommand::Create(ok)).then_error(CheckError::Exists);
    for (bad, error) in [
        (definition("", "true", 60, CheckTarget::Server(Uuid::nil())), CheckError::NoName),
        (definition("x", " ", 60, CheckTarget::Server(Uuid::nil())), CheckError::NoCommand),
        (definition("x", "true\nrm -rf /", 60, CheckTarget::Server(Uuid::nil())), CheckError::CommandNotOneLine),
        (
            definition("x", &"y".repeat(MAX_COMMAND_LEN + 1), 60, CheckTarget::Server(Uuid::nil())),
            CheckError::CommandTooLong,
        ),
        (definition("x", "true", 5, CheckTarget::Server(Uuid::nil())), CheckError::IntervalOutOfRange),
        (definition("x", "true", 60, CheckTarget::Tag(" ".into())), CheckError::EmptyTag),
    ] {
        given::<Check>(&[]).when(CheckCommand::Create(bad)).then_error(error);
    }
    let deleted = CheckEvent::CheckDeleted { check_id: Uuid::from_u128(7) };
    given::<Check>(&[created.clone()]).when(CheckCommand::Delete).then(&[deleted.clone()]);
    given::<Check>(&[created, deleted]).when(CheckCommand::Delete).then_error(CheckError::NotFound);
    assert!(CheckTarget::Tag("web".into()).applies_to(Uuid::nil(), &["db".into(), "web".into()]));
    assert!(!CheckTarget::Server(Uuid::from_u128(1)).applies_to(Uuid::nil(), &[]));
}

#[test]
fn a_checks_status_is_recorded_when_it_changes_only() {
    let check_id = Uuid::from_u128(9);
    let observe =
        |minute, status| MonitoringCommand::ObserveCheck { at: at(minute), check_id, status, output: "o".into() };
    let changed =
        |minute, status| MonitoringEvent::CheckStatusChanged { at: at(minute), check_id, status, output: "o".into() };
    given::<Monitoring>(&[]).when(observe(0, CheckStatus::Ok)).then(&[changed(0, CheckStatus::Ok)]);
    given::<Monitoring>(&[changed(0, CheckStatus::Ok)]).when(observe(1, CheckStatus::Ok)).then(&[]);
    given::<Monitoring>(&[changed(0, CheckStatus::Ok)])
        .when(observe(2, CheckStatus::Critical))
        .then(&[changed(2, CheckStatus::Critical)]);
    assert_eq!(CheckStatus::from_exit(2), CheckStatus::Critical);
    assert_eq!(CheckStatus::from_exit(255), CheckStatus::Unknown);
}
