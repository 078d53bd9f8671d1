//! The command line: `serve`, `token create|list|revoke`, `check-config`, `--help`, `--version`.

use crate::config::{Config, ConfigError};
use crate::gateway::Gateway;
use crate::oauth::OAuthServer;
use crate::server::HttpServer;
use crate::tokens::{self, TokenStore};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "\
mcp-gateway: one authenticated door to a household's MCP servers

USAGE:
    mcp-gateway serve [--config PATH] [--listen ADDR]
    mcp-gateway token create NAME [ACCESS] [--config PATH]
    mcp-gateway token access NAME [ACCESS] [--config PATH]   (replaces its access)
    mcp-gateway token list [--config PATH]
    mcp-gateway token revoke NAME [--config PATH]
    mcp-gateway check-config --config PATH
    mcp-gateway reload [--config PATH]                (the running gateway re-reads its config)
    mcp-gateway healthcheck [--config PATH] [--url URL]   (exit 0 if /health answers 200)
    mcp-gateway oauth set-password [--config PATH]     (reads the password from stdin)
    mcp-gateway oauth client add NAME --redirect-uri URL [--confidential] [--config PATH]
    mcp-gateway oauth list [--config PATH]
    mcp-gateway oauth revoke ID [--config PATH]
    mcp-gateway --help | --version

OPTIONS:
    --config PATH   JSON config file (default: $MCP_GATEWAY_CONFIG, else the built-in
                    defaults: listen on 127.0.0.1:8080, state in ./mcp-gateway-state)
    --listen ADDR   address to listen on, overriding the config (e.g. 0.0.0.0:8080)

ACCESS (for token create and token access; none: the token may reach everything):
    --server NAME   only this server (repeat for more)
    --allow GLOB    only tools and prompts whose names (as clients see them) match
    --deny GLOB     never tools and prompts whose names match (wins over --allow)
    --read-only     only tools marked read-only
    --profile NAME  the rule of the config's profile NAME instead (alone)
    --tool-view V   token create: full (every tool, the default) or search (tools/list shows
                    only gateway__search_tools, gateway__call_tool and the pinned tools)

ENVIRONMENT:
    MCP_GATEWAY_CONFIG   config file path when --config is not given
    MCP_GATEWAY_LOG      log level: error, warn, info (default), debug, trace
";

/// A parsed command line.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// Config file.
        config: Option<PathBuf>,
        /// Listen address override.
        listen: Option<String>,
    },
    /// Create a token.
    TokenCreate {
        /// Token name.
        name: String,
        /// What it may reach.
        access: TokenAccess,
        /// Config file.
        config: Option<PathBuf>,
    },
    /// Replace a token's access.
    TokenAccess {
        /// Token name.
        name: String,
        /// What it may reach from now on.
        access: TokenAccess,
        /// Config file.
        config: Option<PathBuf>,
    },
    /// List tokens.
    TokenList {
        /// Config file.
        config: Option<PathBuf>,
    },
    /// Revoke a token.
    TokenRevoke {
        /// Token name.
        name: String,
        /// Config file.
        config: Option<PathBuf>,
    },
    /// Tell the running gateway to re-read its config.
    Reload {
        /// Config file (its state folder holds the PID file).
        config: Option<PathBuf>,
    },
    /// Probe `/health`.
    Healthcheck {
        /// Config file (its listen address is probed).
        config: Option<PathBuf>,
        /// The URL to probe instead.
        url: Option<String>,
    },
    /// Check a config file.
    CheckConfig {
        /// Config file.
        config: Option<PathBuf>,
    },
    /// Set the OAuth owner password (read from stdin).
    OAuthSetPassword {
        /// Config file.
        config: Option<PathBuf>,
    },
    /// Pre-register an OAuth client.
    OAuthClientAdd {
        /// Client name.
        name: String,
        /// Its redirect URIs.
        redirect_uris: Vec<String>,
        /// Give it a secret.
        confidential: bool,
        /// Config file.
        config: Option<PathBuf>,
    },
    /// List OAuth clients and grants.
    OAuthList {
        /// Config file.
        config: Option<PathBuf>,
    },
    /// End an OAuth grant or client.
    OAuthRevoke {
        /// Grant or client id.
        id: String,
        /// Config file.
        config: Option<PathBuf>,
    },
    /// Print usage.
    Help,
    /// Print the version.
    Version,
}

