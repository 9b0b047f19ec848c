//! What a program's acks promise about its keys, judged against what a crash state holds: the
//! built-in `kv` checker's verdict, and the text the custom checkers read on stdin.

use std::collections::BTreeMap;

use crate::ack::Ack;

/// One key whose acknowledged value the state does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvFinding {
    /// The key.
    pub key: String,
    /// The label of the ack that promised it.
    pub ack: String,
    /// What the key must hold.
    pub expected: String,
    /// What the state showed.
    pub found: String,
}

/// The digest each key must hold after `acks` (in log order): the last ack of each key, unless
/// a later `nack` made its value unknown.
pub fn expected_keys(acks: &[Ack]) -> BTreeMap<&str, &str> {
    let mut expected = BTreeMap::new();
    for ack in acks {
        match ack {
            Ack::Key { key, digest } => {
                expected.insert(key.as_str(), digest.as_str());
            }
            Ack::Nack { key } => {
                expected.remove(key.as_str());
            }
            _ => {}
        }
    }
    expected
}

/// Parses the `kv` dump's output: one `KEY DIGEST` per line (spaces or tabs between, blank
/// lines skipped, anything after the digest ignored). A key listed twice keeps both digests'
/// first; a line without a digest is an error naming it.
pub fn parse_dump(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut found = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let mut words = line.split([' ', '\t', '|']).filter(|w| !w.is_empty());
        let Some(key) = words.next() else { continue };
        let digest = words
            .next()
            .ok_or_else(|| format!("dump line {}: {line:?} has a key but no digest", n + 1))?;
        found
            .entry(key.to_string())
            .or_insert_with(|| digest.to_string());
    }
    Ok(found)
}

/// The `kv` verdict: every key acked before the cut holds its digest; a key the ack in flight
/// (the first one past the cut) names may hold either its old or its new digest.
pub fn judge_kv(
    acks: &[Ack],
    in_flight: Option<&Ack>,
    found: &BTreeMap<String, String>,
) -> Vec<KvFinding> {
    let mut findings = Vec::new();
    for (key, digest) in expected_keys(acks) {
        let seen = found.get(key).map(String::as_str);
        if seen == Some(digest) {
            continue;
        }
        let new_value = match in_flight {
            Some(Ack::Key { key: k, digest: d }) if k == key => Some(d.as_str()),
            _ => None,
        };
        let in_flight_nack = matches!(in_flight, Some(Ack::Nack { key: k }) if k == key);
        if in_flight_nack || (seen.is_some() && seen == new_value) {
            continue;
        }
        findings.push(KvFinding {
            key: key.to_string(),
            ack: format!("k:{key}:{digest}"),
            expected: format!("key {key} holds {digest} (acknowledged before the cut)"),
            found: match seen {
                Some(other) => format!("key {key} holds {other}"),
                None => format!("key {key} is missing"),
            },
        });
    }
    findings
}

/// What a custom checker reads on stdin: the acks up to the cut as protocol lines (`ack KEY
/// DIGEST`, `nack KEY`), then the ack in flight, if any, as `inflight ack KEY DIGEST` or
/// `inflight nack KEY`.
pub fn checker_input(acks: &[Ack], in_flight: Option<&Ack>) -> String {
    let line = |ack: &Ack| match ack {
        Ack::Key { key, digest } => Some(format!("ack {key} {digest}\n")),
        Ack::Nack { key } => Some(format!("nack {key}\n")),
        _ => None,
    };
    let mut text: String = acks.iter().filter_map(line).collect();
    if let Some(l) = in_flight.and_then(line) {
        text.push_str("inflight ");
        text.push_str(&l);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str, d: &str) -> Ack {
        Ack::Key {
            key: k.into(),
            digest: d.into(),
        }
    }

    fn found(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, d)| ((*k).to_string(), (*d).to_string()))
            .collect()
    }

    #[test]
    fn acked_keys_must_hold_their_last_digest() {
        let acks = [key("a", "1"), key("b", "2"), key("a", "3")];
        assert!(judge_kv(&acks, None, &found(&[("a", "3"), ("b", "2"), ("c", "9")])).is_empty());
        let f = judge_kv(&acks, None, &found(&[("a", "1")]));
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].found, "key a holds 1");
        assert_eq!(f[1].found, "key b is missing");
    }

    #[test]
    fn in_flight_and_nacked_keys_may_hold_either() {
        let acks = [key("a", "1"), key("b", "2"), Ack::Nack { key: "b".into() }];
        let state = found(&[("a", "5")]);
        assert!(judge_kv(&acks, Some(&key("a", "5")), &state).is_empty());
        assert_eq!(judge_kv(&acks, Some(&key("a", "6")), &state).len(), 1);
        assert!(judge_kv(&acks, Some(&Ack::Nack { key: "a".into() }), &found(&[])).is_empty());
    }

    #[test]
    fn dumps_parse_and_checker_input_lists_acks() {
        let d = parse_dump("k1 v1\n\nk2\tv2 extra\nk3|v3\n").unwrap();
        assert_eq!(d, found(&[("k1", "v1"), ("k2", "v2"), ("k3", "v3")]));
        assert!(parse_dump("k1\n").unwrap_err().contains("line 1"));
        let input = checker_input(
            &[key("a", "1"), Ack::Nack { key: "b".into() }],
            Some(&key("c", "2")),
        );
        assert_eq!(input, "ack a 1\nnack b\ninflight ack c 2\n");
    }
}
