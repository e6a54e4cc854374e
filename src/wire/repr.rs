//! Owned representations of whole messages: the test oracle and the golden-vector checker.
//!
//! [`Repr::parse`] decodes every option (recursively, through IAs and RELAY_MSG) into owned
//! values and [`Repr::emit`] writes them back through [`Writer`]; parse → emit reproduces the
//! input byte for byte. The server's hot path uses the views instead, which do not allocate.

use core::net::Ipv6Addr;

use super::codes::*;
use super::options::{DhcpOption, Options, RawOption};
use super::{Error, Writer, MAX_RELAY_DEPTH};

/// Deepest option nesting [`Repr::parse`] follows inside one message (IA_PD > IAPREFIX >
/// PD_EXCLUDE is 3; vendor options add one). Bounds recursion on hostile input.
pub const MAX_OPTION_DEPTH: usize = 8;

/// A whole DHCPv6 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repr {
    /// RFC 8415 §8 client/server message.
    Message {
        msg_type: MessageType,
        /// 24 bits.
        transaction_id: u32,
        options: Vec<OptionRepr>,
    },
    /// RFC 8415 §9 relay message.
    Relay {
        msg_type: MessageType,
        hop_count: u8,
        link_address: Ipv6Addr,
        peer_address: Ipv6Addr,
        options: Vec<OptionRepr>,
    },
}

/// One option, owned. Field meanings are those of the matching [`DhcpOption`] view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionRepr {
    ClientId(Vec<u8>),
    ServerId(Vec<u8>),
    IaNa {
        iaid: u32,
        t1: u32,
        t2: u32,
        options: Vec<OptionRepr>,
    },
    IaTa {
        iaid: u32,
        options: Vec<OptionRepr>,
    },
    IaAddr {
        address: Ipv6Addr,
        preferred: u32,
        valid: u32,
        options: Vec<OptionRepr>,
    },
    Oro(Vec<u16>),
    Preference(u8),
    ElapsedTime(u16),
    RelayMsg(Box<Repr>),
    Auth(Vec<u8>),
    Unicast(Ipv6Addr),
    StatusCode {
        status: StatusCode,
        message: Vec<u8>,
    },
    RapidCommit,
    UserClass(Vec<Vec<u8>>),
    VendorClass {
        enterprise: u32,
        data: Vec<Vec<u8>>,
    },
    VendorOpts {
        enterprise: u32,
        options: Vec<(u16, Vec<u8>)>,
    },
    InterfaceId(Vec<u8>),
    ReconfMsg(u8),
    ReconfAccept,
    DnsServers(Vec<Ipv6Addr>),
    /// Each name in wire format (labels and root label).
    DomainList(Vec<Vec<u8>>),
    IaPd {
        iaid: u32,
        t1: u32,
        t2: u32,
        options: Vec<OptionRepr>,
    },
    IaPrefix {
        preferred: u32,
        valid: u32,
        prefix_len: u8,
        prefix: Ipv6Addr,
        options: Vec<OptionRepr>,
    },
    InformationRefreshTime(u32),
    RemoteId {
        enterprise: u32,
        remote_id: Vec<u8>,
    },
    SubscriberId(Vec<u8>),
    /// The name in wire format, possibly partial (RFC 4704 §4.2).
    ClientFqdn {
        flags: u8,
        name: Vec<u8>,
    },
    Ero(Vec<u16>),
    PdExclude {
        prefix_len: u8,
        subnet_id: Vec<u8>,
    },
    ClientLinklayerAddr {
        link_layer_type: u16,
        address: Vec<u8>,
    },
    SolMaxRt(u32),
    InfMaxRt(u32),
    RelayPort(u16),
    Unknown {
        code: u16,
        data: Vec<u8>,
    },
}

impl Repr {
    /// Decodes a whole message, relay layers and every option included.
    pub fn parse(payload: &[u8]) -> Result<Repr, Error> {
        Repr::parse_at(payload, 0)
    }

    fn parse_at(payload: &[u8], relay_depth: usize) -> Result<Repr, Error> {
        let (&first, _) = payload.split_first().ok_or(Error::Truncated)?;
        let msg_type = MessageType::from(first);
        if msg_type.is_relay() {
            if relay_depth == MAX_RELAY_DEPTH {
                return Err(Error::RelayTooDeep);
            }
            let relay = super::RelayMessage::new_checked(payload)?;
            let options = parse_options(relay.options_bytes(), 0, relay_depth + 1)?;
            Ok(Repr::Relay {
                msg_type,
                hop_count: relay.hop_count(),
                link_address: relay.link_address(),
                peer_address: relay.peer_address(),
                options,
            })
        } else {
            let message = super::Message::new_checked(payload)?;
            Ok(Repr::Message {
                msg_type,
                transaction_id: message.transaction_id(),
                options: parse_options(message.options_bytes(), 0, relay_depth + 1)?,
            })
        }
    }

