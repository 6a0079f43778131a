//! `bench.sh ipv6`: wanlb against the kernel's own IPv6 recipe on the testbed's IPv6 lines
//! (testbed.sh ipv6lines): a multipath IPv6 default route weighted 2:1, NETMAP-style prefix
//! translation on isp1 (`snat ip6 prefix to`, as wanlb's NPTv6 there) and masquerade on isp2
//! (as wanlb's NAT66). TCP one stream each way and ping RTT, medians of --reps runs, into
//! OUT/ipv6-report.{md,json}. IPv6 flows stay in wanlb's userspace path (the fast path
//! carries IPv4 only), so this measures that path.

use std::time::Duration;

use super::compare::{Path, markdown, summarize};
use super::{Bed, Cli, Proc, Result, Sample, iperf_bps, percentile, retry};

/// wanlb with IPv6 on both lines, as the kernel recipe below.
const WANLB_ARGS: [&str; 6] = [
    "--lan",
    "eth0",
    "--uplink",
    "isp1,dev=eth1,gw=198.18.1.254,weight=2,gw6=2001:2:0:1::fe,prefix6=2001:2:1::/48",
    "--uplink",
    "isp2,dev=eth2,gw=198.18.2.254,weight=1,gw6=2001:2:0:2::fe",
];

/// The kernel's IPv6 recipe, as nft reads it.
const KERNEL_NFT: &str = r#"table ip6 kernel_recipe6 {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "eth1" snat ip6 prefix to ip6 saddr map { fd00:3::/64 : 2001:2:1::/64 }
    oifname "eth2" masquerade
  }
}
"#;

enum Active6 {
    Kernel,
    Wanlb(Proc),
}

