//! Monitoring's write side: a poll is one transaction (its sample on the day's samples stream,
//! its changes on the server's stream), and a change is recorded once.

use chrono::{TimeZone, Utc};
use unity_domain::{
    monitoring::{samples_stream, Failure, HostFacts, HostSample, MonitoringCommand, MonitoringEvent},
    retention::RetentionClass,
    Actor, EventMetadata,
};
use uuid::Uuid;

use crate::{monitoring::MonitoringCommands, testing::TestDb};

fn meta() -> EventMetadata {
    crate::metadata(Actor::system("collector"), "test")
}

fn observe(minute: u32, boot: &str) -> (chrono::DateTime<Utc>, MonitoringCommand) {
    let at = Utc.with_ymd_and_hms(2026, 12, 3, 10, minute, 0).unwrap();
    let facts = HostFacts { hostname: "web-1".into(), cpus: 2, boot_id: boot.into(), ..HostFacts::default() };
    (at, MonitoringCommand::Observe { at, facts, pools: vec![], arrays: vec![] })
}

#[tokio::test]
async fn a_poll_is_one_transaction_and_a_change_is_recorded_once() {
    let db = TestDb::new().await;
    let store = db.store();
    let commands = MonitoringCommands::new(store.clone());
    let server = Uuid::now_v7();
    let sample = HostSample { uptime_secs: 100, load: [1, 2, 3], ..HostSample::default() };

    let (at, first) = observe(0, "b1");
    let (changes, appended) = commands.record_poll(server, at, sample.clone(), first, &meta()).await.unwrap();
    assert!(matches!(changes[..], [MonitoringEvent::HostFactsChanged { .. }]), "{changes:?}");
    assert_eq!(appended.versions.len(), 2, "the sample and the change in one append");
    let (at, second) = observe(1, "b1");
    let (changes, appended) = commands.record_poll(server, at, sample.clone(), second, &meta()).await.unwrap();
    assert!(changes.is_empty());
    assert_eq!(appended.versions.len(), 1, "only the sample");

    let day = samples_stream(server, at.date_naive());
    let stored = store.read_stream(&day.to_string(), None).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].event_type, "ServerSampled");
    let (class, bucket): (i16, Option<chrono::NaiveDate>) =
        sqlx::query_as("SELECT retention_class, bucket FROM events WHERE stream_id = $1 LIMIT 1")
            .bind(day.to_string())
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((class, bucket), (RetentionClass::Samples.code(), Some(at.date_naive())), "samples expire by day");

    // A failure streak is recorded once; the next good poll records the recovery.
    let fail = || MonitoringCommand::Fail { at, failure: Failure::Unreachable, error: "connection refused".into() };
    assert!(commands.command(server, fail(), &meta()).await.unwrap().is_some());
    assert!(commands.command(server, fail(), &meta()).await.unwrap().is_none());
    let (at, third) = observe(3, "b1");
    let (changes, _) = commands.record_poll(server, at, sample, third, &meta()).await.unwrap();
    assert!(matches!(changes[..], [MonitoringEvent::CollectionRecovered { .. }]), "{changes:?}");
    assert_eq!(commands.state(server).await.unwrap().failing, None);
}

