//! The web UI at `/ui`, driven in Debian's Chromium (headless, through
//! chromedriver) the way the walkthroughs' users drive Vault's UI: sign in
//! with the root token, enable kv v2, write and version a secret, write a
//! policy (and see the server's syntax error at its line), enable AppRole and
//! make a role, sign in as that role in a fresh browser and be refused a
//! delete, issue and revoke a certificate, look up a lease, seal and unseal;
//! then initialize and unseal a config-file server (`ui = true`) in the UI.
//!
//! The browser only clicks and types; the API is called directly only to
//! check what the clicks did. Screenshots of each page go to
//! `target/ui-screenshots/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's
//! `chromium chromium-driver`; `.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bulwark_dynamic_db::testing::PrivatePg;
use bulwark_e2e::{bulwark_bin, free_port, Api, Cluster, Layout, Options, Proc, Store};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// A dynamic role's SQL (as in the walkthroughs).
const READONLY_SQL: &str = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";"#;
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Every wait on the page is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

/// chromedriver on a free port, in its own process group: dropping it kills
/// the group (chromedriver and the browsers it started), even after a panic.
struct Driver {
    child: Child,
    url: String,
    profiles: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the UI test drives Debian's Chromium; install it with \
                 `apt-get install -y chromium chromium-driver` (.ci/run does)"
            );
        }
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profiles: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A new browser: its own profile, so its own session storage.
    async fn browser(&self) -> Client {
        let profile = tempfile::Builder::new()
            .prefix("chromium-")
            .tempdir_in(self.profiles.path())
            .expect("profile dir")
            .keep();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--no-first-run",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let c = tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&self.url),
        )
        .await
        .expect("chromium did not start within 60s")
        .expect("a chromium session");
        c.set_window_size(1280, 1000).await.expect("window size");
        c
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the screenshots go: `<target>/ui-screenshots/`.
fn screenshot_dir() -> PathBuf {
    let bin = bulwark_bin();
    let target = bin
        .parent()
        .and_then(Path::parent)
        .expect("the target directory");
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    let path = screenshot_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

/// The visible text of the page (for failure messages).
async fn page_text(c: &Client) -> String {
    match c.find(Locator::Css("body")).await {
        Ok(b) => b.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn find(c: &Client, loc: Locator<'_>) -> Element {
    match c.wait().at_most(WAIT).for_element(loc).await {
        Ok(e) => e,
        Err(e) => panic!(
            "{loc:?} not found within {WAIT:?}: {e}\npage:\n{}",
            page_text(c).await
        ),
    }
}

/// Waits until some element matching `css` shows `needle`; returns its text.
async fn wait_text(c: &Client, css: &str, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(els) = c.find_all(Locator::Css(css)).await {
            for e in els {
                if let Ok(t) = e.text().await {
                    if t.contains(needle) {
                        return t;
                    }
                }
            }
        }
        if Instant::now() > deadline {
            panic!(
                "no {css:?} showed {needle:?} within {WAIT:?}\npage:\n{}",
                page_text(c).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the element at `css` says exactly `want`.
async fn wait_exact(c: &Client, css: &str, want: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if e.text().await.is_ok_and(|t| t.trim() == want) {
                return;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "{css:?} did not say {want:?} within {WAIT:?}\npage:\n{}",
                page_text(c).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value input of the secret editor's row whose key is `key`.
async fn value_input(c: &Client, key: &str) -> Element {
    find(c, Locator::Css(".kv-row")).await;
    for row in c.find_all(Locator::Css(".kv-row")).await.expect("rows") {
        let k = row
            .find(Locator::Css("input.kv-key"))
            .await
            .expect("key input");
        if k.prop("value").await.expect("key").as_deref() == Some(key) {
            return row
                .find(Locator::Css("input.kv-value"))
                .await
                .expect("value input");
        }
    }
    panic!("no row for key {key}\npage:\n{}", page_text(c).await)
}

/// Finds `loc` and does `op` with it. chromedriver may call an element
/// found just after a route change stale; it is then found again (within
/// [`WAIT`]).
async fn on_element<F, Fut>(c: &Client, loc: Locator<'_>, op: F)
where
    F: Fn(Element) -> Fut,
    Fut: std::future::Future<Output = Result<(), fantoccini::error::CmdError>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        let e = find(c, loc).await;
        match op(e).await {
            Ok(()) => return,
            Err(err) if err.is_stale_element_reference() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("{loc:?}: {err}\npage:\n{}", page_text(c).await),
        }
    }
}

async fn click(c: &Client, loc: Locator<'_>) {
    on_element(c, loc, |e| async move { e.click().await }).await;
}

async fn click_button(c: &Client, text: &str) {
    click(
        c,
        Locator::XPath(&format!("//button[normalize-space()='{text}']")),
    )
    .await;
}

async fn click_link(c: &Client, text: &str) {
    click(
        c,
        Locator::XPath(&format!("//a[normalize-space()='{text}']")),
    )
    .await;
}

async fn fill(c: &Client, css: &str, text: &str) {
    on_element(c, Locator::Css(css), |e| async move {
        e.clear().await?;
        e.send_keys(text).await
    })
    .await;
}

/// Picks the option `value` of the `<select>` at `css` (waiting for that
/// option: a list filled by a re-render).
async fn select(c: &Client, css: &str, value: &str) {
    click(c, Locator::Css(&format!("{css} option[value='{value}']"))).await;
    let chosen = find(c, Locator::Css(css)).await.prop("value").await;
    assert_eq!(chosen.ok().flatten().as_deref(), Some(value), "{css}");
}

async fn heading(c: &Client, text: &str) {
    wait_text(c, "main h1", text).await;
}

/// Signs in from the keyboard: the token typed, Enter submits.
async fn sign_in_with_token(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/ui/")).await.expect("open the UI");
    heading(c, "Sign in to Bulwark").await;
    let enter = char::from(fantoccini::key::Key::Enter).to_string();
    fill(c, "#login-token", &format!("{token}{enter}")).await;
    heading(c, "Secrets engines").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ui_walkthrough_in_chromium() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let dev = Proc::start(
        dir.path(),
        "dev",
        &[
            "server",
            "-dev",
            &format!("-dev-listen-address=127.0.0.1:{port}"),
        ],
    );
    let base = dev.field("Api Address:").expect("api address");
    let root = dev.field("Root Token:").expect("root token");
    let unseal_key = dev.field("Unseal Key:").expect("unseal key");
    let api = Api::new(&base).with_token(&root);

    // The server side: `/` leads to the UI, which is served with its headers.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let r = http.get(format!("{base}/")).send().await.expect("GET /");
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], "/ui/");
    let r = http
        .get(format!("{base}/ui/"))
        .send()
        .await
        .expect("GET /ui/");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));

    let driver = Driver::start();
    let c = driver.browser().await;

    // --- Sign in with the root token.
    c.goto(&format!("{base}/")).await.expect("open /");
    heading(&c, "Sign in to Bulwark").await;
    assert!(c
        .current_url()
        .await
        .expect("url")
        .as_str()
        .contains("/ui/"));
    screenshot(&c, "01-login").await;
    fill(&c, "#login-token", "not-a-token").await;
    click_button(&c, "Sign in").await;
    wait_text(&c, ".errors", "permission denied").await;
    fill(&c, "#login-token", &root).await;
    click_button(&c, "Sign in").await;
    heading(&c, "Secrets engines").await;
    wait_text(&c, "#who-name", "root").await;
    // The token is in session storage, nowhere else.
    let stored = c
        .execute(
            "return [sessionStorage.getItem('bulwark.token'), localStorage.length, document.cookie]",
            vec![],
        )
        .await
        .expect("storage");
    assert_eq!(stored, json!([root, 0, ""]));

    // --- Enable kv v2 at team-alpha.
    select(&c, "#engine-type", "kv2").await;
    fill(&c, "#engine-path", "team-alpha").await;
    click_button(&c, "Enable engine").await;
    wait_text(&c, "#flash", "Enabled kv v2 at team-alpha/").await;
    wait_text(&c, "main table", "team-alpha/").await;
    let m = api.get("sys/mounts").await;
    assert_eq!(m.body["data"]["team-alpha/"]["type"], "kv");
    assert_eq!(m.body["data"]["team-alpha/"]["options"]["version"], "2");
    screenshot(&c, "02-secrets-list").await;

    // --- Create a secret, then edit it (version 2).
    click_link(&c, "team-alpha/").await;
    heading(&c, "team-alpha/").await;
    wait_text(&c, "main", "No secrets here yet.").await;
    click_link(&c, "Create secret").await;
    heading(&c, "Create secret in team-alpha/").await;
    fill(&c, "#kv-path", "mysql/webapp").await;
    fill(&c, ".kv-row:nth-of-type(1) input.kv-key", "username").await;
    fill(&c, ".kv-row:nth-of-type(1) input.kv-value", "admin").await;
    click_button(&c, "Add field").await;
    fill(&c, ".kv-row:nth-of-type(2) input.kv-key", "password").await;
    fill(&c, ".kv-row:nth-of-type(2) input.kv-value", "passw0rd-v1").await;
    click_button(&c, "Save secret").await;
    heading(&c, "mysql/webapp").await;
    wait_text(&c, "#secret-version", "Version 1").await;
    let r = api.get("team-alpha/data/mysql/webapp").await;
    assert_eq!(
        r.body["data"]["data"],
        json!({"username": "admin", "password": "passw0rd-v1"})
    );
    // Values are hidden until revealed.
    let main_text = page_text(&c).await;
    assert!(!main_text.contains("passw0rd-v1"), "{main_text}");

    click_link(&c, "Edit (new version)").await;
    heading(&c, "Edit mysql/webapp").await;
    wait_text(&c, "main", "Saving creates version 2").await;
    let value = value_input(&c, "password").await;
    assert_eq!(
        value.prop("value").await.expect("value").as_deref(),
        Some("passw0rd-v1")
    );
    value.clear().await.expect("clear");
    value.send_keys("passw0rd-v2").await.expect("type");
    click_button(&c, "Save new version").await;
    wait_text(&c, "#flash", "version 2").await;
    wait_text(&c, "#secret-version", "Version 2").await;
    let r = api.get("team-alpha/data/mysql/webapp").await;
    assert_eq!(r.body["data"]["data"]["password"], "passw0rd-v2");
    assert_eq!(r.body["data"]["metadata"]["version"], 2);
    wait_text(&c, "main table", "View version 1").await;
    click(
        &c,
        Locator::Css("button[aria-label='Reveal value of password']"),
    )
    .await;
    wait_text(&c, "code.secret", "passw0rd-v2").await;
    screenshot(&c, "03-secret-view").await;

    // --- View version 1 and check its value.
    click_link(&c, "View version 1").await;
    wait_text(&c, "#secret-version", "Version 1").await;
    let masked = find(&c, Locator::Css("code.secret")).await;
    assert_eq!(masked.text().await.expect("text"), "••••••••");
    click(
        &c,
        Locator::Css("button[aria-label='Reveal value of password']"),
    )
    .await;
    wait_text(&c, "code.secret", "passw0rd-v1").await;

    // --- Write the policy readonly-kv-backend.
    click_link(&c, "Policies").await;
    heading(&c, "ACL policies").await;
    click_link(&c, "Create ACL policy").await;
    heading(&c, "Create ACL policy").await;
    fill(&c, "#policy-name", "readonly-kv-backend").await;
    fill(
        &c,
        "#policy-text",
        "path \"team-alpha/*\" {\n  capabilities = [\"read\", \"list\"]\n}\n",
    )
    .await;
    click_button(&c, "Create policy").await;
    heading(&c, "Policy readonly-kv-backend").await;
    let p = api.get("sys/policies/acl/readonly-kv-backend").await;
    assert_eq!(p.status, 200, "{:?}", p.body);
    assert!(p.body["data"]["policy"]
        .as_str()
        .expect("policy text")
        .contains("capabilities = [\"read\", \"list\"]"));

    // --- A syntax error: the server's message, and its line marked.
    click_link(&c, "Policies").await;
    click_link(&c, "Create ACL policy").await;
    fill(&c, "#policy-name", "broken").await;
    fill(
        &c,
        "#policy-text",
        "path \"team-alpha/*\" {\n  capabilities = [\"read\"\n}\n",
    )
    .await;
    click_button(&c, "Create policy").await;
    let shown = wait_text(&c, ".errors", "line 3, column").await;
    let refused = api
        .put(
            "sys/policies/acl/broken",
            json!({"policy": "path \"team-alpha/*\" {\n  capabilities = [\"read\"\n}\n"}),
        )
        .await;
    assert_eq!(refused.status, 400);
    let server_msg = refused.errors()[0].clone();
    assert!(
        shown.contains(&server_msg),
        "the page shows the server's message verbatim:\n{shown}\n---\n{server_msg}"
    );
    let marked = find(&c, Locator::Css("#policy-gutter .error-line")).await;
    assert_eq!(marked.text().await.expect("line"), "3");
    wait_text(
        &c,
        "#policy-error-line",
        "The server reports an error at line 3",
    )
    .await;
    screenshot(&c, "04-policy-editor-error").await;
    assert_eq!(api.get("sys/policies/acl/broken").await.status, 404);

    // --- Enable AppRole, create a role with the policy, role-id, secret-id.
    click_link(&c, "Access").await;
    heading(&c, "Access").await;
    select(&c, "#method-type", "approle").await;
    fill(&c, "#method-path", "approle").await;
    click_button(&c, "Enable method").await;
    wait_text(&c, "main table", "approle/").await;
    assert_eq!(
        api.get("sys/auth").await.body["data"]["approle/"]["type"],
        "approle"
    );
    click_link(&c, "approle/").await;
    heading(&c, "auth/approle/ (AppRole)").await;
    fill(&c, "#role-name", "node-app-role").await;
    fill(&c, "#role-policies", "readonly-kv-backend").await;
    fill(&c, "#role-ttl", "1h").await;
    click_button(&c, "Create role").await;
    heading(&c, "Role node-app-role").await;
    let role = api.get("auth/approle/role/node-app-role").await;
    assert_eq!(
        role.body["data"]["token_policies"],
        json!(["readonly-kv-backend"])
    );
    assert_eq!(role.body["data"]["token_ttl"], 3600);
    click_button(&c, "Read role ID").await;
    let role_id = wait_text(&c, "#role-id-result code", "-").await;
    let api_role_id = api.get("auth/approle/role/node-app-role/role-id").await;
    assert_eq!(api_role_id.body["data"]["role_id"], role_id.as_str());
    click_button(&c, "Generate secret ID").await;
    let secret_id = wait_text(&c, "#secret-id-result code.secret", "-").await;
    screenshot(&c, "05-access-approle").await;
    // Wrapped: the page shows a wrapping token for the secret-id path.
    fill(&c, "#secret-id-wrap-ttl", "5m").await;
    click_button(&c, "Generate secret ID").await;
    wait_text(&c, "#secret-id-result", "Wrapped secret ID").await;
    let wrapping = find(&c, Locator::Css("#secret-id-result code.secret"))
        .await
        .text()
        .await
        .expect("wrapping token");
    let look = api
        .put("sys/wrapping/lookup", json!({ "token": wrapping }))
        .await;
    assert_eq!(look.status, 200, "{:?}", look.body);
    assert_eq!(
        look.body["data"]["creation_path"],
        "auth/approle/role/node-app-role/secret-id"
    );

    // --- As the role, in a new browser (fresh session storage): read yes,
    // delete no, with the server's message.
    {
        let b = driver.browser().await;
        b.goto(&format!("{base}/ui/")).await.expect("open the UI");
        heading(&b, "Sign in to Bulwark").await;
        let none = b
            .execute("return sessionStorage.getItem('bulwark.token')", vec![])
            .await
            .expect("storage");
        assert_eq!(none, Value::Null);
        select(&b, "#login-method", "approle").await;
        fill(&b, "#login-role-id", &role_id).await;
        fill(&b, "#login-secret-id", &secret_id).await;
        click_button(&b, "Sign in").await;
        heading(&b, "Secrets engines").await;
        wait_text(&b, "#who-name", "readonly-kv-backend").await;
        click_link(&b, "team-alpha/").await;
        click_link(&b, "mysql/").await;
        click_link(&b, "webapp").await;
        wait_text(&b, "#secret-version", "Version 2").await;
        click_button(&b, "Delete version 2").await;
        let err = wait_text(&b, ".errors", "permission denied").await;
        assert!(err.contains("HTTP 403"), "{err}");
        screenshot(&b, "06-approle-delete-refused").await;
        b.close().await.expect("close the second browser");
    }
    let r = api.get("team-alpha/data/mysql/webapp").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["data"]["metadata"]["deletion_time"], "");

    // --- kv v2 versions as root: delete, undelete, destroy.
    click_link(&c, "Secrets").await;
    click_link(&c, "team-alpha/").await;
    click_link(&c, "mysql/").await;
    click_link(&c, "webapp").await;
    wait_text(&c, "#secret-version", "Version 2").await;
    click_button(&c, "Delete version 2").await;
    wait_text(&c, "main", "This version was deleted at").await;
    let meta = api.get("team-alpha/metadata/mysql/webapp").await;
    assert_ne!(meta.body["data"]["versions"]["2"]["deletion_time"], "");
    click_button(&c, "Undelete version 2").await;
    wait_text(&c, "#flash", "Undeleted version 2").await;
    find(
        &c,
        Locator::XPath("//button[normalize-space()='Delete version 2']"),
    )
    .await;
    let meta = api.get("team-alpha/metadata/mysql/webapp").await;
    assert_eq!(meta.body["data"]["versions"]["2"]["deletion_time"], "");
    click_link(&c, "View version 1").await;
    wait_text(&c, "#secret-version", "Version 1").await;
    click_button(&c, "Destroy version 1").await;
    click_button(&c, "Yes, destroy version 1").await;
    wait_text(&c, "main", "This version was destroyed").await;
    let meta = api.get("team-alpha/metadata/mysql/webapp").await;
    assert_eq!(meta.body["data"]["versions"]["1"]["destroyed"], true);
    assert_eq!(meta.body["data"]["current_version"], 2);

    // --- Userpass: a user made in the UI signs in (another fresh browser)
    // and reads the secret.
    click_link(&c, "Access").await;
    select(&c, "#method-type", "userpass").await;
    fill(&c, "#method-path", "userpass").await;
    click_button(&c, "Enable method").await;
    wait_text(&c, "main table", "userpass/").await;
    click_link(&c, "userpass/").await;
    heading(&c, "auth/userpass/ (userpass)").await;
    fill(&c, "#user-name", "alice").await;
    fill(&c, "#user-password", "s3cret-pass").await;
    fill(&c, "#user-policies", "readonly-kv-backend").await;
    click_button(&c, "Create user").await;
    wait_text(&c, "main table", "alice").await;
    let alice = api.get("auth/userpass/users/alice").await;
    assert_eq!(
        alice.body["data"]["token_policies"],
        json!(["readonly-kv-backend"])
    );
    {
        let b = driver.browser().await;
        b.goto(&format!("{base}/ui/")).await.expect("open the UI");
        heading(&b, "Sign in to Bulwark").await;
        select(&b, "#login-method", "userpass").await;
        fill(&b, "#login-username", "alice").await;
        fill(&b, "#login-password", "wrong").await;
        click_button(&b, "Sign in").await;
        wait_text(&b, ".errors", "HTTP 4").await;
        fill(&b, "#login-password", "s3cret-pass").await;
        click_button(&b, "Sign in").await;
        heading(&b, "Secrets engines").await;
        wait_text(&b, "#who-name", "userpass-alice").await;
        click_link(&b, "team-alpha/").await;
        click_link(&b, "mysql/").await;
        click_link(&b, "webapp").await;
        click(
            &b,
            Locator::Css("button[aria-label='Reveal value of password']"),
        )
        .await;
        wait_text(&b, "code.secret", "passw0rd-v2").await;
        b.close().await.expect("close the third browser");
    }

    // --- Database engine and leases: a connection and a role made in the
    // UI, credentials generated there, their lease looked up, renewed and
    // revoked (the PostgreSQL user goes away).
    let pg = tokio::task::spawn_blocking(PrivatePg::start)
        .await
        .expect("private PostgreSQL");
    click_link(&c, "Secrets").await;
    heading(&c, "Secrets engines").await;
    select(&c, "#engine-type", "database").await;
    fill(&c, "#engine-path", "database").await;
    click_button(&c, "Enable engine").await;
    wait_text(&c, "main table", "database/").await;
    click_link(&c, "database/").await;
    heading(&c, "database/ (database)").await;
    fill(&c, "#db-conn-name", "my-postgres-database").await;
    fill(
        &c,
        "#db-conn-url",
        &format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
            pg.port()
        ),
    )
    .await;
    fill(&c, "#db-conn-user", "postgres").await;
    fill(&c, "#db-conn-password", pg.superuser_password()).await;
    fill(&c, "#db-conn-roles", "readonly").await;
    click_button(&c, "Save connection").await;
    wait_text(&c, "#flash", "Saved connection my-postgres-database").await;
    fill(&c, "#db-role-name", "readonly").await;
    select(&c, "#db-role-db", "my-postgres-database").await;
    fill(&c, "#db-role-sql", READONLY_SQL).await;
    fill(&c, "#db-role-ttl", "1h").await;
    click_button(&c, "Save role").await;
    wait_text(&c, "#flash", "Saved role readonly").await;
    click(
        &c,
        Locator::Css("button[aria-label='Generate credentials from role readonly']"),
    )
    .await;
    wait_text(&c, "#db-creds", "Credentials from readonly").await;
    let username = find(&c, Locator::Css("#db-creds code.secret"))
        .await
        .text()
        .await
        .expect("username");
    assert!(pg.role_exists(&username).await, "{username} was created");
    let lease_id = find(&c, Locator::Css("#db-creds-lease"))
        .await
        .text()
        .await
        .expect("lease id");
    assert!(
        lease_id.starts_with("database/creds/readonly/"),
        "{lease_id}"
    );
    click(&c, Locator::Css("#db-creds-lease")).await;
    heading(&c, "Leases").await;
    wait_text(&c, "#lease-result", &lease_id).await;
    fill(&c, "#lease-increment", "30m").await;
    click_button(&c, "Renew").await;
    wait_text(&c, "#flash", "Renewed").await;
    let look = api
        .put("sys/leases/lookup", json!({ "lease_id": lease_id }))
        .await;
    let ttl = look.body["data"]["ttl"].as_i64().unwrap_or(-1);
    assert!((1..=1800).contains(&ttl), "renewed to 30m: {:?}", look.body);
    screenshot(&c, "07-leases").await;
    click_button(&c, "Revoke").await;
    wait_text(&c, "#lease-result", "is revoked").await;
    let look = api
        .put("sys/leases/lookup", json!({ "lease_id": lease_id }))
        .await;
    assert!(look.status >= 400, "{:?}", look.body);
    let deadline = Instant::now() + WAIT;
    while pg.role_exists(&username).await {
        assert!(Instant::now() < deadline, "{username} still exists");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An unknown lease: the server's message.
    fill(&c, "#lease-id", "database/creds/nope/abc").await;
    click_button(&c, "Look up").await;
    let lease_err = api
        .put(
            "sys/leases/lookup",
            json!({"lease_id": "database/creds/nope/abc"}),
        )
        .await;
    assert!(lease_err.status >= 400, "{:?}", lease_err.body);
    wait_text(&c, ".errors", &lease_err.errors()[0]).await;
    drop(pg);

    // --- PKI: enable, root CA, role, issue, revoke, CA and CRL links.
    click_link(&c, "Secrets").await;
    heading(&c, "Secrets engines").await;
    select(&c, "#engine-type", "pki").await;
    fill(&c, "#engine-path", "pki").await;
    click_button(&c, "Enable engine").await;
    wait_text(&c, "main table", "pki/").await;
    click_link(&c, "PKI").await;
    heading(&c, "PKI").await;
    click_link(&c, "pki/").await;
    heading(&c, "PKI pki/").await;
    fill(&c, "#pki-root-cn", "example.internal").await;
    click_button(&c, "Generate root CA").await;
    wait_text(&c, "#flash", "Generated the root CA").await;
    fill(&c, "#pki-role-name", "web").await;
    fill(&c, "#pki-role-domains", "example.internal").await;
    click_button(&c, "Save role").await;
    wait_text(&c, "#flash", "Saved role web").await;
    select(&c, "#pki-issue-role", "web").await;
    fill(&c, "#pki-issue-cn", "api.example.internal").await;
    fill(&c, "#pki-issue-ttl", "1h").await;
    click_button(&c, "Issue certificate").await;
    let serial = find(&c, Locator::Css("#pki-issued-serial"))
        .await
        .text()
        .await
        .expect("serial");
    let certs = api.get("pki/certs?list=true").await;
    assert!(
        certs.body["data"]["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .any(|k| k == serial.as_str()),
        "{serial} in {:?}",
        certs.body
    );
    let ca_href = find(&c, Locator::Css("a[id='ca-link-pki']"))
        .await
        .attr("href")
        .await
        .expect("href")
        .expect("a link");
    assert_eq!(ca_href, "/v1/pki/ca/pem");
    let ca = reqwest::get(format!("{base}{ca_href}"))
        .await
        .expect("CA")
        .text()
        .await
        .expect("CA text");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    screenshot(&c, "08-pki").await;
    click_link(&c, &serial).await;
    wait_text(&c, "#cert-state", "valid").await;
    click_button(&c, "Revoke certificate").await;
    click_button(&c, "Yes, revoke certificate").await;
    wait_text(&c, "#cert-state", "revoked").await;
    let cert = api.get(&format!("pki/cert/{serial}")).await;
    assert!(cert.body["data"]["revocation_time"].as_i64().unwrap_or(0) > 0);
    let crl = find(&c, Locator::Css("a[id='crl-link-pki']"))
        .await
        .attr("href")
        .await
        .expect("href");
    assert_eq!(crl.as_deref(), Some("/v1/pki/crl/pem"));

    // --- kv v1 and transit engines, enabled and used in the UI.
    click_link(&c, "Secrets").await;
    heading(&c, "Secrets engines").await;
    select(&c, "#engine-type", "kv1").await;
    fill(&c, "#engine-path", "legacy").await;
    click_button(&c, "Enable engine").await;
    wait_text(&c, "#flash", "Enabled kv v1 at legacy/").await;
    select(&c, "#engine-type", "transit").await;
    fill(&c, "#engine-path", "transit").await;
    click_button(&c, "Enable engine").await;
    wait_text(&c, "#flash", "Enabled transit at transit/").await;
    click_link(&c, "legacy/").await;
    heading(&c, "legacy/").await;
    click_link(&c, "Create secret").await;
    fill(&c, "#kv-path", "app/config").await;
    fill(&c, ".kv-row input.kv-key", "api_key").await;
    fill(&c, ".kv-row input.kv-value", "k-123").await;
    click_button(&c, "Save secret").await;
    heading(&c, "app/config").await;
    let r = api.get("legacy/app/config").await;
    assert_eq!(r.body["data"], json!({"api_key": "k-123"}));
    click_link(&c, "Secrets").await;
    click_link(&c, "transit/").await;
    heading(&c, "transit/ (transit)").await;
    fill(&c, "#transit-name", "orders").await;
    select(&c, "#transit-type", "ed25519").await;
    click_button(&c, "Create key").await;
    wait_text(&c, "main table", "orders").await;
    let k = api.get("transit/keys/orders").await;
    assert_eq!(k.body["data"]["type"], "ed25519");

    // --- A narrow screen: nothing wider than the window.
    c.set_window_size(390, 844).await.expect("narrow window");
    click_link(&c, "Secrets").await;
    heading(&c, "Secrets engines").await;
    let fits = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            vec![],
        )
        .await
        .expect("layout");
    assert_eq!(fits, json!(true), "the page scrolls sideways on 390px");
    screenshot(&c, "09-narrow-secrets").await;
    c.set_window_size(1280, 1000).await.expect("window size");

    // --- Seal in the UI, then unseal through the form with the dev key.
    click_link(&c, "Status").await;
    heading(&c, "Status").await;
    wait_exact(&c, "#seal-state", "unsealed").await;
    click(&c, Locator::Css("#seal-button")).await;
    click_button(&c, "Yes, seal").await;
    wait_exact(&c, "#seal-state", "sealed").await;
    let st = Api::new(&base).get("sys/seal-status").await;
    assert_eq!(st.body["sealed"], true);
    wait_text(&c, "#unseal-progress-text", "0 of 1 keys provided").await;
    // A sealed server refuses the API; the page says so.
    fill(&c, "#unseal-key", "bm90LWEta2V5").await;
    click_button(&c, "Unseal").await;
    wait_text(&c, ".errors", "Error").await;
    screenshot(&c, "10-status-unseal").await;
    fill(&c, "#unseal-key", &unseal_key).await;
    click_button(&c, "Unseal").await;
    wait_exact(&c, "#seal-state", "unsealed").await;
    let st = Api::new(&base).get("sys/seal-status").await;
    assert_eq!(st.body["sealed"], false);

    // --- Sign out: the token leaves session storage.
    click_button(&c, "Sign out").await;
    heading(&c, "Sign in to Bulwark").await;
    let gone = c
        .execute("return sessionStorage.getItem('bulwark.token')", vec![])
        .await
        .expect("storage");
    assert_eq!(gone, Value::Null);
    c.close().await.expect("close the browser");
    drop(dev);

    // --- A config-file server with `ui = true`: initialize (3 shares,
    // threshold 2) and unseal in the UI, the progress shown between keys.
    let cluster = Cluster::start_with(
        Layout::AllInOne,
        Store::SqliteFile,
        Options {
            extra_config: "ui = true\n".into(),
            ..Options::default()
        },
    );
    let c = driver.browser().await;
    c.goto(&format!("{}/ui/", cluster.http))
        .await
        .expect("open the UI");
    heading(&c, "Sign in to Bulwark").await;
    wait_text(&c, ".notice", "not initialized").await;
    click_link(&c, "Initialize it on the Status page.").await;
    heading(&c, "Status").await;
    fill(&c, "#init-shares", "3").await;
    fill(&c, "#init-threshold", "2").await;
    click_button(&c, "Initialize").await;
    wait_text(&c, "#init-keys", "shown once").await;
    let mut keys = Vec::new();
    for e in c
        .find_all(Locator::Css("#init-keys ol.keys code"))
        .await
        .expect("keys")
    {
        keys.push(e.text().await.expect("key"));
    }
    assert_eq!(keys.len(), 3, "{keys:?}");
    let new_root = find(&c, Locator::Css("#init-keys dd code"))
        .await
        .text()
        .await
        .expect("root token");
    wait_exact(&c, "#seal-state", "sealed").await;
    fill(&c, "#unseal-key", &keys[0]).await;
    click_button(&c, "Unseal").await;
    wait_text(&c, "#unseal-progress-text", "1 of 2 keys provided").await;
    let progress = find(&c, Locator::Css("#unseal-progress"))
        .await
        .attr("value")
        .await
        .expect("progress");
    assert_eq!(progress.as_deref(), Some("1"));
    screenshot(&c, "11-init-unseal-progress").await;
    fill(&c, "#unseal-key", &keys[2]).await;
    click_button(&c, "Unseal").await;
    wait_exact(&c, "#seal-state", "unsealed").await;
    let st = cluster.client().get("sys/seal-status").await;
    assert_eq!(
        (st.body["sealed"].clone(), st.body["n"].clone()),
        (json!(false), json!(3))
    );
    sign_in_with_token(&c, &cluster.http, &new_root).await;
    wait_text(&c, "#who-name", "root").await;
    c.close().await.expect("close the browser");
    eprintln!("screenshots in {}", screenshot_dir().display());
}
