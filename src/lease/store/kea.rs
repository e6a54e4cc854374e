//! Reader for Kea's memfile lease6 CSV (`kea-leases6.csv`, Kea 2.x), for migrating to tandem.
//!
//! The memfile is a log: every change appends a row, so the *last* row for an address wins,
//! and a row with `valid_lifetime` 0 means the lease was deleted (released, or reclaimed
//! without affinity). Columns are found by the header's names, so the extra columns of newer
//! Kea versions (`pool_id`, ...) do not matter. `expire` is absolute (Unix seconds) and
//! `cltt = expire - valid_lifetime`; `state` 0 is assigned, 1 declined, 2 expired-reclaimed.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::Ipv6Addr;

use crate::lease::{BindingState, Duid, IaType, Lease, Resource};

/// A problem with one row (1-based line number in the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: column `{column}`: {reason}")]
pub struct KeaError {
    pub line: usize,
    pub column: &'static str,
    pub reason: String,
}

/// What an import read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeaSummary {
    pub rows: usize,
    /// Resources whose last row deletes them.
    pub deleted: usize,
    pub leases: usize,
}

const COLUMNS: [&str; 9] = [
    "address",
    "duid",
    "valid_lifetime",
    "expire",
    "subnet_id",
    "pref_lifetime",
    "lease_type",
    "iaid",
    "prefix_len",
];

/// Parses a lease6 CSV. `subnet_of(resource, kea_subnet_id)` gives the tandem subnet index
/// to store. `progress(bytes_read)` is called now and then. Returns the current leases (one
/// per resource, the file's last word on each) in file order of their last row.
pub fn read(
    input: impl BufRead,
    subnet_of: &dyn Fn(&Resource, u32) -> u32,
    progress: &mut dyn FnMut(u64),
) -> Result<(Vec<Lease>, KeaSummary), KeaError> {
    let mut lines = input.lines();
    let header = match lines.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            return Err(KeaError {
                line: 1,
                column: "header",
                reason: e.to_string(),
            })
        }
        None => {
            return Err(KeaError {
                line: 1,
                column: "header",
                reason: "empty file".into(),
            })
        }
    };
    let names: Vec<&str> = header.trim_end().split(',').collect();
    let mut col = [0usize; COLUMNS.len()];
    for (i, want) in COLUMNS.iter().enumerate() {
        col[i] = names
            .iter()
            .position(|n| n == want)
            .ok_or_else(|| KeaError {
                line: 1,
                column: want,
                reason: "missing from the header (not a Kea lease6 CSV?)".into(),
            })?;
    }
    let state_col = names.iter().position(|n| *n == "state");
    let mut latest: HashMap<Resource, (usize, Option<Lease>)> = HashMap::new();
    let mut summary = KeaSummary::default();
    let mut bytes = header.len() as u64 + 1;
    for (n, line) in lines.enumerate() {
        let lineno = n + 2;
        let line = line.map_err(|e| KeaError {
            line: lineno,
            column: "row",
            reason: e.to_string(),
        })?;
        bytes += line.len() as u64 + 1;
        if n % 4096 == 0 {
            progress(bytes);
        }
        if line.trim().is_empty() {
            continue;
        }
        summary.rows += 1;
        let fields: Vec<&str> = line.split(',').collect();
        let get = |i: usize| -> Result<&str, KeaError> {
            fields.get(col[i]).copied().ok_or_else(|| KeaError {
                line: lineno,
                column: COLUMNS[i],
                reason: format!("row has {} columns", fields.len()),
            })
        };
        let bad = |i: usize, reason: String| KeaError {
            line: lineno,
            column: COLUMNS[i],
            reason,
        };
        let num = |i: usize| -> Result<u64, KeaError> {
            let s = get(i)?;
            s.parse::<u64>()
                .map_err(|_| bad(i, format!("`{s}` is not a number")))
        };
        let addr: Ipv6Addr = get(0)?
            .parse()
            .map_err(|_| bad(0, format!("`{}` is not an IPv6 address", fields[col[0]])))?;
        let duid_hex = get(1)?;
        let duid_bytes =
            parse_hex(duid_hex).ok_or_else(|| bad(1, format!("`{duid_hex}` is not hex")))?;
        let duid = Duid::new(&duid_bytes)
            .ok_or_else(|| bad(1, "empty or longer than 130 octets".into()))?;
        let valid = u32::try_from(num(2)?).map_err(|_| bad(2, "out of range".into()))?;
        let expire = num(3)?;
        let kea_subnet = u32::try_from(num(4)?).map_err(|_| bad(4, "out of range".into()))?;
        let preferred = u32::try_from(num(5)?).map_err(|_| bad(5, "out of range".into()))?;
        let ia_type = match num(6)? {
            0 => IaType::Na,
            1 => IaType::Ta,
            2 => IaType::Pd,
            t => return Err(bad(6, format!("unknown lease type {t}"))),
        };
        let iaid = u32::try_from(num(7)?).map_err(|_| bad(7, "out of range".into()))?;
        let prefix_len = u8::try_from(num(8)?)
            .ok()
            .filter(|&p| p <= 128)
            .ok_or_else(|| bad(8, "not a prefix length".into()))?;
        if (ia_type == IaType::Pd) == (prefix_len == 128) {
            return Err(bad(
                8,
                format!("prefix length {prefix_len} for lease type {ia_type:?}"),
            ));
        }
        let state = match state_col
            .and_then(|c| fields.get(c))
            .copied()
            .unwrap_or("0")
        {
            "0" | "" => BindingState::Active,
            "1" => BindingState::Abandoned,
            "2" => BindingState::Expired,
            other => {
                return Err(KeaError {
                    line: lineno,
                    column: "state",
                    reason: format!("unknown state `{other}`"),
                })
            }
        };
        let resource = Resource { addr, prefix_len };
        let entry = if valid == 0 {
            None
        } else {
            Some(Lease {
                resource,
                ia_type,
                duid,
                iaid,
                state,
                preferred_lifetime: preferred,
                valid_lifetime: valid,
                cltt: expire.saturating_sub(u64::from(valid)),
                expires_at: if valid == u32::MAX { u64::MAX } else { expire },
                subnet: subnet_of(&resource, kea_subnet),
                partner_lifetime: 0,
                update_pending: false,
            })
        };
        latest.insert(resource, (lineno, entry));
    }
    progress(bytes);
    let mut rows: Vec<(usize, Option<Lease>)> = latest.into_values().collect();
    rows.sort_by_key(|(line, _)| *line);
    let mut out = Vec::with_capacity(rows.len());
    for (_, e) in rows {
        match e {
            Some(l) => out.push(l),
            None => summary.deleted += 1,
        }
    }
    summary.leases = out.len();
    Ok((out, summary))
}

