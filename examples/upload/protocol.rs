//! The upload protocol's words: command lines, file names, refusals.

/// Longest command line, its `\n` or `\r\n` not counted. `put|` + a
/// 255-byte name + `|` + a 20-digit size is 281 bytes; anything much longer
/// is not a command.
pub const MAX_LINE: usize = 1024;

/// Longest file name, in bytes (Linux's `NAME_MAX`).
pub const MAX_NAME: usize = 255;

/// Sent to a client that connects while `--max-connections` clients are
/// connected, before the server closes it.
pub const SERVER_FULL: &[u8] = b"error server full\n";

/// A command line, parsed and checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `put|<name>|<size>`: `size` bytes follow once the server says `ready`.
    Put { name: &'a str, size: u64 },
    /// `get|<name>`: the server answers `size <n>` and the file's bytes.
    Get { name: &'a str },
}

/// Why a command is refused; the server answers `error <reason>\n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not `put|<name>|<size>` or `get|<name>`.
    BadCommand,
    /// A command line of more than [`MAX_LINE`] bytes.
    LineTooLong,
    /// The name breaks a rule of [`check_name`].
    BadName,
    /// The size is not a decimal number of at most 20 digits.
    BadSize,
    /// The size is over `--max-size`.
    TooLarge,
    /// The file exists and `--overwrite` is off.
    Exists,
    /// No regular file by that name.
    NotFound,
    /// The file system failed (the detail is logged, not sent).
    Io,
}

impl Refusal {
    /// The reason as sent on the wire, after `error `.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::BadCommand => "bad command",
            Refusal::LineTooLong => "line too long",
            Refusal::BadName => "bad name",
            Refusal::BadSize => "bad size",
            Refusal::TooLarge => "too large",
            Refusal::Exists => "exists",
            Refusal::NotFound => "not found",
            Refusal::Io => "io",
        }
    }
}

/// Parses one command line (without its `\n` or `\r\n`).
pub fn parse(line: &[u8], max_size: u64) -> Result<Command<'_>, Refusal> {
    let mut fields = line.split(|&b| b == b'|');
    let (verb, name, size) = (fields.next(), fields.next(), fields.next());
    if fields.next().is_some() {
        return Err(Refusal::BadCommand);
    }
    match (verb, name, size) {
        (Some(b"put"), Some(name), Some(size)) => {
            let name = check_name(name)?;
            let size = parse_size(size)?;
            if size > max_size {
                return Err(Refusal::TooLarge);
            }
            Ok(Command::Put { name, size })
        }
        (Some(b"get"), Some(name), None) => Ok(Command::Get { name: check_name(name)? }),
        _ => Err(Refusal::BadCommand),
    }
}

/// A file name is 1 to 255 bytes of UTF-8 with no `/`, `\`, control
/// character (NUL included) or `..`, and does not start with `.`: it can
/// only name a plain entry of the upload directory, never a hidden one (the
/// server's own `.part` files are hidden).
pub fn check_name(name: &[u8]) -> Result<&str, Refusal> {
    let name = std::str::from_utf8(name).map_err(|_| Refusal::BadName)?;
    let bad_char = |c: char| c == '/' || c == '\\' || c.is_control();
    if name.is_empty()
        || name.len() > MAX_NAME
        || name.starts_with('.')
        || name.contains("..")
        || name.contains(bad_char)
    {
        return Err(Refusal::BadName);
    }
    Ok(name)
}

/// A size is 1 to 20 decimal digits that fit a `u64`.
fn parse_size(size: &[u8]) -> Result<u64, Refusal> {
    if size.is_empty() || size.len() > 20 || !size.iter().all(u8::is_ascii_digit) {
        return Err(Refusal::BadSize);
    }
    std::str::from_utf8(size).ok().and_then(|s| s.parse().ok()).ok_or(Refusal::BadSize)
}

/// Lower-case hex, by hand.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse(b"put|a.txt|12", 100), Ok(Command::Put { name: "a.txt", size: 12 }));
        assert_eq!(parse(b"put|a.txt|0", 100), Ok(Command::Put { name: "a.txt", size: 0 }));
        // The framer has taken the line ending off; a `\r` left is a byte.
        assert_eq!(parse(b"put|a.txt|0\r", 100), Err(Refusal::BadSize));
        assert_eq!(parse(b"get|report 2024.pdf", 100), Ok(Command::Get { name: "report 2024.pdf" }));
        assert_eq!(parse(b"put|a|101", 100), Err(Refusal::TooLarge));
        assert_eq!(parse(b"put|a|18446744073709551616", u64::MAX), Err(Refusal::BadSize));
        for bad_size in [&b"put|a|"[..], b"put|a|-1", b"put|a|+1", b"put|a|1e3", b"put|a| 1"] {
            assert_eq!(parse(bad_size, 100), Err(Refusal::BadSize), "{:?}", String::from_utf8_lossy(bad_size));
        }
        for bad in [&b""[..], b"put", b"put|a", b"get", b"get|a|1", b"put|a|1|2", b"PUT|a|1", b"del|a", b"hello"] {
            assert_eq!(parse(bad, 100), Err(Refusal::BadCommand), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn names_that_could_leave_the_directory_or_hide_are_refused() {
        let long = "x".repeat(MAX_NAME + 1);
        let bad: [&[u8]; 13] = [
            b"",
            b"../etc/passwd",
            b"..",
            b".",
            b".hidden",
            b"a/b",
            b"/etc/passwd",
            b"a\\b",
            b"a\0b",
            b"a..b",
            b"tab\there",
            b"\xff\xfe",
            long.as_bytes(),
        ];
        for name in bad {
            assert_eq!(check_name(name), Err(Refusal::BadName), "{:?}", String::from_utf8_lossy(name));
        }
        let longest = "y".repeat(MAX_NAME);
        for good in ["a", "a.b.c", "naïve résumé.txt", "x-1_2 (copy)", longest.as_str()] {
            assert_eq!(check_name(good.as_bytes()), Ok(good));
        }
    }

    #[test]
    fn hex_is_lower_case_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }
}
