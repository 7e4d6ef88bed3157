//! An HTTP client for one repository on one registry (the OCI distribution API), with
//! the registry's authentication dance: a 401 carries a `WWW-Authenticate` challenge;
//! `Basic` means send the credentials, `Bearer` means fetch a token from the realm for
//! our scope (with the credentials when we have them) and retry with it.

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use mycontainer_store::Digest;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use super::auth::Credentials;
use super::reference::{api_host, is_loopback};

/// Manifest types we understand, for the Accept header. Naming the OCI types matters:
/// distribution 2.8 answers 404 for an OCI manifest otherwise, and without any Accept
/// header it converts Docker v2 manifests to schema 1.
pub const MANIFEST_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Manifests larger than this are refused: real ones are a few kilobytes.
const MAX_MANIFEST: usize = 4 << 20;
/// Configs larger than this are refused: real ones are kilobytes, rarely a megabyte.
const MAX_SMALL_BLOB: usize = 16 << 20;

pub struct ClientOptions {
    /// Allow plain HTTP (and unverified TLS) for a registry that is not on loopback.
    pub insecure: bool,
    /// Ask for push access as well as pull.
    pub push: bool,
    /// Other repositories on the same registry we may mount blobs from (read access).
    pub mount_from: Vec<String>,
}

pub struct Client {
    http: Http,
    base: Url,
    registry: String,
    repository: String,
    credentials: Option<Credentials>,
    options: ClientOptions,
    /// The Authorization header that last worked (Basic or Bearer), shared by threads.
    authorization: Mutex<Option<String>>,
}

/// What a manifest GET returned.
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// The digest the registry says the manifest has (`Docker-Content-Digest`).
    pub claimed_digest: Option<Digest>,
}