/// Hex with optional `:` separators (Kea writes `00:01:...`).
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16)?;
            let lo = (p[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../../tests/vectors/kea/leases6.csv");

    #[test]
    fn reads_the_kea_2_2_sample() {
        let (leases, s) = read(SAMPLE.as_bytes(), &|_, id| id - 1, &mut |_| {}).unwrap();
        assert_eq!(s.rows, SAMPLE.lines().count() - 1);
        assert!(s.deleted > 0, "the sample has released leases");
        assert!(leases
            .iter()
            .any(|l| l.ia_type == IaType::Pd && l.resource.prefix_len == 56));
        assert!(leases.iter().any(|l| l.ia_type == IaType::Na));
        let first = leases
            .iter()
            .find(|l| l.resource.addr == "2001:db8:1::1000".parse::<Ipv6Addr>().unwrap())
            .unwrap();
        assert_eq!(
            first.duid.to_string(),
            "000100013295 6d6a000c01020304".replace(' ', "")
        );
        assert_eq!(first.valid_lifetime, 4000);
        assert_eq!(first.cltt + 4000, first.expires_at);
        // No resource twice, nothing with a zero lifetime.
        let mut seen = std::collections::HashSet::new();
        assert!(leases
            .iter()
            .all(|l| seen.insert(l.resource) && l.valid_lifetime > 0));
    }

    #[test]
    fn errors_name_line_and_column() {
        let text = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len\n\
                    2001:db8::1,00:01,4000,100,1,3000,0,1,128\n\
                    2001:db8::2,zz,4000,100,1,3000,0,1,128\n";
        let e = read(text.as_bytes(), &|_, _| 0, &mut |_| {}).unwrap_err();
        assert_eq!((e.line, e.column), (3, "duid"));
        let e = read("a,b\n".as_bytes(), &|_, _| 0, &mut |_| {}).unwrap_err();
        assert_eq!((e.line, e.column), (1, "address"));
    }
}
