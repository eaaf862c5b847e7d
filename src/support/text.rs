//! Text that reaches a reader other than ledgit (a terminal, a page, a commit message): the
//! invisible formatting characters that make text read otherwise than it is, and the rule
//! for a free text that must stay one plain line.

/// Whether `c` is a format character (Unicode general category Cf: zero-width characters,
/// bidirectional controls such as U+202E, tags). Such a character is invisible, or reorders
/// the text around it, so a value holding one can look like another in a review or a page.
pub fn is_format_char(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// The most characters of a free text that reaches a file and a commit message (a revocation's
/// reason).
pub const MAX_FREE_TEXT: usize = 200;

/// What is wrong with a free text that reaches a commit message, if anything: it must be one
/// line of at most [`MAX_FREE_TEXT`] characters without control or invisible formatting
/// characters. A line break would let the text write the message's trailers
/// (`Signed-off-by:`, `Co-authored-by:`) or instructions to CI (`[skip ci]`); a format
/// character (U+202E) makes it read otherwise than it is.
pub fn one_line_problem(what: &str, text: &str) -> Option<String> {
    let n = text.chars().count();
    if n > MAX_FREE_TEXT {
        Some(format!(
            "the {what} is {n} characters long (at most {MAX_FREE_TEXT})"
        ))
    } else if let Some(c) = text.chars().find(|&c| c.is_control()) {
        Some(format!(
            "the {what} holds the control character U+{:04X}{}: write it on one line",
            u32::from(c),
            if matches!(c, '\n' | '\r') {
                " (a line break)"
            } else {
                ""
            }
        ))
    } else {
        text.chars()
            .find(|&c| is_format_char(c) || matches!(c, '\u{2028}' | '\u{2029}'))
            .map(|c| {
                format!(
                    "the {what} holds the invisible formatting character U+{:04X}",
                    u32::from(c)
                )
            })
    }
}