impl Client {
    pub fn new(
        registry: &str,
        repository: &str,
        credentials: Option<Credentials>,
        options: ClientOptions,
    ) -> anyhow::Result<Client> {
        let http = http_client(options.insecure)?;
        let host = api_host(registry);
        let scheme = if is_loopback(registry) {
            "http"
        } else if options.insecure {
            probe_scheme(&http, host)
        } else {
            "https"
        };
        let base = Url::parse(&format!("{scheme}://{host}/"))
            .with_context(|| format!("invalid registry address {host:?}"))?;
        Ok(Client {
            http,
            base,
            registry: registry.to_string(),
            repository: repository.to_string(),
            credentials,
            options,
            authorization: Mutex::new(None),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn url(&self, path: &str) -> anyhow::Result<Url> {
        self.base
            .join(path)
            .with_context(|| format!("invalid registry path {path:?}"))
    }

    /// `GET /v2/`: checks that the registry answers and accepts our credentials.
    pub fn ping(&self) -> anyhow::Result<()> {
        let url = self.url("v2/")?;
        let response = self.send(&|http| Ok(http.get(url.clone())))?;
        expect_status(response, &[StatusCode::OK], "check the registry")?;
        Ok(())
    }

    pub fn get_manifest(&self, reference: &str) -> anyhow::Result<FetchedManifest> {
        let url = self.url(&format!("v2/{}/manifests/{reference}", self.repository))?;
        let accept = MANIFEST_TYPES.join(", ");
        let response = self.send(&|http| Ok(http.get(url.clone()).header(ACCEPT, &accept)))?;
        let separator = if reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        let what = format!(
            "fetch the manifest of {}{separator}{reference}",
            self.repository
        );
        let response = expect_status(response, &[StatusCode::OK], &what)?;
        let media_type = content_type(&response);
        let claimed_digest = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok());
        if response
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST as u64)
        {
            bail!("cannot {what}: the manifest is larger than {MAX_MANIFEST} bytes");
        }
        let bytes = response
            .bytes()
            .with_context(|| format!("cannot {what}: the connection failed"))?;
        if bytes.len() > MAX_MANIFEST {
            bail!("cannot {what}: the manifest is larger than {MAX_MANIFEST} bytes");
        }
        Ok(FetchedManifest {
            bytes: bytes.to_vec(),
            media_type,
            claimed_digest,
        })
    }

    /// Starts a blob download; the caller streams and verifies the body.
    pub fn get_blob(&self, digest: &Digest) -> anyhow::Result<Response> {
        let url = self.url(&format!("v2/{}/blobs/{digest}", self.repository))?;
        let response = self.send(&|http| Ok(http.get(url.clone())))?;
        expect_status(
            response,
            &[StatusCode::OK],
            &format!("download blob {digest}"),
        )
    }

    /// Downloads a small blob (a config) whole and checks its digest.
    pub fn get_small_blob(&self, digest: &Digest) -> anyhow::Result<Vec<u8>> {
        let response = self.get_blob(digest)?;
        if response
            .content_length()
            .is_some_and(|n| n > MAX_SMALL_BLOB as u64)
        {
            bail!("blob {digest} is larger than {MAX_SMALL_BLOB} bytes: not an image config");
        }
        let mut bytes = Vec::new();
        response
            .take(MAX_SMALL_BLOB as u64 + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot download blob {digest}: the connection failed"))?;
        if bytes.len() > MAX_SMALL_BLOB {
            bail!("blob {digest} is larger than {MAX_SMALL_BLOB} bytes: not an image config");
        }
        let actual = Digest::of_bytes(&bytes);
        if &actual != digest {
            bail!("blob {digest} from {} is corrupt: its content hashes to {actual}: nothing was stored", self.registry);
        }
        Ok(bytes)
    }

    pub fn has_blob(&self, digest: &Digest) -> anyhow::Result<bool> {
        let url = self.url(&format!("v2/{}/blobs/{digest}", self.repository))?;
        let response = self.send(&|http| Ok(http.head(url.clone())))?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => expect_status(response, &[], &format!("check blob {digest}")).map(|_| false),
        }
    }

    /// Tries to mount `digest` from `from` (same registry) into our repository. Returns
    /// true when mounted; false when the registry started a normal upload instead.
    pub fn mount_blob(&self, digest: &Digest, from: &str) -> anyhow::Result<bool> {
        let mut url = self.url(&format!("v2/{}/blobs/uploads/", self.repository))?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let response =
            self.send(&|http| Ok(http.post(url.clone()).header("Content-Length", "0")))?;
        Ok(response.status() == StatusCode::CREATED)
    }

    /// Uploads a blob in one PUT (POST to start the upload, then PUT with `?digest=`).
    /// `body` is called again when the request has to be retried after authenticating.
    pub fn upload_blob(
        &self,
        digest: &Digest,
        size: u64,
        body: &dyn Fn() -> anyhow::Result<reqwest::blocking::Body>,
    ) -> anyhow::Result<()> {
        let what = format!("upload blob {digest}");
        let start = self.url(&format!("v2/{}/blobs/uploads/", self.repository))?;
        let response =
            self.send(&|http| Ok(http.post(start.clone()).header("Content-Length", "0")))?;
        let response = expect_status(response, &[StatusCode::ACCEPTED], &what)?;
        let mut put = self.upload_location(&response, &what)?;
        put.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let response = self.send(&|http| {
            Ok(http
                .put(put.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header("Content-Length", size.to_string())
                .body(body()?))
        })?;
        expect_status(response, &[StatusCode::CREATED], &what)?;
        Ok(())
    }

    /// Starts an upload session for a blob streamed with [`Client::patch_upload`];
    /// returns its location.
    pub fn start_upload(&self) -> anyhow::Result<Url> {
        let what = "start a blob upload";
        let start = self.url(&format!("v2/{}/blobs/uploads/", self.repository))?;
        let response =
            self.send(&|http| Ok(http.post(start.clone()).header("Content-Length", "0")))?;
        let response = expect_status(response, &[StatusCode::ACCEPTED], what)?;
        self.upload_location(&response, what)
    }

    /// Sends `body` to an upload session in one PATCH, chunked (no length needed: the
    /// blob is still being made). Returns where the upload continues. The body cannot
    /// be replayed: [`Client::start_upload`] authenticated already, so there is no retry.
    pub fn patch_upload(
        &self,
        location: &Url,
        body: reqwest::blocking::Body,
    ) -> anyhow::Result<Url> {
        let what = "upload a blob";
        let body = Mutex::new(Some(body));
        let response = self.send(&|http| {
            let body = body
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .ok_or_else(|| anyhow!("cannot {what}: the registry asked to authenticate again in the middle of the upload: try again"))?;
            Ok(http
                .patch(location.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(body))
        })?;
        let response = expect_status(response, &[StatusCode::ACCEPTED], what)?;
        self.upload_location(&response, what)
    }

    /// Commits an upload as `digest`; the registry checks the bytes it got hash to it.
    pub fn commit_upload(&self, location: &Url, digest: &Digest) -> anyhow::Result<()> {
        let mut put = location.clone();
        put.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let response =
            self.send(&|http| Ok(http.put(put.clone()).header("Content-Length", "0")))?;
        expect_status(
            response,
            &[StatusCode::CREATED],
            &format!("upload blob {digest}"),
        )?;
        Ok(())
    }

    /// Cancels an upload session (best effort: the registry expires it anyway).
    pub fn cancel_upload(&self, location: &Url) {
        let _ = self.send(&|http| Ok(http.delete(location.clone())));
    }

    /// The absolute URL of an upload's `Location` header.
    fn upload_location(&self, response: &Response, what: &str) -> anyhow::Result<Url> {
        let location = response
            .headers()
            .get("Location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("cannot {what}: the registry gave no upload location"))?;
        self.base
            .join(location)
            .with_context(|| format!("cannot {what}: bad upload location {location:?}"))
    }

    /// PUTs a manifest under `reference` (a tag); returns the digest the registry reports.
    pub fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> anyhow::Result<()> {
        let url = self.url(&format!("v2/{}/manifests/{reference}", self.repository))?;
        let response = self.send(&|http| {
            Ok(http
                .put(url.clone())
                .header(CONTENT_TYPE, media_type)
                .body(bytes.to_vec()))
        })?;
        expect_status(
            response,
            &[StatusCode::CREATED, StatusCode::OK],
            &format!("push the manifest for {}:{reference}", self.repository),
        )?;
        Ok(())
    }

    /// Sends a request; on 401 answers the challenge once and sends it again.
    fn send(
        &self,
        make: &dyn Fn(&Http) -> anyhow::Result<RequestBuilder>,
    ) -> anyhow::Result<Response> {
        let current = self.current_authorization();
        let response = self.send_with(make, current.as_deref())?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow!(
                    "registry {} refused the request (401) without saying how to authenticate",
                    self.registry
                )
            })?;
        let authorization = self.answer(&challenge)?;
        *self.lock_authorization() = Some(authorization.clone());
        let response = self.send_with(make, Some(&authorization))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            // Basic credentials refused (or a login's ping refused) means a wrong
            // password; a token refused means it does not grant this repository.
            if authorization.starts_with("Basic ") || self.repository.is_empty() {
                return Err(self.rejected());
            }
            return Err(self.denied());
        }
        Ok(response)
    }

    fn send_with(
        &self,
        make: &dyn Fn(&Http) -> anyhow::Result<RequestBuilder>,
        authorization: Option<&str>,
    ) -> anyhow::Result<Response> {
        let mut request = make(&self.http)?;
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        request.send().map_err(|e| self.connection_error(e))
    }

    fn current_authorization(&self) -> Option<String> {
        self.lock_authorization().clone()
    }

    fn lock_authorization(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // A panic elsewhere cannot leave a half-written Option: take the value anyway.
        self.authorization
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn denied(&self) -> anyhow::Error {
        match &self.credentials {
            Some(c) => anyhow!(
                "registry {} denied access to {} for user {:?}: check the name and your rights, or log in again with `mycontainer login {}`",
                self.registry, self.repository, c.username, self.registry
            ),
            None => anyhow!(
                "registry {} denied access to {}: the repository does not exist or needs `mycontainer login {}`",
                self.registry, self.repository, self.registry
            ),
        }
    }

    fn rejected(&self) -> anyhow::Error {
        match &self.credentials {
            Some(c) => anyhow!(
                "registry {} rejected the credentials of user {:?}: run `mycontainer login {}` with the right password",
                self.registry, c.username, self.registry
            ),
            None => anyhow!(
                "registry {} needs a login: run `mycontainer login {}`",
                self.registry,
                self.registry
            ),
        }
    }

    fn connection_error(&self, e: reqwest::Error) -> anyhow::Error {
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(inner) = source {
            cause = inner.to_string();
            source = inner.source();
        }
        anyhow!(
            "cannot reach registry {} at {}: {cause}",
            self.registry,
            self.base
        )
    }

    /// Turns a challenge into an Authorization header value.
    fn answer(&self, challenge: &str) -> anyhow::Result<String> {
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            let Some(c) = &self.credentials else {
                bail!(
                    "registry {} needs a login: run `mycontainer login {}`",
                    self.registry,
                    self.registry
                );
            };
            let pair = format!("{}:{}", c.username, c.password);
            return Ok(format!("Basic {}", BASE64.encode(pair)));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            bail!(
                "registry {} asks for {scheme:?} authentication, which is not supported",
                self.registry
            );
        }
        let realm = param(&params, "realm").ok_or_else(|| {
            anyhow!(
                "registry {} sent a Bearer challenge without a realm",
                self.registry
            )
        })?;
        let mut url = Url::parse(realm).with_context(|| {
            format!(
                "registry {} sent a bad token realm {realm:?}",
                self.registry
            )
        })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = param(&params, "service") {
                query.append_pair("service", service);
            }
            for scope in self.scopes(param(&params, "scope")) {
                query.append_pair("scope", &scope);
            }
        }
        let mut request = self.http.get(url.clone());
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request.send().map_err(|e| {
            anyhow!(
                "cannot get a token for registry {} from {realm}: {}",
                self.registry,
                root_cause(&e)
            )
        })?;
        match response.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(self.rejected()),
            s => bail!(
                "token server {realm} of registry {} answered {s}",
                self.registry
            ),
        }
        let body: serde_json::Value = response.json_value().with_context(|| {
            format!(
                "token server {realm} of registry {} sent invalid JSON",
                self.registry
            )
        })?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                anyhow!(
                    "token server {realm} of registry {} sent no token",
                    self.registry
                )
            })?;
        Ok(format!("Bearer {token}"))
    }

    /// The scopes to ask a token for: our repository (pull, or pull and push), the
    /// repositories we may mount from, else what the challenge named (a login's ping).
    fn scopes(&self, challenged: Option<&str>) -> Vec<String> {
        if self.repository.is_empty() {
            return challenged.map(str::to_string).into_iter().collect();
        }
        let actions = if self.options.push {
            "pull,push"
        } else {
            "pull"
        };
        let mut scopes = vec![format!("repository:{}:{actions}", self.repository)];
        for from in &self.options.mount_from {
            scopes.push(format!("repository:{from}:pull"));
        }
        scopes
    }
}

