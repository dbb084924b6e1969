//! The server to verify: `https://HOST:PORT` (IPv6 in brackets), split into
//! what the socket and TLS's server name need.

/// A parsed `https://HOST[:PORT]` address.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// Host without brackets (a DNS name or an IP address).
    pub host: String,
    pub port: u16,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("{url:?}: give an https:// address (attestation binds the TLS key; plain HTTP has none)"))?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| format!("{url:?}: unclosed [ in the address"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let port = match port {
            None => 443,
            Some(p) => p.parse().map_err(|_| format!("{url:?}: bad port {p:?}"))?,
        };
        Ok(Self { host: host.to_string(), port })
    }

    /// `host:port` for the Host header (brackets kept around IPv6).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_and_ipv6() {
        assert_eq!(Target::parse("https://127.0.0.1:8443").unwrap(), Target { host: "127.0.0.1".into(), port: 8443 });
        assert_eq!(Target::parse("https://api.example/v1").unwrap(), Target { host: "api.example".into(), port: 443 });
        let v6 = Target::parse("https://[::1]:9000/").unwrap();
        assert_eq!(v6, Target { host: "::1".into(), port: 9000 });
        assert_eq!(v6.authority(), "[::1]:9000");
        assert!(Target::parse("http://127.0.0.1:80").is_err());
        assert!(Target::parse("https://:80").is_err());
        assert!(Target::parse("https://h:notaport").is_err());
    }
}
