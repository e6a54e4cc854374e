//! Domain names in DHCPv6 options: RFC 1035 §3.1 wire format without compression
//! (RFC 8415 §10: "Domain names MUST NOT be stored in compressed form").

use core::fmt;

use super::Error;

/// RFC 1035 §2.3.4: labels are at most 63 octets, names at most 255 octets on the wire.
pub const MAX_LABEL_LEN: usize = 63;
pub const MAX_NAME_LEN: usize = 255;

/// Validates one name at the start of `buf` and returns its wire length (including the root
/// label when present). With `partial_ok` the name may end at the end of `buf` without a root
/// label: RFC 4704 §4.2 allows such a "partial" name in CLIENT_FQDN.
fn scan_name(buf: &[u8], partial_ok: bool, code: u16) -> Result<(usize, bool), Error> {
    let mut pos = 0usize;
    loop {
        if pos == buf.len() {
            // Ran out of bytes without a root label.
            return if partial_ok && pos > 0 {
                Ok((pos, false))
            } else {
                Err(Error::BadDomainName { code })
            };
        }
        let len = usize::from(buf[pos]);
        if len == 0 {
            pos += 1;
            if pos > MAX_NAME_LEN {
                return Err(Error::BadDomainName { code });
            }
            return Ok((pos, true));
        }
        // RFC 1035 §4.1.4: 0b11xxxxxx is a compression pointer, 0b01/0b10 are reserved;
        // both are above 63, so the label length check rejects them.
        if len > MAX_LABEL_LEN || pos + 1 + len > buf.len() {
            return Err(Error::BadDomainName { code });
        }
        pos += 1 + len;
        if pos > MAX_NAME_LEN {
            return Err(Error::BadDomainName { code });
        }
    }
}

/// A validated domain name in wire format (a view, no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DomainName<'a> {
    wire: &'a [u8],
    fully_qualified: bool,
}

impl<'a> DomainName<'a> {
    /// Parses a name that fills `buf` exactly. `partial_ok` accepts a name without the root
    /// label (RFC 4704 §4.2).
    pub fn new_checked(buf: &'a [u8], partial_ok: bool, code: u16) -> Result<Self, Error> {
        if buf.is_empty() {
            // RFC 4704 §4.2: an empty CLIENT_FQDN name is allowed (the client asks the
            // server to pick one); it is not fully qualified.
            return if partial_ok {
                Ok(DomainName {
                    wire: buf,
                    fully_qualified: false,
                })
            } else {
                Err(Error::BadDomainName { code })
            };
        }
        let (len, fully_qualified) = scan_name(buf, partial_ok, code)?;
        if len != buf.len() {
            return Err(Error::BadDomainName { code });
        }
        Ok(DomainName {
            wire: buf,
            fully_qualified,
        })
    }

    /// The wire bytes, including the root label if the name has one.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.wire
    }

    /// Whether the name ends in the root label (an FQDN).
    pub fn is_fully_qualified(&self) -> bool {
        self.fully_qualified
    }

    /// The labels, without length octets and without the empty root label.
    pub fn labels(&self) -> Labels<'a> {
        Labels { rest: self.wire }
    }
}

impl fmt::Display for DomainName<'_> {
    /// Presentation format (RFC 1035 §5.1): labels joined by '.', with '.', '\\' and bytes
    /// outside printable ASCII escaped; an FQDN ends in '.'.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for label in self.labels() {
            if !first {
                f.write_str(".")?;
            }
            first = false;
            for &b in label {
                match b {
                    b'.' | b'\\' => write!(f, "\\{}", b as char)?,
                    0x21..=0x7e => write!(f, "{}", b as char)?,
                    _ => write!(f, "\\{b:03}")?,
                }
            }
        }
        if self.fully_qualified {
            f.write_str(".")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DomainName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DomainName({self})")
    }
}

/// Iterator over the labels of a validated [`DomainName`].
#[derive(Clone, Debug)]
pub struct Labels<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, tail) = self.rest.split_first()?;
        let len = usize::from(len);
        if len == 0 || len > tail.len() {
            self.rest = &[];
            return None;
        }
        let (label, rest) = tail.split_at(len);
        self.rest = rest;
        Some(label)
    }
}

