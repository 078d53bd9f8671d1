//! The owner's page as HTML: the sign-in page, the dashboard (backends, recent activity,
//! tokens, OAuth, connect) and short message pages. Pure functions of the data they are given,
//! so every value from backends, the audit log and clients passes through [`escape_html`] in
//! one place and the unit tests below can feed them hostile text.
//!
//! The style and the one small script are inline, allowed by their SHA-256 in the page's
//! Content-Security-Policy (see [`csp`]); no element carries a `style` attribute or an event
//! handler, and nothing is fetched from anywhere.

use super::activity::{Filter, Row};
use super::session::Flash;
use crate::face::oauth::escape_html as esc;
use crate::latency::Summary;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::sync::OnceLock;

/// The page's style sheet.
pub const STYLE: &str = include_str!("page.css");
/// The page's script: copy buttons and confirmations (the page works without it).
pub const SCRIPT: &str = include_str!("page.js");

/// The Content-Security-Policy of every owner page: nothing but the inline style and script
/// whose hashes it names, forms only to this origin, never in a frame.
pub fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = |text: &str| crate::mcp::base64::encode(&Sha256::digest(text.as_bytes()));
        format!(
            "default-src 'none'; style-src 'sha256-{}'; script-src 'sha256-{}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            hash(STYLE),
            hash(SCRIPT)
        )
    })
}

/// One backend row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendRow {
    /// Config name.
    pub name: String,
    /// `up`, `down`, `starting`, `disabled`.
    pub state: String,
    /// `stdio`, `streamable-http`, `sse`.
    pub transport: String,
    /// The protocol revision it speaks, when connected.
    pub protocol: String,
    /// Tools it offers.
    pub tools: u64,
    /// Its last error.
    pub last_error: String,
    /// Calls since start.
    pub calls: u64,
    /// Failed calls since start.
    pub failures: u64,
    /// The last hour's latency.
    pub latency: Summary,
}

/// One static token (never the token or its hash).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenRow {
    /// Its name.
    pub name: String,
    /// Created (seconds since the epoch).
    pub created: u64,
    /// Last used.
    pub last_used: Option<u64>,
    /// Its access rule, as `token list` shows it.
    pub access: String,
}

/// One OAuth grant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrantRow {
    /// Its id.
    pub id: String,
    /// The servers it may use, described.
    pub servers: String,
    /// Approved (seconds since the epoch).
    pub created: u64,
    /// Last use seen by this process, else its last token issue.
    pub last_used: Option<u64>,
}

/// One OAuth client with its grants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientRow {
    /// Its id.
    pub id: String,
    /// Its name (the client chose it: untrusted).
    pub name: String,
    /// The hosts of its redirect URIs.
    pub redirect_hosts: Vec<String>,
    /// Registered (seconds since the epoch).
    pub created: u64,
    /// Its grants.
    pub grants: Vec<GrantRow>,
}

/// Everything the dashboard shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// This gateway's version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Tools offered in all.
    pub tools: u64,
    /// The session's CSRF token.
    pub csrf: String,
    /// The one-time message.
    pub flash: Option<Flash>,
    /// Backends in config order.
    pub backends: Vec<BackendRow>,
    /// Recent activity, or why there is none to show.
    pub activity: Result<Vec<Row>, String>,
    /// The activity filter in force.
    pub filter: Filter,
    /// Static tokens, or why they cannot be read.
    pub tokens: Result<Vec<TokenRow>, String>,
    /// Profiles a new token may name.
    pub profiles: Vec<String>,
    /// OAuth clients, or why they cannot be read.
    pub clients: Result<Vec<ClientRow>, String>,
    /// The URL clients reach the gateway at.
    pub base: String,
}

const HEAD: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"referrer\" content=\"no-referrer\">";

fn head(title: &str) -> String {
    format!(
        "{HEAD}<title>{}</title><style>{STYLE}</style></head><body>",
        esc(title)
    )
}

