//! The xs-interop checks, which pass against the real C xenstored in QEMU, run against the simulator.

#[allow(dead_code)]
#[path = "../src/bin/xs-interop.rs"]
mod interop;

#[test]
fn simulated_xenstored_passes_the_real_daemon_checks() {
    let sim = xen_sim::Sim::new();
    let dom0 = sim.domain(0);
    let failed = interop::run(|| Ok(dom0.xenstore()));
    assert!(
        failed.is_empty(),
        "steps that fail on the simulator: {failed:?}"
    );
}
