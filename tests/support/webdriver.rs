//! A small WebDriver client for the browser tests: a driver started on a
//! free loopback port (`chromedriver` for Debian's Chromium, `geckodriver`
//! for Debian's Firefox ESR) and the headless browser driven through the
//! W3C protocol (JSON over HTTP, with ureq). Both are killed when dropped.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any wait for the page may take before the test fails: generous,
/// as the machine may be busy; nothing is asserted about how fast it is.
pub const PATIENCE: Duration = Duration::from_secs(180);

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    http: ureq::Agent,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Which browser a session runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Chromium,
    Firefox,
}

impl Engine {
    /// The driver's program: chromedriver from Debian's chromium-driver;
    /// geckodriver where scripts/install-test-deps.sh builds it
    /// (`target/test-tools/bin` of the workspace), else on the PATH.
    fn driver(self) -> PathBuf {
        match self {
            Engine::Chromium => PathBuf::from("chromedriver"),
            Engine::Firefox => {
                let built = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../target/test-tools/bin/geckodriver");
                if built.exists() {
                    built
                } else {
                    PathBuf::from("geckodriver")
                }
            }
        }
    }

    /// The new session's capabilities: headless, a 1400×1200 window (set
    /// through /window/rect for Firefox), downloads saved to `downloads`
    /// without asking.
    fn capabilities(self, downloads: &Path) -> Value {
        let downloads = downloads.display().to_string();
        match self {
            Engine::Chromium => json!({
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                        "--disable-gpu", "--window-size=1400,1200",
                    ],
                    "prefs": {
                        "download.default_directory": downloads,
                        "download.prompt_for_download": false,
                    },
                },
            }),
            Engine::Firefox => json!({
                "browserName": "firefox",
                "moz:firefoxOptions": {
                    "binary": "/usr/bin/firefox-esr",
                    "args": ["-headless"],
                    "prefs": {
                        "browser.download.folderList": 2,
                        "browser.download.dir": downloads,
                        "browser.download.useDownloadDir": true,
                        "browser.download.always_ask_before_handling_new_types": false,
                        "browser.download.alwaysOpenPanel": false,
                        "browser.helperApps.neverAsk.saveToDisk": "application/json,text/plain",
                    },
                },
            }),
        }
    }
}

/// An element found on the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// The engine's driver and its headless browser (Chromium as root needs
    /// `--no-sandbox`), downloads going to `downloads`.
    pub fn start(engine: Engine, downloads: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let program = engine.driver();
        let driver = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (scripts/install-test-deps.sh installs it)",
                    program.display()
                )
            });
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let root = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready = http
                .get(&format!("{root}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|body| serde_json::from_str::<Value>(&body).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{} never ready",
                program.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": engine.capabilities(downloads)}});
        let mut browser = Browser {
            driver,
            base: root.clone(),
            http,
        };
        let session = browser.call("POST", "/session", Some(capabilities));
        let id = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"))
            .to_string();
        browser.base = format!("{root}/session/{id}");
        if engine == Engine::Firefox {
            browser.call(
                "POST",
                "/window/rect",
                Some(json!({"width": 1400, "height": 1200})),
            );
        }
        browser
    }

    /// One command; the answer's `value`. A WebDriver error fails the test.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// One command; the answer's `value`, or the WebDriver error.
    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = format!("{}{path}", self.base);
        let mut response = match method {
            "GET" => self.http.get(&url).call(),
            "DELETE" => self.http.delete(&url).call(),
            _ => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let answer: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        if status < 300 {
            Ok(answer["value"].clone())
        } else {
            Err(answer["value"].clone())
        }
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Run `script` (a function body; `arguments` holds `args`) in the page.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    pub fn find(&self, css: &str) -> Element {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        Element(
            v[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("no element {css}: {v}"))
                .to_string(),
        )
    }

    /// Click what `css` finds. The page re-renders as the session goes on:
    /// an element replaced between finding and clicking is found again.
    pub fn click(&self, css: &str) {
        let started = Instant::now();
        loop {
            let Element(id) = self.find(css);
            match self.try_call("POST", &format!("/element/{id}/click"), None) {
                Ok(_) => return,
                Err(e) if e["error"] == "stale element reference" => {
                    assert!(started.elapsed() < PATIENCE, "never clicked {css}: {e}");
                }
                Err(e) => panic!("click {css}: {e}"),
            }
        }
    }

    /// Replace what a text field holds.
    pub fn type_into(&self, css: &str, text: &str) {
        let Element(id) = self.find(css);
        self.call("POST", &format!("/element/{id}/clear"), None);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    pub fn text(&self, css: &str) -> String {
        let Element(id) = self.find(css);
        self.call("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn enabled(&self, css: &str) -> bool {
        let Element(id) = self.find(css);
        self.call("GET", &format!("/element/{id}/enabled"), None) == true
    }

    /// What the page shows, as `script` reads it, once `ok` accepts it.
    pub fn wait_for(&self, what: &str, script: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let v = self.execute(script, json!([]));
            if ok(&v) {
                return v;
            }
            assert!(started.elapsed() < PATIENCE, "never: {what}; last seen {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let data = self.call("GET", "/screenshot", None);
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}