/// Reads a JSON body without reqwest's `json` feature.
trait JsonValue {
    fn json_value(self) -> anyhow::Result<serde_json::Value>;
}

impl JsonValue for Response {
    fn json_value(self) -> anyhow::Result<serde_json::Value> {
        let bytes = self.bytes()?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

fn http_client(insecure: bool) -> anyhow::Result<Http> {
    Http::builder()
        .user_agent(concat!("mycontainer/", env!("CARGO_PKG_VERSION")))
        // Layer downloads may take long: no overall timeout, but do not hang on connect.
        .timeout(None::<Duration>)
        .connect_timeout(Duration::from_secs(30))
        .tls_danger_accept_invalid_certs(insecure)
        .build()
        .context("cannot create the HTTP client")
}

/// For `--insecure`, as Docker does: HTTPS (without certificate checks) when the
/// registry speaks it, else plain HTTP. Only a failed TLS handshake (a plain-HTTP
/// server answering garbage to our hello) means plain HTTP: a slow HTTPS registry is
/// waited for like any other request (the client's connect timeout bounds it; the
/// probe had 10 s, past which a real HTTPS registry was taken for a plain one), and
/// any other failure (refused, unreachable) keeps HTTPS, whose next request then
/// reports it.
fn probe_scheme(http: &Http, host: &str) -> &'static str {
    match http.get(format!("https://{host}/v2/")).send() {
        Ok(_) => "https",
        Err(e) if tls_failed(&e) => "http",
        Err(_) => "https",
    }
}

/// Whether `e` is a TLS-level failure: rustls reports what is not TLS (a plain-HTTP
/// answer) as invalid data, in an I/O error of kind InvalidData (wrapped in others).
fn tls_failed(e: &reqwest::Error) -> bool {
    if e.is_timeout() {
        return false;
    }
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(inner) = source {
        // An io::Error's source() skips what it wraps: look inside it too.
        let mut io = inner.downcast_ref::<std::io::Error>();
        while let Some(err) = io {
            if err.kind() == std::io::ErrorKind::InvalidData {
                return true;
            }
            io = err
                .get_ref()
                .and_then(|wrapped| wrapped.downcast_ref::<std::io::Error>());
        }
        source = inner.source();
    }
    false
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    cause
}

fn content_type(response: &Response) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
        .unwrap_or_default()
}

