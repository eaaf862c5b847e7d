//! The JSON forms that both front ends print: deployment events as `history --format json`
//! prints them (SPEC "History"), written by hand on the hot path and checked against serde's
//! output by a test.

use std::io::{self, Write};

use crate::git::history::{Event, History, Strings, Sym};
use crate::support::when;

/// The JSON form of one event (SPEC "History"; `path` and `pull_request` are extra).
#[derive(serde::Serialize)]
pub struct EventJson<'a> {
    pub commit: &'a str,
    pub time: &'a str,
    pub agent: &'a str,
    pub environment: &'a str,
    pub action: &'a str,
    pub version: Option<&'a str>,
    pub previous_version: Option<&'a str>,
    pub author: &'a str,
    pub author_time: &'a str,
    pub subject: &'a str,
    pub path: &'a str,
    pub pull_request: Option<u32>,
}

/// Per-commit strings, computed once however many events a commit has.
pub struct CommitStrings {
    id: String,
    time: String,
    author_time: String,
    pull_request: Option<u32>,
}

/// The strings of every commit the events belong to, indexed like `History::commits`.
pub fn commit_strings(h: &History, events: &[&Event]) -> Vec<Option<CommitStrings>> {
    let mut v: Vec<Option<CommitStrings>> = Vec::new();
    v.resize_with(h.commits().len(), || None);
    for e in events {
        v[e.commit as usize].get_or_insert_with(|| {
            let c = h.commit_of(e);
            CommitStrings {
                id: c.id.to_string(),
                time: when::rfc3339(c.time),
                author_time: when::rfc3339(c.author_time),
                pull_request: pull_request(h.str(c.subject)),
            }
        });
    }
    v
}

/// The JSON object of one event; `strings` comes from [`commit_strings`] for these events.
pub fn event_json<'a>(
    h: &'a History,
    strings: &'a [Option<CommitStrings>],
    e: &'a Event,
) -> EventJson<'a> {
    let c = h.commit_of(e);
    let s = strings[e.commit as usize]
        .as_ref()
        .expect("commit_strings covers every event");
    EventJson {
        commit: &s.id,
        time: &s.time,
        agent: h.str(e.agent),
        environment: h.str(e.environment),
        action: e.action.as_str(),
        version: h.opt(e.version),
        previous_version: h.opt(e.previous_version),
        author: h.str(c.author),
        author_time: &s.author_time,
        subject: h.str(c.subject),
        path: h.str(e.path),
        pull_request: s.pull_request,
    }
}

/// Writes events as one JSON array, one event per line, exactly as serde_json would print
/// [`EventJson`], but by hand: the history of a large repository is tens of megabytes and this
/// is its hot path. Strings without characters to escape are copied as they are.
pub fn write_json(out: &mut dyn Write, h: &History, events: &[&Event]) -> io::Result<()> {
    const BLOCK: usize = 4096;
    let blocks: Vec<&[&Event]> = events.chunks(BLOCK).collect();
    out.write_all(b"[")?;
    if blocks.len() < 2 {
        let mut buf = Vec::with_capacity(events.len() * 360);
        json_block(&mut buf, h, events, 0);
        out.write_all(&buf)?;
    } else {
        // Two threads format alternate blocks; this one writes them in order. Buffers go back
        // to the helper to be reused, so memory stays a few blocks whatever the history's size.
        std::thread::scope(|s| -> io::Result<()> {
            let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
            let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
            let helper_blocks = &blocks;
            s.spawn(move || {
                for (k, block) in helper_blocks.iter().enumerate().skip(1).step_by(2) {
                    let mut buf = free_rx.try_recv().unwrap_or_default();
                    buf.clear();
                    json_block(&mut buf, h, block, k * BLOCK);
                    if done_tx.send(buf).is_err() {
                        return;
                    }
                }
            });
            let mut own = Vec::with_capacity(BLOCK * 360);
            for (k, block) in blocks.iter().enumerate() {
                if k % 2 == 0 {
                    own.clear();
                    json_block(&mut own, h, block, k * BLOCK);
                    out.write_all(&own)?;
                } else {
                    let buf = done_rx
                        .recv()
                        .map_err(|_| io::Error::other("formatting failed"))?;
                    let written = out.write_all(&buf);
                    let _ = free_tx.send(buf);
                    written?;
                }
            }
            Ok(())
        })?;
    }
    out.write_all(if events.is_empty() { b"]\n" } else { b"\n]\n" })
}

