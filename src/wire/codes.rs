//! Registered numbers: message types, option codes, status codes, DUID types, with the names
//! the RFCs (and the IANA "DHCPv6 Parameters" registry) give them.

/// Declares a `u8`/`u16` enum whose unregistered values are kept in `Unknown(n)`, so a view can
/// always return one (smoltcp's `enum_with_unknown!`). A server MUST discard messages of an
/// unknown type (RFC 8415 §16) but that is the engine's decision, not the codec's.
macro_rules! registry_enum {
    (
        $(#[$attr:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$vattr:meta])* $variant:ident = $value:expr => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vattr])* $variant, )+
            /// A value this codec does not know by name.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }

        impl $name {
            /// The registry's name for this value (e.g. `"RELAY-FORW"`), or `None` if unknown.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( $name::$variant => Some($text), )+
                    $name::Unknown(_) => None,
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(text) => f.write_str(text),
                    None => write!(f, "unknown({})", <$ty>::from(*self)),
                }
            }
        }
    };
}

registry_enum! {
    /// DHCPv6 message types: RFC 8415 §7.3 (1-13) and the later registrations up to 35
    /// (RFC 5007, 5460, 6977, 7341, 7653, 8156).
    pub enum MessageType(u8) {
        Solicit = 1 => "SOLICIT",
        Advertise = 2 => "ADVERTISE",
        Request = 3 => "REQUEST",
        Confirm = 4 => "CONFIRM",
        Renew = 5 => "RENEW",
        Rebind = 6 => "REBIND",
        Reply = 7 => "REPLY",
        Release = 8 => "RELEASE",
        Decline = 9 => "DECLINE",
        Reconfigure = 10 => "RECONFIGURE",
        InformationRequest = 11 => "INFORMATION-REQUEST",
        RelayForw = 12 => "RELAY-FORW",
        RelayRepl = 13 => "RELAY-REPL",
        /// RFC 5007 §4.2.1.
        Leasequery = 14 => "LEASEQUERY",
        LeasequeryReply = 15 => "LEASEQUERY-REPLY",
        /// RFC 5460 §5.2.
        LeasequeryDone = 16 => "LEASEQUERY-DONE",
        LeasequeryData = 17 => "LEASEQUERY-DATA",
        /// RFC 6977 §5.
        ReconfigureRequest = 18 => "RECONFIGURE-REQUEST",
        ReconfigureReply = 19 => "RECONFIGURE-REPLY",
        /// RFC 7341 §6.
        Dhcpv4Query = 20 => "DHCPV4-QUERY",
        Dhcpv4Response = 21 => "DHCPV4-RESPONSE",
        /// RFC 7653 §8.
        ActiveLeasequery = 22 => "ACTIVELEASEQUERY",
        Starttls = 23 => "STARTTLS",
        /// RFC 8156 §5.1 (failover; carried over TCP, never over UDP).
        Bndupd = 24 => "BNDUPD",
        Bndreply = 25 => "BNDREPLY",
        Poolreq = 26 => "POOLREQ",
        Poolresp = 27 => "POOLRESP",
        Updreq = 28 => "UPDREQ",
        Updreqall = 29 => "UPDREQALL",
        Upddone = 30 => "UPDDONE",
        Connect = 31 => "CONNECT",
        Connectreply = 32 => "CONNECTREPLY",
        Disconnect = 33 => "DISCONNECT",
        State = 34 => "STATE",
        Contact = 35 => "CONTACT",
    }
}

impl MessageType {
    /// Relay-forw and Relay-repl use the 34-octet relay header (RFC 8415 §9); every other
    /// type uses the 4-octet client/server header (§8).
    pub fn is_relay(self) -> bool {
        matches!(self, MessageType::RelayForw | MessageType::RelayRepl)
    }

    /// Messages a client sends to a server (RFC 8415 §7.3, "sent by a client").
    pub fn is_client_to_server(self) -> bool {
        matches!(
            self,
            MessageType::Solicit
                | MessageType::Request
                | MessageType::Confirm
                | MessageType::Renew
                | MessageType::Rebind
                | MessageType::Release
                | MessageType::Decline
                | MessageType::InformationRequest
        )
    }
}

registry_enum! {
    /// Status codes (RFC 8415 §21.13 and the registry: RFC 5007, 5460, 7653, 8156).
    pub enum StatusCode(u16) {
        Success = 0 => "Success",
        UnspecFail = 1 => "UnspecFail",
        NoAddrsAvail = 2 => "NoAddrsAvail",
        NoBinding = 3 => "NoBinding",
        NotOnLink = 4 => "NotOnLink",
        UseMulticast = 5 => "UseMulticast",
        NoPrefixAvail = 6 => "NoPrefixAvail",
        /// RFC 5007 §4.1.2.5.
        UnknownQueryType = 7 => "UnknownQueryType",
        MalformedQuery = 8 => "MalformedQuery",
        NotConfigured = 9 => "NotConfigured",
        NotAllowed = 10 => "NotAllowed",
        /// RFC 5460 §5.4.
        QueryTerminated = 11 => "QueryTerminated",
        /// RFC 7653 §7.7.
        DataMissing = 12 => "DataMissing",
        CatchUpComplete = 13 => "CatchUpComplete",
        NotSupported = 14 => "NotSupported",
        TlsConnectionRefused = 15 => "TLSConnectionRefused",
        /// RFC 8156 §6.2.
        AddressInUse = 16 => "AddressInUse",
        ConfigurationConflict = 17 => "ConfigurationConflict",
        MissingBindingInformation = 18 => "MissingBindingInformation",
        OutdatedBindingInformation = 19 => "OutdatedBindingInformation",
        ServerShuttingDown = 20 => "ServerShuttingDown",
        DnsUpdateNotSupported = 21 => "DNSUpdateNotSupported",
        ExcessiveTimeSkew = 22 => "ExcessiveTimeSkew",
    }
}