    /// Appends the message to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<usize, Error> {
        let mut w = Writer::new(out);
        self.write(&mut w);
        w.finish()
    }

    /// The encoded length.
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::Message { options, .. } => super::HEADER_LEN + options_len(options),
            Repr::Relay { options, .. } => super::RELAY_HEADER_LEN + options_len(options),
        }
    }

    fn write(&self, w: &mut Writer<'_>) {
        match self {
            Repr::Message {
                msg_type,
                transaction_id,
                options,
            } => {
                w.header(*msg_type, *transaction_id);
                write_options(w, options);
            }
            Repr::Relay {
                msg_type,
                hop_count,
                link_address,
                peer_address,
                options,
            } => {
                w.relay_header(*msg_type, *hop_count, *link_address, *peer_address);
                write_options(w, options);
            }
        }
    }

    pub fn options(&self) -> &[OptionRepr] {
        match self {
            Repr::Message { options, .. } | Repr::Relay { options, .. } => options,
        }
    }
}

fn parse_options(buf: &[u8], depth: usize, relay_depth: usize) -> Result<Vec<OptionRepr>, Error> {
    Options::new_checked(buf)?
        .map(|raw| OptionRepr::parse_at(raw, depth, relay_depth))
        .collect()
}

fn options_len(options: &[OptionRepr]) -> usize {
    options.iter().map(OptionRepr::buffer_len).sum()
}

fn write_options(w: &mut Writer<'_>, options: &[OptionRepr]) {
    for option in options {
        option.write(w);
    }
}

impl OptionRepr {
    /// Decodes one option (and whatever it contains).
    pub fn parse(raw: RawOption<'_>) -> Result<OptionRepr, Error> {
        OptionRepr::parse_at(raw, 0, 0)
    }

    fn parse_at(raw: RawOption<'_>, depth: usize, relay_depth: usize) -> Result<Self, Error> {
        if depth >= MAX_OPTION_DEPTH {
            return Err(Error::NestingTooDeep { code: raw.code });
        }
        let nested = |bytes: &[u8]| parse_options(bytes, depth + 1, relay_depth);
        Ok(match DhcpOption::parse(raw)? {
            DhcpOption::ClientId(d) => OptionRepr::ClientId(d.as_bytes().to_vec()),
            DhcpOption::ServerId(d) => OptionRepr::ServerId(d.as_bytes().to_vec()),
            DhcpOption::IaNa(ia) => OptionRepr::IaNa {
                iaid: ia.iaid(),
                t1: ia.t1(),
                t2: ia.t2(),
                options: nested(ia.options().as_bytes())?,
            },
            DhcpOption::IaTa(ia) => OptionRepr::IaTa {
                iaid: ia.iaid(),
                options: nested(ia.options().as_bytes())?,
            },
            DhcpOption::IaAddr(a) => OptionRepr::IaAddr {
                address: a.address(),
                preferred: a.preferred_lifetime(),
                valid: a.valid_lifetime(),
                options: nested(a.options().as_bytes())?,
            },
            DhcpOption::Oro(codes) => OptionRepr::Oro(codes.iter().collect()),
            DhcpOption::Preference(v) => OptionRepr::Preference(v),
            DhcpOption::ElapsedTime(v) => OptionRepr::ElapsedTime(v),
            DhcpOption::RelayMsg(bytes) => {
                OptionRepr::RelayMsg(Box::new(Repr::parse_at(bytes, relay_depth)?))
            }
            DhcpOption::Auth(bytes) => OptionRepr::Auth(bytes.to_vec()),
            DhcpOption::Unicast(a) => OptionRepr::Unicast(a),
            DhcpOption::StatusCode(s) => OptionRepr::StatusCode {
                status: s.status(),
                message: s.message().to_vec(),
            },
            DhcpOption::RapidCommit => OptionRepr::RapidCommit,
            DhcpOption::UserClass(data) => {
                OptionRepr::UserClass(data.iter().map(<[u8]>::to_vec).collect())
            }
            DhcpOption::VendorClass { enterprise, data } => OptionRepr::VendorClass {
                enterprise,
                data: data.iter().map(<[u8]>::to_vec).collect(),
            },
            DhcpOption::VendorOpts {
                enterprise,
                options,
            } => OptionRepr::VendorOpts {
                enterprise,
                options: options.map(|o| (o.code, o.data.to_vec())).collect(),
            },
            DhcpOption::InterfaceId(id) => OptionRepr::InterfaceId(id.to_vec()),
            DhcpOption::ReconfMsg(v) => OptionRepr::ReconfMsg(v),
            DhcpOption::ReconfAccept => OptionRepr::ReconfAccept,
            DhcpOption::DnsServers(list) => OptionRepr::DnsServers(list.iter().collect()),
            DhcpOption::DomainList(names) => {
                OptionRepr::DomainList(names.map(|n| n.as_bytes().to_vec()).collect())
            }
            DhcpOption::IaPd(ia) => OptionRepr::IaPd {
                iaid: ia.iaid(),
                t1: ia.t1(),
                t2: ia.t2(),
                options: nested(ia.options().as_bytes())?,
            },
            DhcpOption::IaPrefix(p) => OptionRepr::IaPrefix {
                preferred: p.preferred_lifetime(),
                valid: p.valid_lifetime(),
                prefix_len: p.prefix_len(),
                prefix: p.prefix(),
                options: nested(p.options().as_bytes())?,
            },
            DhcpOption::InformationRefreshTime(v) => OptionRepr::InformationRefreshTime(v),
            DhcpOption::RemoteId {
                enterprise,
                remote_id,
            } => OptionRepr::RemoteId {
                enterprise,
                remote_id: remote_id.to_vec(),
            },
            DhcpOption::SubscriberId(id) => OptionRepr::SubscriberId(id.to_vec()),
            DhcpOption::ClientFqdn { flags, name } => OptionRepr::ClientFqdn {
                flags,
                name: name.as_bytes().to_vec(),
            },
            DhcpOption::Ero(codes) => OptionRepr::Ero(codes.iter().collect()),
            DhcpOption::PdExclude(ex) => OptionRepr::PdExclude {
                prefix_len: ex.prefix_len(),
                subnet_id: ex.subnet_id().to_vec(),
            },
            DhcpOption::ClientLinklayerAddr {
                link_layer_type,
                address,
            } => OptionRepr::ClientLinklayerAddr {
                link_layer_type,
                address: address.to_vec(),
            },
            DhcpOption::SolMaxRt(v) => OptionRepr::SolMaxRt(v),
            DhcpOption::InfMaxRt(v) => OptionRepr::InfMaxRt(v),
            DhcpOption::RelayPort(v) => OptionRepr::RelayPort(v),
            DhcpOption::Unknown(raw) => OptionRepr::Unknown {
                code: raw.code,
                data: raw.data.to_vec(),
            },
        })
    }

