//! Starts the real `watershed` binary on port 0 with a given configuration, for
//! end-to-end tests, and stops it with SIGTERM so the ledger gets flushed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// A running gateway process.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    pub base_url: String,
    pub dir: PathBuf,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The `watershed` binary built by `cargo build -p watershed` in this target dir.
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("WATERSHED_BIN") {
        return Ok(PathBuf::from(p));
    }
    // target/<profile>/deps/<test-exe> → target/<profile>/watershed
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("cannot locate the target directory from {}", exe.display()))?;
    let bin = profile_dir.join("watershed");
    if !bin.exists() {
        bail!(
            "{} is missing: run `cargo build -p watershed` first (scripts/test.sh does)",
            bin.display()
        );
    }
    Ok(bin)
}

/// The default model, fetched by scripts/setup.sh.
pub fn test_model() -> anyhow::Result<PathBuf> {
    let path = match std::env::var("WATERSHED_TEST_MODEL") {
        Ok(p) => PathBuf::from(p),
        Err(_) => workspace_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    if !path.exists() {
        bail!(
            "model {} is missing: run scripts/setup.sh first",
            path.display()
        );
    }
    Ok(path)
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The Python interpreter of the project's virtual environment.
pub fn python() -> PathBuf {
    std::env::var("WATERSHED_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join(".venv/bin/python"))
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch_dir(tag: &str) -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("watershed-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

impl Gateway {
    /// Writes `config_yaml` to a scratch dir and starts `watershed serve` on it.
    /// `{dir}` in the YAML is replaced by the scratch dir's path.
    pub fn start(tag: &str, config_yaml: &str, envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_in(scratch_dir(tag)?, config_yaml, envs)
    }

    /// Like `start`, in a given directory: a gateway restarted where an
    /// earlier one ran finds its ledger and journal there.
    pub fn start_in(
        dir: PathBuf,
        config_yaml: &str,
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let cfg_path = dir.join("watershed.yaml");
        std::fs::write(
            &cfg_path,
            config_yaml.replace("{dir}", &dir.display().to_string()),
        )?;
        let mut cmd = Command::new(binary()?);
        cmd.arg("serve")
            .arg("--config")
            .arg(&cfg_path)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("WATERSHED_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("cannot start watershed")?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .contains("watershed listening")
                    .then(|| line.split("addr=").nth(1))
                    .flatten()
                {
                    let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_owned());
                }
                if let Ok(mut l) = log2.lock() {
                    l.push(line);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let lines = log.lock().map(|l| l.join("\n")).unwrap_or_default();
                bail!("watershed did not start listening:\n{lines}");
            }
        };
        Ok(Self {
            child,
            base_url: format!("http://{addr}"),
            dir,
            log,
        })
    }

    /// Waits until `/readyz` answers 200 (local models loaded).
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let client = reqwest_like_get;
        loop {
            if client(&format!("{}/readyz", self.base_url))
                .await
                .unwrap_or(0)
                == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("gateway not ready after {timeout:?}:\n{}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// The configuration file the gateway was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("watershed.yaml")
    }

    /// Sends a signal (`HUP`, `TERM`, …) to the gateway process.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{name} failed");
        }
        Ok(())
    }

    /// `kill -9`: the process ends at once, flushing nothing. Returns the
    /// directory it ran in, for a restart.
    pub fn kill9(mut self) -> anyhow::Result<PathBuf> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(self.dir.clone())
    }

    /// Sends SIGTERM and waits up to `bound` for the process to exit; returns
    /// how long it took and its log. Fails if it did not exit in time.
    pub fn stop_within(mut self, bound: Duration) -> anyhow::Result<(Duration, String)> {
        let started = Instant::now();
        self.signal("TERM")?;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let took = started.elapsed();
                std::thread::sleep(Duration::from_millis(50));
                if !status.success() {
                    bail!("watershed exited with {status}:\n{}", self.log_text());
                }
                return Ok((took, self.log_text()));
            }
            if started.elapsed() > bound {
                let _ = self.child.kill();
                bail!(
                    "watershed did not stop within {bound:?} of SIGTERM:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for a clean exit (requests drained, ledger flushed).
    pub fn stop(mut self) -> anyhow::Result<String> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Give the log reader a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(50));
                if !status.success() {
                    bail!("watershed exited with {status}:\n{}", self.log_text());
                }
                return Ok(self.log_text());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("watershed did not stop within 30 s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A minimal HTTP GET over a raw TCP socket, returning the status code, so the
/// harness needs no HTTP client dependency.
pub async fn reqwest_like_get(url: &str) -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http urls"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let req = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    let head = String::from_utf8_lossy(&buf);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad response"))?;
    Ok(code)
}

/// Runs the client script `tests/sdk/{script}` with the gateway's base URL
/// and `args`, and returns the JSON it prints; a failing script fails the
/// test with its stderr and the gateway's log.
pub async fn run_sdk_script(gw: &Gateway, script: &str, args: &[&str]) -> serde_json::Value {
    let script = workspace_root().join("tests/sdk").join(script);
    let args: Vec<String> = std::iter::once(gw.base_url.clone())
        .chain(args.iter().map(|a| (*a).to_owned()))
        .collect();
    let out =
        tokio::task::spawn_blocking(move || Command::new(python()).arg(script).args(args).output())
            .await
            .unwrap_or_else(|e| panic!("SDK script task: {e}"))
            .unwrap_or_else(|e| panic!("SDK script did not start: {e}"));
    assert!(
        out.status.success(),
        "SDK script failed:\n{}\n--- gateway log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log_text()
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("SDK script printed no JSON: {e}"))
}
