//! The maps of health checks through the data path: which backend each
//! check source port is for (CHECK_PORTS), and the check namespace's veth
//! (CHECK_PATH). Part of the one map writer.

use std::collections::BTreeMap;

use aya::maps::{Array, MapData};
use lb_common::{
    check::{CHECK_BLOCK, CHECK_PORT_BASE, CHECK_PORTS_LEN, CheckPath, CheckPort},
    names,
};

use super::writer::WriteError;
use crate::plan::DesiredService;

pub struct CheckPorts {
    ports: Array<MapData, CheckPort>,
    path: Array<MapData, CheckPath>,
    /// What CHECK_PORTS holds, by index.
    written: BTreeMap<u32, CheckPort>,
}

impl CheckPorts {
    pub fn new(ports: Array<MapData, CheckPort>, path: Array<MapData, CheckPath>) -> Self {
        // A previous agent's entries are replaced by the first sync.
        let written = (0..CHECK_PORTS_LEN)
            .filter_map(|i| ports.get(&i, 0).ok().filter(|c| c.set != 0).map(|c| (i, c)))
            .collect();
        CheckPorts {
            ports,
            path,
            written,
        }
    }

    /// Make CHECK_PORTS say what `desired` does; `id` names a backend's id.
    pub fn sync(
        &mut self,
        desired: &[DesiredService],
        id: impl Fn(&DesiredService, std::net::IpAddr) -> Option<u32>,
    ) -> Result<(), WriteError> {
        let mut want: BTreeMap<u32, CheckPort> = BTreeMap::new();
        for d in desired {
            for b in &d.backends {
                let (Some(base), Some(backend)) = (b.check_port, id(d, b.addr)) else {
                    continue;
                };
                for i in 0..CHECK_BLOCK {
                    let port = CheckPort {
                        backend,
                        forward: d.forward as u8,
                        set: 1,
                        _pad: [0; 2],
                    };
                    want.insert((base - CHECK_PORT_BASE + i) as u32, port);
                }
            }
        }
        let map_err = |e| WriteError::Map(names::CHECK_PORTS, e);
        for (i, p) in &want {
            if self.written.get(i) != Some(p) {
                self.ports.set(*i, p, 0).map_err(map_err)?;
            }
        }
        for i in self.written.keys().filter(|i| !want.contains_key(i)) {
            self.ports
                .set(*i, CheckPort::default(), 0)
                .map_err(map_err)?;
        }
        self.written = want;
        Ok(())
    }

    pub fn write_path(&mut self, p: &CheckPath) -> Result<(), WriteError> {
        self.path
            .set(0, p, 0)
            .map_err(|e| WriteError::Map(names::CHECK_PATH, e))
    }
}
