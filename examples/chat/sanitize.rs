//! What the others are shown of a member's line: text that cannot drive
//! their terminal.

/// Appends `line` to `out` as text that cannot drive a terminal: each
/// control character (C0 but tab, DEL, C1) and each run of bytes that is
/// not UTF-8 becomes U+FFFD. A `\r` would otherwise let a line overwrite
/// the sender's nick in front of it, and ESC or the C1 CSI would start
/// escape sequences (clear the screen, move the cursor); invalid UTF-8 is
/// replaced because some terminals read a lone byte 0x9B as CSI.
pub fn push_clean(out: &mut Vec<u8>, line: &[u8]) {
    // The usual line is printable ASCII: copied as it is.
    if line.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        out.extend_from_slice(line);
        return;
    }
    let mut utf8 = [0; 4];
    for chunk in line.utf8_chunks() {
        for c in chunk.valid().chars() {
            // `is_control` is exactly C0, DEL and C1 (category Cc).
            let c = if c.is_control() && c != '\t' { char::REPLACEMENT_CHARACTER } else { c };
            out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(char::REPLACEMENT_CHARACTER.encode_utf8(&mut utf8).as_bytes());
        }
    }
}
