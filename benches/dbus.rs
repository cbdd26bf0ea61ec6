//! Measures the Venus D-Bus layer through a real (private) dbus-daemon and prints figures; it
//! asserts nothing. Run with `cargo bench --bench dbus`.
//!
//! 1. SetValue round trips per second against one service, from a separate client process
//!    (this binary re-executed with `BENCH_CLIENT_BUS` set): one call at a time, and with
//!    several calls in flight.
//! 2. Time from "create a service with 30 paths" (new connection included) to name owned.
//! 3. RSS growth per 100 registered 30-path services.

use std::time::{Duration, Instant};

use dbus_mqtt_devices::dbus::{BusAddress, Item, Service, Value, ValueType, BUSITEM_INTERFACE};

// The test world, shared with the integration tests (here only its bus and /proc readers).
#[path = "../tests/integration/processes.rs"]
mod processes;
#[path = "../tests/integration/support.rs"]
mod support;
#[path = "../tests/integration/world.rs"]
mod world;

use processes::rss_kib;
use support::TestBus;

const SERVICE: &str = "com.victronenergy.temperature.bench";
const CLIENT_ENV: &str = "BENCH_CLIENT_BUS";
const RUN_FOR: Duration = Duration::from_secs(3);
const IN_FLIGHT: usize = 32;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Ok(address) = std::env::var(CLIENT_ENV) {
        runtime.block_on(client(address));
    } else {
        runtime.block_on(bench());
    }
}

fn items(n: usize) -> Vec<Item> {
    let mut v = vec![Item::new("/Value", Value::F64(0.0))
        .writeable()
        .with_type(ValueType::Float)];
    v.extend((1..n).map(|i| Item::new(format!("/Group{}/Path{i}", i % 4), Value::I32(i as i32))));
    v
}

/// The separate client process: prints `sequential <n/s>` and `pipelined <n/s>`.
async fn client(address: String) {
    let conn = BusAddress::Address(address)
        .connect()
        .await
        .expect("client connection");
    let set = |conn: zbus::Connection, v: f64| async move {
        let r = conn
            .call_method(
                Some(SERVICE),
                "/Value",
                Some(BUSITEM_INTERFACE),
                "SetValue",
                &(zbus::Variant::F64(v),),
            )
            .await
            .expect("SetValue");
        let code: i32 = r.body().deserialize().expect("SetValue reply");
        assert_eq!(code, 0);
    };
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN_FOR {
        set(conn.clone(), n as f64).await;
        n += 1;
    }
    println!("sequential {:.0}", n as f64 / start.elapsed().as_secs_f64());

    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..IN_FLIGHT {
        let conn = conn.clone();
        tasks.spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < RUN_FOR {
                set(conn.clone(), (t as u64 * 1_000_000 + n) as f64).await;
                n += 1;
            }
            n
        });
    }
    let mut total = 0;
    while let Some(n) = tasks.join_next().await {
        total += n.expect("client task");
    }
    println!(
        "pipelined {:.0}",
        total as f64 / start.elapsed().as_secs_f64()
    );
}

async fn bench() {
    let test_bus = TestBus::start().await;
    let address = test_bus.address.clone();
    let bus = test_bus.bus();

    // 1. SetValue round trips from another process.
    let (service, mut writes) = Service::register(&bus, SERVICE, items(30), None)
        .await
        .expect("bench service");
    let drain = tokio::spawn(async move { while writes.recv().await.is_some() {} });
    let exe = std::env::current_exe().expect("own executable");
    let out = tokio::process::Command::new(exe)
        .env(CLIENT_ENV, &address)
        .output()
        .await
        .expect("client process");
    if !out.status.success() {
        eprint!("client failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let figures: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    for (what, n) in &figures {
        let detail = if what == "pipelined" {
            format!(" ({IN_FLIGHT} calls in flight)")
        } else {
            " (one call at a time)".to_string()
        };
        println!("SetValue round trips/s, {what}{detail}: {n}");
    }
    service.close().await.expect("closing the bench service");
    drain.abort();

    // 2. Registration time of a 30-path service, new connection included.
    let mut times = Vec::new();
    for i in 0..50 {
        let name = format!("com.victronenergy.temperature.reg_{i}");
        let t = Instant::now();
        let (s, _rx) = Service::register(&bus, &name, items(30), None)
            .await
            .expect("registering");
        times.push(t.elapsed());
        s.close().await.expect("closing");
    }
    times.sort();
    println!(
        "register 30 paths → name owned: median {:.2} ms, p90 {:.2} ms, max {:.2} ms (50 runs)",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() * 9 / 10].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );

    // 3. RSS per service (after a warm-up, so one-time allocations are not counted).
    let mut keep = Vec::new();
    for i in 0..20 {
        let name = format!("com.victronenergy.temperature.warm_{i}");
        keep.push(
            Service::register(&bus, &name, items(30), None)
                .await
                .expect("registering"),
        );
    }
    let before = rss_kib(std::process::id());
    let n = 300;
    for i in 0..n {
        let name = format!("com.victronenergy.temperature.mem_{i}");
        keep.push(
            Service::register(&bus, &name, items(30), None)
                .await
                .expect("registering"),
        );
    }
    let after = rss_kib(std::process::id());
    println!(
        "RSS: {before} KiB → {after} KiB for {n} more 30-path services: {:.1} KiB per service ({:.0} KiB per 100)",
        (after - before) as f64 / n as f64,
        (after - before) as f64 / n as f64 * 100.0
    );
    for (s, _) in keep {
        let _ = s.close().await;
    }
}
