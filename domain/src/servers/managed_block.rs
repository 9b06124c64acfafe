//! The block of an `authorized_keys` (or `TrustedUserCAKeys`) file that Unity owns.
//!
//! Unity edits only the lines between its BEGIN and END markers. Everything else — other
//! people's keys, comments, options such as `from=` or `command=`, blank lines, a last line
//! without a newline — comes back byte for byte. A file whose markers are damaged (an END
//! without a BEGIN, two BEGINs, a BEGIN never closed) is refused rather than guessed at.

pub const BEGIN_MARKER: &str = "# BEGIN UNITY MANAGED BLOCK (lines up to the END marker are rewritten by Unity)";
pub const END_MARKER: &str = "# END UNITY MANAGED BLOCK";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the file's Unity block is damaged ({0}); fix or remove its marker lines by hand")]
pub struct BlockError(pub &'static str);

/// A file split around its managed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedText<'a> {
    head: &'a str,
    /// The block's lines, without terminators.
    pub block: Vec<&'a str>,
    tail: &'a str,
    pub has_block: bool,
}

impl<'a> ManagedText<'a> {
    pub fn parse(content: &'a str) -> Result<ManagedText<'a>, BlockError> {
        let mut offset = 0;
        let mut begin: Option<(usize, usize)> = None; // (start of BEGIN line, start of the block)
        let mut end: Option<(usize, usize)> = None; // (start of END line, end of END line)
        for line in content.split_inclusive('\n') {
            let start = offset;
            offset += line.len();
            let bare = line.trim_end_matches(['\n', '\r']);
            if bare == BEGIN_MARKER {
                if begin.is_some() {
                    return Err(BlockError("two BEGIN markers"));
                }
                begin = Some((start, offset));
            } else if bare == END_MARKER {
                if begin.is_none() {
                    return Err(BlockError("an END marker without a BEGIN"));
                }
                if end.is_some() {
                    return Err(BlockError("two END markers"));
                }
                end = Some((start, offset));
            }
        }
        match (begin, end) {
            (None, _) => Ok(ManagedText { head: content, block: vec![], tail: "", has_block: false }),
            (Some(_), None) => Err(BlockError("a BEGIN marker that is never closed")),
            (Some((head_end, block_start)), Some((block_end, tail_start))) => Ok(ManagedText {
                head: &content[..head_end],
                block: content[block_start..block_end]
                    .lines()
                    .map(|l| l.trim_end_matches('\r'))
                    .filter(|l| !l.trim().is_empty())
                    .collect(),
                tail: &content[tail_start..],
                has_block: true,
            }),
        }
    }

    /// The file with the block's lines replaced by `lines` (the block is appended at the end of
    /// a file that had none).
    pub fn render(&self, lines: &[String]) -> String {
        let mut out = String::with_capacity(self.head.len() + self.tail.len() + 128 * (lines.len() + 2));
        out.push_str(self.head);
        if !out.is_empty() && !out.ends_with('\n') {
            // The last unmanaged line had no newline; it needs one before the block starts.
            out.push('\n');
        }
        out.push_str(BEGIN_MARKER);
        out.push('\n');
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(END_MARKER);
        out.push('\n');
        out.push_str(self.tail);
        out
    }

    /// Whether the block holds this public key (compared by key type and data, not comment).
    pub fn contains(&self, public_key: &str) -> bool {
        let wanted = key_blob(public_key);
        wanted.is_some() && self.block.iter().any(|line| key_blob(line) == wanted)
    }

    /// The file with `public_key` added to the block, or `None` if it is there already.
    pub fn with_key(&self, public_key: &str) -> Option<String> {
        if self.contains(public_key) {
            return None;
        }
        let mut lines: Vec<String> = self.block.iter().map(|l| l.to_string()).collect();
        lines.push(public_key.trim().to_owned());
        Some(self.render(&lines))
    }

    /// The file without `public_key` in the block, or `None` if it was not there.
    pub fn without_key(&self, public_key: &str) -> Option<String> {
        if !self.contains(public_key) {
            return None;
        }
        let wanted = key_blob(public_key);
        let lines: Vec<String> =
            self.block.iter().filter(|line| key_blob(line) != wanted).map(|l| l.to_string()).collect();
        Some(self.render(&lines))
    }
}

const KEY_TYPES: [&str; 8] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
];

