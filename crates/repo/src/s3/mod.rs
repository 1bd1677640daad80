//! S3 object storage: the only place that speaks HTTP to a bucket. Locations are restic's
//! (`s3:http://host:port/bucket/prefix`), credentials come from the environment or the config
//! file, and the object layout is restic's, so `restic -r s3:...` reads the same bucket.

mod backend;
mod client;
mod location;
mod sign;
mod xml;

pub use backend::S3Backend;
pub use client::{RetryPolicy, S3Client, S3Failure};
pub use location::S3Location;
pub use sign::S3Credentials;

/// How to reach a bucket besides its location: account, region and retry policy.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// The account; `None` reads `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (or their
    /// `*_FILE` forms) when a repository is opened.
    pub credentials: Option<S3Credentials>,
    /// The region the signature names; `None` reads `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Timeouts, attempts and waits.
    pub retry: RetryPolicy,
}

impl S3Settings {
    /// The account from the settings or the environment, or why there is none.
    pub fn credentials(&self) -> Result<S3Credentials, String> {
        if let Some(c) = &self.credentials {
            return Ok(c.clone());
        }
        let id = env_or_file("AWS_ACCESS_KEY_ID")?;
        let secret = env_or_file("AWS_SECRET_ACCESS_KEY")?;
        match (id, secret) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(S3Credentials {
                access_key_id,
                secret_access_key,
            }),
            _ => Err(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or \
                 AWS_ACCESS_KEY_ID_FILE and AWS_SECRET_ACCESS_KEY_FILE), or the daemon config's \
                 [repository] access_key_id_file and secret_access_key_file"
                    .into(),
            ),
        }
    }

    /// The region requests are signed for.
    pub fn region(&self) -> String {
        self.region
            .clone()
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".into())
    }
}

/// `NAME` from the environment, or the first line of the file `NAME_FILE` names.
fn env_or_file(name: &str) -> Result<Option<String>, String> {
    if let Ok(v) = std::env::var(name)
        && !v.is_empty()
    {
        return Ok(Some(v));
    }
    match std::env::var(format!("{name}_FILE")) {
        Ok(path) if !path.is_empty() => read_secret_file(std::path::Path::new(&path))
            .map(Some)
            .map_err(|e| format!("{name}_FILE: {e}")),
        _ => Ok(None),
    }
}

/// The first line of a secret file; an empty file is an error.
pub fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or_default().trim().to_string();
    if line.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(line)
}
