//! `toctou-guard report`: the guards' denial lines, summarised for the operator.
//!
//! Reads syslog files (`/var/log/auth.log`: traditional `Mon DD HH:MM:SS host tag[pid]: ...`,
//! rsyslog's ISO 8601 / RFC 3339 stamps, RFC 5424 `<PRI>1 TIMESTAMP HOST APP PROCID ...`, the
//! bare datagrams a guard sends) and journald's `journalctl -o json` (one object per line,
//! in a file or from `--journal`), all auto-detected per line. The denial line itself is
//! read by `toctou_policy::logline`, the module that writes it. Lines tagged by neither
//! guard are skipped; lines of ours that do not parse are counted and listed, never fatal.
//!
//! Times without a zone (traditional syslog) are taken as UTC, in the current year (the
//! previous one if that would put them more than a day in the future). The free fields
//! (`comm`, `tenant`, `path`) are shown as the guards wrote them, escaped (`\xNN`), so what
//! is printed is plain ASCII and can be grepped for in the log.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use toctou_policy::logline::{self, TAGS};

const USAGE: &str =
    "usage: toctou-guard report [--file LOG]... [--journal] [--since TIME] [--json] [--prometheus FILE]";

/// One denial line (deny or audit) as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unix seconds, if the line had a time.
    pub time: Option<i64>,
    /// The pid in the line's header: the guarded process (the shim) or the FUSE daemon.
    pub pid: Option<u32>,
    /// Written by the FUSE daemon (`toctou-guard-fs`), not by the shim in process `pid`.
    pub fs: bool,
    pub audit: bool,
    pub reason: &'static str,
    pub uid: Option<u32>,
    pub suppressed: u64,
    pub comm: String,
    pub tenant: String,
    pub path: String,
    /// The sender was checked against journald's trusted fields (`_UID`, `_EXE`): root, or
    /// a server program running as the uid the line names. A syslog file cannot say.
    pub checked: bool,
}

/// What one line is.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Denial(Event),
    /// Tagged by a guard, `action=config-error`.
    ConfigError,
    /// Tagged by a guard, but not a denial line: why.
    Malformed(String),
    /// A denial line in a journal entry whose trusted fields say a guard did not send it
    /// (anyone may write to `/dev/log` with any tag): why.
    Unverified(String),
    /// Someone else's line.
    Other,
}

/// Counts and first/last seen of one group.
#[derive(Debug, Default, Clone)]
struct Stat {
    count: u64,
    audit: u64,
    first: Option<i64>,
    last: Option<i64>,
}

impl Stat {
    fn add(&mut self, e: &Event) {
        self.count += 1;
        self.audit += u64::from(e.audit);
        if let Some(t) = e.time {
            self.first = Some(self.first.map_or(t, |f| f.min(t)));
            self.last = Some(self.last.map_or(t, |l| l.max(t)));
        }
    }

    fn json(&self) -> Value {
        json!({
            "count": self.count,
            "deny": self.count - self.audit,
            "audit": self.audit,
            "first_seen": self.first.map(iso),
            "last_seen": self.last.map(iso),
        })
    }
}

