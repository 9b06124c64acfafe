//! The CLI's commands (DESIGN.md §7).

use std::{
    io::{Read, Write},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use unity_commands::{identity::describe_state, integrity};
use unity_domain::{identity::Role as UserRole, Actor, EventMetadata};
use unity_projections::audit::{audit_log, AuditFilter};

use crate::{
    app::{App, Role},
    bench::BenchCommand,
    config::Settings,
    telemetry,
};

#[derive(Parser, Debug)]
#[command(
    name = "unity",
    version,
    about = "Self-hosted control plane: credentials, monitoring and container updates on one event log."
)]
pub struct Cli {
    /// A TOML file of settings (keys: the environment variables' names in lower case, without
    /// `UNITY_`); environment variables override it. Also `UNITY_CONFIG`.
    #[arg(long, global = true)]
    pub config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run Unity: API, projections, reactors, relay and collectors (or only some, with --role).
    Serve {
        #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
        role: Vec<Role>,
    },
    /// Apply database migrations.
    Migrate,
    /// Administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Read and check the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Rebuild read models from the log, or show one aggregate's state at a past moment.
    Replay {
        /// Rebuild only this projection (default: all).
        #[arg(long, conflicts_with_all = ["as_of", "stream"])]
        projection: Option<String>,
        /// With --stream: the moment to show (RFC 3339, or a date).
        #[arg(long, requires = "stream")]
        as_of: Option<String>,
        /// With --as-of: the aggregate's stream id, e.g. user-0193….
        #[arg(long, requires = "as_of")]
        stream: Option<String>,
    },
    /// Projection status, and the operator's retry and skip for a stopped projection.
    Projections {
        #[command(subcommand)]
        command: Option<ProjectionsCommand>,
    },
    /// Expired samples and summaries: list the buckets, or remove the expired ones now.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Load generators that print measurements.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a user. Without --password-stdin a random password is generated and printed once.
    CreateUser {
        #[arg(long)]
        username: String,
        #[arg(long, default_value = "VIEWER")]
        role: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Print the audit log, oldest first.
    Log {
        #[arg(long)]
        stream: Option<String>,
        /// Only this event type (repeatable).
        #[arg(long = "type")]
        event_types: Vec<String>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Check every hash chain and seal; exits non-zero naming the first break. With --archive,
    /// check a retention archive offline instead (no database needed).
    Verify {
        #[arg(long)]
        json: bool,
        /// A file written by retention (UNITY_RETENTION_ARCHIVE_DIR): its events' hashes and
        /// chains, and that they are exactly what its removal record says was removed.
        #[arg(long)]
        archive: Option<PathBuf>,
    },
    /// Seal the current heads of all changed streams now.
    Seal,
}

#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Every bucket of an expiring class, its events and size, and whether it has expired.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Record and remove every expired bucket now (the projections role does it hourly).
    Run {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProjectionsCommand {
    /// Position, lag and state of every projection (the default).
    Status,
    /// Resume a stopped projection at the event that stopped it.
    Retry { name: String },
    /// Skip the event that stopped a projection (recorded in the log), and resume.
    Skip { name: String },
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let settings = Settings::from_env(cli.config.as_deref())?;
    telemetry::init(settings.log_format);
    if let Command::Bench { command } = cli.command {
        return crate::bench::run(command, settings).await.map(|_| ExitCode::SUCCESS);
    }
    if let Command::Audit { command: AuditCommand::Verify { json, archive: Some(path) } } = &cli.command {
        return verify_archive(path, *json);
    }
    let app = App::connect(settings).await?;
    match cli.command {
        Command::Serve { role } => {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!("Shutting down.");
                let _ = stop.send(true);
            });
            app.serve(&role, None, stopped).await?;
        }
        Command::Migrate => {
            app.migrate().await?;
            println!("Migrations applied.");
        }
        Command::Admin { command: AdminCommand::CreateUser { username, role, password_stdin } } => {
            app.require_migrated().await?;
            create_user(&app, &username, &role, password_stdin).await?;
        }
        Command::Audit { command } => {
            app.require_migrated().await?;
            return audit(&app, command).await;
        }
        Command::Replay { projection, as_of, stream } => {
            app.require_migrated().await?;
            match (as_of, stream) {
                (Some(as_of), Some(stream)) => replay_as_of(&app, &as_of, &stream).await?,
                _ => replay(&app, projection.as_deref()).await?,
            }
        }
        Command::Retention { command } => {
            app.require_migrated().await?;
            retention(&app, command).await?;
        }
        Command::Projections { command } => {
            app.require_migrated().await?;
            projections(&app, command.unwrap_or(ProjectionsCommand::Status)).await?;
        }
        Command::Bench { .. } => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The CLI acts as the system, named after the operating-system user who ran it where known.
fn cli_actor() -> EventMetadata {
    let name = match std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")) {
        Ok(user) => format!("cli:{user}"),
        Err(_) => "cli".into(),
    };
    unity_commands::metadata(Actor::system(&name), "cli")
}

async fn create_user(app: &App, username: &str, role: &str, password_stdin: bool) -> Result<()> {
    let role: UserRole = role.parse().map_err(|e: String| anyhow!(e))?;
    let (password, generated) = if password_stdin {
        let mut input = String::new();
        std::io::stdin().read_to_string(&mut input).context("cannot read the password from stdin")?;
        (input.trim_end_matches(['\r', '\n']).to_owned(), false)
    } else {
        (generate_password(), true)
    };
    let identity = app.commands().await?.identity;
    let (user_id, _) = identity.create_user(username, &password, role, &cli_actor()).await?;
    // Wake a running server's projections now rather than at its next poll.
    let _ = app.store.announce().await;
    println!("Created user {} ({}) with role {}.", username.trim().to_ascii_lowercase(), user_id, role.as_str());
    if generated {
        println!("Password (shown once): {password}");
    }
    Ok(())
}

pub fn generate_password() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 18];
    ring::rand::SystemRandom::new().fill(&mut bytes).expect("system randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 3339, or a plain date (midnight UTC).
pub fn parse_time(flag: &str, raw: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    bail!("{flag} '{raw}' is not a time: use RFC 3339 (2026-11-22T10:00:00Z) or a date (2026-11-22)")
}

async fn audit(app: &App, command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Log { stream, event_types, actor, since, until, limit, json } => {
            let filter = AuditFilter {
                stream_id: stream,
                stream_type: None,
                event_types,
                actor_id: actor,
                from: since.map(|s| parse_time("--since", &s)).transpose()?,
                to: until.map(|s| parse_time("--until", &s)).transpose()?,
                hidden_stream_types: vec![],
            };
            // The audit log is a read model: bring it up to date first (safe beside a running server).
            let engine = app.engine();
            engine.prepare().await?;
            let written = app.store.last_committed().await?;
            if !engine.run_until("audit_log", written, Duration::from_secs(10)).await? {
                tracing::warn!("The audit log may lack the newest events: a transaction is still open, or the projection is stopped (see `unity projections`).");
            }
            let mut out = std::io::stdout().lock();
            let mut after = None;
            let mut printed = 0;
            while printed < limit {
                let page = audit_log(app.pool(), &filter, after, (limit - printed).min(500)).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.seq);
                for entry in &page {
                    let written = if json {
                        writeln!(out, "{}", serde_json::to_string(entry)?)
                    } else {
                        writeln!(
                            out,
                            "{:>8}  {}  {:<50} v{:<4} {:<28} {}",
                            entry.position,
                            entry.recorded_at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                            entry.stream_id,
                            entry.stream_version,
                            entry.event_type,
                            entry.actor_name.as_deref().unwrap_or("-"),
                        )
                    };
                    if written.is_err() {
                        return Ok(ExitCode::SUCCESS); // the reader went away (`| head`)
                    }
                }
                printed += page.len() as i64;
            }
        }
        AuditCommand::Verify { json, archive: _ } => {
            let spinner = progress_bar(None, "verifying");
            let report = integrity::verify(app.pool(), |n| spinner.set_position(n)).await?;
            spinner.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if report.ok() {
                println!(
                    "OK: {} events in {} streams and {} seals verified.",
                    report.events_checked, report.streams_checked, report.seals_checked
                );
                print_removals(&report.removals);
            }
            if let Some(failed) = broken(&report.breaks, json, "the audit trail is broken") {
                return Ok(failed);
            }
        }
        AuditCommand::Seal => match integrity::seal(app.pool()).await? {
            Some(seal) => println!("Seal #{} covers {} changed streams.", seal.seal_number, seal.heads.len()),
            None => println!("Nothing changed since the last seal."),
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn print_removals(removals: &[integrity::RecordedRemoval]) {
    if removals.is_empty() {
        return;
    }
    let events: i64 = removals.iter().map(|r| r.events).sum();
    println!("Removed by retention, as recorded: {events} events in {} buckets.", removals.len());
    for r in removals {
        let when = match r.removed_at {
            Some(t) => format!("removed {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            None => "recorded, not removed yet".to_owned(),
        };
        println!(
            "  {} {}: {} events in {} streams, recorded {}, {when}",
            r.class,
            r.bucket,
            r.events,
            r.streams,
            r.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
}

fn verify_archive(path: &std::path::Path, json: bool) -> Result<ExitCode> {
    let report = unity_commands::retention::verify_archive(path).map_err(|e| anyhow!(e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.ok() {
        println!(
            "OK: {} events in {} streams of {} {} verified; removal record {} (hash {}).",
            report.events_checked,
            report.streams_checked,
            report.class,
            report.bucket.map(|b| b.to_string()).unwrap_or_default(),
            report.record.map(|r| r.to_string()).unwrap_or_default(),
            report.record_hash
        );
    }
    Ok(broken(&report.breaks, json, "the archive does not verify").unwrap_or(ExitCode::SUCCESS))
}

/// Prints each break (unless the report went out as JSON) and the first on stderr; exit code 2.
fn broken(breaks: &[integrity::Break], json: bool, what: &str) -> Option<ExitCode> {
    let first = breaks.first()?;
    if !json {
        for b in breaks {
            println!("BROKEN: {} version {}: {}", b.stream_id, b.version, b.reason);
        }
    }
    eprintln!("unity: {what}: first at {} version {}", first.stream_id, first.version);
    Some(ExitCode::from(2))
}

async fn retention(app: &App, command: RetentionCommand) -> Result<()> {
    use unity_commands::retention;
    let policy = &app.settings.retention;
    let today = Utc::now().date_naive();
    match command {
        RetentionCommand::List { json } => {
            let mut rows = Vec::new();
            for (class, bucket) in retention::buckets(app.pool()).await? {
                let table = retention::bucket_table(class, bucket);
                let (events, bytes): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT (SELECT count(*) FROM {table}), pg_total_relation_size('{table}')"
                )))
                .fetch_one(app.pool())
                .await?;
                let keep = policy.keep_days(class).unwrap_or(u32::MAX);
                let expired = class.bucket_expired(bucket, today, keep);
                rows.push(serde_json::json!({
                    "class": class.name(), "bucket": bucket, "events": events, "bytes": bytes, "expired": expired,
                }));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("No buckets: no samples or summaries recorded yet.");
            } else {
                println!("{:<10} {:<10} {:>10} {:>10}  expired", "class", "bucket", "events", "MiB");
                for r in &rows {
                    println!(
                        "{:<10} {:<10} {:>10} {:>10.1}  {}",
                        r["class"].as_str().unwrap_or_default(),
                        r["bucket"].as_str().unwrap_or_default(),
                        r["events"],
                        r["bytes"].as_f64().unwrap_or_default() / 1048576.0,
                        if r["expired"] == true { "yes" } else { "no" }
                    );
                }
            }
        }
        RetentionCommand::Run { json } => {
            let removed = retention::run(&app.store, policy, today, &cli_actor()).await?;
            let _ = app.store.announce().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&removed)?);
            } else if removed.is_empty() {
                println!(
                    "Nothing has expired (samples are kept {} days, summaries {}).",
                    policy.samples_days, policy.summaries_days
                );
            } else {
                for r in &removed {
                    let archive =
                        r.archive.as_ref().map(|p| format!(", archived to {}", p.display())).unwrap_or_default();
                    println!(
                        "Removed {} {}: {} events in {} streams{archive}.",
                        r.class, r.bucket, r.events, r.streams
                    );
                }
            }
        }
    }
    Ok(())
}

fn progress_bar(total: Option<u64>, what: &str) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let template = match total {
        Some(_) => "{msg} [{bar:40}] {pos}/{len} events ({per_sec}, {eta} left)",
        None => "{spinner} {msg} {pos} events ({per_sec})",
    };
    bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

async fn replay(app: &App, projection: Option<&str>) -> Result<()> {
    let engine = app.engine();
    let chosen = match projection {
        Some(name) => vec![engine.find(name)?],
        None => engine.projections().to_vec(),
    };
    engine.prepare().await?;
    let names: Vec<&str> = chosen.iter().map(|p| p.name()).collect();
    let bar = progress_bar(Some(0), &format!("rebuilding {}", names.join(", ")));
    let started = std::time::Instant::now();
    let events = engine
        .rebuild(&chosen, |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .await?;
    bar.finish_and_clear();
    println!("Rebuilt {} from {} events in {:.1} s.", names.join(", "), events, started.elapsed().as_secs_f64());
    Ok(())
}

async fn replay_as_of(app: &App, as_of: &str, stream: &str) -> Result<()> {
    let at = parse_time("--as-of", as_of)?;
    let stream_id: unity_domain::StreamId = stream.parse().map_err(|e: String| anyhow!(e))?;
    let events = app.store.read_stream(stream, Some(at)).await?;
    if events.is_empty() {
        bail!("stream {stream} had no events at {}", at.to_rfc3339());
    }
    let last = events.last().expect("not empty");
    println!(
        "{stream} as of {}: version {} (last event {} at {})",
        at.to_rfc3339(),
        last.stream_version,
        last.event_type,
        last.recorded_at.to_rfc3339()
    );
    println!("{}", describe_state(stream_id.stream_type(), &events)?);
    Ok(())
}

async fn projections(app: &App, command: ProjectionsCommand) -> Result<()> {
    let engine = app.engine();
    match command {
        ProjectionsCommand::Status => {
            for s in engine.status().await? {
                println!(
                    "{:<12} {:<8} position {:<10} lag {:<8} {}",
                    s.name,
                    s.state,
                    s.position.global_position,
                    s.lag,
                    s.error.map(|e| format!("error: {e}")).unwrap_or_default()
                );
            }
        }
        ProjectionsCommand::Retry { name } => {
            engine.retry(&name, &cli_actor()).await?;
            println!("{name} will retry from the event that stopped it.");
        }
        ProjectionsCommand::Skip { name } => match engine.skip(&name, &cli_actor()).await? {
            Some(event) => println!("{name} skipped event {event} and resumed."),
            None => println!("{name} is not stopped; nothing to skip."),
        },
    }
    Ok(())
}
