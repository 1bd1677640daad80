//! `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]`, the location string restic takes.

/// A parsed S3 location. Requests use path-style addressing (`http://host/bucket/key`), which
/// Garage, MinIO and AWS all accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// `http` or `https`.
    pub scheme: String,
    /// `host` or `host:port`.
    pub host: String,
    /// The bucket.
    pub bucket: String,
    /// The key prefix inside the bucket, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3:http://host:port/bucket/prefix` (`s3:host/bucket` means https). `None`
    /// when the text is not an S3 location at all; `Err` when it is one, but malformed.
    pub fn parse(text: &str) -> Option<Result<S3Location, String>> {
        let rest = text.strip_prefix("s3:")?;
        Some(Self::parse_rest(rest).map_err(|why| {
            format!(
                "`{text}` is not a valid S3 location ({why}): write \
                 s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]"
            )
        }))
    }

    fn parse_rest(rest: &str) -> Result<S3Location, &'static str> {
        let (scheme, rest) = if let Some(r) = rest.strip_prefix("https://") {
            ("https", r)
        } else if let Some(r) = rest.strip_prefix("http://") {
            ("http", r)
        } else if rest.contains("://") {
            return Err("only http and https are supported");
        } else {
            ("https", rest)
        };
        let (host, path) = rest.split_once('/').ok_or("no bucket named")?;
        if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
            return Err("the host is empty or holds credentials");
        }
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if !valid_bucket(bucket) {
            return Err("a bucket name is 3-63 lower-case letters, digits, `-` and `.`");
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            && !prefix.is_empty()
        {
            return Err("the prefix holds an empty, `.` or `..` segment");
        }
        Ok(S3Location {
            scheme: scheme.into(),
            host: host.into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
        })
    }

    /// The object key of `name` (`config`, `keys/ID`, `data/ab/ID`, ...).
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The location as the user wrote it, canonical.
    pub fn display(&self) -> String {
        let mut s = format!("s3:{}://{}/{}", self.scheme, self.host, self.bucket);
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        s
    }
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && !b.starts_with(['-', '.'])
        && !b.ends_with(['-', '.'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_style_locations_parse() {
        let l = S3Location::parse("s3:http://127.0.0.1:3900/backups/prod/eu")
            .unwrap()
            .unwrap();
        assert_eq!(l.scheme, "http");
        assert_eq!(l.host, "127.0.0.1:3900");
        assert_eq!(l.bucket, "backups");
        assert_eq!(l.prefix, "prod/eu");
        assert_eq!(l.key("data/ab/abc"), "prod/eu/data/ab/abc");
        assert_eq!(l.display(), "s3:http://127.0.0.1:3900/backups/prod/eu");
        let bare = S3Location::parse("s3:s3.example.com/bucket")
            .unwrap()
            .unwrap();
        assert_eq!((bare.scheme.as_str(), bare.prefix.as_str()), ("https", ""));
        assert_eq!(bare.key("config"), "config");
    }

    #[test]
    fn malformed_locations_are_refused_with_the_expected_form() {
        for bad in [
            "s3:http://host",
            "s3:http:///bucket",
            "s3:ftp://host/bucket",
            "s3:http://host/B",
            "s3:http://user:pw@host/bucket",
            "s3:http://host/bucket/a/../b",
        ] {
            let err = S3Location::parse(bad).unwrap().unwrap_err();
            assert!(err.contains("s3:http[s]://HOST"), "{bad}: {err}");
        }
        assert!(S3Location::parse("/var/lib/lifeboat/repository").is_none());
    }
}