/// Everything read, grouped.
#[derive(Debug, Default)]
pub struct Summary {
    total: Stat,
    by_tenant: BTreeMap<String, Stat>,
    by_process: BTreeMap<(String, Option<u32>), Stat>,
    /// Distinct pids per `by_process` key (a worker pool's size; a burst from one process).
    pids: BTreeMap<(String, Option<u32>), std::collections::BTreeSet<u32>>,
    by_reason: BTreeMap<&'static str, Stat>,
    by_path: BTreeMap<(String, String), Stat>,
    by_reason_tenant: BTreeMap<(&'static str, String), Stat>,
    per_hour: BTreeMap<i64, u64>,
    suppressed: u64,
    config_errors: u64,
    other: u64,
    /// Before `--since`.
    older: u64,
    /// `(where, why)` of each malformed line of ours.
    malformed: Vec<(String, String)>,
    /// `(where, why)` of each journal entry of ours from a sender that is not a guard.
    unverified: Vec<(String, String)>,
    /// Denials counted whose sender could not be checked (syslog files).
    unchecked: u64,
    sources: Vec<String>,
}

impl Summary {
    fn add(&mut self, line: Line, at: impl FnOnce() -> String, since: Option<i64>) {
        match line {
            Line::Denial(e) => {
                if let Some(s) = since
                    && e.time.is_none_or(|t| t < s)
                {
                    self.older += 1;
                    return;
                }
                self.total.add(&e);
                self.unchecked += u64::from(!e.checked);
                self.by_tenant.entry(e.tenant.clone()).or_default().add(&e);
                self.by_process
                    .entry((e.comm.clone(), e.uid))
                    .or_default()
                    .add(&e);
                if let Some(p) = e.pid {
                    self.pids.entry((e.comm.clone(), e.uid)).or_default().insert(p);
                }
                self.by_reason.entry(e.reason).or_default().add(&e);
                self.by_path
                    .entry((e.path.clone(), e.tenant.clone()))
                    .or_default()
                    .add(&e);
                self.by_reason_tenant
                    .entry((e.reason, e.tenant.clone()))
                    .or_default()
                    .add(&e);
                if let Some(t) = e.time {
                    *self.per_hour.entry(t.div_euclid(3600) * 3600).or_default() += 1;
                }
                self.suppressed += e.suppressed;
            }
            Line::ConfigError => self.config_errors += 1,
            Line::Malformed(why) => self.malformed.push((at(), why)),
            Line::Unverified(why) => self.unverified.push((at(), why)),
            Line::Other => self.other += 1,
        }
    }

