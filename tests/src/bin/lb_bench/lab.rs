//! `cargo xtask bench --lab`: packets through a real forwarding path, in
//! namespaces. A generator (`bench_gen`, run with BPF_PROG_TEST_RUN's live
//! frames, as a NIC would deliver frames) sends minimum-size TCP frames
//! into the balancer's veth `in0`; the balancer forwards them out of
//! `out0` to three backend addresses on one sink veth whose XDP program
//! (`bench_sink`) counts and drops them. The balancer's receive runs in its
//! own NAPI thread pinned to CPU 1 (the generator on CPU 0): its CPU time
//! is that thread's. Three balancers in the same run: our XDP program,
//! nftables DNAT and plain kernel IP forwarding (no IPVS on this kernel),
//! for established flows (1,000 flows of ACKs) and a SYN flood (a new
//! source for every frame).

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use aya::{
    TestRun,
    maps::{PerCpuArray, PerCpuValues},
    programs::{TestRunAttrs, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use lb_common::{
    DEFAULT_NEW_FLOWS_PER_CPU, Forward, HashFields, Scheduler,
    bench::{GEN_FLOWS, GEN_HEADER, GEN_NEW_SOURCES, GenState},
    names,
};
use lb_tests::{
    frame::{ACK, Frame, SYN},
    netns::{self, Entered, Netns},
};
use lb_user::{
    addr,
    agent::neigh::LinkInfo,
    maps::{Sizes, Writer, loader},
    plan::{DesiredBackend, DesiredService},
};

const VIP: &str = "203.0.113.10";
const BACKENDS: [&str; 3] = ["198.51.100.130", "198.51.100.131", "198.51.100.132"];
const ROUNDS: usize = 5;
const SECONDS: f64 = 2.0;
/// Frames per BPF_PROG_TEST_RUN call, and per live-frames batch.
const REPEAT: u32 = 500_000;
const BATCH: u32 = 64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Balancer {
    Ours,
    Nft,
    Forwarding,
}

impl Balancer {
    fn name(self) -> &'static str {
        match self {
            Balancer::Ours => "ours (XDP)",
            Balancer::Nft => "nftables DNAT",
            Balancer::Forwarding => "kernel forwarding",
        }
    }
}

/// One measured round.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Frames the sink counted per wall second.
    pps: f64,
    /// Frames the sink counted per second of the balancer's CPU.
    per_cpu_s: f64,
    /// The balancer's CPU busy share (1.0: the whole CPU).
    busy: f64,
    /// Frames the generator sent per wall second.
    sent_pps: f64,
}

struct Lab {
    g: Netns,
    b: Netns,
    s: Netns,
    ebpf: aya::Ebpf,
    pin_dir: std::path::PathBuf,
    in0: LinkInfo,
    g0: LinkInfo,
    in0_link: Option<XdpLinkId>,
    in0_prog: &'static str,
    napi_in0: u32,
}

/// Removes a pin directory if setting up fails before the lab owns it.
struct Pins(std::path::PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        loader::unpin_all(&self.0);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        loader::unpin_all(&self.pin_dir);
    }
}

fn mac_of(ns: &str, dev: &str) -> Result<[u8; 6]> {
    Ok(netns::link(ns, dev)?.1)
}

fn ifindex_of(ns: &str, dev: &str) -> Result<u32> {
    Ok(netns::link(ns, dev)?.0)
}