/// `YYYY-MM-DD HH:MM` UTC, or "never".
fn when(secs: Option<u64>) -> String {
    match secs {
        Some(s) if s > 0 => {
            let full = crate::cli::format_time(s);
            format!("{} UTC", &full[..full.len().saturating_sub(3)])
        }
        _ => "never".to_string(),
    }
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

fn millis(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// A small SVG line of the per-minute medians (oldest left), scaled to the largest; minutes
/// without calls leave gaps, a lone minute is a dot.
pub fn sparkline(per_minute: &[Option<f64>]) -> String {
    const W: f64 = 120.0;
    const H: f64 = 24.0;
    let top = per_minute.iter().flatten().fold(0.0f64, |a, b| a.max(*b));
    if top <= 0.0 || per_minute.is_empty() {
        return String::new();
    }
    let step = W / (per_minute.len().max(2) - 1) as f64;
    let mut d = String::new();
    let mut run = 0;
    for (i, value) in per_minute.iter().enumerate() {
        match value {
            Some(v) => {
                let x = i as f64 * step;
                let y = H - 2.0 - (v / top) * (H - 4.0);
                let _ = write!(d, "{}{x:.1},{y:.1}", if run == 0 { "M" } else { "L" });
                run += 1;
            }
            None => {
                if run == 1 {
                    d.push_str("h1");
                }
                run = 0;
            }
        }
    }
    if run == 1 {
        d.push_str("h1");
    }
    format!("<svg class=\"spark\" width=\"120\" height=\"24\" viewBox=\"0 0 120 24\" role=\"img\" aria-label=\"median latency per minute, last hour\"><path d=\"M0,23.5H120\" stroke=\"#ccc\"/><path d=\"{d}\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"2\" stroke-linecap=\"round\" stroke-linejoin=\"round\"/></svg>")
}

/// `row` with each `<td` labelled by `labels` in turn (`data-label`, shown before the cell when
/// a narrow screen stacks the cells of a row). Untrusted text in `row` is escaped, so every
/// `<td` in it is ours.
fn labelled(row: &str, labels: &[&str]) -> String {
    let mut parts = row.split("<td");
    let mut out = parts.next().unwrap_or("").to_string();
    for (i, part) in parts.enumerate() {
        match labels.get(i).filter(|l| !l.is_empty()) {
            Some(label) => {
                let _ = write!(out, "<td data-label=\"{label}\"{part}");
            }
            None => {
                let _ = write!(out, "<td{part}");
            }
        }
    }
    out
}

/// A table's head row with `labels`, in a `cards` table (rows stack on a narrow screen).
fn table_head(labels: &[&str]) -> String {
    let mut out = String::from("<div class=\"scroll\"><table class=\"cards\"><tr>");
    for label in labels {
        let _ = write!(out, "<th>{label}</th>");
    }
    out.push_str("</tr>");
    out
}

const BACKEND_COLUMNS: &[&str] = &[
    "Backend",
    "State",
    "Transport",
    "Protocol",
    "Tools",
    "Median, last hour",
    "Calls since start",
    "Errors",
    "Last error",
];
const ACTIVITY_COLUMNS: &[&str] = &[
    "Time (UTC)",
    "Principal",
    "Action",
    "Server",
    "Name",
    "Outcome",
    "Duration",
];
const TOKEN_COLUMNS: &[&str] = &["Name", "Created", "Last used", "Access", ""];
const OAUTH_COLUMNS: &[&str] = &[
    "Client",
    "Redirects to",
    "Grant: servers",
    "Approved",
    "Last use",
    "",
];

fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf_token\" value=\"{}\">",
        esc(csrf)
    )
}