    pub fn text(&self) -> String {
        let t = &self.total;
        let mut s = format!(
            "toctou-guard report: {} denial line(s) ({} deny, {} audit) from {}\n",
            t.count,
            t.count - t.audit,
            t.audit,
            self.sources.join(", ")
        );
        s.push_str(&format!(
            "first seen {}, last seen {}; {} malformed line(s) of ours; {} configuration error line(s); \
             {} other line(s) skipped; {} before --since; {} more denial(s) dropped by the guards' rate limit; \
             {} journal entr(y/ies) of ours not sent by a guard, not counted\n",
            show_time(t.first),
            show_time(t.last),
            self.malformed.len(),
            self.config_errors,
            self.other,
            self.older,
            self.suppressed,
            self.unverified.len()
        ));
        if self.unchecked > 0 {
            s.push_str(&format!(
                "{UNCHECKED_NOTE}: {} of the denial line(s) above\n",
                self.unchecked
            ));
        }
        let table = |s: &mut String, title: &str, head: &str, rows: Vec<(String, &Stat)>| {
            s.push_str(&format!(
                "\n{title}\n  {:>7} {:>7} {:>7}  {:<20}  {:<20}  {head}\n",
                "count", "deny", "audit", "first seen", "last seen"
            ));
            for (key, st) in rows {
                s.push_str(&format!(
                    "  {:>7} {:>7} {:>7}  {:<20}  {:<20}  {key}\n",
                    st.count,
                    st.count - st.audit,
                    st.audit,
                    show_time(st.first),
                    show_time(st.last)
                ));
            }
        };
        let none = |v: &str| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.to_string()
            }
        };
        table(
            &mut s,
            "by tenant",
            "tenant",
            self.by_tenant.iter().map(|(k, v)| (none(k), v)).collect(),
        );
        table(
            &mut s,
            "by process",
            "comm uid (distinct pids)",
            self.by_process
                .iter()
                .map(|(k @ (c, u), v)| {
                    (
                        format!(
                            "{} {} ({})",
                            none(c),
                            u.map_or("-".into(), |u| u.to_string()),
                            self.pids.get(k).map_or(0, |p| p.len())
                        ),
                        v,
                    )
                })
                .collect(),
        );
        table(
            &mut s,
            "by reason",
            "reason",
            self.by_reason.iter().map(|(k, v)| (k.to_string(), v)).collect(),
        );
        table(
            &mut s,
            "by path",
            "path (tenant)",
            self.by_path
                .iter()
                .map(|((p, t), v)| (format!("{p} ({})", none(t)), v))
                .collect(),
        );
        s.push_str("\nper hour (UTC)\n");
        for (h, n) in &self.per_hour {
            s.push_str(&format!("  {}  {n}\n", &iso(*h)[..16]));
        }
        for (title, list) in [
            ("malformed lines of ours", &self.malformed),
            (
                "lines of ours not sent by a guard (not counted)",
                &self.unverified,
            ),
        ] {
            if !list.is_empty() {
                s.push_str(&format!("\n{title}\n"));
                for (at, why) in list {
                    s.push_str(&format!("  {at}: {why}\n"));
                }
            }
        }
        s
    }

    pub fn json(&self) -> Value {
        let rows = |it: Vec<(Value, &Stat)>, key: &str| -> Value {
            it.into_iter()
                .map(|(k, st)| {
                    let mut v = st.json();
                    v[key] = k;
                    v
                })
                .collect()
        };
        let mut out = self.total.json();
        out["sources"] = json!(self.sources);
        out["suppressed"] = json!(self.suppressed);
        out["config_errors"] = json!(self.config_errors);
        out["other_lines"] = json!(self.other);
        out["before_since"] = json!(self.older);
        out["malformed"] = self
            .malformed
            .iter()
            .map(|(at, why)| json!({"at": at, "error": why}))
            .collect();
        out["unverified"] = self
            .unverified
            .iter()
            .map(|(at, why)| json!({"at": at, "why": why}))
            .collect();
        out["unchecked_sender"] = json!(self.unchecked);
        out["by_tenant"] = rows(
            self.by_tenant.iter().map(|(k, v)| (json!(k), v)).collect(),
            "tenant",
        );
        out["by_process"] = self
            .by_process
            .iter()
            .map(|((c, u), st)| {
                let mut v = st.json();
                v["comm"] = json!(c);
                v["uid"] = json!(u);
                v["pids"] = json!(self.pids.get(&(c.clone(), *u)).map_or(0, |p| p.len()));
                v
            })
            .collect();
        out["by_reason"] = rows(
            self.by_reason.iter().map(|(k, v)| (json!(k), v)).collect(),
            "reason",
        );
        out["by_path"] = self
            .by_path
            .iter()
            .map(|((p, t), st)| {
                let mut v = st.json();
                v["path"] = json!(p);
                v["tenant"] = json!(t);
                v
            })
            .collect();
        out["per_hour"] = self
            .per_hour
            .iter()
            .map(|(h, n)| json!({"hour": iso(*h), "count": n}))
            .collect();
        out
    }

    /// node_exporter's textfile format.
    pub fn prometheus(&self) -> String {
        let mut s = String::from(
            "# HELP toctou_guard_denials_total Opens refused by toctou-guard (action=deny) or that would be (action=audit), from the denial lines read by toctou-guard report.\n\
             # TYPE toctou_guard_denials_total counter\n",
        );
        for ((reason, tenant), st) in &self.by_reason_tenant {
            s.push_str(&format!(
                "toctou_guard_denials_total{{reason=\"{}\",tenant=\"{}\"}} {}\n",
                label(reason),
                label(tenant),
                st.count
            ));
        }
        for (name, help, v) in [
            (
                "toctou_guard_suppressed_total",
                "Denial lines the guards dropped by their rate limit (their suppressed= counts).",
                self.suppressed,
            ),
            (
                "toctou_guard_malformed_lines_total",
                "Lines tagged toctou-guard or toctou-guard-fs that are not valid denial lines.",
                self.malformed.len() as u64,
            ),
            (
                "toctou_guard_unverified_lines_total",
                "Journal entries tagged toctou-guard or toctou-guard-fs whose sender (_UID, _EXE) is not a guard: not counted as denials.",
                self.unverified.len() as u64,
            ),
            (
                "toctou_guard_config_error_lines_total",
                "action=config-error lines: a guarded process refused to start.",
                self.config_errors,
            ),
        ] {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        }
        if let Some(last) = self.total.last {
            s.push_str(
                "# HELP toctou_guard_last_denial_timestamp_seconds Time of the last denial line read.\n\
                 # TYPE toctou_guard_last_denial_timestamp_seconds gauge\n",
            );
            s.push_str(&format!("toctou_guard_last_denial_timestamp_seconds {last}\n"));
        }
        s
    }
}