fn start(bed: &Bed, path: Path, cli: &Cli) -> Result<Active6> {
    match path {
        Path::Kernel => {
            bed.run("gw", &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
            bed.ip(
                "gw",
                &[
                    "-6",
                    "route",
                    "add",
                    "default",
                    "nexthop",
                    "via",
                    "2001:2:0:1::fe",
                    "dev",
                    "eth1",
                    "weight",
                    "2",
                    "nexthop",
                    "via",
                    "2001:2:0:2::fe",
                    "dev",
                    "eth2",
                    "weight",
                    "1",
                ],
            )?;
            let mut nft = bed.cmd("gw", &["nft", "-f", "-"]);
            let mut child = nft
                .stdin(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())?;
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(KERNEL_NFT.as_bytes())
                .map_err(|e| e.to_string())?;
            if !child.wait().map_err(|e| e.to_string())?.success() {
                return Err("nft refused the kernel's IPv6 recipe".into());
            }
            Ok(Active6::Kernel)
        }
        Path::Routed | Path::WanlbOffloadOff => {
            Err(format!("the IPv6 run has no {} path", path.name()))
        }
        Path::Wanlb => {
            let wanlb = bed.bin.join("wanlb").display().to_string();
            let state = format!("/tmp/wanlb-bench-{}", bed.prefix);
            let workers = cli.workers.to_string();
            let mut args = vec![
                wanlb.as_str(),
                "run",
                "--workers",
                &workers,
                "--state-dir",
                &state,
            ];
            args.extend_from_slice(&WANLB_ARGS);
            args.extend(cli.wanlb_arg.iter().map(String::as_str));
            let p = Proc::start(bed.cmd("gw", &args))?;
            p.wait_for(" ready ", "wanlb")?;
            // the lines' IPv6 is judged after the IPv4 start: wait until both carry flows
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while p.output().matches("takes_ipv6_flows=true").count() < 2 {
                if std::time::Instant::now() > deadline {
                    return Err(format!("wanlb's lines took no IPv6 flows:\n{}", p.output()));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(Active6::Wanlb(p))
        }
    }
}

fn stop(bed: &Bed, active: Active6) -> Result<()> {
    match active {
        Active6::Kernel => {
            bed.run("gw", &["nft", "delete", "table", "ip6", "kernel_recipe6"])?;
            bed.ip("gw", &["-6", "route", "del", "default"])?;
            bed.run("gw", &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=0"])?;
            Ok(())
        }
        Active6::Wanlb(p) => {
            let log = p.stop();
            if log.contains("stopped") {
                Ok(())
            } else {
                Err(format!("wanlb did not stop cleanly:\n{log}"))
            }
        }
    }
}

/// One repetition on `path`: TCP both ways to one destination, ping RTT.
fn measure(bed: &Bed, cli: &Cli, path: Path, rep: usize, samples: &mut Vec<Sample>) -> Result<()> {
    let secs = cli.seconds.unwrap_or(5).to_string();
    let mut push = |metric, unit, higher_is_better, value| {
        samples.push(Sample {
            metric,
            unit,
            higher_is_better,
            path,
            rep,
            value,
        })
    };
    let one = |extra: &[&str]| {
        let mut args = vec!["iperf3", "-6", "-c", "2001:2:ff::7", "-t", &secs, "-J"];
        args.extend_from_slice(extra);
        iperf_bps(&bed.run("lan", &args)?)
    };
    let up = retry("IPv6 TCP 1 stream", || one(&[]))?;
    push(
        "IPv6 TCP 1 stream, LAN to internet",
        "Gbit/s",
        true,
        up / 1e9,
    );
    let down = retry("IPv6 TCP 1 stream reverse", || one(&["-R"]))?;
    push(
        "IPv6 TCP 1 stream, internet to LAN",
        "Gbit/s",
        true,
        down / 1e9,
    );
    bed.run(
        "lan",
        &["ping", "-6", "-c", "3", "-i", "0.05", "2001:2:ff::3"],
    )?;
    let out = bed.run(
        "lan",
        &["ping", "-6", "-c", "300", "-i", "0.01", "2001:2:ff::3"],
    )?;
    let mut rtts: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .map(|ms| ms * 1000.0)
        .collect();
    if rtts.len() < 250 {
        return Err(format!("only {} of 300 IPv6 pings answered", rtts.len()));
    }
    rtts.sort_by(|a, b| a.total_cmp(b));
    push("IPv6 ping RTT p50", "µs", false, percentile(&rtts, 0.5));
    push("IPv6 ping RTT p99", "µs", false, percentile(&rtts, 0.99));
    Ok(())
}

pub fn run(bed: &Bed, cli: &Cli) -> Result<()> {
    bed.testbed("ipv6lines")?;
    let _server = Proc::start(bed.cmd("inet", &["iperf3", "-s", "-B", "2001:2:ff::7"]))?;
    std::thread::sleep(Duration::from_millis(500));
    let reps = cli.reps.unwrap_or(3);
    let mut samples = Vec::new();
    for rep in 1..=reps {
        for path in [Path::Kernel, Path::Wanlb] {
            eprintln!("rep {rep}/{reps}: {} IPv6", path.name());
            let active = start(bed, path, cli)?;
            let measured = measure(bed, cli, path, rep, &mut samples);
            stop(bed, active)?;
            measured?;
        }
    }
    let lines = summarize(&samples);
    let meta = format!(
        "IPv6: the kernel's recipe is a multipath default route 2:1 with `snat ip6 prefix to` on \
         isp1 and masquerade on isp2; wanlb NPTv6 on isp1, NAT66 on isp2 (userspace path). \
         wanlb --workers {}, {} s per throughput run.",
        cli.workers,
        cli.seconds.unwrap_or(5)
    );
    std::fs::create_dir_all(&cli.out).map_err(|e| e.to_string())?;
    let md = markdown(&lines, reps, &meta);
    std::fs::write(cli.out.join("ipv6-report.md"), &md).map_err(|e| e.to_string())?;
    let json =
        serde_json::json!({ "meta": meta, "reps": reps, "summary": lines, "samples": samples });
    std::fs::write(
        cli.out.join("ipv6-report.json"),
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    print!("{md}");
    Ok(())
}