/// The sign-in page: name, version, health, and the password form (or, without an owner
/// password, how to set one). `problem` says why the last attempt failed.
pub fn login(version: &str, has_password: bool, problem: Option<&str>) -> String {
    let mut html = head("mcp-gateway");
    let _ = write!(
        html,
        "<main class=\"login\"><h1>mcp-gateway <small>{}</small></h1><p><span class=\"up\">Healthy</span>: the gateway is running.</p>",
        esc(version)
    );
    if let Some(problem) = problem {
        let _ = write!(
            html,
            "<p class=\"flash bad\" role=\"alert\">{}</p>",
            esc(problem)
        );
    }
    if has_password {
        html.push_str("<form method=\"post\" action=\"/owner/login\" class=\"box\"><label for=\"password\">Owner password</label><br><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required autofocus><br><button type=\"submit\">Sign in</button></form>");
    } else {
        html.push_str("<div class=\"note\"><p>No owner password is set yet, so nobody can sign in here. On the gateway, run:</p><pre>mcp-gateway oauth set-password --config /path/to/config.json</pre><p>It reads the password from the terminal (stdin). The same password approves OAuth clients such as Claude.ai.</p></div>");
    }
    html.push_str("</main></body></html>");
    html
}

/// A short page: a title, a message and a way back.
pub fn message(title: &str, text: &str) -> String {
    let mut html = head(title);
    let _ = write!(
        html,
        "<main class=\"login\"><h1>{}</h1><p>{}</p><p><a href=\"/\">Back to the owner's page</a></p></main></body></html>",
        esc(title),
        esc(text)
    );
    html
}

/// The dashboard.
pub fn dashboard(d: &Dashboard) -> String {
    let mut html = head("mcp-gateway");
    let up = d.backends.iter().filter(|b| b.state == "up").count();
    let _ = write!(
        html,
        "<header><div><h1>mcp-gateway <small>{v}</small></h1><span class=\"{health}\">{up} of {all} backends up</span> <span class=\"muted\">· {tools} tools · up {uptime}</span></div><form method=\"post\" action=\"/owner/logout\" class=\"inline\">{csrf}<button type=\"submit\">Sign out</button></form></header>\
<nav><a href=\"#backends\">Backends</a><a href=\"#activity\">Activity</a><a href=\"#tokens\">Tokens</a><a href=\"#oauth\">OAuth</a><a href=\"#connect\">Connect</a></nav>",
        v = esc(&d.version),
        health = if up == d.backends.len() { "up" } else { "down" },
        all = d.backends.len(),
        tools = d.tools,
        uptime = duration(d.uptime_secs),
        csrf = csrf_field(&d.csrf),
    );
    match &d.flash {
        Some(Flash::Done(text)) => {
            let _ = write!(html, "<p class=\"flash\" role=\"status\">{}</p>", esc(text));
        }
        Some(Flash::Problem(text)) => {
            let _ = write!(
                html,
                "<p class=\"flash bad\" role=\"alert\">{}</p>",
                esc(text)
            );
        }
        _ => {}
    }
    backends(&mut html, d);
    activity(&mut html, d);
    tokens(&mut html, d);
    oauth(&mut html, d);
    connect(&mut html, d);
    let _ = write!(html, "<script>{SCRIPT}</script></body></html>");
    html
}

fn backends(html: &mut String, d: &Dashboard) {
    html.push_str("<section id=\"backends\"><h2>Backends</h2>");
    if d.backends.is_empty() {
        html.push_str("<p class=\"muted\">No backends are configured: add them under <code>mcpServers</code> in the config.</p></section>");
        return;
    }
    html.push_str(&table_head(BACKEND_COLUMNS));
    for b in &d.backends {
        let state_class = match b.state.as_str() {
            "up" | "down" | "starting" | "disabled" => b.state.as_str(),
            _ => "muted",
        };
        let median = match b.latency.median_ms {
            Some(ms) => format!(
                "≈{} <span class=\"muted\">({} call{})</span><br>{}",
                millis(ms),
                b.latency.calls,
                if b.latency.calls == 1 { "" } else { "s" },
                sparkline(&b.latency.per_minute)
            ),
            None => "<span class=\"muted\">no calls</span>".to_string(),
        };
        html.push_str(&labelled(
            &format!(
            "<tr><td><b>{name}</b></td><td class=\"{state_class}\">{state}</td><td>{transport}</td><td>{protocol}</td><td>{tools}</td><td>{median}</td><td>{calls}</td><td>{failures}</td><td class=\"err\">{error}</td></tr>",
            name = esc(&b.name),
            state = esc(&b.state),
            transport = esc(&b.transport),
            protocol = esc(&b.protocol),
            tools = b.tools,
            calls = b.calls,
            failures = b.failures,
            error = esc(&b.last_error),
        ),
        BACKEND_COLUMNS,
        ));
    }
    html.push_str("</table></div></section>");
}