/// The access flags of `token create` and `token access`.
#[derive(Debug, Default, PartialEq)]
pub struct TokenAccess {
    /// The rule given by `--server`, `--allow`, `--deny` and `--read-only`.
    pub rule: crate::policy::AccessRule,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--tool-view` (token create only).
    pub tool_view: Option<crate::tool_view::ToolView>,
}

/// Parses arguments (without the program name). `env_config` is `$MCP_GATEWAY_CONFIG`.
pub fn parse(args: &[String], env_config: Option<String>) -> Result<Command, String> {
    let mut positional = Vec::new();
    let mut config = None;
    let mut listen = None;
    let mut redirect_uris = Vec::new();
    let mut confidential = false;
    let mut access = TokenAccess::default();
    let mut servers: Vec<String> = Vec::new();
    let mut url = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        // The flag's value: after `=`, or the next argument.
        let mut value = |missing: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| iter.next().cloned())
                .ok_or_else(|| missing.to_string())
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--config" | "-c" => config = Some(PathBuf::from(value("--config needs a file path")?)),
            "--listen" | "-l" => {
                listen = Some(value("--listen needs an address such as 127.0.0.1:8080")?)
            }
            "--redirect-uri" => redirect_uris.push(value("--redirect-uri needs a URL")?),
            "--confidential" => confidential = true,
            "--url" => {
                url = Some(value(
                    "--url needs a URL such as http://127.0.0.1:8080/health",
                )?)
            }
            "--server" => servers.push(value("--server needs a server name")?),
            "--allow" => access
                .rule
                .allow
                .push(value("--allow needs a glob such as 'home__light*'")?),
            "--deny" => access
                .rule
                .deny
                .push(value("--deny needs a glob such as '*unlock*'")?),
            "--read-only" => access.rule.read_only = true,
            "--profile" => {
                access.profile = Some(value("--profile needs a profile name from the config")?)
            }
            "--tool-view" => {
                let text = value("--tool-view needs full or search")?;
                access.tool_view =
                    Some(crate::tool_view::ToolView::parse(&text).ok_or_else(|| {
                        format!("--tool-view takes full or search, not \"{text}\"")
                    })?);
            }
            f if f.starts_with('-') => return Err(format!("unknown option {f}")),
            _ => positional.push(arg.as_str()),
        }
    }
    let config = config.or_else(|| env_config.filter(|s| !s.is_empty()).map(PathBuf::from));
    if !servers.is_empty() {
        access.rule.servers = Some(servers);
    }
    let has_access = !access.rule.is_everything() || access.profile.is_some();
    if access.profile.is_some() && !access.rule.is_everything() {
        return Err("--profile stands alone: the profile's rule replaces --server, --allow, --deny and --read-only".to_string());
    }
    let token_access = |cmd: &[&str]| {
        if has_access && !matches!(cmd, ["token", "create", _] | ["token", "access", _]) {
            Err("--server, --allow, --deny, --read-only and --profile apply to token create and token access only".to_string())
        } else {
            Ok(())
        }
    };
    token_access(positional.as_slice())?;
    if access.tool_view.is_some() && !matches!(positional.as_slice(), ["token", "create", _]) {
        return Err("--tool-view applies to token create only (to change a token's view, revoke it and create it again)".to_string());
    }
    let reject_listen = |cmd: &str| {
        if listen.is_some() {
            Err(format!("--listen does not apply to {cmd}"))
        } else {
            Ok(())
        }
    };
    match positional.as_slice() {
        [] => Err("no command given".to_string()),
        ["help"] => Ok(Command::Help),
        ["version"] => Ok(Command::Version),
        ["serve"] => Ok(Command::Serve { config, listen }),
        ["token", "create", name] => reject_listen("token").map(|_| Command::TokenCreate {
            name: name.to_string(),
            access,
            config,
        }),
        ["token", "access", name] => reject_listen("token").map(|_| Command::TokenAccess {
            name: name.to_string(),
            access,
            config,
        }),
        ["token", "revoke", name] => reject_listen("token").map(|_| Command::TokenRevoke {
            name: name.to_string(),
            config,
        }),
        ["token", "list"] => reject_listen("token").map(|_| Command::TokenList { config }),
        ["token", ..] => Err("use: token create NAME [ACCESS] | token access NAME [ACCESS] | token list | token revoke NAME".to_string()),
        ["check-config"] => reject_listen("check-config").map(|_| Command::CheckConfig { config }),
        ["reload"] => reject_listen("reload").map(|_| Command::Reload { config }),
        ["healthcheck"] => Ok(Command::Healthcheck { config, url }),
        ["oauth", "set-password"] => Ok(Command::OAuthSetPassword { config }),
        ["oauth", "list"] => Ok(Command::OAuthList { config }),
        ["oauth", "revoke", id] => Ok(Command::OAuthRevoke { id: id.to_string(), config }),
        ["oauth", "client", "add", name] if !redirect_uris.is_empty() => Ok(Command::OAuthClientAdd {
            name: name.to_string(),
            redirect_uris,
            confidential,
            config,
        }),
        ["oauth", ..] => Err("use: oauth set-password | oauth client add NAME --redirect-uri URL [--confidential] | oauth list | oauth revoke ID".to_string()),
        [other, ..] => Err(format!("unknown command \"{other}\"")),
    }
}

/// Runs the program; returns the exit code.
pub fn main_with_args(args: Vec<String>) -> i32 {
    let command = match parse(&args, std::env::var("MCP_GATEWAY_CONFIG").ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return 2;
        }
    };
    match command {
        Command::Help => {
            print!("{USAGE}");
            0
        }
        Command::Version => {
            println!("mcp-gateway {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Command::Reload { config } => {
            // A config that fails checking would be refused by the gateway anyway: say so here.
            // `${NAME}`s are not checked: the gateway's environment has them, this shell may not.
            let checked = match &config {
                Some(path) => match Config::load_for_state(path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprint!("{e}");
                        if !matches!(e, ConfigError::Invalid(_)) {
                            eprintln!();
                        }
                        eprintln!("not reloaded: the running gateway keeps its current config");
                        return 1;
                    }
                },
                None => Config::embedded_default(),
            };
            match crate::service::signal_reload(&checked.state_dir) {
                Ok(pid) => {
                    println!("Asked the gateway (process {pid}) to reload its config; its log says what changed.");
                    0
                }
                Err(e) => fail(e),
            }
        }
        Command::Healthcheck { config, url } => with_state_config(config, |c| {
            let url = url.unwrap_or_else(|| crate::service::health_url(&c.listen));
            match crate::service::probe(&url, Duration::from_secs(3)) {
                Ok(()) => {
                    println!("healthy: {url}");
                    0
                }
                Err(e) => fail(e),
            }
        }),
        Command::CheckConfig { config: None } => {
            eprintln!("error: check-config needs --config PATH (or MCP_GATEWAY_CONFIG)");
            2
        }
        Command::CheckConfig { config: Some(path) } => match Config::load(&path) {
            Ok(config) => {
                for warning in crate::catalog::naming_warnings(&config.servers) {
                    eprintln!("warning: {warning}");
                }
                println!(
                    "{}: OK ({} backend(s), listen {}, state in {})",
                    path.display(),
                    config.servers.len(),
                    config.listen,
                    config.state_dir.display()
                );
                0
            }
            Err(e) => {
                eprint!("{e}");
                if !matches!(e, ConfigError::Invalid(_)) {
                    eprintln!();
                }
                1
            }
        },
        Command::TokenCreate {
            name,
            access,
            config,
        } => with_access(
            config,
            access,
            |c, access, shown| match tokens::create_with_view(
                &c.state_dir,
                &name,
                access.rule,
                access.profile,
                access.tool_view.unwrap_or_default(),
            ) {
                Ok(token) => {
                    let view = access.tool_view.unwrap_or_default().as_str();
                    println!("Created token \"{name}\" with access: {shown}, tool view: {view} (state in {}). It is shown only this once; store it now:", c.state_dir.display());
                    println!("{token}");
                    0
                }
                Err(e) => fail(e),
            },
        ),
        Command::TokenAccess {
            name,
            access,
            config,
        } => with_access(config, access, |c, access, shown| match tokens::set_access(
            &c.state_dir,
            &name,
            access.rule,
            access.profile,
        ) {
            Ok(()) => {
                println!("Token \"{name}\" now has access: {shown}. A running gateway uses it from the next request.");
                0
            }
            Err(e) => fail(e),
        }),
        Command::TokenRevoke { name, config } => {
            with_state_config(config, |c| match tokens::revoke(&c.state_dir, &name) {
                Ok(()) => {
                    println!("Revoked token \"{name}\".");
                    0
                }
                Err(e) => fail(e),
            })
        }
        Command::TokenList { config } => {
            with_state_config(config, |c| match tokens::list(&c.state_dir) {
                Ok(list) if list.is_empty() => {
                    println!("No tokens. Create one with: mcp-gateway token create NAME");
                    0
                }
                Ok(list) => {
                    println!(
                        "{:<24} {:<22} {:<22} ACCESS",
                        "NAME", "CREATED", "LAST USED"
                    );
                    for (record, used) in list {
                        println!(
                            "{:<24} {:<22} {:<22} {}",
                            record.name,
                            format_time(record.created),
                            used.map(format_time).unwrap_or_else(|| "never".into()),
                            record.describe_access()
                        );
                    }
                    0
                }
                Err(e) => fail(e),
            })
        }
        Command::OAuthSetPassword { config } => with_oauth(config, |oauth| {
            let mut line = String::new();
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprint!("New owner password (input is shown): ");
            }
            if let Err(e) = std::io::stdin().read_line(&mut line) {
                return fail(format!("cannot read the password from stdin: {e}"));
            }
            match oauth.set_password(line.trim_end_matches(['\r', '\n'])) {
                Ok(()) => {
                    println!("The owner password is set; the consent page asks for it.");
                    0
                }
                Err(e) => fail(e.description),
            }
        }),
        Command::OAuthClientAdd {
            name,
            redirect_uris,
            confidential,
            config,
        } => with_oauth(config, |oauth| {
            let method = if confidential {
                "client_secret_post"
            } else {
                "none"
            };
            match oauth.register(&name, redirect_uris, method, "cli") {
                Ok((client, secret)) => {
                    println!(
                        "Registered OAuth client \"{}\".",
                        crate::untrusted::for_log(&client.name)
                    );
                    if let Some(secret) = secret {
                        println!("client_id: {}", client.client_id);
                        println!("Its client secret is shown only this once:");
                        println!("{secret}");
                    } else {
                        println!("{}", client.client_id);
                    }
                    0
                }
                Err(e) => fail(e.description),
            }
        }),
        Command::OAuthList { config } => with_oauth(config, |oauth| match oauth.list() {
            Ok((clients, grants)) => {
                println!("CLIENTS");
                // Names, ids and URIs come from outsiders (registration needs no login):
                // control characters are shown escaped, never sent to the terminal.
                use crate::untrusted::for_log as shown;
                for c in &clients {
                    println!(
                        "  {}  {}  ({}, {}, registered {})",
                        shown(&c.client_id),
                        shown(&c.name),
                        shown(&c.auth_method),
                        shown(&c.source),
                        format_time(c.created)
                    );
                    for uri in &c.redirect_uris {
                        println!("      redirect {}", shown(uri));
                    }
                }
                println!("GRANTS");
                for g in &grants {
                    let servers = g
                        .servers
                        .as_ref()
                        .map(|s| s.join(","))
                        .unwrap_or_else(|| "all servers".into());
                    println!(
                        "  {}  client {}  {}  since {}  access until {}  refresh until {}",
                        shown(&g.id),
                        shown(&g.client_id),
                        shown(&servers),
                        format_time(g.created),
                        format_time(g.access_expires),
                        format_time(g.refresh_expires)
                    );
                }
                0
            }
            Err(e) => fail(e.description),
        }),
        Command::OAuthRevoke { id, config } => {
            with_oauth(config, |oauth| match oauth.revoke_grant(&id) {
                Ok(true) => {
                    println!("Revoked {id}.");
                    0
                }
                Ok(false) => fail(format!(
                    "no client or grant {id} (hint: `mcp-gateway oauth list` shows the ids)"
                )),
                Err(e) => fail(e.description),
            })
        }
        Command::Serve { config, listen } => with_config(config, |c| serve(c, listen)),
    }
}

/// The access flags in words, as `token list` shows them.
fn describe(access: &TokenAccess) -> String {
    match &access.profile {
        Some(profile) => format!("profile={profile}"),
        None => access.rule.describe(),
    }
}

/// For `token create` and `token access`: runs `run` with the state config, the access flags
/// (checked against the config) and their description.
fn with_access(
    config: Option<PathBuf>,
    access: TokenAccess,
    run: impl FnOnce(&Config, TokenAccess, String) -> i32,
) -> i32 {
    with_state_config(config, |c| {
        if let Err(e) = check_access(&c, &access) {
            return fail(e);
        }
        let shown = describe(&access);
        run(&c, access, shown)
    })
}

/// Refuses access flags that name a server or profile the config does not have (a typo would
/// otherwise make a token that reaches nothing).
fn check_access(config: &Config, access: &TokenAccess) -> Result<(), String> {
    if let Some(profile) = &access.profile {
        if !config.profiles.contains_key(profile) {
            let known: Vec<&str> = config.profiles.keys().map(String::as_str).collect();
            return Err(format!(
                "the config has no profile \"{profile}\" (profiles: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    for server in access.rule.servers.iter().flatten() {
        if !config.servers.iter().any(|s| &s.name == server) {
            return Err(format!(
                "the config has no server \"{server}\" (hint: --server takes a name under mcpServers)"
            ));
        }
    }
    Ok(())
}

fn fail(e: impl std::fmt::Display) -> i32 {
    eprintln!("error: {e}");
    1
}

fn with_config(path: Option<PathBuf>, run: impl FnOnce(Config) -> i32) -> i32 {
    load_then(path, Config::load, run)
}

/// For the oauth commands: the OAuth state of the configured state folder.
fn with_oauth(path: Option<PathBuf>, run: impl FnOnce(&OAuthServer) -> i32) -> i32 {
    with_state_config(path, |c| {
        match OAuthServer::open(&c.state_dir, c.oauth.clone()) {
            Ok(oauth) => run(&oauth),
            Err(e) => fail(e.description),
        }
    })
}

/// For the token commands: the backends' `${SECRET}`s need not be set.
fn with_state_config(path: Option<PathBuf>, run: impl FnOnce(Config) -> i32) -> i32 {
    load_then(path, Config::load_for_state, run)
}

fn load_then(
    path: Option<PathBuf>,
    load: fn(&std::path::Path) -> Result<Config, ConfigError>,
    run: impl FnOnce(Config) -> i32,
) -> i32 {
    let config = match path {
        Some(p) => match load(&p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        },
        None => Config::embedded_default(),
    };
    run(config)
}

/// `YYYY-MM-DD HH:MM:SS` UTC.
pub fn format_time(secs: u64) -> String {
    let (year, month, day) = crate::logging::civil_date(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

static STOP: AtomicBool = AtomicBool::new(false);

static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_reload_signal(_: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn init_logging() {
    crate::logging::init();
}

fn serve(mut config: Config, listen: Option<String>) -> i32 {
    init_logging();
    let listen_override = listen.clone();
    if let Some(addr) = listen {
        config.listen = addr;
    }
    let state_dir = config.state_dir.clone();
    if let Err(e) = crate::store::ensure_dir(&config.state_dir) {
        return fail(format!(
            "cannot create the state folder {}: {e}",
            config.state_dir.display()
        ));
    }
    let tokens = match TokenStore::open(&config.state_dir) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    if tokens.count() == 0 {
        match tokens::create(&config.state_dir, "default") {
            Ok(token) => {
                println!("No bearer token existed, so one named \"default\" was created. It is shown only this once:");
                println!("{token}");
            }
            Err(e) => return fail(e),
        }
    }
    let listen = config.listen.clone();
    let no_backends = config.servers.is_empty();
    let source = config.source.clone();
    let oauth = match OAuthServer::open(&config.state_dir, config.oauth.clone()) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let gateway = Gateway::start(config, tokens, oauth);
    let server = match HttpServer::start(Arc::clone(&gateway), &listen) {
        Ok(s) => s,
        Err(e) => {
            gateway.stop();
            return fail(e);
        }
    };
    let addr = server.local_addr;
    eprintln!(
        "mcp-gateway {} listening on http://{addr} (MCP endpoint http://{addr}/mcp)",
        env!("CARGO_PKG_VERSION")
    );
    if no_backends {
        eprintln!(
            "No backends configured yet. Put them in a JSON config file in the mcpServers format, e.g.\n  {{\"mcpServers\": {{\"files\": {{\"command\": \"npx\", \"args\": [\"-y\", \"@modelcontextprotocol/server-filesystem\", \"/srv\"]}}}}}}\nthen run: mcp-gateway serve --config that-file.json"
        );
    } else if let Some(path) = &source {
        log::info!("config {}", path.display());
    }
    // SAFETY: installing handlers that only store to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(
            libc::SIGHUP,
            on_reload_signal as *const () as libc::sighandler_t,
        );
    }
    if let Err(e) = crate::service::write_pid_file(&state_dir) {
        log::warn!(
            "cannot write {} in {}: {e} (`mcp-gateway reload` will not find this process; SIGHUP still works)",
            crate::service::PID_FILE,
            state_dir.display()
        );
    }
    let mut ticks = 0u64;
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if RELOAD.swap(false, Ordering::SeqCst) {
            reload(&gateway, source.as_deref(), &listen_override);
        }
        ticks += 1;
        if ticks % 600 == 0 {
            gateway.tokens.flush_usage();
        }
    }
    log::info!("stopping");
    server.shutdown();
    gateway.stop();
    crate::service::remove_pid_file(&state_dir);
    0
}

/// Re-reads the config file after SIGHUP and hands it to the gateway; a config that fails
/// checking is refused with every problem logged, and the running one stays.
fn reload(gateway: &Gateway, source: Option<&std::path::Path>, listen: &Option<String>) {
    let Some(path) = source else {
        log::warn!(
            "SIGHUP: nothing to reload (the gateway runs on built-in defaults, without --config)"
        );
        return;
    };
    match Config::load(path) {
        Ok(mut config) => {
            if let Some(addr) = listen {
                config.listen = addr.clone();
            }
            gateway.reload(config);
        }
        Err(e) => {
            for line in e.to_string().lines().filter(|l| !l.trim().is_empty()) {
                log::error!("reload refused: {line}");
            }
            log::error!(
                "reload refused: {} has problems; the gateway keeps running with its current config",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(
            parse(&args("serve"), None),
            Ok(Command::Serve {
                config: None,
                listen: None
            })
        );
        assert_eq!(
            parse(&args("serve --config a.json --listen 0.0.0.0:1"), None),
            Ok(Command::Serve {
                config: Some("a.json".into()),
                listen: Some("0.0.0.0:1".into())
            })
        );
        assert_eq!(
            parse(&args("serve"), Some("env.json".into())),
            Ok(Command::Serve {
                config: Some("env.json".into()),
                listen: None
            })
        );
        assert_eq!(
            parse(&args("token create laptop --config=x.json"), None),
            Ok(Command::TokenCreate {
                name: "laptop".into(),
                access: TokenAccess::default(),
                config: Some("x.json".into())
            })
        );
        let Ok(Command::TokenCreate { access, .. }) =
            parse(&args("token create phone --tool-view search"), None)
        else {
            panic!("token create --tool-view did not parse");
        };
        assert_eq!(access.tool_view, Some(crate::tool_view::ToolView::Search));
        assert!(
            matches!(parse(&args("token create x --tool-view tiny"), None), Err(e) if e.contains("full or search"))
        );
        assert!(
            matches!(parse(&args("token access x --tool-view search"), None), Err(e) if e.contains("token create only"))
        );
        let Ok(Command::TokenCreate { access, .. }) = parse(
            &args("token create kids --server house --allow house__* --deny=*unlock* --read-only"),
            None,
        ) else {
            panic!("token create with access flags did not parse");
        };
        assert_eq!(
            access.rule.describe(),
            "servers=house allow=house__* deny=*unlock* read-only"
        );
        assert_eq!(
            parse(&args("token access kids --profile kids"), None),
            Ok(Command::TokenAccess {
                name: "kids".into(),
                access: TokenAccess {
                    rule: crate::policy::AccessRule::everything(),
                    profile: Some("kids".into()),
                    tool_view: None,
                },
                config: None
            })
        );
        assert!(
            parse(&args("token create a --profile kids --read-only"), None)
                .unwrap_err()
                .contains("--profile stands alone")
        );
        assert!(parse(&args("token list --read-only"), None)
            .unwrap_err()
            .contains("token create and token access only"));
        assert_eq!(
            parse(&args("token list"), None),
            Ok(Command::TokenList { config: None })
        );
        assert_eq!(
            parse(&args("token revoke a"), None),
            Ok(Command::TokenRevoke {
                name: "a".into(),
                config: None
            })
        );
        assert_eq!(
            parse(&args("check-config --config c.json"), None),
            Ok(Command::CheckConfig {
                config: Some("c.json".into())
            })
        );
        assert_eq!(parse(&args("--version"), None), Ok(Command::Version));
        assert_eq!(parse(&args("serve --help"), None), Ok(Command::Help));
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        assert!(parse(&args("serv"), None)
            .unwrap_err()
            .contains("unknown command"));
        assert!(parse(&args("serve --lisen x"), None)
            .unwrap_err()
            .contains("unknown option"));
        assert!(parse(&args("serve --config"), None).is_err());
        assert!(parse(&args("token"), None).is_err());
        assert!(parse(&args(""), None).is_err());
    }

    #[test]
    fn check_config_with_only_naming_warnings_exits_zero() {
        let dir = std::env::temp_dir().join(format!("mcpgw-cli-naming-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("config.json");
        let config = r#"{"mcpServers": {"a": {"url": "http://127.0.0.1:9/mcp", "prefix": ""},
                                         "b": {"url": "http://127.0.0.1:9/mcp", "prefix": ""}}}"#;
        std::fs::write(&path, config).expect("write config");
        let check = |p: &std::path::Path| {
            main_with_args(args(&format!("check-config --config {}", p.display())))
        };
        assert_eq!(check(&path), 0);
        std::fs::write(
            &path,
            r#"{"mcpServers": {"a": {"url": "http://x", "prefix": "a__"}}}"#,
        )
        .expect("write config");
        assert_eq!(check(&path), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn formats_times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_795_000_000), "2026-11-18 11:06:40");
    }
}
