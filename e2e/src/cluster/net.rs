//! The box's network: a Linux bridge, one network namespace per pod with a
//! veth on the bridge and its own address, and name resolution through a
//! per-pod `/etc/hosts` (`ip netns exec` bind-mounts
//! `/etc/netns/<netns>/hosts` over `/etc/hosts` for the processes it
//! starts: the product resolves Service names with no test-only code).
//! Needs root and iproute2.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;

/// Runs `ip args…`; fails naming the command.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e} (is iproute2 installed?)", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// One box's bridge and address space: `10.<net>.0.0/16`, the host side
/// at `10.<net>.0.1`, pods from `10.<net>.1.1`, Service addresses from
/// `10.<net>.255.1`.
#[derive(Debug)]
pub struct Network {
    /// Short tag in every interface and namespace name (≤ 15 characters).
    tag: String,
    net: u8,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_pod: u32,
    next_service: u32,
    namespaces: Vec<String>,
    /// The hosts file every pod gets (a new pod's exists before it starts:
    /// `ip netns exec` mounts it only if it does).
    hosts: String,
}

impl Network {
    /// Creates the bridge. `net` picks the /16 (distinct boxes on one
    /// machine use distinct values).
    pub fn create(net: u8) -> Result<Self, String> {
        let tag = format!("px{net}");
        let bridge = format!("{tag}br");
        // What a run that was killed left behind: its pods' processes,
        // namespaces and bridge.
        let listed = Command::new("ip").args(["netns", "list"]).output().map_err(|e| format!("ip netns list: {e}"))?;
        for netns in String::from_utf8_lossy(&listed.stdout).lines().filter_map(|l| l.split_whitespace().next()) {
            if netns.starts_with(&format!("{tag}-")) {
                if let Ok(pids) = Command::new("ip").args(["netns", "pids", netns]).output() {
                    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                        let _ = Command::new("kill").args(["-KILL", pid]).status();
                    }
                }
                let _ = ip(&["netns", "del", netns]);
                let _ = std::fs::remove_dir_all(format!("/etc/netns/{netns}"));
            }
        }
        let _ = ip(&["link", "del", &bridge]);
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        // A fixed MAC, as CNI bridge plugins set: otherwise the bridge takes
        // the lowest MAC of its ports, which changes as pods come and go, and
        // every pod's ARP entry for the host and the Service addresses goes
        // stale (~30 s without a route) whenever a pod is replaced.
        ip(&["link", "set", &bridge, "address", &format!("02:00:0a:{net:02x}:00:01")])?;
        ip(&["addr", "add", &format!("10.{net}.0.1/16"), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        let hosts = "127.0.0.1 localhost\n::1 localhost\n".to_owned();
        Ok(Self { tag, net, state: Mutex::new(State { next_pod: 0, next_service: 0, namespaces: Vec::new(), hosts }) })
    }

    /// The host's address on the bridge (pods reach the test's servers there).
    pub fn host(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, 0, 1)
    }

    /// A new network namespace with its address; returns (netns, address).
    pub fn add_pod(&self) -> Result<(String, Ipv4Addr), String> {
        let k = {
            let mut s = self.state.lock().map_err(|_| "network state poisoned")?;
            s.next_pod += 1;
            s.next_pod
        };
        let addr = Ipv4Addr::new(10, self.net, 1 + (k / 250) as u8, (k % 250) as u8 + 1);
        let netns = format!("{}-{k}", self.tag);
        let host_side = format!("{}h{k}", self.tag);
        let pod_side = format!("{}p{k}", self.tag);
        ip(&["netns", "add", &netns])?;
        ip(&["link", "add", &host_side, "type", "veth", "peer", "name", &pod_side])?;
        ip(&["link", "set", &pod_side, "netns", &netns])?;
        ip(&["-n", &netns, "link", "set", &pod_side, "name", "eth0"])?;
        ip(&["-n", &netns, "addr", "add", &format!("{addr}/16"), "dev", "eth0"])?;
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        ip(&["-n", &netns, "route", "add", "default", "via", &self.host().to_string()])?;
        ip(&["link", "set", &host_side, "master", &format!("{}br", self.tag)])?;
        ip(&["link", "set", &host_side, "up"])?;
        std::fs::create_dir_all(format!("/etc/netns/{netns}")).map_err(|e| e.to_string())?;
        let mut state = self.state.lock().map_err(|_| "network state poisoned")?;
        std::fs::write(format!("/etc/netns/{netns}/hosts"), &state.hosts).map_err(|e| e.to_string())?;
        state.namespaces.push(netns.clone());
        Ok((netns, addr))
    }

    /// Removes a pod's namespace (its veth goes with it), killing what
    /// still runs in it.
    pub fn remove_pod(&self, netns: &str) {
        if let Ok(pids) = Command::new("ip").args(["netns", "pids", netns]).output() {
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = ip(&["netns", "del", netns]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{netns}"));
        if let Ok(mut s) = self.state.lock() {
            s.namespaces.retain(|n| n != netns);
        }
    }

    /// A new virtual address for a ClusterIP Service, on the bridge.
    pub fn add_service_address(&self) -> Result<Ipv4Addr, String> {
        let k = {
            let mut s = self.state.lock().map_err(|_| "network state poisoned")?;
            s.next_service += 1;
            s.next_service
        };
        let addr = Ipv4Addr::new(10, self.net, 255, k as u8);
        ip(&["addr", "add", &format!("{addr}/32"), "dev", &format!("{}br", self.tag)])?;
        Ok(addr)
    }

    /// Writes the hosts file every pod resolves names with.
    pub fn write_hosts(&self, entries: &[(String, Ipv4Addr)]) -> Result<(), String> {
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (name, addr) in entries {
            text.push_str(&format!("{addr} {name}\n"));
        }
        let namespaces = {
            let mut state = self.state.lock().map_err(|_| "network state poisoned")?;
            if state.hosts == text {
                return Ok(());
            }
            state.hosts = text.clone();
            state.namespaces.clone()
        };
        for netns in namespaces {
            // In place (same inode): the file is bind-mounted into running pods.
            let path = format!("/etc/netns/{netns}/hosts");
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
        }
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let namespaces = self.state.lock().map(|s| s.namespaces.clone()).unwrap_or_default();
        for netns in namespaces {
            self.remove_pod(&netns);
        }
        let _ = ip(&["link", "del", &format!("{}br", self.tag)]);
    }
}
