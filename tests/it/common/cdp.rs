//! A headless Chromium driven over the DevTools protocol (a websocket to
//! 127.0.0.1): navigation, script evaluation, file inputs, screenshots, and
//! a record of every request, console message, log entry and CSP issue.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    tx: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next: AtomicU64,
    session: String,
    /// Every event the page session sent, in order.
    pub events: Arc<Mutex<Vec<Value>>>,
}

/// The Chromium executable: `SIKKER_TEST_CHROMIUM`, else `chromium` on PATH.
fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("SIKKER_TEST_CHROMIUM") {
        return PathBuf::from(p);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        for name in ["chromium", "chromium-browser"] {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "no chromium found: run the install part of .ci/run (it installs Debian's chromium), or set SIKKER_TEST_CHROMIUM"
    );
}

impl Browser {
    pub async fn launch() -> Self {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--disable-features=Translate,OptimizationHints,MediaRouter",
                "--ignore-certificate-errors",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--hide-scrollbars",
                "--force-color-profile=srgb",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let port_file = profile.path().join("DevToolsActivePort");
        let text = super::eventually("chromium's DevToolsActivePort", || {
            let f = port_file.clone();
            async move {
                std::fs::read_to_string(&f)
                    .ok()
                    .filter(|t| t.lines().count() >= 2)
            }
        })
        .await;
        let mut lines = text.lines();
        let port = lines.next().unwrap().trim();
        let path = lines.next().unwrap().trim();
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{path}"))
            .await
            .unwrap();
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        {
            let pending = pending.clone();
            let events = events.clone();
            tokio::spawn(async move {
                while let Some(Ok(m)) = stream.next().await {
                    let Message::Text(t) = m else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                        continue;
                    };
                    if let Some(id) = v.get("id").and_then(Value::as_u64) {
                        if let Some(s) = pending.lock().unwrap().remove(&id) {
                            let _ = s.send(v);
                        }
                    } else {
                        events.lock().unwrap().push(v);
                    }
                }
            });
        }
        let mut b = Self {
            child,
            _profile: profile,
            tx,
            pending,
            next: AtomicU64::new(1),
            session: String::new(),
            events,
        };
        let t = b
            .call_on(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target = t["targetId"].as_str().unwrap().to_owned();
        let s = b
            .call_on(
                None,
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
            )
            .await;
        b.session = s["sessionId"].as_str().unwrap().to_owned();
        for m in [
            "Page.enable",
            "Runtime.enable",
            "Network.enable",
            "Log.enable",
            "Audits.enable",
        ] {
            b.call(m, json!({})).await;
        }
        b
    }