/// The `(type, base64 data)` of a public key line, skipping any leading options; what two lines
/// must share to be the same key.
pub fn key_blob(line: &str) -> Option<(&str, &str)> {
    let mut tokens = line.split_whitespace();
    while let Some(token) = tokens.next() {
        if KEY_TYPES.contains(&token) {
            return tokens.next().map(|data| (token, data));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADA: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAda ada@laptop";
    const BOB: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBob bob@desk";
    const UNMANAGED: &str = "# people's own keys\n\
        from=\"10.0.0.0/8\",no-pty ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 ops@bastion\n\
        \n\
        command=\"/usr/bin/backup\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBack backup";

    #[test]
    fn adding_to_a_file_without_a_block_keeps_every_byte_and_ends_the_last_line() {
        let text = ManagedText::parse(UNMANAGED).unwrap();
        assert!(!text.has_block);
        let written = text.with_key(ADA).unwrap();
        assert!(written.starts_with(UNMANAGED));
        assert_eq!(&written[UNMANAGED.len()..], format!("\n{BEGIN_MARKER}\n{ADA}\n{END_MARKER}\n"));
    }

    #[test]
    fn edits_touch_only_the_block_and_are_idempotent() {
        let original = format!("{UNMANAGED}\n{BEGIN_MARKER}\n{ADA}\n{END_MARKER}\n# after\nssh-rsa AAAAtail tail");
        let text = ManagedText::parse(&original).unwrap();
        assert!(text.contains(ADA) && !text.contains(BOB));
        assert_eq!(text.with_key(ADA), None, "already there");
        // Comments do not make a different key.
        assert_eq!(text.with_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAda other comment"), None);
        let added = text.with_key(BOB).unwrap();
        assert_eq!(
            added,
            format!("{UNMANAGED}\n{BEGIN_MARKER}\n{ADA}\n{BOB}\n{END_MARKER}\n# after\nssh-rsa AAAAtail tail")
        );
        let removed = ManagedText::parse(&added).unwrap().without_key(ADA).unwrap();
        assert_eq!(
            removed,
            format!("{UNMANAGED}\n{BEGIN_MARKER}\n{BOB}\n{END_MARKER}\n# after\nssh-rsa AAAAtail tail")
        );
        assert_eq!(ManagedText::parse(&removed).unwrap().without_key(ADA), None);
        // Keys outside the block are not Unity's to remove.
        assert_eq!(ManagedText::parse(&removed).unwrap().without_key("ssh-rsa AAAAtail"), None);
    }

    #[test]
    fn damaged_markers_are_refused() {
        for bad in [
            format!("{END_MARKER}\n"),
            format!("{BEGIN_MARKER}\n{ADA}\n"),
            format!("{BEGIN_MARKER}\n{BEGIN_MARKER}\n{END_MARKER}\n"),
            format!("{BEGIN_MARKER}\n{END_MARKER}\n{END_MARKER}\n"),
        ] {
            assert!(ManagedText::parse(&bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn key_blobs_skip_options_and_ignore_comments() {
        assert_eq!(key_blob(ADA), Some(("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIAda")));
        assert_eq!(
            key_blob("from=\"10.0.0.1\",no-pty ssh-rsa AAAAB3 x"),
            Some(("ssh-rsa", "AAAAB3")),
            "options come first"
        );
        assert_eq!(key_blob("# a comment"), None);
        assert_eq!(key_blob(""), None);
    }
}