/// A label value escaped per the exposition format: `\`, `"` and newline.
pub fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A guard's body (after `TAG[PID]: `), classified.
fn body(tag: &str, pid: Option<u32>, body: &str, time: Option<i64>) -> Line {
    if !TAGS.contains(&tag) {
        return Line::Other;
    }
    if body.starts_with("action=config-error") {
        return Line::ConfigError;
    }
    match logline::parse_denial(body.trim_end_matches(['\r', '\n'])) {
        Ok(d) => Line::Denial(Event {
            time,
            pid,
            fs: tag == TAGS[1],
            audit: d.audit,
            reason: d.reason.as_str(),
            uid: d.uid,
            suppressed: d.suppressed,
            comm: d.comm.to_string(),
            tenant: d.tenant.to_string(),
            path: d.path.to_string(),
            checked: false,
        }),
        Err(e) => Line::Malformed(e.0),
    }
}

/// One line of a log file or of `journalctl -o json`. `now` (Unix seconds) dates
/// traditional stamps, which have no year.
pub fn classify(line: &str, now: i64) -> Line {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.starts_with('{') {
        return journal_entry(line);
    }
    // The datagram itself (`<84>toctou-guard[7]: ...`), as a capture of the socket holds it.
    let is_5424 = line
        .strip_prefix('<')
        .and_then(|r| r.split_once('>'))
        .is_some_and(|(_, r)| r.starts_with("1 "));
    if line.starts_with('<') && !is_5424 {
        return match logline::parse_header(line) {
            Some((tag, pid, b)) => body(tag, Some(pid), b, None),
            None => Line::Other,
        };
    }
    let Some((time, rest)) = syslog_prefix(line, now) else {
        return Line::Other;
    };
    match logline::parse_header(&rest) {
        Some((tag, pid, b)) => body(tag, Some(pid), b, time),
        None => Line::Other,
    }
}

