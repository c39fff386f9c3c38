//! The `engage` command: run the server, manage tenants.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use engage::config::ServerConfig;

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
    },
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
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
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ENGAGE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut config = load_config(&cli)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve {
            listen,
            admin_token,
        } => {
            if let Some(l) = listen {
                config.listen = l;
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
    }
}

async fn create_tenant(
    config: &ServerConfig,
    name: &str,
    admin_token: Option<String>,
) -> anyhow::Result<()> {
    if engage::store::Store::is_locked(&config.data_dir) {
        // A server holds the database: ask it.
        let server: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(config.data_dir.join("server.json"))
                .context("a server holds the data directory but left no server.json")?,
        )?;
        let addr = server["listen"]
            .as_str()
            .context("server.json has no listen address")?;
        let token = match admin_token {
            Some(t) => t,
            None => {
                let creds: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
                    config.data_dir.join("credentials.json"),
                )?)?;
                creds["admin_token"]
                    .as_str()
                    .context("pass --admin-token or set ENGAGE_ADMIN_TOKEN")?
                    .to_owned()
            }
        };
        let resp = reqwest::Client::new()
            .post(format!("http://{addr}/admin/tenants"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        if !status.is_success() {
            anyhow::bail!(
                "{}",
                body["error"]["message"]
                    .as_str()
                    .unwrap_or("the server refused")
            );
        }
        println!("{body}");
        return Ok(());
    }
    let mut config = config.clone();
    config.demo_tenant = false;
    let state = engage::server::open(&config).await?;
    let creds = engage::tenants::create(&state.store, name).await?;
    state.plugins.provision(&creds.tenant).await?;
    println!("{}", serde_json::to_string(&creds)?);
    Ok(())
}