fn activity(html: &mut String, d: &Dashboard) {
    let _ = write!(
        html,
        "<section id=\"activity\"><h2>Recent activity</h2><form method=\"get\" action=\"/#activity\" class=\"filter\"><label>Principal <input type=\"text\" name=\"principal\" value=\"{p}\" size=\"12\"></label><label>Server <input type=\"text\" name=\"server\" value=\"{s}\" size=\"10\"></label><button type=\"submit\">Filter</button> <a href=\"/#activity\">All</a></form>",
        p = esc(&d.filter.principal),
        s = esc(&d.filter.server),
    );
    match &d.activity {
        Err(why) => {
            let _ = write!(html, "<p class=\"muted\">{}</p>", esc(why));
        }
        Ok(rows) if rows.is_empty() => {
            html.push_str("<p class=\"muted\">Nothing yet.</p>");
        }
        Ok(rows) => {
            html.push_str(&table_head(ACTIVITY_COLUMNS));
            for r in rows {
                let outcome_class = match r.outcome.as_str() {
                    "ok" | "error" | "refused" => r.outcome.as_str(),
                    _ => "muted",
                };
                let detail = if r.detail.is_empty() {
                    String::new()
                } else {
                    format!("<br><span class=\"err\">{}</span>", esc(&r.detail))
                };
                let took = r.duration_ms.map(millis).unwrap_or_default();
                html.push_str(&labelled(
                    &format!(
                    "<tr><td>{time}</td><td>{principal}</td><td>{action}</td><td>{server}</td><td>{name}</td><td class=\"{outcome_class}\">{outcome}{detail}</td><td>{took}</td></tr>",
                    time = esc(&r.time),
                    principal = esc(&r.principal),
                    action = esc(&r.action),
                    server = esc(&r.server),
                    name = esc(&r.name),
                    outcome = esc(&r.outcome),
                ),
                ACTIVITY_COLUMNS,
                ));
            }
            html.push_str("</table></div>");
        }
    }
    html.push_str("</section>");
}

fn tokens(html: &mut String, d: &Dashboard) {
    html.push_str("<section id=\"tokens\"><h2>Tokens</h2>");
    if let Some(Flash::NewToken { name, token }) = &d.flash {
        let _ = write!(
            html,
            "<div class=\"flash\" role=\"status\"><p>Token <b>{name}</b> created. Copy it now: it is shown only this once.</p><p><code id=\"new-token\">{token}</code> <button type=\"button\" data-copy=\"new-token\" hidden>Copy</button></p></div>",
            name = esc(name),
            token = esc(token),
        );
    }
    match &d.tokens {
        Err(why) => {
            let _ = write!(html, "<p class=\"flash bad\">{}</p>", esc(why));
        }
        Ok(rows) if rows.is_empty() => html.push_str("<p class=\"muted\">No tokens.</p>"),
        Ok(rows) => {
            html.push_str(&table_head(TOKEN_COLUMNS));
            for t in rows {
                html.push_str(&labelled(
                    &format!(
                    "<tr><td><b>{name}</b></td><td>{created}</td><td>{used}</td><td>{access}</td><td><form method=\"post\" action=\"/owner/tokens/revoke\" class=\"inline\" data-confirm=\"Revoke the token {name}? Clients using it are refused at once.\">{csrf}<input type=\"hidden\" name=\"name\" value=\"{name}\"><button type=\"submit\" class=\"danger\">Revoke</button></form></td></tr>",
                    name = esc(&t.name),
                    created = when(Some(t.created)),
                    used = when(t.last_used),
                    access = esc(&t.access),
                    csrf = csrf_field(&d.csrf),
                ),
                TOKEN_COLUMNS,
                ));
            }
            html.push_str("</table></div>");
        }
    }
    let _ = write!(
        html,
        "<form method=\"post\" action=\"/owner/tokens\" class=\"box\">{csrf}<h3>New token</h3><label for=\"token-name\">Name (letters, digits, . _ -)</label><br><input type=\"text\" id=\"token-name\" name=\"name\" required maxlength=\"64\" pattern=\"[A-Za-z0-9._\\-]{{1,64}}\" placeholder=\"laptop\"><br><p>Servers: ",
        csrf = csrf_field(&d.csrf)
    );
    for b in &d.backends {
        let _ = write!(
            html,
            "<label><input type=\"checkbox\" name=\"server\" value=\"{s}\" checked> {s}</label>",
            s = esc(&b.name)
        );
    }
    if d.backends.is_empty() {
        html.push_str("<span class=\"muted\">none configured (the gateway's own tools)</span>");
    }
    html.push_str("</p><label><input type=\"checkbox\" name=\"read_only\" value=\"1\"> Read-only tools only</label><br><label><input type=\"checkbox\" name=\"tool_view\" value=\"search\"> Search view (small models)</label>");
    if !d.profiles.is_empty() {
        html.push_str(
            "<br><label>or profile <select name=\"profile\"><option value=\"\">(none)</option>",
        );
        for p in &d.profiles {
            let _ = write!(html, "<option>{}</option>", esc(p));
        }
        html.push_str("</select></label>");
    }
    html.push_str("<br><button type=\"submit\">Create token</button></form><p class=\"muted\">Same as <code>mcp-gateway token create NAME [--server S]... [--read-only] [--tool-view search]</code> and <code>token revoke NAME</code>.</p></section>");
}