    /// Encoded length, 4-octet header included.
    pub fn buffer_len(&self) -> usize {
        4 + match self {
            OptionRepr::ClientId(d)
            | OptionRepr::ServerId(d)
            | OptionRepr::Auth(d)
            | OptionRepr::InterfaceId(d)
            | OptionRepr::SubscriberId(d) => d.len(),
            OptionRepr::IaNa { options, .. } | OptionRepr::IaPd { options, .. } => {
                12 + options_len(options)
            }
            OptionRepr::IaTa { options, .. } => 4 + options_len(options),
            OptionRepr::IaAddr { options, .. } => 24 + options_len(options),
            OptionRepr::IaPrefix { options, .. } => 25 + options_len(options),
            OptionRepr::Oro(c) | OptionRepr::Ero(c) => 2 * c.len(),
            OptionRepr::Preference(_) | OptionRepr::ReconfMsg(_) => 1,
            OptionRepr::ElapsedTime(_) | OptionRepr::RelayPort(_) => 2,
            OptionRepr::RelayMsg(m) => m.buffer_len(),
            OptionRepr::Unicast(_) => 16,
            OptionRepr::StatusCode { message, .. } => 2 + message.len(),
            OptionRepr::RapidCommit | OptionRepr::ReconfAccept => 0,
            OptionRepr::UserClass(items) => items.iter().map(|i| 2 + i.len()).sum(),
            OptionRepr::VendorClass { data, .. } => {
                4 + data.iter().map(|i| 2 + i.len()).sum::<usize>()
            }
            OptionRepr::VendorOpts { options, .. } => {
                4 + options.iter().map(|(_, d)| 4 + d.len()).sum::<usize>()
            }
            OptionRepr::DnsServers(list) => 16 * list.len(),
            OptionRepr::DomainList(names) => names.iter().map(Vec::len).sum(),
            OptionRepr::InformationRefreshTime(_)
            | OptionRepr::SolMaxRt(_)
            | OptionRepr::InfMaxRt(_) => 4,
            OptionRepr::RemoteId { remote_id, .. } => 4 + remote_id.len(),
            OptionRepr::ClientFqdn { name, .. } => 1 + name.len(),
            OptionRepr::PdExclude { subnet_id, .. } => 1 + subnet_id.len(),
            OptionRepr::ClientLinklayerAddr { address, .. } => 2 + address.len(),
            OptionRepr::Unknown { data, .. } => data.len(),
        }
    }

