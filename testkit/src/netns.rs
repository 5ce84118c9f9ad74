//! Little networks made of Linux network namespaces, for tests and benchmarks that need
//! real packets: a "node" namespace with a bridge (its address is the node address, IP
//! forwarding on, service addresses routed onto the bridge) and "pod" namespaces behind it
//! (veth ports with hairpin on, as the CNI bridge plugin sets them). Threads can be moved
//! into a namespace with [`in_netns`] to serve or connect there. Every address lives inside
//! these namespaces; dropping the [`Lab`] deletes them.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `f` on a thread inside network namespace `ns`.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("netns handle");
        rustix::thread::move_into_link_name_space(fd.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

/// A node namespace with a bridge (its address is the node address) and pods behind it.
pub struct Lab {
    prefix: String,
    pub node: String,
    subnet: u8,
    pub pods: Vec<String>,
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Lab {
    pub fn new() -> Self {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("skp{}x{n}", std::process::id() % 10000);
        let node = format!("{prefix}-node");
        let subnet = (100 + (std::process::id() % 100) as u8).wrapping_add(n as u8 * 7);
        ip(&["netns", "add", &node]);
        ip(&["-n", &node, "link", "set", "lo", "up"]);
        ip(&["-n", &node, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &node, "addr", "add", &format!("10.77.{subnet}.1/24"), "dev", "br0"]);
        ip(&["-n", &node, "link", "set", "br0", "up"]);
        // Service addresses are routed onto the bridge, so a packet to a ClusterIP that no
        // rule claims reaches the forward hook (and its reject) instead of "no route".
        ip(&["-n", &node, "route", "add", "10.96.0.0/12", "dev", "br0"]);
        // A node forwards (the CNI bridge plugin turns this on too).
        let ok = Command::new("ip")
            .args(["netns", "exec", &node, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
            .status()
            .expect("sysctl");
        assert!(ok.success());
        Lab { prefix, node, subnet, pods: vec![] }
    }

    pub fn node_ip(&self) -> Ipv4Addr {
        format!("10.77.{}.1", self.subnet).parse().unwrap()
    }

    /// A pod namespace with address .host on the bridge; returns (netns, ip).
    pub fn pod(&mut self, name: &str, host: u8) -> (String, Ipv4Addr) {
        let ns = format!("{}-{name}", self.prefix);
        let addr: Ipv4Addr = format!("10.77.{}.{host}", self.subnet).parse().unwrap();
        ip(&["netns", "add", &ns]);
        let veth = format!("v{host}");
        ip(&["-n", &self.node, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        ip(&["-n", &self.node, "link", "set", &veth, "master", "br0", "up"]);
        // Hairpin on the bridge port, as the CNI bridge plugin's hairpinMode sets it.
        ip(&["-n", &self.node, "link", "set", &veth, "type", "bridge_slave", "hairpin", "on"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "route", "add", "default", "via", &self.node_ip().to_string()]);
        self.pods.push(ns.clone());
        (ns, addr)
    }

    /// TCP and UDP servers on port `port` in `ns`, answering with `name`.
    pub fn serve(ns: &str, name: &str, port: u16) {
        let (n1, n2) = (name.to_string(), name.to_string());
        let ns1 = ns.to_string();
        std::thread::spawn(move || {
            in_netns(&ns1, move || {
                let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
                for mut s in l.incoming().flatten() {
                    let _ = s.write_all(n1.as_bytes());
                }
            })
        });
        let ns2 = ns.to_string();
        std::thread::spawn(move || {
            in_netns(&ns2, move || {
                let u = UdpSocket::bind(("0.0.0.0", port)).unwrap();
                let mut buf = [0u8; 64];
                while let Ok((_, from)) = u.recv_from(&mut buf) {
                    let _ = u.send_to(n2.as_bytes(), from);
                }
            })
        });
    }

    pub fn nft_command(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.node, "nft"].map(String::from).to_vec()
    }

    pub fn list_table(&self) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.node, "nft", "list", "table", "ip", "skiff-proxy"])
            .output()
            .unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.pods.iter().chain(std::iter::once(&self.node)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// One TCP exchange from `ns`: the server's name, or the error kind.
pub fn tcp(ns: &str, to: SocketAddr) -> Result<String, std::io::ErrorKind> {
    in_netns(ns, move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).map_err(|e| e.kind())?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.kind())?;
        Ok(out)
    })
}

/// One UDP exchange from a fresh socket (a new conntrack entry each time).
pub fn udp(ns: &str, to: SocketAddr) -> Option<String> {
    in_netns(ns, move || {
        let u = UdpSocket::bind("0.0.0.0:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        u.send_to(b"?", to).ok()?;
        let mut buf = [0u8; 64];
        let (n, _) = u.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}
