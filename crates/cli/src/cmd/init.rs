//! `lifeboat init`: creates the repository (and, without a password, a random key file).
//! Refuses an existing one; never overwrites a key.

use anyhow::Context;
use lifeboat_repo::RusticRepository;
use serde_json::json;

use crate::context::{GlobalArgs, generate_key_file};
use crate::exit::Code;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Create the repository of this region ([regions.NAME] of the config file) with the
    /// primary's chunker parameters, so copies deduplicate there instead of being cut anew
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
}

pub fn run(g: &GlobalArgs, a: &Args) -> anyhow::Result<Code> {
    if let Some(region) = &a.region {
        return init_region(g, region);
    }
    if g.from.is_some() {
        anyhow::bail!("to create a region's repository use `lifeboat init --region REGION`");
    }
    let section = g.section(None)?;
    let location = section
        .location
        .clone()
        .map(lifeboat_repo::RepoLocation)
        .unwrap_or_else(|| g.location());
    let configured = match &section.password_file {
        Some(path) => Some(
            lifeboat_repo::s3::read_secret_file(path)
                .map_err(|why| anyhow::anyhow!("repository password_file: {why}"))?,
        ),
        None => g.password().ok(),
    };
    let (password, key_file) = match configured {
        Some(pw) => (pw, None),
        None => {
            let path = g.default_key_file();
            let key = generate_key_file(&path)?;
            (key, Some(path))
        }
    };
    RusticRepository::init_with(&location, &password, None, g.settings_for(&section)?)
        .with_context(|| format!("cannot create the repository at {}", location.0))?;
    if g.json {
        println!(
            "{}",
            json!({"repository": location.0, "key_file": key_file.as_ref().map(|p| p.display().to_string())})
        );
    } else {
        println!("created repository {}", location.0);
    }
    if let Some(path) = key_file {
        eprintln!(
            "\n*** A new key was generated: {} (mode 0600). ***\n*** Without it the backups \
             cannot be read. Copy it somewhere safe, off this host, NOW. ***\n",
            path.display()
        );
    }
    Ok(Code::Ok)
}

fn init_region(g: &GlobalArgs, region: &str) -> anyhow::Result<Code> {
    let primary = g.open_target(&g.target(None)?)?;
    let t = g.target(Some(region))?;
    let repo =
        RusticRepository::init_like(&t.location, &t.password, None, t.settings.clone(), &primary)
            .with_context(|| format!("cannot create region `{region}` at {}", t.location.0))?;
    let chunker = repo.chunker()?;
    if g.json {
        println!(
            "{}",
            json!({"region": region, "repository": t.location.0, "chunker_polynomial": chunker})
        );
    } else {
        println!(
            "created region {region} at {} (chunker {chunker}, the primary's)",
            t.location.0
        );
    }
    Ok(Code::Ok)
}