    async fn call_on(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.tx.send(Message::text(msg.to_string())).unwrap();
        let v = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("DevTools call {method} timed out"))
            .unwrap();
        assert!(v.get("error").is_none(), "{method} failed: {v}");
        v["result"].clone()
    }

    /// Lets the page save downloads into `dir` (headless Chromium refuses them otherwise).
    pub async fn allow_downloads(&self, dir: &Path) {
        self.call_on(
            None,
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": dir.display().to_string()}),
        )
        .await;
    }

    /// A DevTools command on the page.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.call_on(Some(&s), method, params).await
    }

    /// Evaluates `js` (awaiting a promise) and returns its value; a thrown
    /// exception fails the test.
    pub async fn eval(&self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": js, "awaitPromise": true, "returnByValue": true, "userGesture": true}),
            )
            .await;
        assert!(
            r.get("exceptionDetails").is_none(),
            "script failed: {js}\n{}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Polls `cond` (a JS expression) until it is truthy; 20 s at most.
    pub async fn wait(&self, cond: &str, what: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let v = self
                .eval(&format!(
                    "(() => {{ try {{ return {cond}; }} catch (e) {{ return null; }} }})()"
                ))
                .await;
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                let body = self
                    .eval("document.querySelector('main') ? document.querySelector('main').innerText : document.body.innerText")
                    .await;
                panic!(
                    "timed out waiting for {what} ({cond}) at {}\npage text: {body}",
                    self.eval("location.href").await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn goto(&self, url: &str) {
        // The old document is marked so its content is never taken for the new one.
        self.eval("window.__leaving = true").await;
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait(
            "!window.__leaving && document.readyState === 'complete' && document.querySelector('#app .page, #app h1')",
            "the page to render",
        )
        .await;
    }

    /// Sets a form control's value as typing would.
    pub async fn fill(&self, selector: &str, value: &str) {
        self.wait(
            &format!("document.querySelector({})", json!(selector)),
            selector,
        )
        .await;
        let js = format!(
            "(() => {{ const el = document.querySelector({s}); if (!el) throw new Error('no element ' + {s}); \
             if (el.type === 'checkbox') el.checked = {v} === 'true'; else el.value = {v}; \
             el.dispatchEvent(new Event('input', {{bubbles: true}})); el.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()",
            s = json!(selector),
            v = json!(value)
        );
        self.eval(&js).await;
    }

    pub async fn click(&self, selector: &str) {
        self.wait(
            &format!("document.querySelector({})", json!(selector)),
            selector,
        )
        .await;
        let js = format!(
            "(() => {{ const el = document.querySelector({s}); if (!el) throw new Error('no element ' + {s}); el.focus(); el.click(); return true; }})()",
            s = json!(selector)
        );
        self.eval(&js).await;
    }

    pub async fn text(&self, selector: &str) -> String {
        self.eval(&format!(
            "(document.querySelector({}) || {{}}).innerText || ''",
            json!(selector)
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Puts `file` into the file input `selector`.
    pub async fn set_file(&self, selector: &str, file: &Path) {
        self.wait(
            &format!("document.querySelector({})", json!(selector)),
            selector,
        )
        .await;
        let doc = self.call("DOM.getDocument", json!({"depth": 0})).await;
        let root = doc["root"]["nodeId"].as_u64().unwrap();
        let n = self
            .call(
                "DOM.querySelector",
                json!({"nodeId": root, "selector": selector}),
            )
            .await;
        self.call(
            "DOM.setFileInputFiles",
            json!({"nodeId": n["nodeId"], "files": [file.display().to_string()]}),
        )
        .await;
    }

    pub async fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    /// A PNG of the whole page (up to 4000 px tall).
    pub async fn screenshot(&self, path: &Path) {
        let m = self.call("Page.getLayoutMetrics", json!({})).await;
        let w = m["cssContentSize"]["width"].as_f64().unwrap_or(1280.0);
        let h = m["cssContentSize"]["height"]
            .as_f64()
            .unwrap_or(800.0)
            .min(4000.0);
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true,
                       "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// URLs of every request the page made so far.
    pub fn requests(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(str::to_owned))
            .collect()
    }

    /// Console errors, uncaught exceptions, error log entries and CSP
    /// issues; `allowed` may excuse a log entry (e.g. an API's 401 the
    /// page handles).
    pub fn problems(&self, allowed: impl Fn(&Value) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.events.lock().unwrap().iter() {
            let p = &e["params"];
            match e["method"].as_str().unwrap_or_default() {
                "Runtime.consoleAPICalled" if p["type"] == "error" || p["type"] == "assert" => {
                    out.push(format!("console.{}: {}", p["type"], p["args"]));
                }
                "Runtime.exceptionThrown" => {
                    out.push(format!("uncaught exception: {}", p["exceptionDetails"]))
                }
                "Log.entryAdded" if p["entry"]["level"] == "error" && !allowed(&p["entry"]) => {
                    out.push(format!("log error: {}", p["entry"]));
                }
                "Audits.issueAdded"
                    if p["issue"]["code"]
                        .as_str()
                        .is_some_and(|c| c.contains("ContentSecurityPolicy")) =>
                {
                    out.push(format!("CSP violation: {}", p["issue"]));
                }
                _ => {}
            }
        }
        out
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
