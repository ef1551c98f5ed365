//! Health-check settings: the `check = { ... }` table of a service, merged
//! with a backend's own `check` override, validated into a `Check`.

use std::{ops::Range, time::Duration};

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub kind: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    /// One status code or a list of them.
    pub expect_status: Option<Spanned<toml::Value>>,
    pub expect_body: Option<Spanned<String>>,
    pub tls: Option<Spanned<bool>>,
    pub tls_verify: Option<Spanned<bool>>,
    pub port: Option<Spanned<i64>>,
    pub command: Option<Spanned<Vec<String>>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub retries: Option<Spanned<i64>>,
    pub retry_delay: Option<Spanned<String>>,
    pub rise: Option<Spanned<i64>>,
    pub initial: Option<Spanned<String>>,
    /// "direct" (to the backend's address) or "dataplane" (to the VIP,
    /// through the balancer's forwarding).
    pub via: Option<Spanned<String>>,
}

impl RawCheck {
    /// `backend` over `service`, key by key. A backend that names another
    /// kind keeps only the service's timing, not its kind-specific keys.
    pub fn merge(service: Option<&RawCheck>, backend: Option<&RawCheck>) -> RawCheck {
        let s = service.cloned().unwrap_or_default();
        let Some(b) = backend.cloned() else { return s };
        let same_kind = match (&b.kind, &s.kind) {
            (Some(bk), Some(sk)) => bk.get_ref() == sk.get_ref(),
            (Some(_), None) => false,
            (None, _) => true,
        };
        let k = if same_kind {
            s.clone()
        } else {
            RawCheck::default()
        };
        RawCheck {
            kind: b.kind.or(s.kind),
            path: b.path.or(k.path),
            host: b.host.or(k.host),
            expect_status: b.expect_status.or(k.expect_status),
            expect_body: b.expect_body.or(k.expect_body),
            tls: b.tls.or(k.tls),
            tls_verify: b.tls_verify.or(k.tls_verify),
            port: b.port.or(k.port),
            command: b.command.or(k.command),
            interval: b.interval.or(s.interval),
            timeout: b.timeout.or(s.timeout),
            retries: b.retries.or(s.retries),
            retry_delay: b.retry_delay.or(s.retry_delay),
            rise: b.rise.or(s.rise),
            initial: b.initial.or(s.initial),
            via: b.via.or(s.via),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Always healthy.
    None,
    Http(HttpProbe),
    /// Connect to the port (the service's unless overridden).
    Tcp {
        port: Option<u16>,
    },
    /// argv; exit 0 = healthy.
    Script {
        command: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    pub path: String,
    /// Host header; the backend's address when unset.
    pub host: Option<String>,
    pub expect_status: Vec<u16>,
    pub expect_body: Option<String>,
    pub tls: bool,
    pub tls_verify: bool,
    pub port: Option<u16>,
}

/// Where a check's connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    /// To the backend's own address, by the kernel's routing (keepalived's way).
    #[default]
    Direct,
    /// To the VIP, forwarded to this backend the way client packets are
    /// (MAC rewrite or tunnel): a backend without its VIP, ARP settings or
    /// decap program fails.
    Dataplane,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initial {
    Down,
    Up,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub probe: Probe,
    pub interval: Duration,
    /// Connect plus the whole answer.
    pub timeout: Duration,
    /// Consecutive failed attempts before an up backend goes down.
    pub retries: u32,
    pub retry_delay: Duration,
    /// Consecutive passes before a down backend comes up.
    pub rise: u32,
    pub initial: Initial,
    pub via: Via,
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_RETRIES: u32 = 3;
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
pub const DEFAULT_RISE: u32 = 1;

impl Default for Check {
    /// No check: the backend is up.
    fn default() -> Self {
        Check {
            probe: Probe::None,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            retry_delay: DEFAULT_RETRY_DELAY,
            rise: DEFAULT_RISE,
            initial: Initial::Up,
            via: Via::Direct,
        }
    }
}

fn span<T>(v: &Option<Spanned<T>>) -> Range<usize> {
    v.as_ref().map(Spanned::span).unwrap_or_default()
}

impl Validator<'_> {
    /// A duration such as "1s", "250ms" or "1m 30s".
    pub(super) fn duration(
        &self,
        v: &Option<Spanned<String>>,
        default: Duration,
        what: &str,
    ) -> Result<Duration, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        humantime::parse_duration(v.get_ref().trim()).map_err(|e| {
            self.err(
                v.span(),
                format!("bad {what} {:?}: {e}", v.get_ref()),
                "a duration with a unit, like \"500ms\", \"2s\" or \"1m\"",
            )
        })
    }

    pub(super) fn check(&self, raw: &RawCheck) -> Result<Check, ConfigError> {
        let kind = raw.kind.as_ref().map_or("none", |k| k.get_ref().as_str());
        let probe = match kind {
            "none" => Probe::None,
            "http" => Probe::Http(self.http(raw)?),
            "tcp" => Probe::Tcp {
                port: self.port(&raw.port)?,
            },
            "script" => Probe::Script {
                command: self.command(raw)?,
            },
            other => {
                return Err(self.err(
                    span(&raw.kind),
                    format!("unknown check kind {other:?}"),
                    "use one of: \"http\", \"tcp\", \"script\", \"none\"",
                ));
            }
        };
        self.only_for(kind, raw)?;
        let interval = self.duration(&raw.interval, DEFAULT_INTERVAL, "interval")?;
        if interval.is_zero() {
            return Err(self.err(
                span(&raw.interval),
                "check interval is zero".into(),
                "use a positive interval between checks, like \"2s\"",
            ));
        }
        let timeout = self.duration(&raw.timeout, DEFAULT_TIMEOUT.min(interval), "timeout")?;
        if timeout.is_zero() {
            return Err(self.err(
                span(&raw.timeout),
                "check timeout is zero".into(),
                "use a positive timeout, like \"1s\"",
            ));
        }
        if timeout > interval {
            return Err(self.err(
                if raw.timeout.is_some() {
                    span(&raw.timeout)
                } else {
                    span(&raw.interval)
                },
                format!(
                    "check timeout {} is longer than its interval {}",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
                "a check must end before the next one starts: lower timeout or raise interval",
            ));
        }
        let retries = self.int(&raw.retries, DEFAULT_RETRIES, 1, 100, "retries")?;
        let rise = self.int(&raw.rise, DEFAULT_RISE, 1, 100, "rise")?;
        let retry_delay = self.duration(&raw.retry_delay, DEFAULT_RETRY_DELAY, "retry_delay")?;
        let initial = match raw.initial.as_ref().map(|i| i.get_ref().as_str()) {
            // Without a check there is nothing to wait for.
            None if probe == Probe::None => Initial::Up,
            None | Some("down") => Initial::Down,
            Some("up") => Initial::Up,
            Some(other) => {
                return Err(self.err(
                    span(&raw.initial),
                    format!("unknown initial state {other:?}"),
                    "use \"down\" (join after the first pass, the default) or \"up\"",
                ));
            }
        };
        let via = match raw.via.as_ref().map(|v| v.get_ref().as_str()) {
            None | Some("direct") => Via::Direct,
            Some("dataplane") if matches!(probe, Probe::Tcp { .. } | Probe::Http(_)) => {
                Via::Dataplane
            }
            Some("dataplane") => {
                return Err(self.err(
                    span(&raw.via),
                    format!("via = \"dataplane\" does not apply to check kind {kind:?}"),
                    "only tcp and http checks open a connection that can go through the data path",
                ));
            }
            Some(other) => {
                return Err(self.err(
                    span(&raw.via),
                    format!("unknown check via {other:?}"),
                    "use \"direct\" (to the backend's address, the default) or \"dataplane\" (to the VIP, through the balancer's forwarding)",
                ));
            }
        };
        Ok(Check {
            probe,
            interval,
            timeout,
            retries,
            retry_delay,
            rise,
            initial,
            via,
        })
    }

    fn http(&self, raw: &RawCheck) -> Result<HttpProbe, ConfigError> {
        let path = match &raw.path {
            None => "/".to_string(),
            Some(p) if p.get_ref().is_empty() => {
                return Err(self.err(
                    p.span(),
                    "empty check path".into(),
                    "give the path to GET, like \"/healthz\" (or leave path out for \"/\")",
                ));
            }
            Some(p) if !p.get_ref().starts_with('/') => {
                return Err(self.err(
                    p.span(),
                    format!("check path {:?} does not start with /", p.get_ref()),
                    "give an absolute path, like \"/healthz\"",
                ));
            }
            Some(p)
                if p.get_ref()
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control()) =>
            {
                return Err(self.err(
                    p.span(),
                    format!(
                        "check path {:?} contains a space or control character",
                        p.get_ref()
                    ),
                    "percent-encode it, like \"/health%20check\"",
                ));
            }
            Some(p) => p.get_ref().clone(),
        };
        if let Some(h) = &raw.host
            && (h.get_ref().is_empty() || h.get_ref().chars().any(|c| c.is_whitespace()))
        {
            return Err(self.err(
                h.span(),
                format!("bad Host header {:?}", h.get_ref()),
                "a host name such as \"www.example.com\", or leave host out to send the backend's address",
            ));
        }
        let expect_status = match &raw.expect_status {
            None => vec![200],
            Some(v) => self.statuses(v)?,
        };
        if let Some(b) = &raw.expect_body
            && b.get_ref().is_empty()
        {
            return Err(self.err(
                b.span(),
                "empty expect_body".into(),
                "give the text the answer must contain, or leave expect_body out",
            ));
        }
        Ok(HttpProbe {
            path,
            host: raw.host.as_ref().map(|h| h.get_ref().clone()),
            expect_status,
            expect_body: raw.expect_body.as_ref().map(|b| b.get_ref().clone()),
            tls: raw.tls.as_ref().is_some_and(|t| *t.get_ref()),
            tls_verify: raw.tls_verify.as_ref().is_none_or(|t| *t.get_ref()),
            port: self.port(&raw.port)?,
        })
    }

    fn statuses(&self, v: &Spanned<toml::Value>) -> Result<Vec<u16>, ConfigError> {
        let bad = |msg: String| {
            self.err(
                v.span(),
                msg,
                "an HTTP status from 100 to 599, or a list of them: expect_status = [200, 204]",
            )
        };
        let items: Vec<&toml::Value> = match v.get_ref() {
            toml::Value::Array(a) if a.is_empty() => {
                return Err(bad("expect_status is an empty list".into()));
            }
            toml::Value::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        items
            .into_iter()
            .map(|i| match i.as_integer() {
                Some(n) if (100..=599).contains(&n) => Ok(n as u16),
                Some(n) => Err(bad(format!("status {n} is outside 100-599"))),
                None => Err(bad(format!("expect_status {i} is not a number"))),
            })
            .collect()
    }

    fn port(&self, v: &Option<Spanned<i64>>) -> Result<Option<u16>, ConfigError> {
        match v {
            None => Ok(None),
            Some(p) if (1..=65535).contains(p.get_ref()) => Ok(Some(*p.get_ref() as u16)),
            Some(p) => Err(self.err(
                p.span(),
                format!("check port {} is out of range", p.get_ref()),
                "use 1-65535, or leave port out to check the service's port",
            )),
        }
    }

    fn command(&self, raw: &RawCheck) -> Result<Vec<String>, ConfigError> {
        match &raw.command {
            Some(c) if !c.get_ref().is_empty() && !c.get_ref()[0].is_empty() => {
                Ok(c.get_ref().clone())
            }
            Some(c) => Err(self.err(
                c.span(),
                "empty check command".into(),
                "give the program and its arguments: command = [\"/usr/local/bin/check\", \"--quick\"]",
            )),
            None => Err(self.err(
                span(&raw.kind),
                "a script check needs a command".into(),
                "add command = [\"/path/to/program\", \"arg\"]; it sees LB_BACKEND_ADDRESS and LB_BACKEND_PORT",
            )),
        }
    }

    /// Keys that mean nothing for `kind` are mistakes, not silently ignored.
    fn only_for(&self, kind: &str, raw: &RawCheck) -> Result<(), ConfigError> {
        let http_only = [
            ("path", span(&raw.path)),
            ("host", span(&raw.host)),
            ("expect_status", span(&raw.expect_status)),
            ("expect_body", span(&raw.expect_body)),
            ("tls", span(&raw.tls)),
            ("tls_verify", span(&raw.tls_verify)),
        ];
        let present = |s: &Range<usize>| s.end > 0;
        let wrong = |key: &str, s: Range<usize>, for_kinds: &str| {
            self.err(
                s,
                format!("{key} does not apply to a {kind} check"),
                &format!("{key} is for {for_kinds} checks; remove it or change kind"),
            )
        };
        if kind != "http"
            && let Some((key, s)) = http_only.into_iter().find(|(_, s)| present(s))
        {
            return Err(wrong(key, s, "http"));
        }
        if kind != "script" && present(&span(&raw.command)) {
            return Err(wrong("command", span(&raw.command), "script"));
        }
        if !matches!(kind, "http" | "tcp") && present(&span(&raw.port)) {
            return Err(wrong("port", span(&raw.port), "http and tcp"));
        }
        Ok(())
    }
}
