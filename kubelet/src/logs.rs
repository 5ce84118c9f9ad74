//! Container logs in the CRI format the runtime writes
//! (`<RFC3339Nano> <stdout|stderr> <F|P> <content>`; `P` marks a partial line continued by
//! the next record), turned back into the text `kubectl logs` prints, with upstream's
//! options: `tailLines`, `sinceSeconds`, `timestamps`, `limitBytes`, `follow`.

use k8s_openapi::jiff::Timestamp;

/// One parsed record.
#[derive(Clone, Debug, PartialEq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub content: &'a str,
}

pub fn parse_line(line: &str) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or("");
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    Some(Record { time, stream, partial: tag.split(':').any(|t| t == "P"), content })
}

/// `kubectl logs` options.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub tail_lines: Option<usize>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<Timestamp>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
}

impl Options {
    pub fn from_query(q: &std::collections::HashMap<String, String>) -> Self {
        Options {
            tail_lines: q.get("tailLines").and_then(|v| v.parse::<i64>().ok()).filter(|v| *v >= 0).map(|v| v as usize),
            since_seconds: q.get("sinceSeconds").and_then(|v| v.parse().ok()),
            since_time: q.get("sinceTime").and_then(|v| v.parse().ok()),
            timestamps: q.get("timestamps").is_some_and(|v| v == "true" || v == "1"),
            limit_bytes: q.get("limitBytes").and_then(|v| v.parse().ok()),
        }
    }

    fn cutoff(&self, now: Timestamp) -> Option<Timestamp> {
        let by_seconds =
            self.since_seconds.and_then(|s| now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(s)).ok());
        match (by_seconds, self.since_time) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Renders complete records (joining partial ones) from `text`; returns the output and how
/// many bytes of `text` were consumed (a trailing incomplete line is left for later).
pub fn render(text: &str, opts: &Options, now: Timestamp) -> (Vec<u8>, usize) {
    let cutoff = opts.cutoff(now);
    let mut lines: Vec<String> = vec![];
    let mut pending: Option<(String, String)> = None; // (time, content so far)
    let mut consumed = 0;
    let mut pos = 0;
    let mut pending_start = 0;
    for raw in text.split_inclusive('\n') {
        let start = pos;
        pos += raw.len();
        if !raw.ends_with('\n') {
            break;
        }
        consumed = pos;
        let Some(r) = parse_line(raw.trim_end_matches('\n')) else { continue };
        let (time, mut content) = pending.take().unwrap_or_else(|| {
            pending_start = start;
            (r.time.to_string(), String::new())
        });
        content.push_str(r.content);
        if r.partial {
            pending = Some((time, content));
            continue;
        }
        if let Some(c) = cutoff {
            if time.parse::<Timestamp>().is_ok_and(|t| t < c) {
                continue;
            }
        }
        lines.push(if opts.timestamps { format!("{time} {content}\n") } else { format!("{content}\n") });
    }
    if pending.is_some() {
        // Wait for the rest of a partial line.
        consumed = pending_start;
    }
    if let Some(n) = opts.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let mut out: Vec<u8> = lines.concat().into_bytes();
    if let Some(limit) = opts.limit_bytes {
        out.truncate(limit);
    }
    (out, consumed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-01-01T00:00:01.000000000Z stdout F one\n\
                       2026-01-01T00:00:02.000000000Z stderr P tw\n\
                       2026-01-01T00:00:02.100000000Z stderr F o\n\
                       2026-01-01T00:00:03.000000000Z stdout F three\n\
                       2026-01-01T00:00:04.000000000Z stdout F fo";

    fn now() -> Timestamp {
        "2026-01-01T00:00:05Z".parse().unwrap()
    }

    #[test]
    fn renders_joins_partials_and_keeps_incomplete_lines() {
        let (out, consumed) = render(LOG, &Options::default(), now());
        assert_eq!(String::from_utf8(out).unwrap(), "one\ntwo\nthree\n");
        assert_eq!(&LOG[consumed..], "2026-01-01T00:00:04.000000000Z stdout F fo");
    }

    #[test]
    fn options_tail_since_timestamps_limit() {
        let o = Options { tail_lines: Some(2), ..Default::default() };
        assert_eq!(String::from_utf8(render(LOG, &o, now()).0).unwrap(), "two\nthree\n");
        let o = Options { since_seconds: Some(3), ..Default::default() };
        assert_eq!(String::from_utf8(render(LOG, &o, now()).0).unwrap(), "two\nthree\n");
        let o = Options { timestamps: true, tail_lines: Some(1), ..Default::default() };
        assert_eq!(String::from_utf8(render(LOG, &o, now()).0).unwrap(), "2026-01-01T00:00:03.000000000Z three\n");
        let o = Options { limit_bytes: Some(5), ..Default::default() };
        assert_eq!(String::from_utf8(render(LOG, &o, now()).0).unwrap(), "one\nt");
        let o = Options { tail_lines: Some(0), ..Default::default() };
        assert!(render(LOG, &o, now()).0.is_empty());
    }
}
