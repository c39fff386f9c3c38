//! The `engage` command: run the server, manage tenants and plugins.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use engage::config::ServerConfig;
use engage::kit::remote::{Session, send};

#[derive(Parser)]
#[command(
    name = "engage",
    version,
    about = "Engage: engagement back end with WebAssembly plugins"
)]
struct Cli {
    /// A TOML configuration file (flags and ENGAGE_* variables override it).
    #[arg(long, global = true, env = "ENGAGE_CONFIG")]
    config: Option<PathBuf>,
    /// Where Engage keeps its data.
    #[arg(long, global = true, env = "ENGAGE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where the data lives: `embedded` (a redb file in the data
    /// directory) or `postgres` (at --storage-url).
    #[arg(long, global = true, env = "ENGAGE_STORAGE_BACKEND")]
    storage_backend: Option<engage::config::BackendKind>,
    /// The PostgreSQL database: postgres://user:password@host:port/database.
    #[arg(
        long,
        global = true,
        env = "ENGAGE_STORAGE_URL",
        hide_env_values = true
    )]
    storage_url: Option<String>,
    /// The key that seals provider credentials at rest (64 hex digits);
    /// every host on one database needs the same.
    #[arg(long, global = true, env = "ENGAGE_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "ENGAGE_LISTEN")]
        listen: Option<SocketAddr>,
        /// Set the admin token (otherwise one is generated on first start).
        #[arg(long, env = "ENGAGE_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// A PEM file of certificates to trust for HTTPS to providers,
        /// beside the built-in roots.
        #[arg(long, env = "ENGAGE_PROVIDER_CA_FILE")]
        provider_ca_file: Option<PathBuf>,
    },
    /// Apply the storage schema's migrations (a server applies them at
    /// start too) and print which are applied.
    Migrate,
    /// Work on a whole store.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Take a consistent backup of the whole store into FILE while the
    /// server runs (through its admin API; no downtime: one snapshot,
    /// streamed), or of a stopped server's store. The file is checked
    /// before the command says it is done. Keep the data directory's
    /// `secret.key` (or ENGAGE_SECRET_KEY) apart from it: provider
    /// credentials in the backup are sealed with it.
    Backup {
        file: PathBuf,
        /// The running server's base URL (default: the data directory's
        /// server.json when a server holds it).
        #[arg(long, env = "ENGAGE_SERVER")]
        server: Option<String>,
        /// The admin token (default: the data directory's credentials.json).
        #[arg(long, env = "ENGAGE_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
    },
    /// Restore a backup into an empty store: the data directory's, or
    /// --to (a data directory or a postgres:// url). No server may run on
    /// it. Every table's count and digest is checked.
    Restore {
        file: PathBuf,
        #[arg(long)]
        to: Option<String>,
    },
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage a tenant's plugins on a running server.
    Plugin {
        #[command(flatten)]
        auth: TenantArgs,
        #[command(subcommand)]
        command: PluginCommand,
    },
}

