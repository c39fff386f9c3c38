//! The kit's side of the API: a tenant session on a running server.

use anyhow::Context as _;
use serde_json::Value;

/// A tenant's session: base URL, client and access token.
pub struct Session {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

impl Session {
    /// Exchange the tenant's API key and secret for a token at `base`.
    pub async fn open(
        base: String,
        api_key: Option<String>,
        api_secret: Option<String>,
    ) -> anyhow::Result<Session> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()?;
        let key = api_key.context("pass --api-key or set ENGAGE_API_KEY")?;
        let secret = api_secret.context("pass --api-secret or set ENGAGE_API_SECRET")?;
        let token = send(
            http.post(format!("{base}/v1/auth/token"))
                .json(&serde_json::json!({ "api_key": key, "api_secret": secret })),
        )
        .await?;
        let token = token["token"]
            .as_str()
            .context("the server issued no token")?
            .to_owned();
        Ok(Session { base, http, token })
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .delete(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }
}

/// Send a request and return its JSON body, or the API's error message.
pub async fn send(req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let (status, body) = exchange(req).await?;
    refused(status, &body)?;
    Ok(body)
}

/// [`send`], with a 404 answered as `None`.
pub async fn send_or_missing(req: reqwest::RequestBuilder) -> anyhow::Result<Option<Value>> {
    let (status, body) = exchange(req).await?;
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    refused(status, &body)?;
    Ok(Some(body))
}

async fn exchange(req: reqwest::RequestBuilder) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let resp = req.send().await.context("the server did not answer")?;
    let status = resp.status();
    Ok((status, resp.json().await.unwrap_or_default()))
}

/// The API's error, when `status` is one.
fn refused(status: reqwest::StatusCode, body: &Value) -> anyhow::Result<()> {
    if status.is_success() {
        return Ok(());
    }
    let code = body["error"]["code"].as_str().unwrap_or("error");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or("the server refused");
    anyhow::bail!("{status} {code}: {message}")
}