/// The NAPI thread of `dev` in `ns` (threaded NAPI turned on), pinned to
/// `cpu`: its pid.
fn napi_thread(ns: &str, dev: &str, cpu: usize) -> Result<u32> {
    netns::exec(
        ns,
        &[
            "sh",
            "-c",
            &format!("echo 1 > /sys/class/net/{dev}/threaded"),
        ],
    )?;
    let want = format!("napi/{dev}-");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        // The newest such thread is this veth's (names are per device).
        let mut found = None;
        for e in std::fs::read_dir("/proc")?.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim().starts_with(&want) {
                found = Some(found.map_or(pid, |f: u32| f.max(pid)));
            }
        }
        if let Some(pid) = found {
            let st = Command::new("taskset")
                .args(["-p", &format!("{:x}", 1u64 << cpu), &pid.to_string()])
                .output()?;
            if !st.status.success() {
                bail!("taskset {pid}: {}", String::from_utf8_lossy(&st.stderr));
            }
            return Ok(pid);
        }
        if Instant::now() > deadline {
            bail!("no NAPI thread for {dev}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// utime + stime of a thread, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command's closing parenthesis: utime is the 12th.
    let rest = stat.rsplit_once(") ").context("stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: a plain sysconf query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks as f64 / hz)
}

fn pin_this_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

impl Lab {
    fn up() -> Result<Lab> {
        let (g, b, s) = (Netns::new("bg")?, Netns::new("bb")?, Netns::new("bs")?);
        let (gn, bn, sn) = (g.name.clone(), b.name.clone(), s.name.clone());
        for (ns, cmd) in [
            (
                &gn,
                format!("link add g0 type veth peer name in0 netns {bn}"),
            ),
            (
                &bn,
                format!("link add out0 type veth peer name s0 netns {sn}"),
            ),
            (&gn, "addr add 198.51.100.2/25 dev g0".into()),
            (&bn, "addr add 198.51.100.1/25 dev in0".into()),
            (&bn, "addr add 198.51.100.129/25 dev out0".into()),
            (&sn, "addr add 198.51.100.130/25 dev s0".into()),
            (&sn, "addr add 198.51.100.131/25 dev s0".into()),
            (&sn, "addr add 198.51.100.132/25 dev s0".into()),
            (&gn, "link set g0 up".into()),
            (&bn, "link set in0 up".into()),
            (&bn, "link set out0 up".into()),
            (&sn, "link set s0 up".into()),
        ] {
            netns::ip(ns, &cmd).with_context(|| cmd.clone())?;
        }
        for key in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.in0.rp_filter=0",
        ] {
            let (k, v) = key.split_once('=').expect("key=value");
            netns::sysctl(&bn, k, v)?;
        }
        let s0 = mac_of(&sn, "s0")?;
        let s0_text = addr::mac(&s0);
        for a in BACKENDS {
            netns::ip(
                &bn,
                &format!("neigh add {a} lladdr {s0_text} dev out0 nud permanent"),
            )?;
        }
        let pin_dir = std::env::temp_dir().join(format!("lb-bench-lab-{}", std::process::id()));
        let pin_dir = std::path::PathBuf::from("/sys/fs/bpf").join(pin_dir.file_name().unwrap());
        let sizes = Sizes {
            flows: 1 << 20,
            max_services: 4,
            max_backends: 16,
            table_size: 65_537,
        };
        let pins = Pins(pin_dir.clone());
        let mut ebpf = loader::load(&pin_dir, sizes)?;
        for p in [
            names::PROG_LB,
            names::PROG_XDP_PASS,
            names::PROG_BENCH_GEN,
            names::PROG_BENCH_SINK,
        ] {
            loader::program(&mut ebpf, p)?;
        }
        let (in0_idx, out0_idx) = (ifindex_of(&bn, "in0")?, ifindex_of(&bn, "out0")?);
        let in0 = LinkInfo {
            ifindex: in0_idx,
            mac: mac_of(&bn, "in0")?,
        };
        let out0_mac = mac_of(&bn, "out0")?;
        let g0 = LinkInfo {
            ifindex: ifindex_of(&gn, "g0")?,
            mac: mac_of(&gn, "g0")?,
        };
        // Our balancer's state, as the agent would write it, from inside
        // its namespace (the devmap resolves interface indexes there).
        let entered = Entered::new(&bn)?;
        let mut dp = Writer::new(&mut ebpf, sizes)?;
        let backends: Vec<DesiredBackend> = BACKENDS
            .iter()
            .map(|a| DesiredBackend {
                addr: a.parse().expect("address"),
                port: 0,
                weight: 1,
                effective: 1000,
                ifindex: out0_idx,
                src_mac: out0_mac,
                mac: Some(s0),
                via: None,
                check_port: None,
                healthy: true,
                warming: false,
                rtt_ms: 0,
            })
            .collect();
        dp.apply(&[DesiredService {
            key: addr::parse_service_name(&format!("{VIP}:80/tcp")).context("service")?,
            scheduler: Scheduler::Maglev,
            forward: Forward::Dr,
            hash: HashFields::FiveTuple,
            virtual_nodes: 160,
            standby: false,
            backends,
        }])?;
        dp.write_interfaces(&[Some(in0)])?;
        dp.write_limits(DEFAULT_NEW_FLOWS_PER_CPU, false)?;
        drop(dp);
        drop(entered);
        // The sink, and in0 with our program; NAPI threads after XDP (a
        // veth has NAPI only with XDP).
        {
            let _in = Entered::new(&sn)?;
            let p: &mut Xdp = ebpf
                .program_mut(names::PROG_BENCH_SINK)
                .context("sink")?
                .try_into()?;
            p.attach("s0", XdpMode::Driver)?;
        }
        std::mem::forget(pins);
        let mut lab = Lab {
            g,
            b,
            s,
            ebpf,
            pin_dir,
            in0,
            g0,
            in0_link: None,
            in0_prog: names::PROG_LB,
            napi_in0: 0,
        };
        lab.attach_in0(names::PROG_LB)?;
        napi_thread(&lab.s.name, "s0", 0)?;
        Ok(lab)
    }

    /// Put `prog` on in0 (replacing what was there).
    fn attach_in0(&mut self, prog: &'static str) -> Result<()> {
        let _in = Entered::new(&self.b.name)?;
        if let Some(id) = self.in0_link.take() {
            let old: &mut Xdp = self
                .ebpf
                .program_mut(self.in0_prog)
                .context("program")?
                .try_into()?;
            old.detach(id)?;
        }
        let p: &mut Xdp = self.ebpf.program_mut(prog).context("program")?.try_into()?;
        self.in0_link = Some(p.attach("in0", XdpMode::Driver)?);
        self.in0_prog = prog;
        drop(_in);
        // A new program means a new NAPI instance on a veth: its thread.
        self.napi_in0 = napi_thread(&self.b.name, "in0", 1)?;
        Ok(())
    }

    fn nft(&self, on: bool) -> Result<()> {
        let _ = netns::exec(&self.b.name, &["nft", "delete", "table", "ip", "lbbench"]);
        if !on {
            return Ok(());
        }
        let rules = format!(
            "table ip lbbench {{\n  chain pre {{\n    type nat hook prerouting priority dstnat;\n    \
             ip daddr {VIP} tcp dport 80 dnat to numgen random mod 3 map {{ 0 : {}, 1 : {}, 2 : {} }}\n  }}\n}}\n",
            BACKENDS[0], BACKENDS[1], BACKENDS[2]
        );
        let file = self.pin_dir.with_extension("nft");
        let file = std::env::temp_dir().join(file.file_name().context("name")?);
        std::fs::write(&file, rules)?;
        let out = netns::exec(&self.b.name, &["nft", "-f", file.to_str().context("path")?]);
        let _ = std::fs::remove_file(&file);
        let out = out?;
        if !out.status.success() {
            bail!("nft: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn sink_count(&self) -> Result<u64> {
        let m: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map(names::SINK_COUNT).context("map")?)?;
        Ok(m.get(&0, 0)?.iter().sum())
    }

    fn set_gen(&mut self, mode: u32, frame: &[u8]) -> Result<()> {
        let mut m: PerCpuArray<_, GenState> =
            PerCpuArray::try_from(self.ebpf.map_mut(names::GEN).context("map")?)?;
        let n = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let mut st = GenState {
            sent: 0,
            mode,
            flows: 1000,
            ..Default::default()
        };
        st.template[..GEN_HEADER].copy_from_slice(&frame[..GEN_HEADER]);
        let v = PerCpuValues::try_from(vec![st; n])?;
        m.set(0, v, 0)?;
        Ok(())
    }

    fn gen_sent(&self) -> Result<u64> {
        let m: PerCpuArray<_, GenState> =
            PerCpuArray::try_from(self.ebpf.map(names::GEN).context("map")?)?;
        Ok(m.get(&0, 0)?.iter().map(|s| s.sent).sum())
    }

    /// One round: the generator on CPU 0 for SECONDS.
    fn round(&mut self, bal: Balancer, flood: bool) -> Result<Sample> {
        let dst = if bal == Balancer::Forwarding {
            BACKENDS[0]
        } else {
            VIP
        };
        let src = if flood { "192.0.2.1" } else { "198.51.100.2" };
        let mut f = Frame::tcp(src, 10_000, dst, 80);
        f.tcp_flags = if flood { SYN } else { ACK };
        f.l4_check = true;
        let mut frame = f.build();
        frame[..6].copy_from_slice(&self.in0.mac);
        frame[6..12].copy_from_slice(&self.g0.mac);
        self.set_gen(if flood { GEN_NEW_SOURCES } else { GEN_FLOWS }, &frame)?;
        let mut md = [0u8; 24];
        md[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        md[12..16].copy_from_slice(&self.g0.ifindex.to_ne_bytes());
        let (sink0, cpu0, sent0) = (
            self.sink_count()?,
            cpu_seconds(self.napi_in0)?,
            self.gen_sent()?,
        );
        let t0 = Instant::now();
        {
            let _in = Entered::new(&self.g.name)?;
            pin_this_thread(0);
            let p: &Xdp = self
                .ebpf
                .program(names::PROG_BENCH_GEN)
                .context("gen")?
                .try_into()?;
            while t0.elapsed().as_secs_f64() < SECONDS {
                p.test_run(TestRunOptions {
                    data_in: Some(&frame),
                    ctx_in: Some(&md),
                    repeat: REPEAT,
                    attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                    ..Default::default()
                })?;
            }
        }
        // Let the last frames drain.
        std::thread::sleep(Duration::from_millis(100));
        let wall = t0.elapsed().as_secs_f64();
        let got = (self.sink_count()? - sink0) as f64;
        let cpu = cpu_seconds(self.napi_in0)? - cpu0;
        let sent = (self.gen_sent()? - sent0) as f64;
        Ok(Sample {
            pps: got / wall,
            per_cpu_s: if cpu > 0.0 { got / cpu } else { 0.0 },
            busy: cpu / wall,
            sent_pps: sent / wall,
        })
    }
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// "kernel K, N CPUs, MODEL": the machine each table was measured on.
pub fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("kernel {}, {cpus} CPUs, {model}", kernel.trim())
}

pub fn run() -> Result<()> {
    let mut lab = Lab::up()?;
    println!("\nMachine: {}", machine());
    let all = [Balancer::Ours, Balancer::Nft, Balancer::Forwarding];
    println!(
        "\nForwarding path (cargo xtask bench --lab): generator -> balancer veth -> 3 backends' sink, {ROUNDS} alternating rounds of {SECONDS} s;\nthe balancer's receive in its own NAPI thread on CPU 1 (the generator on CPU 0); Mpps = millions of frames the sink counted"
    );
    for flood in [false, true] {
        let what = if flood {
            "SYN flood (a new source for every frame)"
        } else {
            "established (1,000 flows, 60-byte ACKs)"
        };
        let mut per: Vec<Vec<Sample>> = vec![Vec::new(); all.len()];
        for _ in 0..ROUNDS {
            for (i, bal) in all.iter().enumerate() {
                let prog = if *bal == Balancer::Ours {
                    names::PROG_LB
                } else {
                    names::PROG_XDP_PASS
                };
                lab.attach_in0(prog)?;
                lab.nft(*bal == Balancer::Nft)?;
                // Warm: flows remembered, conntrack entries made.
                lab.round(*bal, flood)?;
                per[i].push(lab.round(*bal, flood)?);
            }
        }
        lab.nft(false)?;
        println!("\n{what}:");
        // Every balancer's verdicts, to see a misconfigured run at once.
        let p = lb_user::maps::Pinned::open(&lab.pin_dir)?;
        let verdicts: Vec<String> = lb_common::Reason::ALL
            .iter()
            .filter(|r| p.reason(**r) > 0)
            .map(|r| format!("{} {}", r.name(), p.reason(*r)))
            .collect();
        println!(
            "  (our program's counters over the whole run: {})",
            verdicts.join(", ")
        );
        println!(
            "  {:<18} {:>24} {:>28} {:>10} {:>12}",
            "balancer", "Mpps min/med/max", "Mpps per CPU-s min/med/max", "CPU busy", "sent Mpps"
        );
        let m = |x: f64| x / 1e6;
        let mut med = Vec::new();
        for (i, bal) in all.iter().enumerate() {
            let (a, b, c) = stats(per[i].iter().map(|s| s.pps).collect());
            let (x, y, z) = stats(per[i].iter().map(|s| s.per_cpu_s).collect());
            let (_, busy, _) = stats(per[i].iter().map(|s| s.busy).collect());
            let (_, sent, _) = stats(per[i].iter().map(|s| s.sent_pps).collect());
            med.push(y);
            println!(
                "  {:<18} {:>8.2} / {:.2} / {:.2} {:>12.2} / {:.2} / {:.2} {:>9.0}% {:>12.2}",
                bal.name(),
                m(a),
                m(b),
                m(c),
                m(x),
                m(y),
                m(z),
                busy * 100.0,
                m(sent)
            );
            if busy < 0.9 {
                println!(
                    "    ({}: its CPU was {:.0}% busy: Mpps is what the lab delivered (the generator's bursts overflow the veth ring), not its capacity; Mpps per CPU-s is)",
                    bal.name(),
                    busy * 100.0
                );
            }
        }
        println!(
            "  per balancer CPU-second: ours / nftables = {:.2}, ours / forwarding = {:.2}",
            med[0] / med[1],
            med[0] / med[2]
        );
    }
    Ok(())
}