fn oauth(html: &mut String, d: &Dashboard) {
    html.push_str("<section id=\"oauth\"><h2>OAuth</h2>");
    match &d.clients {
        Err(why) => {
            let _ = write!(html, "<p class=\"flash bad\">{}</p>", esc(why));
        }
        Ok(clients) if clients.is_empty() => html.push_str("<p class=\"muted\">No OAuth clients (Claude.ai and other apps appear here once they sign in).</p>"),
        Ok(clients) => {
            html.push_str(&table_head(OAUTH_COLUMNS));
            for c in clients {
                let hosts = c
                    .redirect_hosts
                    .iter()
                    .map(|h| esc(h))
                    .collect::<Vec<_>>()
                    .join(", ");
                let forget = format!(
                    "<form method=\"post\" action=\"/owner/oauth/revoke\" class=\"inline\" data-confirm=\"Remove the client {name} and all its grants?\">{csrf}<input type=\"hidden\" name=\"id\" value=\"{id}\"><button type=\"submit\" class=\"danger\">Remove client</button></form>",
                    name = esc(&c.name),
                    id = esc(&c.id),
                    csrf = csrf_field(&d.csrf),
                );
                if c.grants.is_empty() {
                    html.push_str(&labelled(
                        &format!(
                        "<tr><td><b>{name}</b></td><td>{hosts}</td><td class=\"muted\">no grant</td><td>{created}</td><td></td><td>{forget}</td></tr>",
                        name = esc(&c.name),
                        created = when(Some(c.created)),
                    ),
                    OAUTH_COLUMNS,
                    ));
                }
                for g in &c.grants {
                    html.push_str(&labelled(
                        &format!(
                        "<tr><td><b>{name}</b></td><td>{hosts}</td><td>{servers}</td><td>{created}</td><td>{used}</td><td><form method=\"post\" action=\"/owner/oauth/revoke\" class=\"inline\" data-confirm=\"Revoke this grant of {name}?\">{csrf}<input type=\"hidden\" name=\"id\" value=\"{id}\"><button type=\"submit\" class=\"danger\">Revoke</button></form> {forget}</td></tr>",
                        name = esc(&c.name),
                        servers = esc(&g.servers),
                        created = when(Some(g.created)),
                        used = when(g.last_used),
                        csrf = csrf_field(&d.csrf),
                        id = esc(&g.id),
                    ),
                    OAUTH_COLUMNS,
                    ));
                }
            }
            html.push_str("</table></div>");
        }
    }
    html.push_str("<p class=\"muted\">Same as <code>mcp-gateway oauth list</code> and <code>oauth revoke ID</code>.</p></section>");
}

