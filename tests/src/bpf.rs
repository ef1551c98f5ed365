//! A loaded copy of the XDP object with its own pin directory, for
//! BPF_PROG_TEST_RUN tests and benchmarks. Dropping it removes the pins.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{HashMap, MapData, PerCpuArray},
    programs::{TestRun, TestRunOptions},
};
use lb_common::{FlowKey, FlowValue, Reason, names, stats::REASON_COUNT};
use lb_user::maps::{Sizes, Writer, loader};

/// Small maps: tests need few flows, and many harnesses may exist at once.
pub const TEST_SIZES: Sizes = Sizes {
    flows: 65_536,
    max_services: 8,
    max_backends: 64,
    table_size: 65_537,
};

pub struct Harness {
    pub ebpf: Ebpf,
    pub dp: Writer,
    pin_dir: PathBuf,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A pin directory unique to this process and call.
pub fn unique_pin_dir(tag: &str) -> PathBuf {
    PathBuf::from(format!(
        "/sys/fs/bpf/lb-test-{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

impl Harness {
    pub fn new(sizes: Sizes) -> Result<Self> {
        let pin_dir = unique_pin_dir("bpf");
        let made = Self::build(&pin_dir, sizes);
        if made.is_err() {
            // The maps were pinned before a program failed to load.
            loader::unpin_all(&pin_dir);
        }
        made
    }

    fn build(pin_dir: &std::path::Path, sizes: Sizes) -> Result<Self> {
        let mut ebpf = loader::load(pin_dir, sizes).context("loading the XDP object")?;
        for p in [
            names::PROG_LB,
            names::PROG_XDP_PASS,
            names::PROG_BENCH_FLOOR,
        ] {
            loader::program(&mut ebpf, p).with_context(|| format!("verifying {p}"))?;
        }
        let mut dp = Writer::new(&mut ebpf, sizes)?;
        // Flow events on (the sync ring tests read them), no flood limit.
        dp.write_limits(0, true)?;
        // Test frames are sent to the balancer's MAC.
        dp.write_interfaces(&[Some(lb_user::agent::neigh::LinkInfo {
            ifindex: 0,
            mac: crate::frame::LB_MAC,
        })])?;
        Ok(Self {
            ebpf,
            dp,
            pin_dir: pin_dir.to_path_buf(),
        })
    }

    /// Where its maps are pinned (the agent's `pin_dir`).
    pub fn pin_dir(&self) -> &std::path::Path {
        &self.pin_dir
    }

    /// Run `prog` once on `frame`: (verdict, output frame).
    pub fn run(&self, prog: &str, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
        let p: &aya::programs::Xdp = self.ebpf.program(prog).context("program")?.try_into()?;
        let mut out = vec![0u8; frame.len() + 256];
        let r = p.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    /// Run `prog` once on `frame` as if received on `ifindex` (which must
    /// exist in the calling thread's namespace: FIB lookups start there).
    pub fn run_on(&self, prog: &str, frame: &[u8], ifindex: u32) -> Result<(u32, Vec<u8>)> {
        let p: &aya::programs::Xdp = self.ebpf.program(prog).context("program")?.try_into()?;
        let mut out = vec![0u8; frame.len() + 256];
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex.
        let mut md = [0u8; 24];
        md[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        md[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let r = p.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&md),
            ..Default::default()
        })?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    /// Wall-clock time of `frames.len()` single runs, one frame each.
    pub fn time_runs(&self, prog: &str, frames: &[Vec<u8>]) -> Result<Duration> {
        self.time_runs_on(prog, frames, None)
    }

    /// `time_runs`, the frames arriving on `ifindex` (see `run_on`).
    pub fn time_runs_on(
        &self,
        prog: &str,
        frames: &[Vec<u8>],
        ifindex: Option<u32>,
    ) -> Result<Duration> {
        let p: &aya::programs::Xdp = self.ebpf.program(prog).context("program")?.try_into()?;
        let mut out = vec![0u8; 512];
        let mut md = [0u8; 24];
        let start = Instant::now();
        for f in frames {
            md[4..8].copy_from_slice(&(f.len() as u32).to_ne_bytes());
            md[12..16].copy_from_slice(&ifindex.unwrap_or(0).to_ne_bytes());
            p.test_run(TestRunOptions {
                data_in: Some(f),
                data_out: Some(&mut out),
                ctx_in: ifindex.map(|_| &md[..]),
                ..Default::default()
            })?;
        }
        Ok(start.elapsed())
    }

    /// Sum over CPUs of every reason counter.
    pub fn reasons(&self) -> Result<[u64; REASON_COUNT as usize]> {
        let m: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(names::REASON_STATS).context("map")?)?;
        let mut out = [0u64; REASON_COUNT as usize];
        for r in Reason::ALL {
            out[r as usize] = m.get(&(r as u32), 0)?.iter().sum();
        }
        Ok(out)
    }

    pub fn insert_flow(&mut self, key: FlowKey, value: FlowValue) -> Result<()> {
        let mut m: HashMap<&mut MapData, FlowKey, FlowValue> =
            HashMap::try_from(self.ebpf.map_mut(names::FLOWS).context("map")?)?;
        m.insert(key, value, 0)?;
        Ok(())
    }

    pub fn flow(&self, key: &FlowKey) -> Option<FlowValue> {
        let m: HashMap<&MapData, FlowKey, FlowValue> =
            HashMap::try_from(self.ebpf.map(names::FLOWS)?).ok()?;
        m.get(key, 0).ok()
    }

    /// Read and drop every flow event the ring holds: how many.
    pub fn drain_events(&mut self) -> Result<usize> {
        let mut ring =
            aya::maps::RingBuf::try_from(self.ebpf.map_mut(names::FLOW_EVENTS).context("map")?)?;
        let mut n = 0;
        while ring.next().is_some() {
            n += 1;
        }
        Ok(n)
    }

    pub fn clear_flows(&mut self) -> Result<()> {
        let mut m: HashMap<&mut MapData, FlowKey, FlowValue> =
            HashMap::try_from(self.ebpf.map_mut(names::FLOWS).context("map")?)?;
        let keys: Vec<FlowKey> = m.keys().filter_map(|k| k.ok()).collect();
        for k in keys {
            let _ = m.remove(&k);
        }
        // NAT connections go with their flows.
        let mut m: HashMap<&mut MapData, FlowKey, lb_common::nat::NatEntry> =
            HashMap::try_from(self.ebpf.map_mut(names::NAT).context("map")?)?;
        let keys: Vec<FlowKey> = m.keys().filter_map(|k| k.ok()).collect();
        for k in keys {
            let _ = m.remove(&k);
        }
        Ok(())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        loader::unpin_all(&self.pin_dir);
    }
}