registry_enum! {
    /// DUID types (RFC 8415 §11.1; DUID-UUID from RFC 6355).
    pub enum DuidType(u16) {
        /// Link-layer address plus time (§11.2).
        Llt = 1 => "DUID-LLT",
        /// Vendor-assigned unique ID based on enterprise number (§11.3).
        En = 2 => "DUID-EN",
        /// Link-layer address (§11.4).
        Ll = 3 => "DUID-LL",
        /// UUID (§11.5, RFC 6355).
        Uuid = 4 => "DUID-UUID",
    }
}

// Option codes (RFC 8415 §21 and §24, and the RFCs named beside each).
pub const OPTION_CLIENTID: u16 = 1;
pub const OPTION_SERVERID: u16 = 2;
pub const OPTION_IA_NA: u16 = 3;
pub const OPTION_IA_TA: u16 = 4;
pub const OPTION_IAADDR: u16 = 5;
pub const OPTION_ORO: u16 = 6;
pub const OPTION_PREFERENCE: u16 = 7;
pub const OPTION_ELAPSED_TIME: u16 = 8;
pub const OPTION_RELAY_MSG: u16 = 9;
pub const OPTION_AUTH: u16 = 11;
pub const OPTION_UNICAST: u16 = 12;
pub const OPTION_STATUS_CODE: u16 = 13;
pub const OPTION_RAPID_COMMIT: u16 = 14;
pub const OPTION_USER_CLASS: u16 = 15;
pub const OPTION_VENDOR_CLASS: u16 = 16;
pub const OPTION_VENDOR_OPTS: u16 = 17;
pub const OPTION_INTERFACE_ID: u16 = 18;
pub const OPTION_RECONF_MSG: u16 = 19;
pub const OPTION_RECONF_ACCEPT: u16 = 20;
/// RFC 3319.
pub const OPTION_SIP_SERVER_D: u16 = 21;
/// RFC 3319.
pub const OPTION_SIP_SERVER_A: u16 = 22;
/// RFC 3646 §3.
pub const OPTION_DNS_SERVERS: u16 = 23;
/// RFC 3646 §4.
pub const OPTION_DOMAIN_LIST: u16 = 24;
pub const OPTION_IA_PD: u16 = 25;
pub const OPTION_IAPREFIX: u16 = 26;
/// RFC 4075.
pub const OPTION_SNTP_SERVERS: u16 = 31;
pub const OPTION_INFORMATION_REFRESH_TIME: u16 = 32;
/// RFC 4649.
pub const OPTION_REMOTE_ID: u16 = 37;
/// RFC 4580.
pub const OPTION_SUBSCRIBER_ID: u16 = 38;
/// RFC 4704.
pub const OPTION_CLIENT_FQDN: u16 = 39;
/// RFC 4994.
pub const OPTION_ERO: u16 = 43;
/// RFC 5007 §4.1.2.
pub const OPTION_LQ_QUERY: u16 = 44;
pub const OPTION_CLIENT_DATA: u16 = 45;
pub const OPTION_CLT_TIME: u16 = 46;
pub const OPTION_LQ_RELAY_DATA: u16 = 47;
pub const OPTION_LQ_CLIENT_LINK: u16 = 48;
/// RFC 5460 §5.4.1.
pub const OPTION_RELAY_ID: u16 = 53;
/// RFC 5908.
pub const OPTION_NTP_SERVER: u16 = 56;
/// RFC 6422.
pub const OPTION_RSOO: u16 = 66;
/// RFC 6603 §4.2.
pub const OPTION_PD_EXCLUDE: u16 = 67;
/// RFC 6607.
pub const OPTION_VSS: u16 = 68;
/// RFC 6939 §4.
pub const OPTION_CLIENT_LINKLAYER_ADDR: u16 = 79;
pub const OPTION_SOL_MAX_RT: u16 = 82;
pub const OPTION_INF_MAX_RT: u16 = 83;
/// RFC 8357 §5 ("Relay Source Port Option").
pub const OPTION_RELAY_PORT: u16 = 135;