fn connect(html: &mut String, d: &Dashboard) {
    let base = esc(&d.base);
    let https = d.base.starts_with("https://");
    let _ = write!(
        html,
        "<section id=\"connect\"><h2>Connect</h2><p>Clients reach this gateway at <code>{base}</code>{proxy}. Make a token above for each device or app (OAuth apps need none).</p>\
<h3>Claude.ai (and Claude Desktop's connectors)</h3><ol><li>Settings → Connectors → Add custom connector.</li><li>URL: <code>{base}/mcp</code></li><li>Claude opens this gateway's consent page: tick the servers, enter the owner password, Allow.</li></ol>{claude_note}\
<h3>Claude Desktop (config file)</h3><p>In <code>claude_desktop_config.json</code>, with a token:</p><pre>{{\"mcpServers\": {{\"gateway\": {{\"command\": \"npx\", \"args\": [\"mcp-remote\", \"{base}/mcp\", \"--header\", \"Authorization: Bearer YOUR_TOKEN\"]}}}}}}</pre>\
<h3>Open WebUI</h3><ul><li><b>OpenAI connection</b> (models with our tools): Admin Settings → Connections → OpenAI API → add: URL <code>{base}/v1</code>, key: a token.</li>\
<li><b>MCP tool server</b>: Admin Settings → External Tools → add, type MCP (Streamable HTTP): URL <code>{base}/mcp</code>, auth Bearer, key: a token.</li>\
<li><b>OpenAPI tool server</b>: the same, type OpenAPI: URL <code>{base}</code>, OpenAPI spec <code>openapi.json</code> (that is <code>{base}/openapi.json</code>), auth Bearer, key: a token. One server only (to switch servers on and off per chat): URL <code>{base}/openapi/SERVER</code>.</li></ul>\
<h3>Any MCP client</h3><p>Streamable HTTP at <code>{base}/mcp</code> with the header <code>Authorization: Bearer YOUR_TOKEN</code>.</p></section>",
        proxy = if https { "" } else { " (set <code>public_url</code> in the config to the address clients use)" },
        claude_note = if https {
            ""
        } else {
            "<p class=\"note\">Claude.ai only connects to a public <code>https://</code> address: put the gateway behind a TLS proxy or tunnel and set <code>public_url</code>.</p>"
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<script>alert(1)</script>\"'&";

    fn hostile_dashboard() -> Dashboard {
        Dashboard {
            version: "1.0".into(),
            csrf: "c5rf".into(),
            backends: vec![BackendRow {
                name: HOSTILE.into(),
                state: "up\"><script>".into(),
                transport: HOSTILE.into(),
                protocol: HOSTILE.into(),
                last_error: HOSTILE.into(),
                latency: Summary {
                    median_ms: Some(12.0),
                    calls: 3,
                    per_minute: vec![None, Some(12.0), Some(20.0), None],
                },
                ..BackendRow::default()
            }],
            activity: Ok(vec![Row {
                time: HOSTILE.into(),
                principal: HOSTILE.into(),
                action: HOSTILE.into(),
                server: HOSTILE.into(),
                name: HOSTILE.into(),
                outcome: HOSTILE.into(),
                detail: HOSTILE.into(),
                duration_ms: Some(1.0),
            }]),
            filter: Filter {
                principal: HOSTILE.into(),
                server: HOSTILE.into(),
            },
            tokens: Ok(vec![TokenRow {
                name: HOSTILE.into(),
                access: HOSTILE.into(),
                ..TokenRow::default()
            }]),
            profiles: vec![HOSTILE.into()],
            clients: Ok(vec![ClientRow {
                id: HOSTILE.into(),
                name: HOSTILE.into(),
                redirect_hosts: vec![HOSTILE.into()],
                grants: vec![GrantRow {
                    id: HOSTILE.into(),
                    servers: HOSTILE.into(),
                    ..GrantRow::default()
                }],
                ..ClientRow::default()
            }]),
            base: "https://gw.example<script>".into(),
            flash: Some(Flash::Problem(HOSTILE.into())),
            uptime_secs: 5,
            tools: 2,
        }
    }

    #[test]
    fn every_untrusted_value_is_escaped() {
        let html = dashboard(&hostile_dashboard());
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("up\"><script>"));
        assert!(!html.contains("example<script>"));
        assert_eq!(html.matches("<script>").count(), 1, "only our own script");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
        let login = login("<b>", true, Some(HOSTILE));
        assert!(!login.contains("<script>") && !login.contains("<b>"));
        let msg = message(HOSTILE, HOSTILE);
        assert!(!msg.contains("<script>"));
    }

    #[test]
    fn no_element_needs_an_unhashed_style_or_script() {
        let html = dashboard(&hostile_dashboard());
        assert!(!html.contains(" style="));
        assert!(!html.contains(" onclick=") && !html.contains(" onsubmit="));
        assert_eq!(html.matches("<style>").count(), 1);
        assert!(html.contains(&format!("<style>{STYLE}</style>")));
        assert!(html.contains(&format!("<script>{SCRIPT}</script>")));
        let policy = csp();
        assert!(policy.starts_with("default-src 'none'; style-src 'sha256-"));
        assert!(policy.contains("frame-ancestors 'none'") && policy.contains("form-action 'self'"));
        assert!(!policy.contains("unsafe"));
    }

    #[test]
    fn a_new_token_is_shown_once_with_a_copy_button_and_forms_carry_the_csrf_token() {
        let mut d = hostile_dashboard();
        d.flash = Some(Flash::NewToken {
            name: "laptop".into(),
            token: "mgw_secret".into(),
        });
        let html = dashboard(&d);
        assert_eq!(html.matches("mgw_secret").count(), 1);
        assert!(html.contains("data-copy=\"new-token\""));
        let posts = html.matches("method=\"post\"").count();
        let csrf = html.matches("name=\"csrf_token\" value=\"c5rf\"").count();
        assert_eq!(posts, csrf, "every POST form carries the CSRF token");
        assert!(posts >= 5);
    }

    #[test]
    fn sparklines_draw_gaps_and_dots() {
        assert_eq!(sparkline(&[None, None]), "");
        let line = sparkline(&[Some(1.0), Some(2.0), None, Some(2.0), None]);
        assert!(line.starts_with("<svg") && line.ends_with("</svg>"));
        let d = line
            .split("d=\"")
            .nth(2)
            .and_then(|s| s.split('"').next())
            .unwrap_or("");
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(d.matches('L').count(), 1, "{d}");
        assert!(d.ends_with("h1"), "a lone minute is a dot: {d}");
        assert!(
            d.starts_with("M0.0,12.0"),
            "half the largest, half-way up: {d}"
        );
        assert!(d.contains(",2.0"), "the largest at the top: {d}");
    }

    #[test]
    fn cells_are_labelled_for_narrow_screens() {
        assert_eq!(
            labelled("<tr><td>a</td><td class=\"x\">&lt;td</td><td>c</td></tr>", &["A", "B", ""]),
            "<tr><td data-label=\"A\">a</td><td data-label=\"B\" class=\"x\">&lt;td</td><td>c</td></tr>"
        );
        let html = dashboard(&hostile_dashboard());
        assert_eq!(
            html.matches("<td").count(),
            html.matches("<td data-label=").count() + 2,
            "every cell but the two of buttons is labelled"
        );
    }

    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(when(None), "never");
        assert_eq!(when(Some(0)), "never");
        assert_eq!(when(Some(86_400)), "1970-01-02 00:00 UTC");
        assert_eq!(millis(1.26), "1.3 ms");
        assert_eq!(millis(250.0), "250 ms");
        assert_eq!(millis(12_500.0), "12.5 s");
        assert_eq!(duration(3 * 86_400), "3 days");
    }
}
