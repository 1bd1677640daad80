//! The few elements of S3's XML answers the client reads (listings and error codes). S3's
//! answers are flat and regular; anything unexpected is an error, never a guess.

/// One object of a listing: its key, size, and when the store last wrote it (by the store's
/// clock, not the writer's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub key: String,
    pub size: u64,
    pub modified: Option<jiff::Timestamp>,
}

/// One page of a ListObjectsV2 answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Listing {
    pub objects: Vec<Listed>,
    pub truncated: bool,
    pub next_token: Option<String>,
}

pub(crate) fn parse_listing(text: &str) -> Result<Listing, String> {
    if !text.contains("<ListBucketResult") {
        return Err("not a ListBucketResult".into());
    }
    let mut listing = Listing {
        truncated: match tag(text, "IsTruncated").as_deref() {
            Some("true") => true,
            Some("false") | None => false,
            Some(other) => return Err(format!("IsTruncated is `{other}`")),
        },
        next_token: tag(text, "NextContinuationToken"),
        ..Listing::default()
    };
    let mut rest = text;
    while let Some(start) = rest.find("<Contents>") {
        let after = &rest[start + "<Contents>".len()..];
        let end = after
            .find("</Contents>")
            .ok_or("a Contents element is not closed")?;
        let item = &after[..end];
        let key = tag(item, "Key").ok_or("an object without a Key")?;
        let size = tag(item, "Size")
            .ok_or("an object without a Size")?
            .parse::<u64>()
            .map_err(|e| format!("the Size of `{key}`: {e}"))?;
        let modified = tag(item, "LastModified").and_then(|t| t.parse().ok());
        listing.objects.push(Listed {
            key,
            size,
            modified,
        });
        rest = &after[end..];
    }
    Ok(listing)
}

/// The text of the first `<name>` element, entities decoded.
pub(crate) fn tag(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&close)? + start;
    Some(unescape(&text[start..end]))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_page_gives_keys_sizes_and_the_next_token() {
        let page = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
<Prefix>p/index/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>
<IsTruncated>true</IsTruncated><NextContinuationToken>tok&amp;en</NextContinuationToken>
<Contents><Key>p/index/aa</Key><LastModified>2026-12-06T00:30:05.000Z</LastModified><Size>12</Size></Contents>
<Contents><Key>p/index/bb</Key><LastModified>x</LastModified><Size>0</Size></Contents></ListBucketResult>"#;
        let l = parse_listing(page).unwrap();
        let modified = "2026-12-06T00:30:05Z".parse().ok();
        assert_eq!(
            l.objects,
            vec![
                Listed {
                    key: "p/index/aa".into(),
                    size: 12,
                    modified
                },
                // A time that does not parse is no time, not an error.
                Listed {
                    key: "p/index/bb".into(),
                    size: 0,
                    modified: None
                }
            ]
        );
        assert!(l.truncated);
        assert_eq!(l.next_token.as_deref(), Some("tok&en"));
    }

    #[test]
    fn an_error_page_or_a_broken_listing_is_not_taken_for_an_empty_one() {
        assert!(parse_listing("<Error><Code>SlowDown</Code></Error>").is_err());
        assert!(parse_listing("<ListBucketResult><Contents><Key>a</Key></Contents>").is_err());
        assert_eq!(
            tag("<Error><Code>NoSuchBucket</Code></Error>", "Code").as_deref(),
            Some("NoSuchBucket")
        );
    }
}