/// The JSON lines of a block of events; `first` is the index of its first event.
fn json_block(buf: &mut Vec<u8>, h: &History, events: &[&Event], first: usize) {
    let (mut time, mut author_time) = (when::TimeWriter::default(), when::TimeWriter::default());
    let s = h.strings();
    for (i, e) in events.iter().enumerate() {
        let c = h.commit_of(e);
        buf.extend_from_slice(if first + i == 0 { b"\n" } else { b",\n" });
        buf.extend_from_slice(b"{\"commit\":\"");
        push_hex(buf, c.id.as_bytes());
        buf.extend_from_slice(b"\",\"time\":\"");
        time.write(buf, c.time);
        buf.extend_from_slice(b"\",\"agent\":");
        json_sym(buf, s, e.agent);
        buf.extend_from_slice(b",\"environment\":");
        json_sym(buf, s, e.environment);
        buf.extend_from_slice(b",\"action\":\"");
        buf.extend_from_slice(e.action.as_str().as_bytes());
        buf.extend_from_slice(b"\",\"version\":");
        json_opt(buf, s, e.version);
        buf.extend_from_slice(b",\"previous_version\":");
        json_opt(buf, s, e.previous_version);
        buf.extend_from_slice(b",\"author\":");
        json_sym(buf, s, c.author);
        buf.extend_from_slice(b",\"author_time\":\"");
        author_time.write(buf, c.author_time);
        buf.extend_from_slice(b"\",\"subject\":");
        json_sym(buf, s, c.subject);
        buf.extend_from_slice(b",\"path\":");
        json_sym(buf, s, e.path);
        buf.extend_from_slice(b",\"pull_request\":");
        match pull_request(h.str(c.subject)) {
            Some(n) => {
                // Writing into a Vec cannot fail; and no String per event.
                let _ = write!(buf, "{n}");
            }
            None => buf.extend_from_slice(b"null"),
        }
        buf.push(b'}');
    }
}

fn push_hex(buf: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        buf.push(HEX[usize::from(b >> 4)]);
        buf.push(HEX[usize::from(b & 15)]);
    }
}

/// A JSON string literal of a symbol; the table knows which strings need no escaping.
fn json_sym(buf: &mut Vec<u8>, strings: &Strings, sym: Sym) {
    let text = strings.get(sym);
    if strings.json_plain(sym) {
        buf.push(b'"');
        buf.extend_from_slice(text.as_bytes());
        buf.push(b'"');
    } else if let Ok(quoted) = serde_json::to_vec(text) {
        buf.extend_from_slice(&quoted);
    }
}

fn json_opt(buf: &mut Vec<u8>, strings: &Strings, sym: Option<Sym>) {
    match sym {
        Some(sym) => json_sym(buf, strings, sym),
        None => buf.extend_from_slice(b"null"),
    }
}

