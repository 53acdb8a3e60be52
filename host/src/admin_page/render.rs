//! The admin page's HTML, built as strings from typed views. Every value that came from a
//! request, a plugin or the store goes through `escape`; secret setting values are never
//! read here, only their names.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use crate::config::Config;
use crate::ops::PluginView;
use crate::store::outbox::{CallbackCounts, CallbackSummary};
use crate::store::transactions::Transaction;

/// The statuses the transaction filter offers, in the order a payment moves through them.
pub const STATUSES: [&str; 7] = [
    "processing",
    "pending",
    "unknown",
    "approved",
    "declined",
    "failed",
    "escalated",
];

pub struct Data {
    /// Pending and unknown transactions: work the gateway still owes an answer for.
    pub open: Vec<Transaction>,
    pub listed: &'static str,
    pub listed_rows: Vec<Transaction>,
    pub counts: CallbackCounts,
    pub dead: Vec<CallbackSummary>,
    pub waiting: Vec<CallbackSummary>,
}

pub struct View<'a> {
    pub plugins: Vec<PluginView>,
    pub config: &'a Config,
    pub replay_enabled: bool,
    pub notice: Option<&'a str>,
    pub now_ms: i64,
    pub data: Data,
}

/// HTML-escapes text for element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn shell(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/admin/page.css\"></head>\
         <body>{body}</body></html>\n",
        escape(title)
    )
}

pub fn login(problem: Option<&str>) -> String {
    let problem = problem
        .map(|p| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(p)))
        .unwrap_or_default();
    shell(
        "psp-gateway admin: sign in",
        &format!(
            "<main class=\"narrow\"><h1>psp-gateway admin</h1>{problem}\
             <form method=\"post\" action=\"/admin/login\">\
             <label for=\"token\">Admin token (<code>[admin] token</code>)</label>\
             <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Sign in</button></form></main>"
        ),
    )
}

pub fn unavailable(reason: &str) -> String {
    shell(
        "psp-gateway admin: unavailable",
        &format!(
            "<main class=\"narrow\"><h1>psp-gateway admin</h1>\
             <p class=\"error\" role=\"alert\">{}</p><p><a href=\"/admin\">Try again</a></p></main>",
            escape(reason)
        ),
    )
}

pub fn page(v: &View) -> String {
    let mut b = String::new();
    b.push_str(
        "<header><h1>psp-gateway admin</h1><nav><a href=\"#plugins\">Plugins</a>\
                <a href=\"#gateways\">Gateways</a><a href=\"#open\">Open work</a>\
                <a href=\"#transactions\">Transactions</a><a href=\"#outbox\">Outbox</a></nav>",
    );
    if v.config.admin.token.is_some() {
        b.push_str("<form method=\"post\" action=\"/admin/logout\" class=\"inline\"><button type=\"submit\">Sign out</button></form>");
    }
    b.push_str("</header><main>");
    if let Some(n) = v.notice {
        let _ = write!(b, "<p class=\"notice\" role=\"status\">{}</p>", escape(n));
    }
    plugins(&mut b, &v.plugins);
    gateways(&mut b, v.config);
    open_work(&mut b, &v.data.open, v.now_ms);
    transactions(&mut b, v.data.listed, &v.data.listed_rows);
    outbox(&mut b, v);
    let _ = write!(b, "<footer>Rendered at {}</footer></main>", time(v.now_ms));
    shell("psp-gateway admin", &b)
}

