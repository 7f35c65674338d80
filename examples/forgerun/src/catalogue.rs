//! ForgeRun's catalogue: the kinds of work its clients may submit over `/v1/jobs`. Each is an
//! ordinary Forge job marked `api`; its arguments are checked against the struct below (a
//! missing or mistyped field is a 422 naming it) before anything is stored.

use std::time::Duration;

use forge::api::webhooks::guard::{AddressPolicy, GuardedClient};
use forge::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The HTTP client `http_get` uses: it refuses internal addresses (a client must not make
/// ForgeRun fetch `http://169.254.169.254/` or a database port) unless told otherwise.
#[derive(Clone, Debug)]
pub struct Fetcher(pub GuardedClient);

impl Fetcher {
    /// A fetcher; `allow_private` lets it reach loopback and private addresses (for tests and
    /// for a ForgeRun that serves one private network: `FORGERUN_ALLOW_PRIVATE=1`).
    pub fn new(allow_private: bool) -> Self {
        let policy = AddressPolicy { allow_private, allowed: Vec::new() };
        Self(GuardedClient::new(policy, Duration::from_secs(20), "forgerun/0.1"))
    }
}

/// `http_get`: fetch a URL.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGetArgs {
    /// An `http` or `https` URL.
    pub url: String,
    /// The most bytes to read (default and at most 10 MiB); a longer body fails the job.
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// What `http_get` found.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Fetched {
    /// The status code.
    pub status: u16,
    /// The body's length.
    pub bytes: u64,
    /// The body's SHA-256, hex.
    pub sha256: String,
    /// The `content-type` answered, if any.
    pub content_type: Option<String>,
}

const MAX_BODY: u64 = 10 * 1024 * 1024;

/// Fetches `url`. A 5xx, a timeout or a dropped connection is retried with backoff (4 attempts);
/// a 4xx, a refused address or a body too large fails at once.
#[forge::job(api, queue = "fetch", max_attempts = 4, timeout = "60s", backoff(exponential, base = "2s"))]
pub async fn http_get(ctx: &JobContext, args: HttpGetArgs) -> Result<Fetched, JobError> {
    let fetcher = ctx.extension::<Fetcher>().ok_or_else(|| JobError::permanent("this node has no Fetcher"))?;
    let url = reqwest::Url::parse(&args.url).map_err(|e| JobError::permanent(format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(JobError::permanent("only http and https URLs"));
    }
    let limit = args.max_bytes.unwrap_or(MAX_BODY).min(MAX_BODY);
    let request =
        fetcher.0.request(reqwest::Method::GET, url).map_err(|e| JobError::permanent(format!("refused: {e}")))?;
    let mut response = request.send().await.map_err(|e| match GuardedClient::refusal(&e) {
        Some(refused) => JobError::permanent(format!("refused: {refused}")),
        None => JobError::retry(format!("request failed: {e}")),
    })?;
    let status = response.status();
    if status.is_server_error() {
        return Err(JobError::retry(format!("the server answered {status}")));
    }
    if status.is_client_error() {
        return Err(JobError::permanent(format!("the server answered {status}")));
    }
    let content_type =
        response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(|e| JobError::retry(format!("reading the body: {e}")))? {
        bytes += chunk.len() as u64;
        if bytes > limit {
            return Err(JobError::permanent(format!("the body is longer than {limit} bytes")));
        }
        hasher.update(&chunk);
    }
    Ok(Fetched { status: status.as_u16(), bytes, sha256: hex(&hasher.finalize()), content_type })
}

/// `sleep`: wait, reporting progress every second.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepArgs {
    /// Seconds, at most 3,600.
    pub seconds: u32,
}

/// Sleeps `seconds`, saying how far it is each second; a cancellation stops it at once.
#[forge::job(api, timeout = "2h")]
pub async fn sleep(ctx: &JobContext, args: SleepArgs) -> Result<u32, JobError> {
    if args.seconds > 3_600 {
        return Err(JobError::permanent("seconds: at most 3600"));
    }
    for done in 0..args.seconds {
        ctx.progress(percent(done, args.seconds), format!("{done} of {} s", args.seconds)).await?;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = ctx.cancellation().cancelled() => return Err(JobError::cancel("cancelled by the client")),
        }
    }
    Ok(args.seconds)
}

fn percent(done: u32, of: u32) -> u8 {
    u8::try_from(u64::from(done) * 100 / u64::from(of.max(1))).unwrap_or(100)
}

/// `checksum`: the SHA-256 of a text.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksumArgs {
    /// The text (UTF-8).
    pub data: String,
}

/// The hex SHA-256 of `data`.
#[forge::job(api)]
pub async fn checksum(_ctx: &JobContext, args: ChecksumArgs) -> Result<String, JobError> {
    Ok(hex(&Sha256::digest(args.data.as_bytes())))
}

/// One row of a report.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// What is counted.
    pub label: String,
    /// How much.
    pub value: f64,
}

/// `render_report`: a titled table with a total.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderReportArgs {
    /// The title.
    pub title: String,
    /// The rows, at most 10,000.
    pub rows: Vec<Row>,
}

/// What `render_report` made.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Rendered {
    /// The report as a Markdown table.
    pub markdown: String,
    /// The sum of the values.
    pub total: f64,
}

/// Renders the rows as a Markdown table with a total line.
#[forge::job(api)]
pub async fn render_report(_ctx: &JobContext, args: RenderReportArgs) -> Result<Rendered, JobError> {
    if args.rows.len() > 10_000 {
        return Err(JobError::permanent("rows: at most 10000"));
    }
    let total: f64 = args.rows.iter().map(|r| r.value).sum();
    let mut markdown = format!("# {}\n\n| item | value |\n|------|------:|\n", args.title.replace('\n', " "));
    for row in &args.rows {
        markdown.push_str(&format!("| {} | {} |\n", row.label.replace(['|', '\n'], " "), row.value));
    }
    markdown.push_str(&format!("| **total** | **{total}** |\n"));
    Ok(Rendered { markdown, total })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
