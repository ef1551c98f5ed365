//! One timing, alone in its test binary so no other lab competes for the
//! two CPUs while it is measured: a restarted higher-priority balancer
//! takes the VIP back within Master_Down_Interval + 100 ms of its start, as
//! keepalived does.

use std::time::{Duration, Instant};

use lb_tests::{
    require,
    traffic::Traffic,
    vrrp_lab::{fast_pair, forwarded_by, wait_state},
};

use lb_tests::lab::vip;

#[test]
fn a_restarted_higher_priority_node_takes_the_vip_back_within_master_down_interval() {
    let name = "a_restarted_higher_priority_node_takes_the_vip_back_within_master_down_interval";
    if !require::lab(name, &[]) {
        return;
    }
    let mut l = fast_pair(&["--keep-pinned"]);
    // lb1 hands over (priority 0) and stops, its pins kept; lb2 serves.
    l.signal("lb1", libc::SIGTERM).unwrap();
    assert!(l.wait_exit("lb1", Duration::from_secs(5)));
    wait_state(&l, "lb2", "MASTER", Duration::from_secs(5));
    let traffic = Traffic::start(
        &l.ns("c"),
        vip(),
        Duration::from_millis(5),
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(300));
    let before = forwarded_by(&l, "lb1");
    let t0 = Instant::now();
    l.restart_agent("lb1", "lb1-again").unwrap();
    let back = loop {
        if forwarded_by(&l, "lb1") > before {
            break t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "lb1 never forwarded again; log:\n{}",
            l.log("lb1-again")
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let samples = traffic.stop();
    // lb1 at priority 150, 100 ms adverts: 3 x 100 ms + (106/256) x 100 ms.
    let mdi = Duration::from_micros(341_406);
    println!(
        "preempt back: lb1 forwarding through the VIP {back:?} after its start; Master_Down_Interval {mdi:?}; new connections failed {} of {}",
        samples.iter().filter(|s| s.result.is_err()).count(),
        samples.len()
    );
    assert!(
        back <= mdi + Duration::from_millis(100),
        "lb1 took {back:?} (Master_Down_Interval {mdi:?}); log:\n{}",
        l.log("lb1-again")
    );
}