/// The pull request number of a merge or squash commit subject, where it names one, as
/// GitHub and GitLab write them: "Merge pull request #12 from ...", "Merge branch ... (#12)",
/// "Bump support-bot (#12)", GitLab's "See merge request group/project!12". The one reader of
/// these numbers, for the JSON and the page.
pub fn pull_request(subject: &str) -> Option<u32> {
    let digits = |s: &str| -> Option<u32> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().ok()
    };
    if let Some(rest) = subject.strip_prefix("Merge pull request #") {
        return digits(rest);
    }
    if let Some(inner) = subject.trim_end().strip_suffix(')')
        && let Some(start) = inner.rfind("(#")
    {
        return inner[start + 2..].parse().ok();
    }
    let request = &subject[subject.find("See merge request ")?..];
    digits(&request[request.rfind('!')? + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written JSON of the events, and each event as serde prints [`EventJson`].
    fn both_ways(h: &History, events: &[Event]) -> (String, Vec<String>) {
        let refs: Vec<&Event> = events.iter().collect();
        let mut fast = Vec::new();
        write_json(&mut fast, h, &refs).unwrap();
        let strings = commit_strings(h, &refs);
        let expected = refs
            .iter()
            .map(|e| serde_json::to_string(&event_json(h, &strings, e)).unwrap())
            .collect();
        (String::from_utf8(fast).unwrap(), expected)
    }

    #[test]
    fn the_hand_written_json_is_what_serde_prints() {
        use crate::git::history::{Action, CommitInfo, Event};
        let mut table = Strings::default();
        let mut name = |s: &str| table.push(s).unwrap();
        let commits = vec![CommitInfo {
            id: git2::Oid::from_bytes(&[0xab; 20]).unwrap(),
            pos: 0,
            time: 1_704_067_200,
            author: name("Zoë \"Q\" <z@example.com>"),
            author_time: -5,
            subject: name("Merge pull request #3 from a\\b\ttab\u{1}"),
        }];
        let events = [
            Event {
                commit: 0,
                agent: name("a"),
                environment: name("prod"),
                action: Action::Updated,
                version: Some(name("1.0")),
                previous_version: None,
                path: name("deployments/a/prod.yaml"),
            },
            Event {
                commit: 0,
                agent: name("b"),
                environment: name("prod"),
                action: Action::Removed,
                version: None,
                previous_version: Some(name("2")),
                path: name("x"),
            },
        ];
        let h = History::of_commits(commits, table);
        let (fast, expected) = both_ways(&h, &events);
        assert_eq!(fast, format!("[\n{}\n]\n", expected.join(",\n")));
    }

    /// Many blocks, formatted on two threads, come out whole and in order.
    #[test]
    fn large_outputs_are_complete_and_ordered() {
        use crate::git::history::{Action, CommitInfo, Event};
        let mut table = Strings::default();
        let mut name = |s: &str| table.push(s).unwrap();
        let n = 10_000u32;
        let commits: Vec<CommitInfo> = (0..n)
            .map(|i| CommitInfo {
                id: git2::Oid::from_bytes(&[(i % 251) as u8; 20]).unwrap(),
                pos: i,
                time: 1_600_000_000 + i64::from(i) * 600,
                author: name("A <a@example.com>"),
                author_time: 1_600_000_000 + i64::from(i) * 599,
                subject: name(&format!("Merge pull request #{i} from x")),
            })
            .collect();
        let events: Vec<Event> = (0..n)
            .map(|i| Event {
                commit: i,
                agent: name(&format!("agent-{}", i % 7)),
                environment: name("staging"),
                action: Action::Updated,
                version: Some(name(&format!("1.{i}.0"))),
                previous_version: Some(name("1.0.0")),
                path: name("deployments/a/staging.yaml"),
            })
            .collect();
        let h = History::of_commits(commits, table);
        let (fast, expected) = both_ways(&h, &events);
        let parsed: Vec<serde_json::Value> = serde_json::from_str(&fast).unwrap();
        assert_eq!(parsed.len(), n as usize);
        for (i, (got, want)) in parsed.iter().zip(&expected).enumerate() {
            let want: serde_json::Value = serde_json::from_str(want).unwrap();
            assert_eq!(got, &want, "event {i}");
        }
    }

    #[test]
    fn pull_request_numbers() {
        assert_eq!(pull_request("Merge pull request #12 from a/b"), Some(12));
        assert_eq!(pull_request("Bump support-bot to 1.4.2 (#34)"), Some(34));
        assert_eq!(pull_request("Deploy 1.2 (draft)"), None);
        assert_eq!(pull_request("Deploy support-bot"), None);
        assert_eq!(pull_request("Deploy support-bot 1.4.2 (#123)  "), Some(123));
        assert_eq!(pull_request("Fix (#x)"), None);
        assert_eq!(pull_request("Fix (#12 and more)"), None);
        assert_eq!(
            pull_request("Merge branch 'x' into 'main'\n\nSee merge request team/repo!56"),
            Some(56)
        );
    }
}
