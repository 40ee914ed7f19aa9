//! A VM stand-in on a TAP port: a network namespace holding the interface a
//! `net_tap` port of switchyard creates.
use super::netns::{unique_name, Netns};
use super::switch::SwitchPort;

/// A VM stand-in: a namespace that will hold the TAP interface `iface`.
pub(crate) struct TapVm {
    pub netns: Netns,
    iface: String,
    mac: String,
    address: String,
}

impl TapVm {
    pub(crate) fn new(tag: &str, mac: &str, address: &str) -> TapVm {
        let netns = Netns::new(&unique_name(tag));
        // Interfaces moved in come up without IPv6 (see `quiet`).
        for key in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"] {
            assert!(netns.exec(&["sysctl", "-q", "-w", key]).status().unwrap().success(), "{key}");
        }
        let iface = format!("{}t", netns.name);
        TapVm { netns, iface, mac: mac.into(), address: address.into() }
    }

    /// The VM's NIC: the TAP interface, in the namespace once attached.
    pub(crate) fn iface(&self) -> &str {
        &self.iface
    }

    /// The switch's port for this VM: a TAP port creating `iface`; frames sent to
    /// the VM carry its MAC.
    pub(crate) fn switch_port(&self, name: &str, index: usize) -> SwitchPort {
        SwitchPort {
            name: name.into(),
            devargs: format!("net_tap{index},iface={}", self.iface),
            role: "vm",
            peer_mac: Some(self.mac.clone()),
        }
    }

    /// Stops the kernel's IPv6 chatter (MLD reports, DAD, router solicitations) on
    /// the interface, which net_tap brought up in the root namespace. Otherwise
    /// chatter sent while the other interface is being moved (and so is down)
    /// could not be delivered: rightly counted as `tx_refused`, but this test
    /// wants to see exactly zero drops.
    pub(crate) fn quiet(&self) {
        let key = format!("net.ipv6.conf.{}.disable_ipv6=1", self.iface);
        super::netns::run(&["sysctl", "-q", "-w", &key]);
    }

    /// Plugs the VM in: moves the TAP interface (which the running switch created)
    /// into the namespace and configures it there. The interface starts with the
    /// switch port's own MAC; the VM gets its own.
    pub(crate) fn attach(&self) {
        super::netns::run(&["ip", "link", "set", &self.iface, "netns", &self.netns.name]);
        self.netns.ip(&["link", "set", &self.iface, "address", &self.mac]);
        self.netns.ip(&["addr", "add", &self.address, "dev", &self.iface]);
        self.netns.ip(&["link", "set", &self.iface, "up"]);
    }
}
