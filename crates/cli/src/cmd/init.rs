//! `lifeboat init`: creates the repository (and, without a password, a random key file).
//! Refuses an existing one; never overwrites a key.

use anyhow::Context;
use lifeboat_repo::RusticRepository;
use serde_json::json;

use crate::context::{GlobalArgs, generate_key_file};
use crate::exit::Code;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(g: &GlobalArgs, _a: &Args) -> anyhow::Result<Code> {
    let location = g.location();
    let (password, key_file) = match g.password() {
        Ok(pw) => (pw, None),
        Err(_) => {
            let path = g.default_key_file();
            let key = generate_key_file(&path)?;
            (key, Some(path))
        }
    };
    RusticRepository::init_with(&location, &password, None, g.repo_settings())
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
