//! The strings of a history (agents, environments, versions, paths, authors, subjects) stored
//! end to end in one buffer and named by `u32` symbols, so that a history is a few flat arrays
//! the index can write and read back with one copy. Strings a JSON string must escape are
//! flagged once, when stored, so the hot JSON writer copies the rest as they are.

use std::collections::HashMap;
use std::num::NonZeroU32;

use crate::error::{Error, Result};

/// A string of a history, named by its place in the history's [`Strings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sym(NonZeroU32);

impl Sym {
    /// Its position in the table.
    pub fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

/// The strings of a history (names, versions, paths, authors, subjects), stored end to end in
/// one buffer and named by [`Sym`]s: a history of a hundred thousand events is a few flat
/// arrays, which the index reads back with a copy instead of an allocation per string. A text
/// may be stored more than once (the strings of each index segment are appended as they are),
/// so compare symbols through their text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Strings {
    text: String,
    /// Where each string ends in `text`; the high bit marks a string that JSON must escape.
    ends: Vec<u32>,
}

/// The flag of [`Strings::ends`].
const ESCAPE: u32 = 1 << 31;

/// Whether a string has a character that a JSON string literal must escape.
fn needs_json_escape(s: &[u8]) -> bool {
    // A fold without early exit, so that the compiler can check many bytes at a time.
    s.iter().fold(false, |acc, &b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

impl Strings {
    /// How many strings there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn bounds(&self, i: usize) -> (usize, usize) {
        let start = match i {
            0 => 0,
            _ => (self.ends[i - 1] & !ESCAPE) as usize,
        };
        (start, (self.ends[i] & !ESCAPE) as usize)
    }

    /// The text of a symbol of this table.
    pub fn get(&self, s: Sym) -> &str {
        let (start, end) = self.bounds(s.index());
        &self.text[start..end]
    }

    /// Whether the symbol's text can be put in a JSON string literal as it is.
    pub fn json_plain(&self, s: Sym) -> bool {
        self.ends[s.index()] & ESCAPE == 0
    }

    /// The symbol for the string at position `i`, if there is one.
    pub fn sym(&self, i: usize) -> Option<Sym> {
        (i < self.ends.len())
            .then(|| NonZeroU32::new(i as u32 + 1).map(Sym))
            .flatten()
    }

    /// Adds a string. The table holds up to 2 GiB of text and 2^31 strings.
    pub fn push(&mut self, s: &str) -> Result<Sym> {
        let end = self.text.len() + s.len();
        let too_large = || Error::TooLarge {
            what: "the history has more than 2 GiB of names, versions, paths and subjects",
        };
        if end >= ESCAPE as usize || self.ends.len() >= ESCAPE as usize - 1 {
            return Err(too_large());
        }
        self.text.push_str(s);
        let flag = if needs_json_escape(s.as_bytes()) {
            ESCAPE
        } else {
            0
        };
        self.ends.push(end as u32 | flag);
        self.sym(self.ends.len() - 1).ok_or_else(too_large)
    }

    /// The text and the ends (without flags) of the strings from position `from` on, the ends
    /// counted from the start of that text: what an index segment stores.
    pub(crate) fn tail(&self, from: usize) -> (&str, impl Iterator<Item = u32> + '_) {
        let from = from.min(self.ends.len());
        let base = match from {
            0 => 0,
            _ => self.bounds(from - 1).1,
        };
        let ends = self.ends[from..]
            .iter()
            .map(move |e| (e & !ESCAPE) - base as u32);
        (&self.text[base..], ends)
    }

    /// Keeps the first `n` strings.
    pub(crate) fn truncate(&mut self, n: usize) {
        if n < self.ends.len() {
            let end = match n {
                0 => 0,
                _ => self.bounds(n - 1).1,
            };
            self.ends.truncate(n);
            self.text.truncate(end);
        }
    }

    /// Appends strings as [`Strings::tail`] gave them, checking them: `None` (and the table as
    /// it was) when the ends do not fit the text.
    pub(crate) fn extend_from(&mut self, text: &[u8], ends: &[u8]) -> Option<()> {
        let text = std::str::from_utf8(text).ok()?;
        let base = self.text.len();
        let (n0, plain) = (self.ends.len(), !needs_json_escape(text.as_bytes()));
        if base + text.len() >= ESCAPE as usize || n0 + ends.len() / 4 >= ESCAPE as usize - 1 {
            return None;
        }
        self.ends.reserve(ends.len() / 4);
        let mut start = 0;
        for e in ends.chunks_exact(4) {
            let end = u32::from_le_bytes(e.try_into().ok()?) as usize;
            if end < start || end > text.len() || !text.is_char_boundary(end) {
                self.ends.truncate(n0);
                return None;
            }
            // Most tables have nothing to escape: one check of the whole text spares the rest.
            let flag = if plain || !needs_json_escape(&text.as_bytes()[start..end]) {
                0
            } else {
                ESCAPE
            };
            self.ends.push((base + end) as u32 | flag);
            start = end;
        }
        if start != text.len() {
            self.ends.truncate(n0);
            return None;
        }
        self.text.push_str(text);
        Some(())
    }
}

/// Hands out one symbol per distinct string while a history is built.
#[derive(Default)]
pub(crate) struct Interner(HashMap<Box<str>, Sym>);

impl Interner {
    pub(crate) fn get(&mut self, strings: &mut Strings, s: &str) -> Result<Sym> {
        if let Some(&n) = self.0.get(s) {
            return Ok(n);
        }
        let n = strings.push(s)?;
        self.0.insert(s.into(), n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_keep_their_text_and_know_what_json_escapes() {
        let mut s = Strings::default();
        let a = s.push("agent-1").unwrap();
        let empty = s.push("").unwrap();
        let quoted = s.push("say \"hi\"\t\u{e9}").unwrap();
        assert_eq!(
            (s.get(a), s.get(empty), s.get(quoted)),
            ("agent-1", "", "say \"hi\"\t\u{e9}")
        );
        assert!(s.json_plain(a) && s.json_plain(empty) && !s.json_plain(quoted));
        assert_eq!(s.sym(3), None);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn a_tail_read_back_gives_the_same_table() {
        let mut s = Strings::default();
        for t in ["a", "b\\c", "\u{e9}t\u{e9}", "", "z"] {
            s.push(t).unwrap();
        }
        for from in 0..=s.len() {
            let mut copy = s.clone();
            copy.truncate(from);
            let (text, ends) = s.tail(from);
            let ends: Vec<u8> = ends.flat_map(u32::to_le_bytes).collect();
            copy.extend_from(text.as_bytes(), &ends).unwrap();
            assert_eq!(copy, s, "from {from}");
        }
    }

    #[test]
    fn bad_ends_are_refused_and_change_nothing() {
        let mut s = Strings::default();
        s.push("x").unwrap();
        let before = s.clone();
        let le = |v: &[u32]| v.iter().flat_map(|e| e.to_le_bytes()).collect::<Vec<u8>>();
        // Decreasing, past the text, inside a character, short of the text, not UTF-8.
        assert_eq!(s.extend_from(b"abc", &le(&[2, 1, 3])), None);
        assert_eq!(s.extend_from(b"abc", &le(&[4])), None);
        assert_eq!(s.extend_from("\u{e9}".as_bytes(), &le(&[1, 2])), None);
        assert_eq!(s.extend_from(b"abc", &le(&[2])), None);
        assert_eq!(s.extend_from(&[0xff], &le(&[1])), None);
        assert_eq!(s, before);
    }
}
