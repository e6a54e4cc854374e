//! `[io.xdp]`: settings of the AF_XDP backend (used when `[io] backend = "xdp"`).
//!
//! Kept in its own section and file, apart from the rest of `[io]`, because only the AF_XDP
//! data plane reads it. Every field has a default that works on any NIC (auto attach mode,
//! zero-copy tried then copy, one shard per queue), so an operator usually writes nothing
//! here beyond `backend = "xdp"` and the interfaces.
//!
//! ```toml
//! [io]
//! backend = "xdp"
//! interfaces = ["eth1"]
//!
//! [io.xdp]
//! attach_mode = "auto"         # "auto" (native, else generic) | "native" | "generic"
//! bind_mode = "auto"           # "auto" (zero-copy, else copy) | "zero-copy" | "copy"
//! queue_cores = [2, 3, 4, 5]   # queue i's shard runs on core queue_cores[i]
//! frames_per_queue = 4096      # UMEM frames per socket (half RX, half TX)
//! frame_size = 2048            # 2048 or 4096
//! ring_size = 2048             # RX, TX, fill and completion ring entries
//! batch = 64                   # frames per receive batch
//! verify_udp_checksum = true
//! fallback = "none"            # "none" | "uring": use io_uring if AF_XDP cannot start
//! ```

use serde::Deserialize;

/// How the XDP program is attached to each interface.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AttachMode {
    /// Native (driver) mode when the driver supports it, generic (SKB) mode otherwise.
    #[default]
    Auto,
    /// Native mode only: an error if the driver has no XDP support.
    Native,
    /// Generic mode: works on every interface, slower (the kernel builds an skb first).
    Generic,
}

/// How AF_XDP sockets bind to their queue.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BindMode {
    /// Zero-copy when the driver allows it, copy mode otherwise (logged).
    #[default]
    Auto,
    /// Zero-copy only: an error where the driver refuses it (veth always does).
    ZeroCopy,
    /// Copy mode, even where zero-copy would work.
    Copy,
}

/// What to do when the AF_XDP data plane cannot start (missing CAP_BPF/CAP_NET_ADMIN, no
/// native XDP with `attach_mode = "native"`, no zero-copy with `bind_mode = "zero-copy"`...).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    /// Stop with the error.
    #[default]
    None,
    /// Log the error and serve through io_uring UDP sockets instead.
    Uring,
}

/// The `[io.xdp]` section.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct XdpConfig {
    pub attach_mode: AttachMode,
    pub bind_mode: BindMode,
    /// Core of the shard that drives queue i. Empty: queue i runs on core i mod cores.
    pub queue_cores: Vec<usize>,
    pub frames_per_queue: u32,
    pub frame_size: u32,
    pub ring_size: u32,
    pub batch: usize,
    pub verify_udp_checksum: bool,
    pub fallback: Fallback,
}

impl Default for XdpConfig {
    fn default() -> Self {
        XdpConfig {
            attach_mode: AttachMode::Auto,
            bind_mode: BindMode::Auto,
            queue_cores: Vec::new(),
            frames_per_queue: 4096,
            frame_size: 2048,
            ring_size: 2048,
            batch: 64,
            verify_udp_checksum: true,
            fallback: Fallback::None,
        }
    }
}

/// A field of `[io.xdp]` with a value that cannot work, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpConfigError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for XdpConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "io.xdp.{}: {}", self.field, self.message)
    }
}

impl std::error::Error for XdpConfigError {}