/// How the plugin commands reach the server and authenticate.
#[derive(clap::Args)]
struct TenantArgs {
    /// The server's base URL (default: the address in the data directory's
    /// server.json, else http://127.0.0.1:8080).
    #[arg(long, global = true, env = "ENGAGE_SERVER")]
    server: Option<String>,
    /// The tenant's API key.
    #[arg(long, global = true, env = "ENGAGE_API_KEY")]
    api_key: Option<String>,
    /// The tenant's API secret.
    #[arg(long, global = true, env = "ENGAGE_API_SECRET", hide_env_values = true)]
    api_secret: Option<String>,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Upload a component as a new version of plugin NAME.
    Upload { name: String, file: PathBuf },
    /// Bind a plugin to an extension point (rules, gift, template, route);
    /// binding an older version is a rollback.
    Bind {
        point: String,
        plugin: String,
        /// The version (default: the latest).
        #[arg(long)]
        version: Option<u32>,
        /// The binding's config, a JSON object (`--config` is the server's TOML file).
        #[arg(long)]
        plugin_config: Option<String>,
        /// What a failure does: fail, or default (run the first-party plugin).
        #[arg(long)]
        on_error: Option<String>,
    },
    /// List the tenant's plugins with versions and statistics.
    List,
    /// Run a component locally, on the engine configuration production
    /// uses, and report input, logs, output and usage against every limit.
    /// Exit status: 0 answered, 1 the plugin erred or refused the config,
    /// 3 a limit (fuel, memory, deadline, output size) stopped it.
    Run(Box<engage::kit::RunArgs>),
    /// Make a plugin project in ./NAME (or --dir): a template for the
    /// world in the language, the WIT it is built against, the SDK, a
    /// fixture and a README.
    New {
        name: String,
        #[arg(long, value_enum)]
        world: engage::kit::scaffold::World,
        #[arg(long, value_enum)]
        lang: engage::kit::scaffold::Lang,
        /// Where to make it (default ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build the project's component into build/NAME.wasm with its
    /// language's toolchain (installed on first use when missing).
    Build {
        /// The project (default: the current directory).
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Build the project, then run every fixture in fixtures/ and report
    /// pass or fail with a diff. Exit status 1 when any fails.
    Test {
        #[arg(long, default_value = ".")]
        path: PathBuf,
        /// Test the component as it is in build/, without building.
        #[arg(long)]
        no_build: bool,
        /// Print the verdicts and reports as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The plugin's last calls recorded in production, newest first.
    Invocations {
        name: String,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Fetch a recorded call and run it again on FILE (a new build) with
    /// exactly what it saw; show where the answer differs from
    /// production's. Exit status 0 same answer, 4 a different one.
    Replay {
        id: String,
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Build the project, replay the calls production recorded for the
    /// bound version on the build and show where its answers differ, then
    /// upload it and bind it (with --percent, for that share of players
    /// beside the bound version). Exit status: 0 deployed, 4 a dry run
    /// found differences, 5 the build fails calls production answered.
    Deploy(Box<engage::kit::deploy::DeployArgs>),
    /// The canary at POINT and its statistics beside the stable version's.
    Canary {
        point: String,
        #[arg(long)]
        json: bool,
    },
    /// Make the canary at POINT the binding for every player.
    Promote { point: String },
    /// End the canary at POINT: every player back on the stable version.
    Rollback { point: String },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy everything from one store into an empty one, from one
    /// snapshot, then verify both hold the same (counts and a digest of
    /// every table: balances, codes and credit included). A location is a
    /// data directory (embedded) or a postgres:// url. Stop the servers on
    /// an embedded source first; a PostgreSQL source may stay in use.
    Copy {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its credentials as JSON. Works whether or
    /// not a server runs on the data directory (through its admin API if so).
    Create {
        name: String,
        /// The admin token, needed when a server is running.
        #[arg(long, env = "ENGAGE_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
    },
}

fn load_config(cli: &Cli) -> anyhow::Result<ServerConfig> {
    let mut config = match &cli.config {
        Some(path) => ServerConfig::from_toml_file(path)?,
        None => ServerConfig::default(),
    };
    if let Some(d) = &cli.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(b) = cli.storage_backend {
        config.storage.backend = b;
    }
    if let Some(u) = &cli.storage_url {
        config.storage.url = Some(u.clone());
        if cli.storage_backend.is_none() {
            // A url says which backend.
            config.storage.backend = engage::config::BackendKind::Postgres;
        }
    }
    if cli.secret_key.is_some() {
        config.secret_key = cli.secret_key.clone();
    }
    Ok(config)
}

/// Logs go to stderr (stdout stays machine-readable). `ENGAGE_LOG` filters
/// them (`info` by default; `engage_api=debug,info`, say);
/// `ENGAGE_LOG_FORMAT=json` writes one JSON object per line with the
/// spans it happened in (the request's id and tenant, a dispatch's message
/// and the request that queued it); colour only on a terminal, and never
/// with `NO_COLOR` set.
fn init_logs() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("ENGAGE_LOG").unwrap_or_else(|_| "info".into());
    let format = std::env::var("ENGAGE_LOG_FORMAT").unwrap_or_default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format.as_str() {
        "json" => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .init(),
        "" | "text" => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        other => {
            anyhow::bail!("ENGAGE_LOG_FORMAT is `{other}`: use `text` (the default) or `json`")
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    init_logs()?;
    let cli = Cli::parse();
    let mut config = load_config(&cli)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let done = match cli.command {
        Command::Serve {
            listen,
            admin_token,
            provider_ca_file,
        } => {
            if let Some(l) = listen {
                config.listen = l;
            }
            if provider_ca_file.is_some() {
                config.messaging.ca_file = provider_ca_file;
            }
            if admin_token.is_some() {
                config.admin_token = admin_token;
            }
            runtime.block_on(async {
                let running = engage::server::start(&config).await?;
                running.wait().await
            })
        }
        Command::Tenant {
            command: TenantCommand::Create { name, admin_token },
        } => runtime.block_on(create_tenant(&config, &name, admin_token)),
        Command::Plugin { auth, command } => {
            return runtime.block_on(plugin(&config, auth, command));
        }
        Command::Migrate => runtime.block_on(migrate(&config)),
        Command::Backup {
            file,
            server,
            admin_token,
        } => runtime.block_on(backup(&config, &file, server, admin_token)),
        Command::Restore { file, to } => runtime.block_on(restore(&config, &file, to)),
        Command::Store {
            command: StoreCommand::Copy { from, to },
        } => runtime.block_on(copy(&config, &from, &to)),
    };
    done.map(|()| std::process::ExitCode::SUCCESS)
}

async fn migrate(config: &ServerConfig) -> anyhow::Result<()> {
    match config.storage.backend {
        engage::config::BackendKind::Postgres => {
            let pg = engage::store_postgres::Postgres::connect(&config.storage.pg_config()?)?;
            let applied = pg.migrate()?;
            println!(
                "{}",
                serde_json::json!({ "backend": "postgres", "applied_now": applied, "applied": pg.applied()?,
                                    "latest": engage::store_postgres::LATEST_MIGRATION })
            );
        }
        engage::config::BackendKind::Embedded => {
            // Opening migrates the redb file to this build's schema.
            let data = engage::store::files::open_data_dir(&config.data_dir)?;
            drop(config.storage.open(&data)?);
            println!(
                "{}",
                serde_json::json!({ "backend": "embedded", "schema": engage::store::SCHEMA_VERSION })
            );
        }
    }
    Ok(())
}

/// A store at `location`: a postgres:// url or a data directory.
fn open_location(config: &ServerConfig, location: &str) -> anyhow::Result<engage::store::Store> {
    let mut storage = config.storage.clone();
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        storage.backend = engage::config::BackendKind::Postgres;
        storage.url = Some(location.to_owned());
        let data = engage::store::files::open_data_dir(&std::env::temp_dir())?;
        return storage.open(&data);
    }
    storage.backend = engage::config::BackendKind::Embedded;
    let data = engage::store::files::open_data_dir(std::path::Path::new(location))?;
    storage
        .open(&data)
        .with_context(|| format!("opening the store in {location} (is a server running on it?)"))
}

async fn copy(config: &ServerConfig, from: &str, to: &str) -> anyhow::Result<()> {
    let source = open_location(config, from)?;
    let target = open_location(config, to)?;
    // Components kept as files by older versions go into the source first.
    if !from.contains("://") {
        let data = engage::store::files::open_data_dir(std::path::Path::new(from))?;
        engage::plugins::import_component_files(&source, &data).await?;
    }
    let report = engage::store::copy::copy(&source, &target).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    let closing = [source.closing(), target.closing()];
    drop((source, target));
    for c in closing {
        c.wait(std::time::Duration::from_secs(10)).await;
    }
    Ok(())
}

async fn backup(
    config: &ServerConfig,
    file: &std::path::Path,
    server: Option<String>,
    admin_token: Option<String>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let partial = file.with_extension("partial");
    let out = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut out = std::io::BufWriter::new(out);
    let online = server.is_some()
        || (config.storage.backend == engage::config::BackendKind::Embedded
            && engage::store::Store::is_locked(&config.data_dir));
    if online {
        let token = match admin_token {
            Some(t) => t,
            None => admin_token_from_file(config)?,
        };
        let base = server_url(config, server)?;
        let mut resp = reqwest::Client::new()
            .get(format!("{base}/admin/backup"))
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("asking {base} for a backup"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            anyhow::bail!("{base} answered {status}: {text}");
        }
        while let Some(chunk) = resp
            .chunk()
            .await
            .context("the server stopped sending the backup")?
        {
            out.write_all(&chunk)?;
        }
    } else {
        let store = config
            .storage
            .open(&engage::store::files::open_data_dir(&config.data_dir)?)?;
        let snap = store.read()?;
        let s = store.clone();
        out = tokio::task::spawn_blocking(move || {
            engage::store::backup::write(&s, &snap, &mut out).map(|_| out)
        })
        .await??;
        let closing = store.closing();
        drop(store);
        closing.wait(std::time::Duration::from_secs(10)).await;
    }
    let out = out.into_inner().map_err(|e| e.into_error())?;
    out.sync_all()?;
    drop(out);
    // Read back whole before it is called a backup.
    let report =
        engage::store::backup::verify(std::io::BufReader::new(std::fs::File::open(&partial)?))
            .await
            .with_context(|| format!("checking {}", partial.display()))?;
    std::fs::rename(&partial, file)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn restore(
    config: &ServerConfig,
    file: &std::path::Path,
    to: Option<String>,
) -> anyhow::Result<()> {
    let location = to.unwrap_or_else(|| config.data_dir.display().to_string());
    let input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let store = open_location(config, &location)?;
    let report = engage::store::backup::restore(&store, std::io::BufReader::new(input)).await;
    let closing = store.closing();
    drop(store);
    closing.wait(std::time::Duration::from_secs(10)).await;
    let report = report.with_context(|| format!("restoring {} into {location}", file.display()))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn admin_token_from_file(config: &ServerConfig) -> anyhow::Result<String> {
    let creds: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        config.data_dir.join("credentials.json"),
    )?)?;
    Ok(creds["admin_token"]
        .as_str()
        .context("pass --admin-token or set ENGAGE_ADMIN_TOKEN")?
        .to_owned())
}

async fn create_tenant(
    config: &ServerConfig,
    name: &str,
    admin_token: Option<String>,
) -> anyhow::Result<()> {
    if engage::store::Store::is_locked(&config.data_dir) {
        // A server holds the database: ask it.
        let token = match admin_token {
            Some(t) => t,
            None => admin_token_from_file(config)?,
        };
        let base = server_url(config, None)?;
        let req = reqwest::Client::new()
            .post(format!("{base}/admin/tenants"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "name": name }));
        println!("{}", send(req).await?);
        return Ok(());
    }
    let mut config = config.clone();
    config.demo_tenant = false;
    let (state, background) = engage::server::open(&config).await?;
    let creds = engage::tenants::create(&state.store, name).await?;
    state.plugins.provision(&creds.tenant).await?;
    println!("{}", serde_json::to_string(&creds)?);
    background.stop(std::time::Duration::from_secs(10)).await;
    engage::server::close(state).await;
    Ok(())
}

/// The server to talk to: `--server`, else the running server's address
/// from the data directory, else the default listen address.
fn server_url(config: &ServerConfig, explicit: Option<String>) -> anyhow::Result<String> {
    if let Some(url) = explicit {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let recorded = std::fs::read_to_string(config.data_dir.join("server.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["listen"].as_str().map(str::to_owned));
    Ok(format!(
        "http://{}",
        recorded.unwrap_or_else(|| config.listen.to_string())
    ))
}

async fn plugin(
    config: &ServerConfig,
    auth: TenantArgs,
    command: PluginCommand,
) -> anyhow::Result<std::process::ExitCode> {
    let base = server_url(config, auth.server)?;
    let session = || Session::open(base.clone(), auth.api_key.clone(), auth.api_secret.clone());
    let answer = match command {
        // The authoring commands run here, without a server.
        PluginCommand::Run(args) => {
            let code = tokio::task::spawn_blocking(move || engage::kit::run(&args)).await??;
            return Ok(std::process::ExitCode::from(code));
        }
        PluginCommand::New {
            name,
            world,
            lang,
            dir,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            engage::kit::scaffold::new(&dir, &name, world, lang)?;
            println!(
                "made {} ({} world, {lang:?}): cd there and run `engage plugin test`",
                dir.display(),
                world.wit_name()
            );
            return Ok(std::process::ExitCode::SUCCESS);
        }
        PluginCommand::Build { path } => {
            let out =
                tokio::task::spawn_blocking(move || engage::kit::toolchain::build(&path)).await??;
            println!("{}", out.display());
            return Ok(std::process::ExitCode::SUCCESS);
        }
        PluginCommand::Test {
            path,
            no_build,
            json,
        } => {
            let code =
                tokio::task::spawn_blocking(move || engage::kit::test(&path, !no_build, json))
                    .await??;
            return Ok(std::process::ExitCode::from(code));
        }
        PluginCommand::Invocations { name, limit } => {
            let q = limit.map(|l| format!("?limit={l}")).unwrap_or_default();
            send(
                session()
                    .await?
                    .get(&format!("/v1/plugins/{name}/invocations{q}")),
            )
            .await?
        }
        PluginCommand::Replay { id, file, json } => {
            let record = send(session().await?.get(&format!("/v1/invocations/{id}"))).await?;
            let record: engage::plugins::invocations::Invocation =
                serde_json::from_value(record).context("the server's invocation record")?;
            let code = tokio::task::spawn_blocking(move || {
                engage::kit::replay_and_print(&record, &file, json)
            })
            .await??;
            return Ok(std::process::ExitCode::from(code));
        }
        PluginCommand::Upload { name, file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let s = session().await?;
            let req = s
                .put(&format!("/v1/plugins/{name}"))
                .header("content-type", "application/wasm")
                .body(bytes);
            send(req).await?
        }
        PluginCommand::Bind {
            point,
            plugin,
            version,
            plugin_config,
            on_error,
        } => {
            let mut body = serde_json::json!({ "plugin": plugin });
            if let Some(v) = version {
                body["version"] = v.into();
            }
            if let Some(c) = plugin_config {
                body["config"] = serde_json::from_str(&c).context("--plugin-config is not JSON")?;
            }
            if let Some(e) = on_error {
                body["on_error"] = e.into();
            }
            let s = session().await?;
            send(s.put(&format!("/v1/bindings/{point}")).json(&body)).await?
        }
        PluginCommand::List => send(session().await?.get("/v1/plugins")).await?,
        PluginCommand::Deploy(args) => {
            let code = engage::kit::deploy::deploy(&session().await?, &args).await?;
            return Ok(std::process::ExitCode::from(code));
        }
        PluginCommand::Canary { point, json } => {
            let code = engage::kit::deploy::status(&session().await?, &point, json).await?;
            return Ok(std::process::ExitCode::from(code));
        }
        PluginCommand::Promote { point } => {
            let s = session().await?;
            send(s.post(&format!("/v1/bindings/{point}/canary/promote"))).await?
        }
        PluginCommand::Rollback { point } => {
            let s = session().await?;
            send(s.delete(&format!("/v1/bindings/{point}/canary"))).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(std::process::ExitCode::SUCCESS)
}