    fn write(&self, w: &mut Writer<'_>) {
        match self {
            OptionRepr::ClientId(d) => {
                w.client_id(d);
            }
            OptionRepr::ServerId(d) => {
                w.server_id(d);
            }
            OptionRepr::IaNa {
                iaid,
                t1,
                t2,
                options,
            } => {
                w.ia_na(*iaid, *t1, *t2, |w| write_options(w, options));
            }
            OptionRepr::IaTa { iaid, options } => {
                w.ia_ta(*iaid, |w| write_options(w, options));
            }
            OptionRepr::IaAddr {
                address,
                preferred,
                valid,
                options,
            } => {
                w.ia_addr(*address, *preferred, *valid, |w| write_options(w, options));
            }
            OptionRepr::Oro(codes) => {
                w.oro(codes);
            }
            OptionRepr::Preference(v) => {
                w.preference(*v);
            }
            OptionRepr::ElapsedTime(v) => {
                w.elapsed_time(*v);
            }
            OptionRepr::RelayMsg(m) => {
                w.relay_msg(|w| m.write(w));
            }
            OptionRepr::Auth(d) => {
                w.raw(OPTION_AUTH, d);
            }
            OptionRepr::Unicast(a) => {
                w.unicast(*a);
            }
            OptionRepr::StatusCode { status, message } => {
                let mark = w.begin(OPTION_STATUS_CODE);
                w.bytes(&u16::from(*status).to_be_bytes()).bytes(message);
                w.end(mark);
            }
            OptionRepr::RapidCommit => {
                w.rapid_commit();
            }
            OptionRepr::UserClass(items) => {
                w.user_class(items.iter().map(Vec::as_slice));
            }
            OptionRepr::VendorClass { enterprise, data } => {
                w.vendor_class(*enterprise, data.iter().map(Vec::as_slice));
            }
            OptionRepr::VendorOpts {
                enterprise,
                options,
            } => {
                w.vendor_opts(*enterprise, |w| {
                    for (code, data) in options {
                        w.raw(*code, data);
                    }
                });
            }
            OptionRepr::InterfaceId(d) => {
                w.interface_id(d);
            }
            OptionRepr::ReconfMsg(v) => {
                w.u8_option(OPTION_RECONF_MSG, *v);
            }
            OptionRepr::ReconfAccept => {
                w.reconf_accept();
            }
            OptionRepr::DnsServers(list) => {
                w.dns_servers(list);
            }
            OptionRepr::DomainList(names) => {
                let mark = w.begin(OPTION_DOMAIN_LIST);
                for name in names {
                    w.bytes(name);
                }
                w.end(mark);
            }
            OptionRepr::IaPd {
                iaid,
                t1,
                t2,
                options,
            } => {
                w.ia_pd(*iaid, *t1, *t2, |w| write_options(w, options));
            }
            OptionRepr::IaPrefix {
                preferred,
                valid,
                prefix_len,
                prefix,
                options,
            } => {
                w.ia_prefix(*preferred, *valid, *prefix_len, *prefix, |w| {
                    write_options(w, options)
                });
            }
            OptionRepr::InformationRefreshTime(v) => {
                w.information_refresh_time(*v);
            }
            OptionRepr::RemoteId {
                enterprise,
                remote_id,
            } => {
                w.remote_id(*enterprise, remote_id);
            }
            OptionRepr::SubscriberId(d) => {
                w.subscriber_id(d);
            }
            OptionRepr::ClientFqdn { flags, name } => {
                w.client_fqdn_wire(*flags, name);
            }
            OptionRepr::Ero(codes) => {
                w.ero(codes);
            }
            OptionRepr::PdExclude {
                prefix_len,
                subnet_id,
            } => {
                let mark = w.begin(OPTION_PD_EXCLUDE);
                w.bytes(&[*prefix_len]).bytes(subnet_id);
                w.end(mark);
            }
            OptionRepr::ClientLinklayerAddr {
                link_layer_type,
                address,
            } => {
                w.client_linklayer_addr(*link_layer_type, address);
            }
            OptionRepr::SolMaxRt(v) => {
                w.sol_max_rt(*v);
            }
            OptionRepr::InfMaxRt(v) => {
                w.inf_max_rt(*v);
            }
            OptionRepr::RelayPort(v) => {
                w.relay_port(*v);
            }
            OptionRepr::Unknown { code, data } => {
                w.raw(*code, data);
            }
        }
    }
}

#[cfg(test)]
mod tests;
