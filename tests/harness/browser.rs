//! A headless Chromium driven over WebDriver: the test starts its own
//! `chromedriver` on a free port and opens one session on it, phone-sized.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs
//! them); without `chromedriver` the browser tests fail and say so.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

use super::{free_port, repo_root};

/// How long a wait for the page gives up after.
pub const WAIT: Duration = Duration::from_secs(15);

/// A browser session, its `chromedriver` (and the Chromium it started)
/// stopped when dropped.
pub struct Browser {
    pub client: Client,
    driver: Option<Child>,
}

fn chromedriver() -> PathBuf {
    let bin = std::env::var_os("CHROMEDRIVER").map_or_else(|| "chromedriver".into(), PathBuf::from);
    let found = Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the browser tests need `chromedriver` and Chromium on the PATH (or CHROMEDRIVER=/path): \
         on Debian/Ubuntu `sudo apt-get install --no-install-recommends chromium chromium-driver`"
    );
    bin
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium of 390x844.
    pub async fn start() -> Browser {
        let bin = chromedriver();
        let port = free_port();
        // A group of its own, so that dropping the browser also stops the
        // Chromium processes chromedriver started.
        let driver = Command::new(bin)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start chromedriver");
        let mut browser_driver = Some(driver);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--window-size=390,844",
                    "--hide-scrollbars",
                    "--no-first-run",
                    "--disable-extensions",
                ]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver: browser_driver.take(),
                    };
                }
                Err(e) if Instant::now() > deadline => {
                    let mut driver = browser_driver.take().unwrap();
                    kill_group(&mut driver);
                    panic!("no WebDriver session from chromedriver: {e}");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The first element matching `css`, once there is one.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
    }

    /// The text of the first element matching `css`, once it contains
    /// `needle`.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = el.text().await
            {
                if text.contains(needle) {
                    return text;
                }
                last = text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never said {needle:?}; it says {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `css` matches something.
    pub async fn wait_for(&self, css: &str) {
        self.find(css).await;
    }

    /// The value of `attr` of the first element matching `css`. Read again
    /// when the page replaced the element between finding and reading it
    /// (a stale element), until there is one to read.
    pub async fn attr(&self, css: &str, attr: &str) -> Option<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await
                && let Ok(value) = el.attr(attr).await
            {
                return value;
            }
            assert!(Instant::now() < deadline, "no {css} to read {attr} of");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the first element matching `css`, read again when the
    /// page replaced the element between finding and reading it.
    pub async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = el.text().await
            {
                return text;
            }
            assert!(Instant::now() < deadline, "no {css} to read");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the first element matching `css` has `attr` = `value`.
    pub async fn wait_attr(&self, css: &str, attr: &str, value: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = match self.client.find(Locator::Css(css)).await {
                Ok(el) => el.attr(attr).await.ok().flatten(),
                Err(_) => None,
            };
            if got.as_deref() == Some(value) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never had {attr}={value:?}; it has {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Clears the input `css` and types `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// Sets an input's value by script (for `datetime-local`, whose typing
    /// depends on the locale) and tells the page it changed.
    pub async fn set_value(&self, css: &str, value: &str) {
        self.find(css).await;
        self.client
            .execute(
                "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
                 e.dispatchEvent(new Event('input', {bubbles: true})); \
                 e.dispatchEvent(new Event('change', {bubbles: true}));",
                vec![css.into(), value.into()],
            )
            .await
            .unwrap();
    }

    /// Saves a screenshot of the page as docs/screenshots/`name`.png, only
    /// when `FLASHSPIN_SCREENSHOTS=1` (so that test runs leave the tracked
    /// images alone).
    pub async fn screenshot(&self, name: &str) {
        if std::env::var("FLASHSPIN_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        let png = self.client.screenshot().await.unwrap();
        let dir = repo_root().join("docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Ends the session, then stops chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        if let Some(mut driver) = self.driver.take() {
            kill_group(&mut driver);
        }
    }
}

fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            kill_group(&mut driver);
        }
    }
}