impl XdpConfig {
    /// Checks the values that serde's types do not: ring and UMEM geometry.
    pub fn validate(&self) -> Result<(), XdpConfigError> {
        let err = |field, message: String| Err(XdpConfigError { field, message });
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return err(
                "frame_size",
                format!("{} is not 2048 or 4096 (a UMEM chunk must be a power of two, at least 2048, at most a page)", self.frame_size),
            );
        }
        if !self.ring_size.is_power_of_two() || self.ring_size < 64 {
            return err(
                "ring_size",
                format!(
                    "{} is not a power of two >= 64 (AF_XDP ring sizes are powers of two)",
                    self.ring_size
                ),
            );
        }
        if !self.frames_per_queue.is_power_of_two() || self.frames_per_queue < 2 * self.ring_size {
            return err(
                "frames_per_queue",
                format!(
                    "{} must be a power of two and at least 2 x ring_size ({}): half the frames feed the fill ring, half carry replies",
                    self.frames_per_queue,
                    2 * self.ring_size
                ),
            );
        }
        if self.batch == 0 || self.batch > self.ring_size as usize {
            return err(
                "batch",
                format!(
                    "{} must be between 1 and ring_size ({})",
                    self.batch, self.ring_size
                ),
            );
        }
        Ok(())
    }

    /// The core for the shard driving queue `queue`, given `cores` available cores.
    pub fn core_of_queue(&self, queue: usize, cores: usize) -> usize {
        match self.queue_cores.get(queue) {
            Some(&core) => core,
            None => queue % cores.max(1),
        }
    }
}

/// `deserialize_with` for the `xdp` field of `[io]`: parses and validates, so a bad value is
/// reported with the file position like every other configuration error.
pub fn deserialize_validated<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<XdpConfig, D::Error> {
    let config = XdpConfig::deserialize(d)?;
    config.validate().map_err(serde::de::Error::custom)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<XdpConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn defaults_validate() {
        let config = parse("").unwrap();
        assert_eq!(config, XdpConfig::default());
        config.validate().unwrap();
    }

    #[test]
    fn modes_parse_in_kebab_case() {
        let config = parse(
            "attach_mode = \"generic\"\nbind_mode = \"zero-copy\"\nfallback = \"uring\"\nqueue_cores = [3, 1]\n",
        )
        .unwrap();
        assert_eq!(config.attach_mode, AttachMode::Generic);
        assert_eq!(config.bind_mode, BindMode::ZeroCopy);
        assert_eq!(config.fallback, Fallback::Uring);
        assert_eq!(config.core_of_queue(0, 2), 3);
        assert_eq!(config.core_of_queue(1, 2), 1);
        assert_eq!(config.core_of_queue(2, 2), 0);
        assert!(parse("attach_mode = \"hw\"").is_err());
        assert!(parse("unknown = 1").is_err());
    }

    #[test]
    fn geometry_errors_name_the_field() {
        let bad = |text: &str| parse(text).unwrap().validate().unwrap_err().field;
        assert_eq!(bad("frame_size = 3000"), "frame_size");
        assert_eq!(bad("ring_size = 1000"), "ring_size");
        assert_eq!(bad("ring_size = 4096"), "frames_per_queue");
        assert_eq!(bad("batch = 0"), "batch");
        assert_eq!(bad("batch = 4096"), "batch");
    }
}

#[cfg(test)]
mod file_tests {
    #[test]
    fn io_xdp_section_in_a_config_file() {
        let text = "[io]\nbackend = \"xdp\"\ninterfaces = [\"eth1\"]\n\n[io.xdp]\nattach_mode = \"generic\"\nring_size = 512\n";
        let config = crate::config::Config::from_str(text, "t.toml").unwrap();
        assert_eq!(config.io.xdp.attach_mode, super::AttachMode::Generic);
        assert_eq!(config.io.xdp.ring_size, 512);

        let bad = "[io]\nbackend = \"xdp\"\n\n[io.xdp]\nring_size = 1000\n";
        let error = crate::config::Config::from_str(bad, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("t.toml"), "{error}");
        assert!(error.contains("ring_size"), "{error}");
        assert!(
            error.contains(":4")
                || error.contains(":5")
                || error.contains("line 4")
                || error.contains("line 5"),
            "{error}"
        );
    }
}