fn plugins(b: &mut String, plugins: &[PluginView]) {
    b.push_str("<section id=\"plugins\"><h2>Plugins</h2>");
    if plugins.is_empty() {
        b.push_str("<p class=\"empty\">No plugin loaded.</p></section>");
        return;
    }
    b.push_str(
        "<table><thead><tr><th>File</th><th>Plugin</th><th>Version</th><th>Contract</th>\
                <th>Hash</th><th>Loaded at</th><th>Last load error</th></tr></thead><tbody>",
    );
    for p in plugins {
        let (plugin, version, contract, hash, at) = match &p.loaded {
            Some(l) => (
                escape(&l.plugin_name),
                escape(&l.version),
                escape(&l.contract),
                escape(l.content_hash.get(..12).unwrap_or(&l.content_hash)),
                format!(
                    "{} ({} ms, {})",
                    humantime::format_rfc3339_seconds(l.loaded_at),
                    l.load_ms,
                    match l.source {
                        crate::plugins::cache::ArtifactSource::Compiled => "compiled",
                        crate::plugins::cache::ArtifactSource::Cache => "cached",
                    }
                ),
            ),
            None => Default::default(),
        };
        let error = p
            .last_error
            .as_ref()
            .map(|e| {
                format!(
                    "<span class=\"badge bad\">{}</span> {}",
                    humantime::format_rfc3339_seconds(e.at),
                    escape(&e.message)
                )
            })
            .unwrap_or_default();
        let _ = write!(
            b,
            "<tr data-plugin=\"{name}\"><td>{name}</td><td>{plugin}</td><td>{version}</td>\
             <td>{contract}</td><td><code>{hash}</code></td><td>{at}</td><td>{error}</td></tr>",
            name = escape(&p.name)
        );
    }
    b.push_str("</tbody></table></section>");
}

fn gateways(b: &mut String, config: &Config) {
    b.push_str("<section id=\"gateways\"><h2>Gateways</h2><table><thead><tr><th>Gateway</th>\
                <th>Plugin</th><th>Fronts</th><th>Allowed hosts</th><th>Settings</th></tr></thead><tbody>");
    for g in &config.gateways {
        let mut fronts = Vec::new();
        if g.shared_secret.is_some() {
            fronts.push("Commerce Layer");
        }
        if g.pgm_auth_token.is_some() || g.pgm_auth.as_deref() == Some("none") {
            fronts.push("PGM");
        }
        let fronts = if fronts.is_empty() {
            "<span class=\"badge bad\">none</span>".to_owned()
        } else {
            fronts.join(", ")
        };
        let hosts = g
            .allowed_hosts
            .iter()
            .map(|h| format!("<code>{}</code>", escape(h)))
            .collect::<Vec<_>>()
            .join(" ");
        // Names only: values are secrets (API keys, webhook secrets).
        let settings = g
            .settings
            .keys()
            .map(|k| {
                format!(
                    "<code>{}</code>&nbsp;=&nbsp;<span class=\"masked\">••••••</span>",
                    escape(k)
                )
            })
            .collect::<Vec<_>>()
            .join("<br>");
        let _ = write!(
            b,
            "<tr data-gateway=\"{id}\"><td>{id}</td><td>{plugin}</td><td>{fronts}</td><td>{hosts}</td><td>{settings}</td></tr>",
            id = escape(&g.id),
            plugin = escape(&g.plugin)
        );
    }
    b.push_str("</tbody></table></section>");
}

fn open_work(b: &mut String, rows: &[Transaction], now_ms: i64) {
    b.push_str("<section id=\"open\"><h2>Open work: pending and unknown</h2>");
    if rows.is_empty() {
        b.push_str("<p class=\"empty\">Nothing pending or unknown.</p></section>");
        return;
    }
    b.push_str("<table><thead><tr><th>Status</th><th>Gateway</th><th>Action</th><th>Token</th>\
                <th>Amount</th><th>Created</th><th>Checks</th><th>Next check</th></tr></thead><tbody>");
    for t in rows {
        let next = t
            .next_check_at
            .map(|at| {
                let secs = (at - now_ms) / 1000;
                if secs > 0 {
                    format!("{} (in {secs} s)", time(at))
                } else {
                    format!("{} (due)", time(at))
                }
            })
            .unwrap_or_else(|| "—".into());
        let _ = write!(
            b,
            "<tr data-token=\"{token}\"><td>{status}</td><td>{gw}</td><td>{action}</td>\
             <td><code>{token}</code></td><td>{amount}</td><td>{created}</td><td>{checks}</td><td>{next}</td></tr>",
            status = badge(t.status.as_str()),
            gw = escape(&t.gateway),
            action = t.action.as_str(),
            token = escape(&t.transaction_token),
            amount = amount(t),
            created = time(t.created_at),
            checks = t.checks,
        );
    }
    b.push_str("</tbody></table></section>");
}

