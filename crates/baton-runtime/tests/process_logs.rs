//! Instance logs: the tail across generations and copy-truncate rotation while the
//! process keeps writing.

#![allow(clippy::unwrap_used)]

mod support;

use baton_runtime::Runtime;
use support::{process_of, wait_file, Fixture};

const SCRIPT: &str = r#"sh -c '
i=0
while [ $i -lt 50 ]; do echo "line$i"; i=$((i+1)); done
touch written
while [ ! -e go ]; do sleep 0.05; done
echo after
touch done
exec sleep 60'"#;

#[tokio::test]
async fn logs_rotate_past_the_limit_and_the_writer_continues_at_the_start() {
    let fx = Fixture::with(SCRIPT, |s| {
        s.log_max_bytes = 200;
        s.cwd = Some(s.log_dir.parent().unwrap().to_path_buf());
    });
    let h = fx.start("web-v1-1", "v1").await;
    let (_, _, log_path) = process_of(&h);
    assert_eq!(log_path, fx.spec.log_dir.join("web").join("web-v1-1.log"));
    wait_file(&fx.dir.join("written")).await;

    // Reading past the limit rotates; the tail spans both files.
    assert_eq!(
        fx.rt.logs(&h, 3).await.unwrap(),
        ["line47", "line48", "line49"]
    );
    let older = log_path.with_extension("log.1");
    assert!(older.exists(), "no rotation happened");
    assert!(std::fs::metadata(&log_path).unwrap().len() <= 200);

    std::fs::write(fx.dir.join("go"), "").unwrap();
    wait_file(&fx.dir.join("done")).await;
    assert_eq!(
        fx.rt.logs(&h, 4).await.unwrap(),
        ["line47", "line48", "line49", "after"]
    );
    // O_APPEND: the child's write after the truncate landed at the new end, not at its
    // old offset behind a hole of zero bytes.
    for file in [&log_path, &older] {
        let bytes = std::fs::read(file).unwrap();
        assert!(!bytes.contains(&0), "{} has a hole", file.display());
    }
}

#[tokio::test]
async fn logs_return_at_most_the_lines_asked_for() {
    let mut fx = Fixture::new("sh -c 'for i in 1 2 3 4 5; do echo n$i; done'");
    let h = fx.start("web-v1-1", "v1").await;
    fx.next_event().await;
    assert_eq!(fx.rt.logs(&h, 2).await.unwrap(), ["n4", "n5"]);
    let all = fx.rt.logs(&h, 100).await.unwrap();
    assert_eq!(all.len(), 6, "baton's start line and five lines: {all:?}");
    assert!(fx.rt.logs(&h, 0).await.unwrap().is_empty());
}
