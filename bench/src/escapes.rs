//! Backslash escapes in byte arguments (`--request 'ping\n'`).

/// Turns `\n`, `\r`, `\t`, `\0`, `\\` and `\xNN` into their bytes; any
/// other character is taken as it is.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('t') => out.push(b'\t'),
            Some('0') => out.push(0),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = u8::from_str_radix(&hex, 16)
                    .map_err(|_| format!("`\\x{hex}` is not a byte: \\x takes two hex digits"))?;
                out.push(byte);
            }
            Some(other) => return Err(format!("unknown escape `\\{other}` (known: \\n \\r \\t \\0 \\\\ \\xNN)")),
            None => return Err("a trailing backslash escapes nothing".to_string()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_turn_into_bytes() {
        assert_eq!(unescape(r"ping\r\n").unwrap(), b"ping\r\n");
        assert_eq!(unescape(r"a\x00\xffb\\").unwrap(), b"a\x00\xffb\\");
        assert_eq!(unescape("plain").unwrap(), b"plain");
    }

    #[test]
    fn bad_escapes_are_refused_with_a_reason() {
        assert!(unescape(r"\q").unwrap_err().contains("unknown escape"));
        assert!(unescape(r"\xg1").unwrap_err().contains("two hex digits"));
        assert!(unescape("end\\").unwrap_err().contains("trailing"));
    }
}