fn transactions(b: &mut String, listed: &str, rows: &[Transaction]) {
    b.push_str("<section id=\"transactions\"><h2>Recent transactions</h2><p class=\"filters\">");
    for s in STATUSES {
        if s == listed {
            let _ = write!(b, "<strong aria-current=\"true\">{s}</strong> ");
        } else {
            let _ = write!(b, "<a href=\"/admin?status={s}#transactions\">{s}</a> ");
        }
    }
    b.push_str("</p>");
    if rows.is_empty() {
        let _ = write!(
            b,
            "<p class=\"empty\">No {listed} transaction.</p></section>"
        );
        return;
    }
    b.push_str(
        "<table><thead><tr><th>Created</th><th>Gateway</th><th>Front</th><th>Action</th>\
                <th>Token</th><th>Amount</th><th>Status</th><th>Error</th></tr></thead><tbody>",
    );
    for t in rows {
        let _ = write!(
            b,
            "<tr data-token=\"{token}\"><td>{created}</td><td>{gw}</td><td>{front}</td><td>{action}</td>\
             <td><code>{token}</code></td><td>{amount}</td><td>{status}</td><td>{error}</td></tr>",
            created = time(t.created_at),
            gw = escape(&t.gateway),
            front = escape(&t.front),
            action = t.action.as_str(),
            token = escape(&t.transaction_token),
            amount = amount(t),
            status = badge(t.status.as_str()),
            error = escape(t.error_code.as_deref().unwrap_or("")),
        );
    }
    b.push_str("</tbody></table></section>");
}

fn outbox(b: &mut String, v: &View) {
    let c = &v.data.counts;
    let _ = write!(
        b,
        "<section id=\"outbox\"><h2>Outbox</h2><p>{} callback(s) owed to the platform, \
         {} of them dead letters.</p><h3>Dead letters</h3>",
        c.undelivered, c.dead
    );
    if v.data.dead.is_empty() {
        b.push_str("<p class=\"empty\">No dead letter.</p>");
    } else {
        if !v.replay_enabled {
            b.push_str(
                "<p class=\"hint\">Replay needs <code>[admin] token</code> in the config.</p>",
            );
        }
        callbacks(b, &v.data.dead, v.replay_enabled);
    }
    b.push_str("<h3>Waiting for delivery</h3>");
    if v.data.waiting.is_empty() {
        b.push_str("<p class=\"empty\">Nothing waiting.</p>");
    } else {
        callbacks(b, &v.data.waiting, false);
    }
    b.push_str("</section>");
}

fn callbacks(b: &mut String, rows: &[CallbackSummary], replay: bool) {
    b.push_str(
        "<table><thead><tr><th>Id</th><th>Gateway</th><th>Action id</th><th>URL</th>\
                <th>Attempts</th><th>Last error</th><th>Queued</th><th></th></tr></thead><tbody>",
    );
    for c in rows {
        let button = if replay {
            format!(
                "<form method=\"post\" action=\"/admin/page/callbacks/{}/replay\" class=\"inline\">\
                 <button type=\"submit\">Replay</button></form>",
                c.id
            )
        } else {
            String::new()
        };
        let _ = write!(
            b,
            "<tr data-callback=\"{id}\"><td>{id}</td><td>{gw}</td><td><code>{action}</code></td>\
             <td><code>{url}</code></td><td>{attempts}</td><td>{error}</td><td>{queued}</td><td>{button}</td></tr>",
            id = c.id,
            gw = escape(&c.gateway),
            action = escape(c.action_id.as_deref().unwrap_or("")),
            url = escape(&c.url),
            attempts = c.attempts,
            error = escape(c.last_error.as_deref().unwrap_or("")),
            queued = time(c.created_at),
        );
    }
    b.push_str("</tbody></table>");
}

fn badge(status: &str) -> String {
    let class = match status {
        "approved" => "good",
        "declined" | "failed" | "escalated" => "bad",
        _ => "wait",
    };
    format!("<span class=\"badge {class}\">{status}</span>")
}

fn amount(t: &Transaction) -> String {
    format!(
        "{}.{:02} {}",
        t.amount_cents / 100,
        (t.amount_cents % 100).abs(),
        escape(&t.currency)
    )
}

fn time(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
    }

    #[test]
    fn a_login_problem_is_shown_escaped() {
        let page = login(Some("<b>no</b>"));
        assert!(page.contains("&lt;b&gt;no&lt;/b&gt;"));
        assert!(page.contains("action=\"/admin/login\""));
    }
}