/// The registry name of an option code this codec knows, for logs and errors.
pub fn option_name(code: u16) -> Option<&'static str> {
    Some(match code {
        OPTION_CLIENTID => "OPTION_CLIENTID",
        OPTION_SERVERID => "OPTION_SERVERID",
        OPTION_IA_NA => "OPTION_IA_NA",
        OPTION_IA_TA => "OPTION_IA_TA",
        OPTION_IAADDR => "OPTION_IAADDR",
        OPTION_ORO => "OPTION_ORO",
        OPTION_PREFERENCE => "OPTION_PREFERENCE",
        OPTION_ELAPSED_TIME => "OPTION_ELAPSED_TIME",
        OPTION_RELAY_MSG => "OPTION_RELAY_MSG",
        OPTION_AUTH => "OPTION_AUTH",
        OPTION_UNICAST => "OPTION_UNICAST",
        OPTION_STATUS_CODE => "OPTION_STATUS_CODE",
        OPTION_RAPID_COMMIT => "OPTION_RAPID_COMMIT",
        OPTION_USER_CLASS => "OPTION_USER_CLASS",
        OPTION_VENDOR_CLASS => "OPTION_VENDOR_CLASS",
        OPTION_VENDOR_OPTS => "OPTION_VENDOR_OPTS",
        OPTION_INTERFACE_ID => "OPTION_INTERFACE_ID",
        OPTION_RECONF_MSG => "OPTION_RECONF_MSG",
        OPTION_RECONF_ACCEPT => "OPTION_RECONF_ACCEPT",
        OPTION_SIP_SERVER_D => "OPTION_SIP_SERVER_D",
        OPTION_SIP_SERVER_A => "OPTION_SIP_SERVER_A",
        OPTION_DNS_SERVERS => "OPTION_DNS_SERVERS",
        OPTION_DOMAIN_LIST => "OPTION_DOMAIN_LIST",
        OPTION_IA_PD => "OPTION_IA_PD",
        OPTION_IAPREFIX => "OPTION_IAPREFIX",
        OPTION_SNTP_SERVERS => "OPTION_SNTP_SERVERS",
        OPTION_INFORMATION_REFRESH_TIME => "OPTION_INFORMATION_REFRESH_TIME",
        OPTION_REMOTE_ID => "OPTION_REMOTE_ID",
        OPTION_SUBSCRIBER_ID => "OPTION_SUBSCRIBER_ID",
        OPTION_CLIENT_FQDN => "OPTION_CLIENT_FQDN",
        OPTION_ERO => "OPTION_ERO",
        OPTION_LQ_QUERY => "OPTION_LQ_QUERY",
        OPTION_CLIENT_DATA => "OPTION_CLIENT_DATA",
        OPTION_CLT_TIME => "OPTION_CLT_TIME",
        OPTION_LQ_RELAY_DATA => "OPTION_LQ_RELAY_DATA",
        OPTION_LQ_CLIENT_LINK => "OPTION_LQ_CLIENT_LINK",
        OPTION_RELAY_ID => "OPTION_RELAY_ID",
        OPTION_NTP_SERVER => "OPTION_NTP_SERVER",
        OPTION_RSOO => "OPTION_RSOO",
        OPTION_PD_EXCLUDE => "OPTION_PD_EXCLUDE",
        OPTION_VSS => "OPTION_VSS",
        OPTION_CLIENT_LINKLAYER_ADDR => "OPTION_CLIENT_LINKLAYER_ADDR",
        OPTION_SOL_MAX_RT => "OPTION_SOL_MAX_RT",
        OPTION_INF_MAX_RT => "OPTION_INF_MAX_RT",
        OPTION_RELAY_PORT => "OPTION_RELAY_PORT",
        _ => return None,
    })
}

/// RFC 8415 §7.7: a lifetime, T1 or T2 of 0xffffffff means infinity.
pub const INFINITY: u32 = 0xffff_ffff;

/// RFC 8415 §21.15 / RFC 8357: the UDP ports.
pub const CLIENT_PORT: u16 = 546;
pub const SERVER_PORT: u16 = 547;

/// RFC 8415 §7.1: All_DHCP_Relay_Agents_and_Servers (ff02::1:2).
pub const ALL_DHCP_RELAY_AGENTS_AND_SERVERS: core::net::Ipv6Addr =
    core::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
/// RFC 8415 §7.1: All_DHCP_Servers (ff05::1:3).
pub const ALL_DHCP_SERVERS: core::net::Ipv6Addr =
    core::net::Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 1, 3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_types_round_trip_through_u8() {
        for n in 0..=u8::MAX {
            let t = MessageType::from(n);
            assert_eq!(u8::from(t), n);
            assert_eq!(t.name().is_some(), (1..=35).contains(&n), "{n}");
        }
        assert_eq!(MessageType::from(12).to_string(), "RELAY-FORW");
        assert_eq!(MessageType::from(200).to_string(), "unknown(200)");
        assert!(MessageType::RelayRepl.is_relay());
        assert!(!MessageType::Reply.is_relay());
    }

    #[test]
    fn status_codes_round_trip_through_u16() {
        for n in 0..100u16 {
            assert_eq!(u16::from(StatusCode::from(n)), n);
        }
        assert_eq!(StatusCode::from(6), StatusCode::NoPrefixAvail);
        assert_eq!(StatusCode::NoPrefixAvail.name(), Some("NoPrefixAvail"));
    }
}