/// `(time, "tag[pid]: body")` after a syslog file's prefix; RFC 5424 lines are rewritten to
/// that form.
fn syslog_prefix(line: &str, now: i64) -> Option<(Option<i64>, String)> {
    // RFC 5424: [<PRI>]1 TIMESTAMP HOST APP PROCID MSGID SD MSG
    let v5424 = match line.strip_prefix('<') {
        Some(r) => r.split_once('>').map(|(_, r)| r),
        None => Some(line),
    }
    .and_then(|r| r.strip_prefix("1 "));
    if let Some(r) = v5424 {
        let mut f = r.splitn(6, ' ');
        let (ts, _host, app, pid, _msgid, rest) =
            (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
        let msg = if let Some(sd) = rest.strip_prefix('[') {
            sd.split_once("] ").map_or("", |(_, m)| m)
        } else {
            rest.strip_prefix("- ").unwrap_or("")
        };
        let msg = msg.trim_start_matches('\u{feff}');
        return Some((iso_time(ts), format!("{app}[{pid}]: {msg}")));
    }
    let (first, rest) = line.split_once(' ')?;
    // rsyslog's RFC 3339 stamp: TIMESTAMP HOST TAG[PID]: MSG
    if let Some(t) = iso_time(first) {
        let (_host, rest) = rest.split_once(' ')?;
        return Some((Some(t), rest.to_string()));
    }
    // Traditional: "Mon DD HH:MM:SS HOST TAG[PID]: MSG" (the day padded with a space).
    let month = MONTHS.iter().position(|m| *m == first)? as u32 + 1;
    let rest = rest.trim_start();
    let (day, rest) = rest.split_once(' ')?;
    let (hms, rest) = rest.split_once(' ')?;
    let (_host, rest) = rest.split_once(' ')?;
    let day: u32 = day.parse().ok()?;
    let secs = hms_secs(hms)?;
    let year = civil(now).0;
    let mut t = unix(year, month, day)? + secs;
    if t > now + 86_400 {
        t = unix(year - 1, month, day)? + secs;
    }
    Some((Some(t), rest.to_string()))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// What a syslog file cannot prove, said wherever its lines are counted.
const UNCHECKED_NOTE: &str = "note: a syslog file does not record who sent a line (any local user can \
     `logger -t toctou-guard ...`); journald's entries do (--journal, or journalctl -o json files)";

/// Did a guard send this journal entry's denial line? journald sets the `_`-fields from the
/// sender's socket credentials and `/proc` (a client cannot set them): the shim's lines come
/// from the guarded server process itself, running as the uid the line names; the FUSE
/// daemon's from root. Root may send anything.
fn sender(v: &Value, e: &Event) -> Result<(), String> {
    let field = |k: &str| v[k].as_str();
    let uid: u32 = field("_UID")
        .and_then(|u| u.parse().ok())
        .ok_or("no _UID: not from journald, its sender unknown")?;
    if uid == 0 {
        return Ok(());
    }
    if e.fs {
        return Err(format!("sent by uid {uid}: toctou-guard-fs runs as root"));
    }
    // _EXE is the executable (/proc/PID/exe); _COMM, which a process names itself, only
    // when journald could not read _EXE.
    let exe = field("_EXE").map(|x| x.rsplit('/').next().unwrap_or(x));
    let program = exe.or(field("_COMM")).unwrap_or("");
    if !crate::service::procs::is_server(program) {
        return Err(format!(
            "sent by {} (uid {uid}, pid {}), not a server program",
            field("_EXE").or(field("_COMM")).unwrap_or("an unknown program"),
            field("_PID").unwrap_or("?")
        ));
    }
    if e.uid != Some(uid) {
        return Err(format!(
            "sent by {program} running as uid {uid}, but the line says uid={}",
            e.uid.map_or("-".into(), |u| u.to_string())
        ));
    }
    match (field("_PID"), field("SYSLOG_PID")) {
        (Some(p), Some(claimed)) if p != claimed => Err(format!(
            "sent by pid {p}, but the line says {}[{claimed}]",
            TAGS[0]
        )),
        _ => Ok(()),
    }
}

/// `journalctl -o json`: MESSAGE (a string, or an array of bytes when not UTF-8),
/// SYSLOG_IDENTIFIER, `_PID` (else SYSLOG_PID), `__REALTIME_TIMESTAMP` (µs); each denial's
/// sender checked ([`sender`]).
fn journal_entry(line: &str) -> Line {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        // A broken object may still be ours.
        return if TAGS.iter().any(|t| line.contains(&format!("\"{t}\""))) {
            Line::Malformed("not a JSON object".into())
        } else {
            Line::Other
        };
    };
    let Some(tag) = v["SYSLOG_IDENTIFIER"].as_str() else {
        return Line::Other;
    };
    let message = match &v["MESSAGE"] {
        Value::String(s) => s.clone(),
        Value::Array(bytes) => {
            let b: Vec<u8> = bytes
                .iter()
                .filter_map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            String::from_utf8_lossy(&b).into_owned()
        }
        _ if TAGS.contains(&tag) => return Line::Malformed("no MESSAGE".into()),
        _ => return Line::Other,
    };
    let time = v["__REALTIME_TIMESTAMP"]
        .as_str()
        .and_then(|us| us.parse::<i64>().ok())
        .map(|us| us.div_euclid(1_000_000));
    let pid = ["_PID", "SYSLOG_PID"]
        .iter()
        .find_map(|k| v[*k].as_str().and_then(|p| p.parse().ok()));
    // journald strips the syslog header; a line written to stdout keeps it.
    let line = match logline::parse_header(&message) {
        Some((t, p, b)) if TAGS.contains(&t) => body(t, Some(p), b, time),
        _ => body(tag, pid, &message, time),
    };
    match line {
        Line::Denial(e) => match sender(&v, &e) {
            Ok(()) => Line::Denial(Event { checked: true, ..e }),
            Err(why) => Line::Unverified(why),
        },
        other => other,
    }
}

fn hms_secs(hms: &str) -> Option<i64> {
    let mut p = hms.split(':');
    let (h, m, s) = (p.next()?, p.next()?, p.next()?);
    let s = s.split(['.', ',']).next()?;
    let (h, m, s): (i64, i64, i64) = (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?);
    (h < 24 && m < 60 && s < 61 && p.next().is_none()).then_some(h * 3600 + m * 60 + s)
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.frac]]][Z|±HH:MM]` → Unix seconds (no zone: UTC).
pub fn iso_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (
        s[..4].parse().ok()?,
        s[5..7].parse().ok()?,
        s[8..10].parse().ok()?,
    );
    let day = unix(y, mo, d)?;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(day);
    }
    let rest = rest.strip_prefix(['T', ' '])?;
    let (clock, offset) = match rest.find(['Z', '+', '-']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let clock = if clock.matches(':').count() == 1 {
        format!("{clock}:00")
    } else {
        clock.to_string()
    };
    let secs = hms_secs(&clock)?;
    let off = match offset {
        "" | "Z" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (h, m) = o[1..].split_once(':').unwrap_or((&o[1..], "0"));
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            sign * (h * 3600 + m * 60)
        }
    };
    Some(day + secs - off)
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm), as Unix seconds.
fn unix(y: i64, m: u32, d: u32) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400)
}

/// Unix seconds → (year, month, day, seconds into the day).
fn civil(t: i64) -> (i64, u32, u32, i64) {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d, secs)
}

pub fn iso(t: i64) -> String {
    let (y, m, d, s) = civil(t);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn show_time(t: Option<i64>) -> String {
    t.map_or_else(|| "-".into(), iso)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `--since`: an ISO 8601 date or time (UTC unless it says otherwise), or `-N` with a unit
/// `s`, `m`, `h`, `d` (that long ago).
fn parse_since(s: &str, now: i64) -> Result<i64, String> {
    if let Some(rel) = s.strip_prefix('-') {
        let (n, unit) = rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len()));
        let n: i64 = n.parse().map_err(|_| format!("--since {s}: no number"))?;
        let mult = match unit {
            "s" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(format!("--since {s}: the unit is s, m, h or d")),
        };
        return Ok(now - n.saturating_mul(mult));
    }
    iso_time(s).ok_or_else(|| {
        format!("--since {s}: not a time (YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM], or -N[smhd])")
    })
}

/// Write `text` to `path` through a temporary file in the same directory, renamed over it,
/// so that node_exporter never reads half a file.
fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| format!("--prometheus {}: not a file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp.{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("{}: {e}", path.display())
    })
}

/// `journalctl -o json` for both guards' tags.
fn journal(since: Option<i64>) -> Result<String, String> {
    let mut cmd = Command::new("journalctl");
    cmd.args(["-o", "json", "--no-pager"]);
    if let Some(s) = since {
        let t = iso(s);
        cmd.arg(format!("--since={} {} UTC", &t[..10], &t[11..19]));
    }
    for t in TAGS {
        cmd.arg(format!("SYSLOG_IDENTIFIER={t}"));
    }
    let out = cmd
        .output()
        .map_err(|e| format!("journalctl: {e} (is systemd's journalctl installed?)"))?;
    if !out.status.success() {
        return Err(format!(
            "journalctl -o json failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn run(args: &[String]) -> Result<(), String> {
    let (mut files, mut use_journal, mut since, mut as_json, mut prom) =
        (Vec::new(), false, None, false, None);
    let now = now();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| it.next().cloned().ok_or(format!("{a} needs {what}\n{USAGE}"));
        match a.as_str() {
            "--file" => files.push(PathBuf::from(value("a FILE")?)),
            "--journal" => use_journal = true,
            "--since" => since = Some(parse_since(&value("a TIME")?, now)?),
            "--json" => as_json = true,
            "--prometheus" => prom = Some(PathBuf::from(value("a FILE")?)),
            other => return Err(format!("unexpected argument '{other}'\n{USAGE}")),
        }
    }
    if files.is_empty() && !use_journal {
        files.push(PathBuf::from("/var/log/auth.log"));
    }
    let mut sum = Summary::default();
    for f in &files {
        let file = fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
        // Line by line: memory stays bounded by the longest line, whatever the log's size.
        let mut r = std::io::BufReader::new(file);
        let mut buf = Vec::new();
        for n in 1.. {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                // Non-UTF-8 bytes (someone else's lines) must not stop the report.
                Ok(_) => sum.add(
                    classify(&String::from_utf8_lossy(&buf), now),
                    || format!("{}:{n}", f.display()),
                    since,
                ),
                Err(e) => return Err(format!("{}:{n}: {e}", f.display())),
            }
        }
        sum.sources.push(f.display().to_string());
    }
    if use_journal {
        let text = journal(since)?;
        for (n, l) in text.lines().enumerate() {
            sum.add(classify(l, now), || format!("journal entry {}", n + 1), since);
        }
        sum.sources.push("journal".into());
    }
    if let Some(p) = &prom {
        write_atomically(p, &sum.prometheus())?;
    }
    if as_json {
        println!("{:#}", sum.json());
    } else {
        print!("{}", sum.text());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "toctou-guard[2211]: action=deny reason=owner-mismatch mode=enforce uid=33 owner=1002 \
                        expected=1001 suppressed=2 comm=nginx tenant=/home/alice path=/home/alice/public_html/x";

    fn now() -> i64 {
        iso_time("2026-12-04T12:00:00Z").unwrap()
    }

    #[test]
    fn dates() {
        assert_eq!(iso_time("1970-01-01"), Some(0));
        assert_eq!(iso(1_733_275_323), "2024-12-04T01:22:03Z");
        assert_eq!(iso_time("2024-12-04T01:22:03.123456+00:00"), Some(1_733_275_323));
        assert_eq!(iso_time("2024-12-04T02:22:03+01:00"), Some(1_733_275_323));
        assert_eq!(iso_time("2024-12-04 01:22"), Some(1_733_275_320));
        assert_eq!(iso_time("2024-13-04"), None);
        assert_eq!(iso_time("Dec"), None);
        assert_eq!(parse_since("-2h", 10_000).unwrap(), 2_800);
        assert!(parse_since("yesterday", 0).is_err());
    }

    #[test]
    fn every_syslog_format() {
        let t = iso_time("2026-12-04T01:02:03Z");
        for l in [
            format!("Dec  4 01:02:03 web1 {LINE}"),
            format!("2026-12-04T01:02:03.000123+00:00 web1 {LINE}"),
            format!(
                "<84>1 2026-12-04T01:02:03Z web1 toctou-guard 2211 - - {}",
                &LINE[20..]
            ),
            format!(
                "{{\"MESSAGE\":\"{}\",\"SYSLOG_IDENTIFIER\":\"toctou-guard\",\"_PID\":\"2211\",\"_UID\":\"33\",\"_EXE\":\"/usr/sbin/nginx\",\"__REALTIME_TIMESTAMP\":\"{}000000\"}}",
                &LINE[20..],
                t.unwrap()
            ),
        ] {
            match classify(&l, now()) {
                Line::Denial(e) => {
                    assert_eq!(e.time, t, "{l}");
                    assert_eq!(
                        (e.reason, e.tenant.as_str(), e.uid, e.suppressed),
                        ("owner-mismatch", "/home/alice", Some(33), 2)
                    );
                }
                other => panic!("{l}: {other:?}"),
            }
        }
        // A December stamp read in January is last year's.
        let jan = iso_time("2027-01-01T00:10:00Z").unwrap();
        let Line::Denial(e) = classify(&format!("Dec 31 23:59:00 h {LINE}"), jan) else {
            panic!()
        };
        assert_eq!(e.time, iso_time("2026-12-31T23:59:00Z"));
    }

    #[test]
    fn others_are_skipped_ours_malformed_counted() {
        assert_eq!(
            classify("Dec  4 01:02:03 web1 sshd[1]: Accepted key", now()),
            Line::Other
        );
        assert_eq!(classify("garbage", now()), Line::Other);
        assert_eq!(classify("", now()), Line::Other);
        assert!(matches!(
            classify(&format!("Dec  4 01:02:03 web1 {}", &LINE[..80]), now()),
            Line::Malformed(_)
        ));
        assert_eq!(
            classify(
                "Dec  4 01:02:03 h toctou-guard[9]: action=config-error /etc/x:1: bad; refusing to start",
                now()
            ),
            Line::ConfigError
        );
        // journald's MESSAGE as bytes (not UTF-8 text), and a broken object of ours.
        let bytes: Vec<String> = LINE[20..].bytes().map(|b| b.to_string()).collect();
        let j = format!(
            "{{\"MESSAGE\":[{}],\"SYSLOG_IDENTIFIER\":\"toctou-guard-fs\",\"_UID\":\"0\"}}",
            bytes.join(",")
        );
        assert!(matches!(classify(&j, now()), Line::Denial(_)));
        assert!(matches!(
            classify("{\"SYSLOG_IDENTIFIER\":\"toctou-guard\",", now()),
            Line::Malformed(_)
        ));
        assert_eq!(
            classify("{\"SYSLOG_IDENTIFIER\":\"cron\",\"MESSAGE\":\"x\"}", now()),
            Line::Other
        );
    }

    /// A tenant writes lines tagged toctou-guard to /dev/log (`logger -t`, PHP's syslog(), a
    /// program named like a server): journald's trusted fields give each away.
    #[test]
    fn journal_lines_not_sent_by_a_guard_are_not_counted() {
        let entry = |tag: &str, fields: &str| {
            format!(
                "{{\"MESSAGE\":\"{}\",\"SYSLOG_IDENTIFIER\":\"{tag}\",\"SYSLOG_PID\":\"2211\"{fields}}}",
                &LINE[20..]
            )
        };
        let verdict = |tag: &str, fields: &str| match classify(&entry(tag, fields), now()) {
            Line::Denial(e) => {
                assert!(e.checked);
                Ok(())
            }
            Line::Unverified(why) => Err(why),
            other => panic!("{fields}: {other:?}"),
        };
        let nginx = r#","_PID":"2211","_UID":"33","_EXE":"/usr/sbin/nginx","_COMM":"nginx""#;
        assert_eq!(verdict("toctou-guard", nginx), Ok(()));
        assert_eq!(verdict("toctou-guard-fs", r#","_PID":"880","_UID":"0""#), Ok(()));
        for (tag, fields, why) in [
            ("toctou-guard", "", "no _UID"),
            (
                "toctou-guard",
                r#","_PID":"2211","_UID":"42001","_EXE":"/usr/bin/logger","_COMM":"logger""#,
                "sent by /usr/bin/logger (uid 42001, pid 2211), not a server program",
            ),
            // comm renamed (prctl), the executable is what counts.
            (
                "toctou-guard",
                r#","_PID":"2211","_UID":"33","_EXE":"/usr/bin/python3","_COMM":"nginx""#,
                "not a server program",
            ),
            // A tenant's own pool (or a copy named nginx) can only speak for its own uid.
            (
                "toctou-guard",
                r#","_PID":"2211","_UID":"42001","_EXE":"/usr/sbin/php-fpm8.2""#,
                "running as uid 42001, but the line says uid=33",
            ),
            (
                "toctou-guard",
                r#","_PID":"999","_UID":"33","_EXE":"/usr/sbin/nginx""#,
                "sent by pid 999, but the line says toctou-guard[2211]",
            ),
            (
                "toctou-guard-fs",
                r#","_UID":"33","_EXE":"/usr/sbin/toctou-guard-fs""#,
                "runs as root",
            ),
        ] {
            let got = verdict(tag, fields).expect_err(fields);
            assert!(got.contains(why), "{fields}: {got}");
        }
        let mut s = Summary::default();
        s.add(classify(&entry("toctou-guard", ""), now()), || "j:1".into(), None);
        s.add(
            classify(&format!("Dec  4 01:02:03 h {LINE}"), now()),
            String::new,
            None,
        );
        assert_eq!((s.total.count, s.unverified.len(), s.unchecked), (1, 1, 1));
        let text = s.text();
        assert!(
            text.contains("j:1: no _UID") && text.contains(UNCHECKED_NOTE),
            "{text}"
        );
        assert!(s.prometheus().contains("toctou_guard_unverified_lines_total 1\n"));
    }

    #[test]
    fn prometheus_labels_are_escaped() {
        assert_eq!(label("a\\x20b\"c\nd"), "a\\\\x20b\\\"c\\nd");
        let mut s = Summary::default();
        let l = format!(
            "Dec  4 01:02:03 h {}",
            LINE.replace("tenant=/home/alice", "tenant=/home/a\\x20b")
        );
        s.add(classify(&l, now()), String::new, None);
        assert!(
            s.prometheus().contains(
                "toctou_guard_denials_total{reason=\"owner-mismatch\",tenant=\"/home/a\\\\x20b\"} 1\n"
            ),
            "{}",
            s.prometheus()
        );
    }
}