#[tokio::test]
async fn two_collectors_never_claim_one_server_in_a_cycle_and_one_takes_over_when_the_other_dies() {
    use crate::monitoring::schedule::{self, Wanted};
    let db = TestDb::new().await;
    let pool = &db.pool;
    let servers: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    let wanted: Vec<Wanted> =
        servers.iter().map(|&server_id| Wanted { server_id, interval_secs: 60, smart_secs: Some(3600) }).collect();
    schedule::sync(pool, &wanted).await.unwrap();
    let all_due = || async {
        for &s in &servers {
            assert!(schedule::due_now(pool, s, false).await.unwrap());
        }
    };
    all_due().await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    // Both at once, five each at most: disjoint, and together every server.
    let (mine, theirs) = tokio::join!(schedule::claim(pool, a, 5), schedule::claim(pool, b, 5));
    let (mine, theirs) = (mine.unwrap(), theirs.unwrap());
    let mut claimed: Vec<Uuid> = mine.iter().chain(&theirs).map(|d| d.server_id).collect();
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), mine.len() + theirs.len(), "no server claimed twice");
    let rest = schedule::claim(pool, a, 100).await.unwrap();
    assert_eq!(mine.len() + theirs.len() + rest.len(), 10);
    assert!(mine.iter().chain(&rest).all(|d| d.smart_due), "the first round reads SMART too");
    assert!(schedule::claim(pool, b, 100).await.unwrap().is_empty(), "nothing is due again within the cycle");

    // Next cycle: each keeps its own servers (its SSH connections stay where they are).
    all_due().await;
    let again = schedule::claim(pool, b, 100).await.unwrap();
    let theirs_ids: Vec<Uuid> = theirs.iter().map(|d| d.server_id).collect();
    assert!(again.iter().all(|d| theirs_ids.contains(&d.server_id)), "b claimed a's servers while a lives");
    assert!(again.iter().all(|d| !d.smart_due), "SMART is hourly");

    // a dies: it stops renewing; once its hold runs out (two intervals), b takes its servers.
    sqlx::query("UPDATE monitoring_schedule SET held_until = now() - interval '1 second' WHERE holder = $1")
        .bind(a)
        .execute(pool)
        .await
        .unwrap();
    all_due().await;
    assert_eq!(schedule::claim(pool, b, 100).await.unwrap().len(), 10);
    assert_eq!(schedule::release(pool, b).await.unwrap(), 10);
    schedule::sync(pool, &wanted[..3]).await.unwrap();
    assert_eq!(schedule::holders(pool).await.unwrap().len(), 3, "servers no longer monitored leave the schedule");
}

#[tokio::test]
async fn finished_hours_are_summarized_once_in_order_across_days_and_months() {
    use chrono::Duration;
    use unity_domain::monitoring::{summaries_stream, HostSummariesEvent};

    let db = TestDb::new().await;
    let store = db.store();
    let commands = MonitoringCommands::new(store.clone());
    let server = Uuid::now_v7();
    // Polls every 20 minutes from 22:00 on the last day of November to 01:40 on 1 December,
    // none in the hour from 23:00, load rising by 10 a poll.
    let start = Utc.with_ymd_and_hms(2026, 11, 30, 22, 0, 0).unwrap();
    for n in 0..12 {
        let at = start + Duration::minutes(20 * n);
        if at.format("%H").to_string() == "23" {
            continue;
        }
        let sample = HostSample { uptime_secs: 100, load: [10 * n as u32, 0, 0], ..HostSample::default() };
        let (_, observe) = observe(0, "b1");
        commands.record_poll(server, at, sample, observe, &meta()).await.unwrap();
    }
    let summarized = |month: (i32, u32)| {
        let store = store.clone();
        async move {
            let stream = summaries_stream(server, chrono::NaiveDate::from_ymd_opt(month.0, month.1, 1).unwrap());
            let events = store.read_stream(&stream.to_string(), None).await.unwrap();
            events
                .iter()
                .map(|e| match e.decode::<HostSummariesEvent>().unwrap() {
                    HostSummariesEvent::HourSummarized { hour, summary, .. } => (hour, summary.polls, summary.load1),
                })
                .collect::<Vec<_>>()
        }
    };

    // At 01:30 the hours up to 00:00 are finished; 01:00 is not. 23:00 had no polls.
    let now = Utc.with_ymd_and_hms(2026, 12, 1, 1, 30, 0).unwrap();
    let lookback = Duration::days(30);
    assert_eq!(commands.summarize(server, now, lookback, &meta()).await.unwrap(), 2);
    let hour = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, if d == 30 { 11 } else { 12 }, d, h, 0, 0).unwrap();
    assert_eq!(summarized((2026, 11)).await, [(hour(30, 22), 3, [0, 10, 20])], "November's hours on November's stream");
    assert_eq!(summarized((2026, 12)).await, [(hour(1, 0), 3, [60, 70, 80])]);
    assert_eq!(commands.summarize(server, now, lookback, &meta()).await.unwrap(), 0, "nothing twice");

    // Two minutes after 02:00, 01:00 is settled and is summarized next, after 00:00.
    let later = Utc.with_ymd_and_hms(2026, 12, 1, 2, 2, 0).unwrap();
    assert_eq!(commands.summarize(server, later, lookback, &meta()).await.unwrap(), 1);
    assert_eq!(summarized((2026, 12)).await[1], (hour(1, 1), 3, [90, 100, 110]));
}
