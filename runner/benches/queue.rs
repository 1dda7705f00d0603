//! No-op tasks per second through the PostgreSQL queue with 1, 2 and 4
//! `runner worker` processes, and the latency of one claim (p50/p99).
//! Prints figures; asserts nothing. Skips when no server answers at
//! `RUNNER_TEST_POSTGRES` (default postgres://postgres@127.0.0.1:5432/test).

use runner::queue::{NewTask, Queue};
use serde_json::json;
use std::time::{Duration, Instant};

const TASKS: usize = 2000;

fn url() -> String {
    std::env::var("RUNNER_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn noops(n: usize) -> Vec<NewTask> {
    (0..n)
        .map(|_| NewTask::new(0, json!({"kind": "noop"})))
        .collect()
}

async fn completed(queue: &Queue) -> i64 {
    queue
        .counts()
        .await
        .unwrap()
        .into_iter()
        .find(|(state, _)| state == "completed")
        .map_or(0, |(_, n)| n)
}

#[tokio::main]
async fn main() {
    let schema = format!("bench_queue_{}", std::process::id());
    let mut queue = match Queue::connect(&url(), &schema, "runner bench").await {
        Ok(queue) => queue,
        Err(err) => {
            println!("queue bench skipped: {err}");
            return;
        }
    };
    for workers in [1usize, 2, 4] {
        let mut children: Vec<_> = (0..workers)
            .map(|i| {
                std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
                    .args(["worker", "--queue", &url(), "--schema", &schema])
                    .args(["--name", &format!("bench{i}"), "--poll", "100ms"])
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // Warm up: every worker connected and working.
        let base = completed(&queue).await;
        queue.enqueue(&noops(workers * 4)).await.unwrap();
        while completed(&queue).await < base + (workers * 4) as i64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let base = completed(&queue).await;
        let start = Instant::now();
        queue.enqueue(&noops(TASKS)).await.unwrap();
        while completed(&queue).await < base + TASKS as i64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{workers} worker process(es): {TASKS} no-op tasks in {secs:.2}s = {:.0} tasks/s",
            TASKS as f64 / secs
        );
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    // Claim latency: one claimer, a full queue.
    queue.enqueue(&noops(1000)).await.unwrap();
    let mut latencies = Vec::new();
    let lease = Duration::from_secs(30);
    while let Some(start) = Some(Instant::now()) {
        let Some(_) = queue.claim("bench-claimer", lease).await.unwrap() else {
            break;
        };
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "claim latency over {} claims: p50 {:?}, p99 {:?}",
        latencies.len(),
        at(0.50),
        at(0.99)
    );
    let _ = queue.drop_schema().await;
}
