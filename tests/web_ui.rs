//! The web UI in a real browser: Debian's headless Chromium (installed by the test script),
//! driven over the Chrome DevTools protocol. The job graph renders with the job's vertices,
//! the savepoint button takes a savepoint, and the overview lists the job. Screenshots are
//! saved under `<target dir>/web-ui/`.

mod common;

use brisk::prelude::*;
use serde_json::{Value, json};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Set to let the job run at full speed.
static RELEASE: AtomicBool = AtomicBool::new(false);

/// A headless Chromium, killed when dropped.
struct Browser {
    process: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Browser {
    /// Opens `url` in a new headless Chromium and connects to its page.
    fn open(url: &str) -> Browser {
        let profile = common::temp_dir("chromium-profile");
        let process = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium (Debian's package; scripts/test.sh installs it)");
        // Chromium writes the port it chose to this file.
        let active = profile.join("DevToolsActivePort");
        common::wait_until("Chromium's DevTools port", || {
            std::fs::read_to_string(&active).is_ok_and(|t| t.lines().count() >= 2)
        });
        let port = std::fs::read_to_string(&active).unwrap().lines().next().unwrap().trim().to_string();
        let devtools = format!("127.0.0.1:{port}");
        let mut page = None;
        common::wait_until("the page's DevTools target", || {
            // DevTools builds its WebSocket URLs from the Host it was asked by.
            let (status, body) = common::http(&devtools, "GET", "/json/list", &[("Host", &devtools)], b"");
            let targets: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            page = targets.as_array().and_then(|t| {
                t.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(String::from))
            });
            status == 200 && page.is_some()
        });
        let (socket, _) = tungstenite::connect(page.unwrap()).expect("a DevTools connection");
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        Browser { process, socket, next_id: 1 }
    }

    /// Calls DevTools method `method`; its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({ "id": id, "method": method, "params": params }).to_string();
        self.socket.send(Message::text(request)).expect("send to DevTools");
        loop {
            let message = self.socket.read().expect("an answer from DevTools");
            let Ok(text) = message.to_text() else { continue };
            let answer: Value = serde_json::from_str(text).expect("DevTools answers JSON");
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of JavaScript `expression` in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true }));
        result["result"]["value"].clone()
    }

    /// Saves a screenshot as `<target dir>/web-ui/<name>.png`; its path.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = decode_base64(shot["data"].as_str().expect("image data"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG image");
        let mut dir = std::env::current_exe().unwrap();
        while !dir.ends_with("debug") && !dir.ends_with("release") && dir.pop() {}
        dir.pop();
        let path = dir.join("web-ui").join(format!("{name}.png"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}

/// Standard base64 (what DevTools sends images in).
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').map(value).collect();
    digits
        .chunks(4)
        .flat_map(|chunk| {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes.into_iter().take(chunk.len() - 1)
        })
        .collect()
}

#[test]
fn the_web_ui_draws_the_job_graph_and_its_savepoint_button_takes_a_savepoint() {
    let root = common::temp_dir("web-ui");
    let mut config = Configuration::new();
    config.set("parallelism.default", 2);
    config.set("rest.port", 0);
    config.set("execution.checkpointing.interval", "200 ms");
    config.set("execution.checkpointing.dir", root.join("checkpoints").display());
    config.set("execution.checkpointing.savepoint-dir", root.join("savepoints").display());
    let env = StreamExecutionEnvironment::from_configuration(&config).unwrap();
    env.from_sequence(1, 20_000)
        .map(|x: i64| {
            if !RELEASE.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
            x
        })
        .key_by(|x: &i64| x % 10)
        .reduce(|a: i64, b: i64| a.max(b))
        .add_sink(DiscardingSink);
    let client = env.execute_async("web ui").unwrap();
    let id = client.job_id().to_string();
    let address = brisk::rest::LOCAL_REST_ADDRESS.get().expect("the REST server").to_string();

    let mut browser = Browser::open(&format!("http://{address}/#/jobs/{id}"));
    let names: Vec<String> = client.job_graph().vertices.iter().map(|v| v.name.clone()).collect();
    let drawn = "[...document.querySelectorAll('#dag g.vertex title')].map(t => t.textContent)";
    common::wait_until("the job graph", || browser.eval(drawn) == json!(names));
    let edges = browser.eval("document.querySelectorAll('#dag path.edge').length");
    assert_eq!(edges, json!(client.job_graph().edges.len()), "an arrow per exchange");
    assert_eq!(browser.eval("document.getElementById('job-state').textContent"), json!("RUNNING"));
    // Live figures: records flow into the keyed vertex.
    common::wait_until("records per second on the graph", || {
        browser.eval("document.querySelector('#dag').textContent").as_str().is_some_and(|t| !t.contains(" 0 rec/s in"))
    });
    browser.screenshot("job-graph");

    browser.eval("document.getElementById('savepoint').click()");
    let location = "document.body.dataset.savepoint || ''";
    common::wait_until("the savepoint", || browser.eval(location).as_str().is_some_and(|l| !l.is_empty()));
    let taken = browser.eval(location).as_str().unwrap().to_string();
    assert!(taken.starts_with(&root.join("savepoints").display().to_string()), "{taken}");
    assert!(PathBuf::from(&taken).join("_metadata").is_file(), "{taken}");
    let on_disk: Vec<PathBuf> =
        std::fs::read_dir(root.join("savepoints")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(on_disk, vec![PathBuf::from(&taken)], "the button took exactly one savepoint");
    let latest = client.checkpoint_stats().latest_savepoint.map(|c| c.path.to_string());
    assert_eq!(latest.as_deref(), Some(taken.as_str()), "the job's latest savepoint");
    common::wait_until("the savepoint in the checkpoint table", || {
        browser
            .eval("document.querySelector('#latest-checkpoints').textContent")
            .as_str()
            .is_some_and(|t| t.contains(&taken))
    });
    browser.screenshot("after-savepoint");

    browser.call("Page.navigate", json!({ "url": format!("http://{address}/#/") }));
    common::wait_until("the overview's job list", || {
        browser
            .eval("document.querySelector('#jobs') ? document.querySelector('#jobs').textContent : ''")
            .as_str()
            .is_some_and(|t| t.contains("web ui") && t.contains("RUNNING"))
    });
    browser.screenshot("overview");
    browser.call("Page.navigate", json!({ "url": format!("http://{address}/#/taskmanagers") }));
    common::wait_until("the TaskManagers table", || {
        browser.eval("document.querySelectorAll('#taskmanagers tbody tr').length").as_u64().is_some_and(|n| n >= 1)
    });

    RELEASE.store(true, Ordering::Relaxed);
    client.wait().unwrap();
}