/// Iterator over a sequence of fully qualified names (RFC 3646 §4 DOMAIN_LIST).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainNames<'a> {
    rest: &'a [u8],
}

impl<'a> DomainNames<'a> {
    /// Validates that `buf` is a whole sequence of fully qualified names.
    pub fn new_checked(buf: &'a [u8], code: u16) -> Result<Self, Error> {
        let mut pos = 0;
        while pos < buf.len() {
            let (len, _) = scan_name(&buf[pos..], false, code)?;
            pos += len;
        }
        Ok(DomainNames { rest: buf })
    }
}

impl<'a> Iterator for DomainNames<'a> {
    type Item = DomainName<'a>;

    fn next(&mut self) -> Option<DomainName<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        match scan_name(self.rest, false, 0) {
            Ok((len, fully_qualified)) => {
                let (wire, rest) = self.rest.split_at(len);
                self.rest = rest;
                Some(DomainName {
                    wire,
                    fully_qualified,
                })
            }
            Err(_) => {
                self.rest = &[];
                None
            }
        }
    }
}

/// Appends `name` (presentation format, e.g. `"example.com"` or `"example.com."`) in wire
/// format. The root label is written when `fully_qualified` is true (always, for
/// DOMAIN_LIST; RFC 4704 lets a client send a partial name). Escapes are not interpreted:
/// configuration names are host names (RFC 1123), which never need them.
pub fn encode_name(
    name: &str,
    fully_qualified: bool,
    code: u16,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let start = out.len();
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if !trimmed.is_empty() {
        // Byte split rather than `str::split`: labels are split on the ASCII '.', which
        // never occurs inside a UTF-8 multi-byte sequence, and this runs per reply.
        for label in trimmed.as_bytes().split(|&b| b == b'.') {
            if label.is_empty() || label.len() > MAX_LABEL_LEN {
                out.truncate(start);
                return Err(Error::BadDomainName { code });
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label);
        }
    } else if !fully_qualified {
        return Ok(());
    }
    if fully_qualified {
        out.push(0);
    }
    if out.len() - start > MAX_NAME_LEN {
        out.truncate(start);
        return Err(Error::BadDomainName { code });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_reads_back() {
        let mut out = Vec::new();
        encode_name("example.com", true, 24, &mut out).unwrap();
        assert_eq!(out, b"\x07example\x03com\x00");
        let name = DomainName::new_checked(&out, false, 24).unwrap();
        assert!(name.is_fully_qualified());
        assert_eq!(name.to_string(), "example.com.");
        assert_eq!(name.labels().count(), 2);
    }

    #[test]
    fn rejects_compression_and_long_labels() {
        assert!(DomainName::new_checked(b"\xc0\x0c", false, 24).is_err());
        assert!(DomainName::new_checked(b"\x03com", false, 24).is_err());
        assert!(DomainName::new_checked(b"\x03com", true, 39).is_ok());
        assert!(DomainName::new_checked(b"\x05com\x00", false, 24).is_err());
        let mut long = vec![64u8];
        long.extend([b'a'; 64]);
        long.push(0);
        assert!(DomainName::new_checked(&long, false, 24).is_err());
        let mut out = Vec::new();
        assert!(encode_name(&"a".repeat(64), true, 24, &mut out).is_err());
        assert!(out.is_empty());
        assert!(encode_name("a..b", true, 24, &mut out).is_err());
    }

    #[test]
    fn rejects_names_over_255_octets() {
        // 4 labels of 63 = 256 wire octets with the root label.
        let name = vec!["a".repeat(63); 4].join(".");
        let mut out = Vec::new();
        assert!(encode_name(&name, true, 24, &mut out).is_err());
        let mut wire = Vec::new();
        for _ in 0..4 {
            wire.push(63);
            wire.extend([b'a'; 63]);
        }
        wire.push(0);
        assert!(DomainName::new_checked(&wire, false, 24).is_err());
    }

    #[test]
    fn domain_list_walks_every_name() {
        let list = b"\x07example\x03com\x00\x03isp\x03net\x00";
        let names: Vec<String> = DomainNames::new_checked(list, 24)
            .unwrap()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["example.com.", "isp.net."]);
        assert!(DomainNames::new_checked(b"\x07example\x03com", 24).is_err());
    }
}