/// Passes a response with one of the `wanted` statuses; otherwise an error naming the
/// status and the registry's own error message (`{"errors":[{"code","message"}]}`).
pub fn expect_status(
    response: Response,
    wanted: &[StatusCode],
    what: &str,
) -> anyhow::Result<Response> {
    let status = response.status();
    if wanted.contains(&status) {
        return Ok(response);
    }
    let body = response.bytes().unwrap_or_default();
    let detail = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|doc| {
            let first = doc.get("errors")?.as_array()?.first()?.clone();
            let code = first.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let message = first.get("message").and_then(|m| m.as_str()).unwrap_or("");
            Some(format!("{code}: {message}"))
        });
    match (status, detail) {
        (StatusCode::NOT_FOUND, Some(detail)) => bail!("cannot {what}: not found ({detail})"),
        (StatusCode::NOT_FOUND, None) => bail!("cannot {what}: not found (404)"),
        (_, Some(detail)) => bail!("cannot {what}: the registry answered {status} ({detail})"),
        (_, None) => bail!("cannot {what}: the registry answered {status}"),
    }
}

/// Splits `Bearer realm="x",service="y",scope="a:b:pull,push"` into the scheme and
/// its parameters; quoted values may hold commas.
fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.push((key.trim().to_ascii_lowercase(), value));
    }
    (scheme.to_string(), params)
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges_with_commas_in_quotes() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(
            param(&params, "realm"),
            Some("https://auth.docker.io/token")
        );
        assert_eq!(param(&params, "service"), Some("registry.docker.io"));
        assert_eq!(
            param(&params, "scope"),
            Some("repository:library/busybox:pull,push")
        );
        let (scheme, params) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(scheme, "Basic");
        assert_eq!(param(&params, "realm"), Some("Registry Realm"));
    }
}
