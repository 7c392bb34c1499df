//! Network namespaces for multi-host tests (needs root, as CI has): a client namespace and one
//! namespace per node, each joined to the root namespace by a veth pair, with addresses from
//! a private subnet. Everything is removed on drop.
//!
//! ```text
//!   client ns  10.S.0.2 ──veth── 10.S.0.1  root ns (relays listen here)
//!   node i ns  10.S.i.2 ──veth── 10.S.i.1  root ns (relays forward from here)
//! ```
//!
//! No namespace has a default route, so the client reaches only `10.S.0.1` (the relays) and
//! a node answers only on its own link: every datagram between client and node passes a
//! relay in the root namespace, and none leaves these links.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

/// A set of namespaces and links, removed on drop.
pub struct Lab {
    /// Prefix of every name (`qn<pid>`).
    prefix: String,
    /// Second octet of the `10.S.0.0/16` subnet in use.
    subnet: u8,
    /// Number of node namespaces.
    nodes: usize,
    /// Namespaces created so far (removed on drop).
    namespaces: Vec<String>,
    /// Root-side link names created so far (removed on drop, taking their peers along).
    links: Vec<String>,
}

/// Runs `ip` with `args`; an error names the command and its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A `10.S.0.0/16` subnet no interface of the root namespace uses yet, starting from a value
/// derived from `seed` so that concurrent runs rarely collide.
fn free_subnet(seed: u32) -> Result<u8, String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map_err(|e| format!("cannot run `ip addr`: {e}"))?;
    let used = String::from_utf8_lossy(&out.stdout).to_string();
    (0..200u32)
        .map(|k| u8::try_from(20 + (seed + k) % 200).unwrap_or(20))
        .find(|s| !used.contains(&format!("inet 10.{s}.")))
        .ok_or_else(|| "no free 10.S.0.0/16 subnet for the test namespaces".to_string())
}

/// The pid in a name this module gives (`qn<pid>c`, `qn<pid>n<i>`, `qn<pid>v<i>`).
fn pid_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("qn")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let tail = rest.get(digits.len()..)?;
    if tail.starts_with(['c', 'n', 'v']) {
        digits.parse().ok()
    } else {
        None
    }
}

/// Removes the namespaces and links of earlier runs whose process is gone (killed before
/// it could clean up). Those of running processes are left alone.
fn remove_stale() {
    let dead = |name: &str| {
        pid_of(name).is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    let list = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    };
    for line in list(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if dead(name) {
            let _ = ip(&["netns", "del", name]);
        }
    }
    for line in list(&["-o", "link", "show"]).lines() {
        // `7: qn123v1@if6: <...>`
        let name = line.split(':').nth(1).unwrap_or_default().trim();
        let name = name.split('@').next().unwrap_or_default();
        if dead(name) {
            let _ = ip(&["link", "del", name]);
        }
    }
}

impl Lab {
    /// Creates the client namespace and `nodes` node namespaces. Fails with a message saying
    /// why (a test must then fail, not pass silently).
    pub fn create(nodes: usize) -> Result<Self, String> {
        if nodes > 200 {
            return Err("at most 200 node namespaces".into());
        }
        let pid = std::process::id();
        let mut lab = Self {
            prefix: format!("qn{pid}"),
            subnet: free_subnet(pid)?,
            nodes,
            namespaces: Vec::new(),
            links: Vec::new(),
        };
        remove_stale();
        // Leftovers of an earlier run that had the same pid and crashed.
        for i in 0..=nodes {
            let _ = ip(&["netns", "del", &lab.ns(i)]);
            let _ = ip(&["link", "del", &lab.link(i)]);
        }
        for i in 0..=nodes {
            lab.join(i)?;
        }
        Ok(lab)
    }

    /// Namespace `i`: 0 is the client, `i ≥ 1` node `i`.
    fn ns(&self, i: usize) -> String {
        if i == 0 {
            format!("{}c", self.prefix)
        } else {
            format!("{}n{i}", self.prefix)
        }
    }

    /// The root-side link of namespace `i` (at most 15 characters, as Linux requires).
    fn link(&self, i: usize) -> String {
        format!("{}v{i}", self.prefix)
    }

    /// `10.S.i.host`.
    fn addr(&self, i: usize, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, u8::try_from(i).unwrap_or(u8::MAX), host)
    }

    /// Creates namespace `i` and its veth pair, addresses and links up.
    fn join(&mut self, i: usize) -> Result<(), String> {
        let ns = self.ns(i);
        let root = self.link(i);
        let inside = format!("{root}p");
        ip(&["netns", "add", &ns]).map_err(|e| {
            format!("cannot create network namespace {ns} (needs root and `ip netns`): {e}")
        })?;
        self.namespaces.push(ns.clone());
        ip(&[
            "link", "add", &root, "type", "veth", "peer", "name", &inside, "netns", &ns,
        ])?;
        self.links.push(root.clone());
        let outer = format!("{}/24", self.addr(i, 1));
        let inner = format!("{}/24", self.addr(i, 2));
        ip(&["addr", "add", &outer, "dev", &root])?;
        ip(&["link", "set", &root, "up"])?;
        ip(&["-n", &ns, "addr", "add", &inner, "dev", &inside])?;
        ip(&["-n", &ns, "link", "set", &inside, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The client's namespace.
    pub fn client_ns(&self) -> String {
        self.ns(0)
    }

    /// Node `i`'s namespace (1-based, as node names are).
    pub fn node_ns(&self, i: usize) -> String {
        assert!((1..=self.nodes).contains(&i), "no node namespace {i}");
        self.ns(i)
    }

    /// The client's own address.
    pub fn client_ip(&self) -> IpAddr {
        self.addr(0, 2).into()
    }

    /// The root namespace's address on the client's link, where relays listen.
    pub fn relay_ip(&self) -> IpAddr {
        self.addr(0, 1).into()
    }

    /// Node `i`'s address inside its namespace (1-based).
    pub fn node_ip(&self, i: usize) -> IpAddr {
        self.addr(i, 2).into()
    }

    /// The root namespace's address on node `i`'s link, where relays forward from.
    pub fn node_gateway_ip(&self, i: usize) -> IpAddr {
        self.addr(i, 1).into()
    }

    /// The command prefix that runs a program inside namespace `ns`.
    pub fn exec_prefix(ns: &str) -> Vec<String> {
        ["ip", "netns", "exec", ns].map(String::from).to_vec()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Processes still inside a namespace would keep it alive: kill them first.
        for ns in &self.namespaces {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
        }
        for link in &self.links {
            let _ = ip(&["link", "del", link]);
        }
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_pid() {
        assert_eq!(pid_of("qn4194304c"), Some(4_194_304));
        assert_eq!(pid_of("qn12n3"), Some(12));
        assert_eq!(pid_of("qn12v3p"), Some(12));
        assert_eq!(pid_of("qn12x"), None);
        assert_eq!(pid_of("qnc"), None);
        assert_eq!(pid_of("eth0"), None);
    }
}
